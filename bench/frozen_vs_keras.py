"""Frozen-base training: the article's Example 1 (model.fit over the whole frozen model) vs graftkit's cached head stage.

Run from the project root, with the shared folder beside it::

    python bench/frozen_vs_keras.py --data hymenoptera flowers128 --base mobilenet_v2_0.5 --rounds 3

For every (data set, base) it alternates, round after round, three arms, each in a fresh
child process so that peak RSS is its own:

- ``article``: Example 1 as written: the base with every layer frozen, GlobalAveragePooling2D,
  Dense(1024, relu), Dense(classes, softmax), ``compile(optimizer="adam",
  loss="categorical_crossentropy")`` and ``model.fit`` for N epochs, no augmentation;
- ``graftkit cold``: graftkit's head stage with the same head, optimizer, epochs and batch size,
  on an empty feature cache (the base runs once per image);
- ``graftkit warm``: the same again, with the cache the cold run left.

Both see the same split, the same decoded pixels (graftkit's pipeline) and the same
preprocessing; round ``r`` seeds both arms with ``r`` (initial weights, shuffling), so the
medians are over seeds. Timed: from a built model to a trained head, validation every epoch included;
building the base and loading its weights are left out of both. Printed: median wall time,
CPU time (all threads; the cost of an arm whatever else shares the machine), peak RSS and
final-epoch validation accuracy of each arm, and the ratios: of the median wall times, the
median of each round's own ratio, and of the median CPU times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from arms import arm_in_child  # noqa: E402
sys.path.insert(0, str(ROOT))

ARMS = ("article", "graftkit cold", "graftkit warm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["hymenoptera", "flowers128"],
                        help="data sets under $GRAFT_SHARED/data, or folders")
    parser.add_argument("--base", nargs="+", default=["mobilenet_v2_0.5", "efficientnet_lite0"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, nargs="+",
                        help="input size per data set (default: 224, and 128 for flowers128, its images' size)")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_arm(json.loads(args.child))), flush=True)
        return

    from graftkit.settings import shared_dir

    weights = shared_dir() / "weights"
    env = {**os.environ, "GRAFT_WEIGHTS_DIR": os.environ.get("GRAFT_WEIGHTS_DIR", str(weights)),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = []
    for index, data in enumerate(args.data):
        folder = Path(data) if Path(data).is_dir() else shared_dir() / "data" / data
        size = args.size[index] if args.size else (128 if Path(data).name == "flowers128" else 224)
        for base in args.base:
            if not available(base, env):
                print(f"skipped {base}: its weights are not on this machine")
                continue
            with tempfile.TemporaryDirectory(prefix="graftkit-bench-") as cache:
                env["GRAFT_CACHE_DIR"] = cache
                runs = {arm: [] for arm in ARMS}
                for round_ in range(args.rounds):
                    # Alternate who goes first, so neither arm always meets the same load.
                    order = ARMS if round_ % 2 == 0 else ("graftkit cold", "graftkit warm", "article")
                    for arm in order:
                        spec = {"arm": arm, "data": str(folder), "base": base, "size": size,
                                "epochs": args.epochs, "batch": args.batch, "seed": round_}
                        result = arm_in_child(__file__, spec, env)
                        runs[arm].append(result)
                        print(f"  {Path(data).name} {base} round {round_ + 1} {arm:14s} {result['seconds']:8.2f} s "
                              f"rss {result['peak_rss_mb']:6.0f} MB  val acc {result['val_accuracy']:.4f}",
                              flush=True)
            results.append({"data": Path(data).name, "base": base, "size": size, "runs": runs,
                            "load": os.getloadavg()})
            report(results[-1], args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def available(base: str, env: dict) -> bool:
    code = ("import graftkit; from graftkit.bases import registry, weights; "
            f"s = registry.get_spec({base!r}); "
            "import sys; sys.exit(0 if weights.is_ready_offline(s) else 1)")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode == 0


def report(result: dict, args) -> None:
    runs = result["runs"]

    def median(arm, key):
        return statistics.median(r[key] for r in runs[arm])

    article = median("article", "seconds")
    print(f"\n{result['data']} / {result['base']} at {result['size']} px, {args.epochs} epochs, batch {args.batch}, "
          f"medians of {args.rounds} rounds (load average {result['load'][0]:.2f})")
    print(f"{'arm':16s} {'seconds':>9s} {'ratio':>7s} {'round ratio':>12s} {'CPU s':>8s} {'CPU ratio':>10s} "
          f"{'peak RSS MB':>12s} {'val acc (last)':>15s} {'val acc (kept)':>15s}")
    for arm in ARMS:
        seconds = median(arm, "seconds")
        # The ratio within each round (arms run minutes apart) is steadier under a changing load.
        paired = statistics.median(a["seconds"] / g["seconds"] for a, g in zip(runs["article"], runs[arm]))
        kept = median(arm, "val_accuracy_kept") if "val_accuracy_kept" in runs[arm][0] else float("nan")
        cpu = median(arm, "cpu_seconds")
        print(f"{arm:16s} {seconds:9.2f} {article / seconds:7.1f} {paired:12.1f} {cpu:8.1f} "
              f"{median('article', 'cpu_seconds') / cpu:10.1f} {median(arm, 'peak_rss_mb'):12.0f} "
              f"{median(arm, 'val_accuracy'):15.4f} {kept:15.4f}")
    print(flush=True)


# ---------------------------------------------------------------- the arms (run in a child process)


def run_arm(spec: dict) -> dict:
    import graftkit  # noqa: F401  (TensorFlow's start-up options first)
    from graftkit import log
    from graftkit.data.layout import load_split

    log.set_quiet(True)
    split = load_split(spec["data"], seed=spec["seed"])
    if spec["arm"] == "article":
        result = article_arm(spec, split)
    else:
        result = graftkit_arm(spec, split, cold=spec["arm"] == "graftkit cold")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def article_arm(spec: dict, split) -> dict:
    """Example 1 of the article, as written, with the bench's base in place of ResNet50."""
    import keras
    import tensorflow as tf
    from keras.layers import Dense, GlobalAveragePooling2D
    from keras.models import Model

    from graftkit.bases.loader import load_base
    from graftkit.bases.preprocess import preprocessing_layer
    from graftkit.bases.registry import get_spec
    from graftkit.data.pipeline import make_dataset

    keras.utils.set_random_seed(spec["seed"])
    num_classes = len(split.class_names)
    # The base exactly as graftkit loads it (same weights), as a plain Keras model.
    base_model = load_base(spec["base"], image_size=spec["size"]).model

    # Freeze all convolutional layers
    for layer in base_model.layers:
        layer.trainable = False

    # Add new classification layers
    x = base_model.output
    x = GlobalAveragePooling2D()(x)
    x = Dense(1024, activation="relu")(x)
    predictions = Dense(num_classes, activation="softmax")(x)
    model = Model(inputs=base_model.input, outputs=predictions)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    preprocess = preprocessing_layer(get_spec(spec["base"]).preprocessing)  # what preprocess_input would do

    def ready(ds):
        return ds.map(lambda x, y: (preprocess(x), tf.one_hot(y, num_classes)))

    train = ready(make_dataset(split.train.paths, split.train.labels, image_size=spec["size"],
                               batch_size=spec["batch"], shuffle=True, seed=spec["seed"]))
    val = ready(make_dataset(split.val.paths, split.val.labels, image_size=spec["size"], batch_size=spec["batch"]))
    start, cpu = time.perf_counter(), cpu_seconds()
    history = model.fit(train, validation_data=val, epochs=spec["epochs"], verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "val_accuracy": history.history["val_accuracy"][-1],
            "epochs_run": len(history.history["loss"])}


