"""Text classification on SMS spam: graftkit's text bases against scikit-learn and plain keras-hub, side by side.

Run from the project root, with the shared folder beside it (keras-hub for its arms: ``make bench-text``)::

    python bench/text_vs_baselines.py --epochs 10 --fine-tune-epochs 2

One fixed split for every arm: the 5,574 messages of ``$GRAFT_SHARED/data/sms_spam``, 80/20 stratified
(scikit-learn's ``train_test_split``, seed 0), the issue's definition. Every arm trains on the 80% part
only and is scored on the same 1,115 test messages: accuracy, spam F1, wall and CPU seconds. Each arm
runs in a fresh child process (its peak RSS and caches are its own; the feature cache is emptied):

- ``word tf-idf + logreg``: ``TfidfVectorizer()`` + ``LogisticRegression``, the classic first try;
- ``char tf-idf + linearsvc``: character 2-5-gram TF-IDF + ``LinearSVC``, the strong baseline;
- ``graftkit tfidf``: ``graftkit.train(..., base="tfidf")``;
- ``graftkit frozen``: MiniLM-L6 frozen, the head fitted on its cached embeddings (``--freeze all``; by
  default a logistic regression by L-BFGS), and the same with the head trained by Adam for ``--epochs``
  epochs at ``--lr 0.001`` (``graftkit frozen adam``, graftkit's head stage before issue 16);
- ``graftkit fine-tuned``: the same, then its top blocks fine-tuned (graftkit's default ``last:30%``);
- ``keras-hub frozen``: keras-hub's ``BertTextClassifier`` on the same MiniLM weights, backbone frozen,
  ``fit`` for ``--keras-hub-epochs`` epochs at graftkit's max length; its time is also given per epoch
  and scaled to ``--epochs`` (a 2-core CPU runs its 10 epochs in most of an hour);
- ``embedding throughput``: texts/s of graftkit's extraction (length-bucketed batches) against
  keras-hub's backbone ``predict`` (padded to the same max length), on the same messages.

graftkit splits its own validation share off the 80% (stratified, seed 0), as ``graft train`` does;
the scikit-learn arms use all of it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from arms import arm_in_child  # noqa: E402
sys.path.insert(0, str(ROOT))

ARMS = ("word tf-idf + logreg", "char tf-idf + linearsvc", "graftkit tfidf", "graftkit frozen",
        "graftkit frozen adam", "graftkit fine-tuned", "keras-hub frozen", "embedding throughput")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--epochs", type=int, default=10, help="head epochs (graftkit) and the epochs compared")
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--keras-hub-epochs", type=int, default=1, help="epochs keras-hub actually runs")
    parser.add_argument("--throughput-texts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print("RESULT " + json.dumps(run_arm(spec)))
        return
    from graftkit.settings import shared_dir

    table = shared_dir() / "data" / "sms_spam" / "SMSSpamCollection.tsv"
    if not table.is_file():
        sys.exit(f"no SMS data at {table}: set GRAFT_SHARED")
    results = []
    with tempfile.TemporaryDirectory(prefix="graftkit-bench-text-") as work:
        env = {**os.environ, "GRAFT_CACHE_DIR": str(Path(work) / "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        for arm in args.arms:
            spec = {"arm": arm, "table": str(table), "work": work, "epochs": args.epochs, "seed": args.seed,
                    "fine_tune_epochs": args.fine_tune_epochs, "keras_hub_epochs": args.keras_hub_epochs,
                    "throughput_texts": args.throughput_texts}
            result = arm_in_child(__file__, spec, env)
            results.append(result)
            print(describe(result), flush=True)
    print_table(results, args.epochs)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def split(table: str, seed: int):
    """The 80/20 stratified split of the SMS messages: (train texts, train labels, test texts, test labels)."""
    from sklearn.model_selection import train_test_split

    with open(table, encoding="utf-8", newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    texts, labels = [r[1] for r in rows], [int(r[0] == "spam") for r in rows]
    train_x, test_x, train_y, test_y = train_test_split(texts, labels, test_size=0.2, stratify=labels,
                                                        random_state=seed)
    return train_x, train_y, test_x, test_y


def run_arm(spec: dict) -> dict:
    train_x, train_y, test_x, test_y = split(spec["table"], spec["seed"])
    cpu, wall = time.process_time(), time.perf_counter()
    result = ARM_RUNNERS[spec["arm"]](spec, train_x, train_y, test_x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = {"arm": spec["arm"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), **result.pop("extra", {})}
    if "predicted" in result:
        from sklearn.metrics import accuracy_score, f1_score

        out["accuracy"] = round(accuracy_score(test_y, result["predicted"]), 4)
        out["spam_f1"] = round(f1_score(test_y, result["predicted"]), 4)
    out.update(result.get("more", {}))
    return out


def word_logreg(spec, train_x, train_y, test_x):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(train_x, train_y)
    return {"predicted": model.predict(test_x)}


def char_svc(spec, train_x, train_y, test_x):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    model = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(2, 5)), LinearSVC()).fit(train_x, train_y)
    return {"predicted": model.predict(test_x)}


def _table(spec, train_x, train_y) -> Path:
    path = Path(spec["work"]) / "sms-train.tsv"
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        writer.writerow(["label", "text"])
        writer.writerows([["spam" if y else "ham", x.replace("\t", " ")] for x, y in zip(train_x, train_y)])
    return path


def _graftkit(spec, train_x, train_y, test_x, **options):
    import numpy as np

    import graftkit
    from graftkit.results.texts import text_outputs

    out = Path(spec["work"]) / f"run-{spec['arm'].replace(' ', '-')}"
    run = graftkit.train(str(_table(spec, train_x, train_y)), out=str(out), seed=spec["seed"], **options)
    outputs = text_outputs(run.model, list(test_x), run.run_dir)
    stages = {name: {"seconds": s["seconds"], "best_epoch": s["best_epoch"], "kept": s["kept"]}
              for name, s in run.metrics["stages"].items()}
    spam = run.class_names.index("spam")
    return {"predicted": (np.asarray(outputs).argmax(1) == spam).astype(int), "more": {"stages": stages}}


def graftkit_tfidf(spec, train_x, train_y, test_x):
    return _graftkit(spec, train_x, train_y, test_x, base="tfidf")


def graftkit_frozen(spec, train_x, train_y, test_x):
    return _graftkit(spec, train_x, train_y, test_x, base="minilm_l6", freeze="all", epochs=spec["epochs"])


def graftkit_frozen_adam(spec, train_x, train_y, test_x):
    return _graftkit(spec, train_x, train_y, test_x, base="minilm_l6", freeze="all", epochs=spec["epochs"],
                     head_solver="adam")


def graftkit_fine_tuned(spec, train_x, train_y, test_x):
    return _graftkit(spec, train_x, train_y, test_x, base="minilm_l6", epochs=spec["epochs"],
                     fine_tune_epochs=spec["fine_tune_epochs"])


def _minilm_folder() -> str:
    from graftkit.bases.text import load_text_base

    return load_text_base("minilm_l6").weights


def _max_length(texts) -> int:
    from graftkit.bases.text import load_text_base
    from graftkit.data.tokens import choose_max_length

    base = load_text_base("minilm_l6")
    return choose_max_length(base.tokenizer.lengths(list(texts)), base.max_positions)


def keras_hub_frozen(spec, train_x, train_y, test_x):
    import keras
    import keras_hub
    import numpy as np

    keras.utils.set_random_seed(spec["seed"])
    folder, length = _minilm_folder(), _max_length(train_x)
    started = time.perf_counter()
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(folder, sequence_length=length)
    backbone = keras_hub.models.BertBackbone.from_preset(folder)
    backbone.trainable = False
    # Without tensorflow-text (which needs the full tensorflow package) keras-hub tokenizes in Python only, not
    # inside fit's tf.data pipeline: the texts are tokenized once, eagerly, and fed as the backbone's inputs.
    classifier = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), metrics=["accuracy"])
    train_inputs, test_inputs = (_keras_hub_inputs(preprocessor, texts) for texts in (train_x, test_x))
    built = time.perf_counter() - started
    start = time.perf_counter()
    classifier.fit(train_inputs, np.array(train_y), batch_size=32, epochs=spec["keras_hub_epochs"], verbose=0)
    per_epoch = (time.perf_counter() - start) / spec["keras_hub_epochs"]
    logits = classifier.predict(test_inputs, batch_size=64, verbose=0)
    return {"predicted": logits.argmax(1), "more": {
        "epochs_run": spec["keras_hub_epochs"], "seconds_per_epoch": round(per_epoch, 1), "max_length": length,
        "build_s": round(built, 1), f"scaled_to_{spec['epochs']}_epochs_s": round(built + per_epoch * spec["epochs"], 1)}}


def _keras_hub_inputs(preprocessor, texts) -> dict:
    """keras-hub's backbone inputs for ``texts``, tokenized eagerly (in Python) by its preprocessor."""
    import numpy as np

    inputs = preprocessor(np.array(list(texts)))
    inputs = inputs[0] if isinstance(inputs, tuple) else inputs
    return {k: np.asarray(v) for k, v in inputs.items() if k in ("token_ids", "padding_mask", "segment_ids")}


