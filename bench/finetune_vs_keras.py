"""Fine-tuning: the article's Example 2 (model.fit over the whole model) vs graftkit on the boundary cache.

Run from the project root, with the shared folder beside it::

    python bench/finetune_vs_keras.py --data hymenoptera --freeze last:20 last:30% --rounds 3
    python bench/finetune_vs_keras.py --freeze last:30% --views 1 2 4 --arms graftkit --rounds 3

For every (data set, freeze spec) it alternates, round after round, its arms, each in a fresh
child process so that peak RSS is its own:

- ``article``: Example 2: the base, the layers the spec names trainable (graftkit's
  ``apply_freeze``, so BatchNorm stays frozen), the base called with ``training=False`` (BatchNorm
  in inference mode, as graftkit runs it), GlobalAveragePooling2D, Dense(512, relu),
  Dense(classes, softmax), ``Adam(1e-4)``, categorical cross-entropy, ``model.fit`` for N epochs
  on augmented batches (graftkit's pipeline and augmentation);
- ``graftkit``: :func:`graftkit.training.stages.fine_tune_stage` on the same model, the same
  trainable layers, optimizer, epochs and batch size, with the boundary cache on an empty cache
  folder: filling the cache (every view of every training image, the validation images) is timed.
  ``--views K ...`` runs it once per number of cached views (default: graftkit's default);
- ``uncached``: the same ``fine_tune_stage`` without the boundary cache: graftkit's fine-tuning before it (the
  reference for "peak memory no higher than today's").

Both arms start from the same head (Example 2 fine-tunes straight away; round ``r`` seeds both with
``r`` + ``--first-seed``) and see the same images. Timed: from a built model to the end of the last epoch,
validation included; loading the base is left out of both. Printed per arm: wall seconds,
CPU seconds (all threads), the cache's fill seconds, peak RSS, disk used by the cache and the
last epoch's validation accuracy; then the ratios and the accuracy's mean and sd over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from arms import arm_in_child  # noqa: E402
sys.path.insert(0, str(ROOT))

ARMS = ("article", "uncached", "graftkit")  # uncached: graftkit's fine-tuning without the boundary cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["hymenoptera"], help="data sets under $GRAFT_SHARED/data")
    parser.add_argument("--base", default="mobilenet_v2_0.5")
    parser.add_argument("--freeze", nargs="+", default=["last:20", "last:30%"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first round (round r: this + r)")
    parser.add_argument("--size", type=int, nargs="+", help="input size per data set (default 224; 128 for flowers128)")
    parser.add_argument("--views", type=int, nargs="+", default=[None],
                        help="augmented views cached per training image in the graftkit arm, one run of it per K "
                             "(default: graftkit's default)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS), help="the arms to run")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_arm(json.loads(args.child))), flush=True)
        return

    from graftkit.settings import shared_dir

    env = {**os.environ, "GRAFT_WEIGHTS_DIR": os.environ.get("GRAFT_WEIGHTS_DIR", str(shared_dir() / "weights")),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    results = []
    for index, data in enumerate(args.data):
        folder = Path(data) if Path(data).is_dir() else shared_dir() / "data" / data
        size = args.size[index] if args.size else (128 if folder.name == "flowers128" else 224)
        for freeze in args.freeze:
            # One arm per (article) or per number of views (graftkit): ("graftkit", K) with K None for the default.
            arms = [(arm, None) for arm in ARMS if arm in ("article", "uncached") and arm in args.arms] + \
                   [("graftkit", k) for k in args.views if "graftkit" in args.arms]
            runs = {arm: [] for arm in arms}
            for round_ in range(args.rounds):
                order = arms if round_ % 2 == 0 else arms[::-1]  # no arm always meets the same load
                for arm, views in order:
                    with tempfile.TemporaryDirectory(prefix="graftkit-bench-") as cache:
                        spec = {"arm": arm, "data": str(folder), "base": args.base, "size": size,
                                "freeze": freeze, "epochs": args.epochs, "batch": args.batch,
                                "seed": args.first_seed + round_, "views": views}
                        result = arm_in_child(__file__, spec, {**env, "GRAFT_CACHE_DIR": cache})
                    runs[arm, views].append(result)
                    print(f"  {folder.name} {freeze} round {round_ + 1} {label(arm, result):12s} "
                          f"{result['seconds']:7.1f} s (fill {result['fill_seconds']:5.1f} s) "
                          f"cpu {result['cpu_seconds']:7.1f} s rss {result['peak_rss_mb']:5.0f} MB "
                          f"disk {result['disk_mb']:6.1f} MB val acc {result['val_accuracy']:.4f}", flush=True)
            results.append({"data": folder.name, "freeze": freeze, "size": size, "load": os.getloadavg(),
                            "runs": {label(arm, rs[0]): rs for (arm, _), rs in runs.items()}})
            report(results[-1], args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def label(arm: str, result: dict) -> str:
    """``article``, or ``graftkit K=2`` with the views the run cached."""
    return arm if arm in ("article", "uncached") else f"{arm} K={result['views']}"


def report(result: dict, args) -> None:
    runs = result["runs"]

    def median(arm, key):
        return statistics.median(r[key] for r in runs[arm])

    def accuracy(arm):
        values = [r["val_accuracy"] for r in runs[arm]]
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}"

    rounds = len(next(iter(runs.values())))
    print(f"\n{result['data']} at {result['size']} px, {args.base}, --freeze {result['freeze']}, {args.epochs} epochs, "
          f"batch {args.batch}, medians of {rounds} rounds (load average {result['load'][0]:.2f})")
    print(f"{'arm':12s} {'seconds':>8s} {'fill s':>7s} {'CPU s':>7s} {'peak RSS MB':>12s} {'disk MB':>8s} "
          f"{'val acc mean ± sd':>18s} {'best val acc':>18s}")
    for arm in runs:
        best = [r["best_val_accuracy"] for r in runs[arm]]
        print(f"{arm:12s} {median(arm, 'seconds'):8.1f} {median(arm, 'fill_seconds'):7.1f} "
              f"{median(arm, 'cpu_seconds'):7.1f} {median(arm, 'peak_rss_mb'):12.0f} {median(arm, 'disk_mb'):8.1f} "
              f"{accuracy(arm):>18s} {statistics.mean(best):>18.4f}")
    for arm in runs:
        if "article" not in runs or arm == "article":
            continue
        pairs = list(zip(runs["article"], runs[arm]))
        paired = statistics.median(a["seconds"] / g["seconds"] for a, g in pairs)
        epoch = statistics.median(a["seconds"] / (g["seconds"] - g["fill_seconds"]) for a, g in pairs)
        cpu = median("article", "cpu_seconds") / median(arm, "cpu_seconds")
        print(f"{arm}: wall ratio (fill included) {paired:.2f}, CPU ratio {cpu:.2f}, "
              f"per epoch after the fill {epoch:.2f}")
    print(flush=True)


# ---------------------------------------------------------------- the arms (run in a child process)


def run_arm(spec: dict) -> dict:
    import graftkit  # noqa: F401  (TensorFlow's start-up options first)
    import keras

    from graftkit import log, settings
    from graftkit.bases.loader import load_base
    from graftkit.data.layout import load_split
    from graftkit.data.pipeline import make_dataset
    from graftkit.model.freeze import apply_freeze, parse_freeze
    from graftkit.model.head import assemble, build_head

    log.set_quiet(True)
    split = load_split(spec["data"], seed=0)
    keras.utils.set_random_seed(spec["seed"])
    base = load_base(spec["base"], image_size=spec["size"])
    head = build_head(base.feature_shape, len(split.class_names), hidden=[512], dropout=0, seed=spec["seed"])
    model = assemble(base, head)  # the base called with training=False: BatchNorm in inference mode
    train = make_dataset(split.train.paths, split.train.labels, image_size=spec["size"], batch_size=spec["batch"],
                         shuffle=True, seed=spec["seed"], augment=True)
    val = make_dataset(split.val.paths, split.val.labels, image_size=spec["size"], batch_size=spec["batch"])
    freeze = parse_freeze(spec["freeze"])
    fill, views = [0.0], [None]
    start, cpu = time.perf_counter(), cpu_seconds()
    if spec["arm"] == "article":
        import tensorflow as tf

        apply_freeze(base.model, freeze)
        num_classes = len(split.class_names)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4), loss="categorical_crossentropy",
                      metrics=["accuracy"])

        def one_hot(ds):
            return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))

        history = model.fit(one_hot(train), validation_data=one_hot(val), epochs=spec["epochs"], verbose=0).history
    else:
        from graftkit.features.boundary import boundary_cache
        from graftkit.training.stages import fine_tune_stage

        def cache():
            begun = time.perf_counter()
            cached = boundary_cache(base, head, split, augment=True, batch_size=spec["batch"], seed=spec["seed"],
                                    views=spec["views"])
            views[0] = cached and cached.views
            fill[0] = time.perf_counter() - begun
            if cached is None:
                raise SystemExit("the boundary cache did not apply")
            return cached

        history = fine_tune_stage(model, base.model, train, val, freeze=freeze, train_bn=False,
                                  epochs=spec["epochs"], learning_rate=1e-4, patience=spec["epochs"],
                                  class_weight=None, baseline_val_loss=float("inf"), samples=len(split.train),
                                  cache=None if spec["arm"] == "uncached" else cache).history
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu
    disk = sum(f.stat().st_size for f in (settings.cache_dir() / "features").rglob("*") if f.is_file()) \
        if (settings.cache_dir() / "features").is_dir() else 0
    return {"seconds": seconds, "cpu_seconds": cpu, "fill_seconds": fill[0], "disk_mb": disk / 2 ** 20,
            "views": views[0],
            "val_accuracy": history["val_accuracy"][-1], "best_val_accuracy": max(history["val_accuracy"]),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def cpu_seconds() -> float:
    """CPU time of this process, all threads: what an arm costs, whatever else shares the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
