"""Multi-label and regression on real data: the elpv solar cells (``pip install elpv-dataset``), against trivial baselines.

Run from the project root::

    python bench/elpv_tasks.py [--base efficientnet_lite0] [--fine-tune-epochs 0] [--out /tmp/elpv-tasks]

Each of the package's 2,624 cells has a defect probability (0, 1/3, 2/3, 1) and a cell type
(mono, poly). The bench writes one label table (absolute paths into the package, nothing copied) with
a split column: 60 / 15 / 25 per cent train / val / test, stratified by defect probability and seeded,
the split ``graft demo`` uses. Then, through ``graftkit.train`` and ``Run.evaluate`` (the test rows):

- multi-label: the labels ``mono`` / ``poly`` and ``defective`` (probability >= 0.5), scored by mean
  average precision, against the constant predictor of the training label frequencies (whose average
  precision is each label's test prevalence);
- regression: the defect probability, scored by MAE, RMSE and R², against predicting the training mean.

It prints one table, the numbers recorded in docs/benchmarks.md and the README.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def write_table(out: Path, seed: int = 0) -> Path:
    """The elpv label table: path, tags, target, split."""
    import elpv_dataset

    labels_file = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    rows = np.genfromtxt(labels_file, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])
    rng = np.random.default_rng(seed)
    split = np.empty(len(rows), dtype="<U5")
    for probability in np.unique(rows["probability"]):
        members = rng.permutation(np.flatnonzero(np.isclose(rows["probability"], probability)))
        cuts = (int(len(members) * 0.6), int(len(members) * 0.75))
        for part, index in zip(("train", "val", "test"), np.split(members, cuts)):
            split[index] = part
    out.mkdir(parents=True, exist_ok=True)
    table = out / "elpv.csv"
    with open(table, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "tags", "target", "split"])
        for row, part in zip(rows, split):
            tags = [row["type"].decode()] + (["defective"] if row["probability"] >= 0.5 else [])
            writer.writerow([labels_file.parent / row["path"].decode(), ";".join(tags), f"{row['probability']:.4f}",
                             part])
    return table


def baselines(table: Path) -> dict:
    """The trivial predictors' scores on the test rows."""
    from sklearn.metrics import average_precision_score

    with open(table) as stream:
        rows = list(csv.DictReader(stream))
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    names = sorted({tag for r in rows for tag in r["tags"].split(";")})

    def hot(part):
        return np.array([[name in r["tags"].split(";") for name in names] for r in part], np.float32)

    frequencies = hot(train).mean(axis=0)
    truth = hot(test)
    constant = np.tile(frequencies, (len(test), 1))
    ap = [average_precision_score(truth[:, i], constant[:, i]) for i in range(len(names))]
    target = np.array([float(r["target"]) for r in test])
    mean = np.mean([float(r["target"]) for r in train])
    error = target - mean
    return {"mAP": float(np.mean(ap)), "MAE": float(np.abs(error).mean()), "RMSE": float(np.sqrt((error ** 2).mean())),
            "R2": float(1 - (error ** 2).sum() / ((target - target.mean()) ** 2).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="efficientnet_lite0")
    parser.add_argument("--fine-tune-epochs", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", default="/tmp/elpv-tasks")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import graftkit

    out = Path(args.out)
    table = write_table(out)
    results = {"baseline": baselines(table)}
    freeze = "all" if args.fine_tune_epochs == 0 else "last:30%"
    for task, column in (("multilabel", "tags"), ("regression", "target")):
        started = time.perf_counter()
        run = graftkit.train(table, base=args.base, task=task, label_column=column, epochs=args.epochs,
                             fine_tune_epochs=args.fine_tune_epochs, freeze=freeze,
                             out=str(out / f"{task}-{int(time.time())}"))
        scores = run.evaluate(table, label_column=column)
        results[task] = {"seconds": round(time.perf_counter() - started, 1), **{
            key: scores.get(key) for key in ("mean_average_precision", "micro_f1", "macro_f1", "exact_match",
                                             "mae", "rmse", "r2", "count")}}
    base = results["baseline"]
    print(f"elpv test split ({results['multilabel']['count']} cells), base {args.base}, {args.epochs} head epochs, "
          f"{args.fine_tune_epochs} fine-tuning epochs")
    print(f"multi-label (mono/poly, defective): mAP {results['multilabel']['mean_average_precision']:.3f} "
          f"(label frequencies: {base['mAP']:.3f}), micro F1 {results['multilabel']['micro_f1']:.3f}, "
          f"exact match {results['multilabel']['exact_match']:.3f}, {results['multilabel']['seconds']} s")
    print(f"regression (defect probability): MAE {results['regression']['mae']:.3f} (training mean: "
          f"{base['MAE']:.3f}), RMSE {results['regression']['rmse']:.3f} ({base['RMSE']:.3f}), R² "
          f"{results['regression']['r2']:.3f} ({base['R2']:.3f}), {results['regression']['seconds']} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