def embedding_throughput(spec, train_x, train_y, test_x):
    import keras_hub

    from graftkit.bases.text import load_text_base
    from graftkit.features.extract import extract_features

    texts = list(train_x)[:spec["throughput_texts"]]
    base = load_text_base("minilm_l6")
    base.tokenizer.max_length = base.tokenizer.check_length(_max_length(train_x))
    extract_features(base, texts[:64], feature_cache="memory")  # traced and warmed up
    start = time.perf_counter()
    extract_features(base, texts, feature_cache="memory")
    ours = len(texts) / (time.perf_counter() - start)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor.from_preset(base.weights,
                                                                               sequence_length=base.max_length)
    backbone = keras_hub.models.BertBackbone.from_preset(base.weights)
    inputs = _keras_hub_inputs(preprocessor, texts)
    backbone.predict({k: v[:64] for k, v in inputs.items()}, batch_size=32, verbose=0)
    start = time.perf_counter()
    backbone.predict(inputs, batch_size=32, verbose=0)
    theirs = len(texts) / (time.perf_counter() - start)
    return {"extra": {"texts": len(texts), "max_length": base.max_length, "graftkit_texts_per_s": round(ours, 1),
                      "keras_hub_texts_per_s": round(theirs, 1), "ratio": round(ours / theirs, 2)}}


