"""How `graft advise`'s linear probe ranks bases, by sample size and regularization, over sample seeds.

Run from the project root, with the shared folder beside it::

    python bench/probe_study.py --data flowers128 --size 128 --per-class 30 60 120 240
    python bench/probe_study.py --data hymenoptera --per-class 30 60 120 199

Features of every image are extracted once per base (through the feature cache), then the
probe of :func:`graftkit.advise.linear_probe` (standardized features, logistic regression,
5-fold stratified cross-validation) is scored on ``--seeds`` random samples of each size and
for each C. Printed: mean +- spread over the samples, per base. Compare with each base's
trained head: ``graft train DATA --base B --freeze all``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graftkit  # noqa: E402,F401  (TensorFlow's start-up options first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="hymenoptera", help="a data set under $GRAFT_SHARED/data, or a folder")
    parser.add_argument("--bases", nargs="+",
                        default=["efficientnet_lite0", "mobilenet_v2_0.5", "mobilenet_v2_0.35", "mobilenet_0.25"])
    parser.add_argument("--size", type=int, help="input size for every base (default: each base's own)")
    parser.add_argument("--per-class", type=int, nargs="+", default=[30, 60, 120])
    parser.add_argument("--c", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from graftkit import log
    from graftkit.features import extract as features
    from graftkit.advice import linear_probe, stratified_sample
    from graftkit.bases.loader import load_base
    from graftkit.data.layout import load_split
    from graftkit.settings import shared_dir

    log.set_quiet(True)
    folder = Path(args.data) if Path(args.data).is_dir() else shared_dir() / "data" / args.data
    split = load_split(folder, seed=0)
    paths = list(split.train.paths) + list(split.val.paths)
    labels = np.concatenate([split.train.labels, split.val.labels])
    table = {name: np.asarray(features.extract_features(load_base(name, image_size=args.size), paths, pool="avg"),
                              np.float32) for name in args.bases}
    print(f"{folder.name}: {len(paths)} images, {len(split.class_names)} classes; probe accuracy, mean +- spread "
          f"over {args.seeds} samples")
    print(f"{'a class':>7} {'C':>5}  " + "  ".join(f"{name:>18}" for name in args.bases))
    for per_class in args.per_class:
        for c in args.c:
            cells = []
            for name in args.bases:
                samples = [(seed, stratified_sample(labels, per_class, seed)) for seed in range(args.seeds)]
                scores = [linear_probe(table[name][keep], labels[keep], seed=seed, c=c)[0] for seed, keep in samples]
                cells.append(f"{np.mean(scores):.3f} +- {np.std(scores):.3f}".rjust(18))
            print(f"{per_class:>7} {c:>5g}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
