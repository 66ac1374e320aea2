"""tf.data autotuning on vs off in graftkit's pipeline, on a cold feature extraction (the base's one pass).

Run from the project root, with the shared folder beside it::

    python bench/pipeline_autotune.py --data flowers128 --size 128 --rounds 6

In one process, alternating, it extracts every image's features with
:func:`graftkit.features.extract.extract_features` (no cache) through
:func:`graftkit.data.pipeline.make_dataset` as it is (autotuning off), and through the same
pipeline with autotuning turned back on. Printed per arm: each pass's wall time and CPU
time, the median wall time, and the slowest pass: a pass at half speed shows as about twice
the wall time for the same CPU time. Then the ratio of the medians, on / off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graftkit  # noqa: E402,F401  (TensorFlow's start-up options first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="flowers128", help="a data set under $GRAFT_SHARED/data, or a folder")
    parser.add_argument("--base", default="mobilenet_v2_0.5")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()

    import tensorflow as tf

    from graftkit import log
    from graftkit.data import pipeline as data
    from graftkit.data.layout import load_split
    from graftkit.features import extract as features
    from graftkit.bases.loader import load_base
    from graftkit.settings import shared_dir

    log.set_quiet(True)
    os.environ.setdefault("GRAFT_WEIGHTS_DIR", str(shared_dir() / "weights"))
    folder = Path(args.data) if Path(args.data).is_dir() else shared_dir() / "data" / args.data
    split = load_split(folder)
    paths = list(split.train.paths) + list(split.val.paths)
    base = load_base(args.base, image_size=args.size)
    as_it_is = data.make_dataset

    def autotuned(*positional, **named):
        options = tf.data.Options()
        options.autotune.enabled = True
        return as_it_is(*positional, **named).with_options(options)

    arms = {"off (graftkit)": as_it_is, "on": autotuned}
    features.extract_features(base, paths[:64], feature_cache="memory", pool="avg")  # traces, file cache
    times = {arm: [] for arm in arms}
    for _ in range(args.rounds):
        for arm, pipeline in arms.items():
            data.make_dataset = pipeline  # extract_features builds its pipeline through this name
            start, cpu = time.perf_counter(), time.process_time()
            features.extract_features(base, paths, feature_cache="memory", pool="avg")
            times[arm].append((time.perf_counter() - start, time.process_time() - cpu))
    data.make_dataset = as_it_is
    print(f"{folder.name}, {args.base} at {args.size} px, {len(paths)} images, {args.rounds} rounds "
          f"(load average {os.getloadavg()[0]:.2f})")
    for arm, runs in times.items():
        passes = ", ".join(f"{wall:.1f}/{cpu:.1f}" for wall, cpu in runs)
        print(f"autotune {arm:15s} median {statistics.median(w for w, _ in runs):6.2f} s, slowest "
              f"{max(w for w, _ in runs):6.2f} s; each pass wall/CPU s: {passes}")
    ratio = statistics.median(w for w, _ in times["on"]) / statistics.median(w for w, _ in times["off (graftkit)"])
    print(f"median wall time, on / off: {ratio:.2f}")


if __name__ == "__main__":
    main()