ARM_RUNNERS = {"word tf-idf + logreg": word_logreg, "char tf-idf + linearsvc": char_svc,
               "graftkit tfidf": graftkit_tfidf, "graftkit frozen": graftkit_frozen,
               "graftkit frozen adam": graftkit_frozen_adam,
               "graftkit fine-tuned": graftkit_fine_tuned, "keras-hub frozen": keras_hub_frozen,
               "embedding throughput": embedding_throughput}


def describe(result: dict) -> str:
    return "  ".join(f"{k}={v}" for k, v in result.items())


def print_table(results: list[dict], epochs: int) -> None:
    print(f"\n{'arm':<26} {'accuracy':>8} {'spam F1':>8} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    for r in results:
        if "accuracy" in r:
            print(f"{r['arm']:<26} {r['accuracy']:>8.4f} {r['spam_f1']:>8.4f} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
                  f"{r['peak_rss_mb']:>8}")
    by = {r["arm"]: r for r in results}
    frozen, hub = by.get("graftkit frozen"), by.get("keras-hub frozen")
    if frozen and hub:
        scaled = hub[f"scaled_to_{epochs}_epochs_s"]
        print(f"\nfrozen encoder, {epochs} epochs: keras-hub {scaled:.0f} s ({hub['seconds_per_epoch']:.0f} s an epoch "
              f"measured over {hub['epochs_run']}) / graftkit {frozen['wall_s']:.0f} s = {scaled / frozen['wall_s']:.1f}x")
    if "embedding throughput" in by:
        t = by["embedding throughput"]
        print(f"embedding throughput on {t['texts']} texts: graftkit {t['graftkit_texts_per_s']} texts/s, keras-hub "
              f"predict {t['keras_hub_texts_per_s']} texts/s = {t['ratio']}x")


if __name__ == "__main__":
    main()