def graftkit_arm(spec: dict, split, *, cold: bool) -> dict:
    """graftkit's head stage on cached features, with the article's head and optimizer."""
    import keras
    import numpy as np

    from graftkit import settings
    from graftkit.features import extract as features
    from graftkit.bases.loader import load_base
    from graftkit.model.head import build_head
    from graftkit.results.evaluate import score
    from graftkit.model.infer import predict_features
    from graftkit.training.head_stage import cached_head_stage

    keras.utils.set_random_seed(spec["seed"])
    if cold:
        shutil.rmtree(settings.cache_dir() / "features", ignore_errors=True)
    base = load_base(spec["base"], image_size=spec["size"])
    head = build_head(base.feature_shape, len(split.class_names), hidden=[1024], dropout=0, seed=spec["seed"])
    base.model.trainable = False
    start, cpu = time.perf_counter(), cpu_seconds()
    result, cached = cached_head_stage(base, head, split, views=0, batch_size=spec["batch"], epochs=spec["epochs"],
                                       learning_rate=1e-3, patience=spec["epochs"], seed=spec["seed"])
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    kept = score(np.asarray(split.val.labels), predict_features(cached.model, cached.val), split.class_names)["accuracy"]
    stats = {}
    features.extract_features(base, split.val.paths, pool=cached.pool, stats=stats)  # after the clock
    return {"seconds": seconds, "cpu_seconds": cpu, "val_accuracy": result.history["val_accuracy"][-1],
            "val_accuracy_kept": kept,
            "epochs_run": len(result.history["loss"]), "val_cached": stats["cached"]}


def cpu_seconds() -> float:
    """CPU time of this process, all threads: what an arm costs, whatever else shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
