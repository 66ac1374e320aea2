"""Which training recipe wins on data nobody tuned for: graftkit's defaults against each variant, over seeds.

Run from the project root, with the shared folder beside it (elpv from ``pip install elpv-dataset``)::

    python bench/recipe_study.py --sets hymenoptera flowers128 elpv few --seeds 0 1 2

Every (set, seed) is laid out once as links, never copies: a ``fit/`` folder of ``train/`` and ``val/`` class
folders that ``graftkit.train`` sees, and a held-out ``test/`` folder that only the final score sees:

- ``hymenoptera``: its ``val/`` is the test part; its ``train/`` is split 80/20 into train and val by the seed;
- ``flowers128``: 60 / 20 / 20 per class by the seed;
- ``elpv``: the demo's split of the solar cells (60 / 15 / 25 per defect class, :func:`graftkit.demo.elpv_folders`);
- ``few``: the small-many-class case made from the others: the 5 flower classes and the 2 insects, 14 training,
  6 validation and up to 40 test images a class, drawn by the seed.

Each variant is ``graftkit.train`` with options on top of the defaults (EfficientNet-Lite0, the head by L-BFGS on
its stages' features, each stage's average and maximum, 10 fine-tuning epochs of ``last:30%``, warm-up + cosine), in a child process of its own (``advise's command``:
``graftkit.advise`` on ``fit/`` first, then the base and ``--freeze`` it recommends; its time counts), then ``Run.evaluate`` on the test part,
plain and, where the option exists, with test-time augmentation. The features of the frozen base are computed
once per image through the feature cache and shared by every variant, so "frozen" variants cost seconds.
Results go line by line to ``--results`` (JSON lines; a rerun skips what is there), then the table: test
accuracy mean and sd over the seeds per set, the mean over the sets, and the mean wall time of a run; then the
same for the mean recall over the classes (balanced accuracy: what class weights trade plain accuracy for).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = {
    "adam head (default)": {"head_solver": "adam"},  # before c1ed980, when --schedule auto was constant for images
    "the defaults before issue 16": {"head_solver": "adam", "schedule": "constant", "pooling": "avg"},
    "the defaults": {},
    "lbfgs head": {"head_solver": "lbfgs"},
    "adam head, frozen": {"head_solver": "adam", "freeze": "all"},
    "adam head 200 ep, frozen": {"head_solver": "adam", "freeze": "all", "epochs": 200, "patience": 10},
    "lbfgs head, frozen (default)": {"freeze": "all"},
    "lbfgs head + label smoothing 0.1": {"head_solver": "lbfgs", "label_smoothing": 0.1},
    "lbfgs head + cosine": {"head_solver": "lbfgs", "schedule": "cosine"},  # the default since c1ed980
    "lr decay 0.5": {"lr_decay": 0.5},
    "fine-tune lr auto": {"fine_tune_lr": "auto"},  # with lr-find's valley rule for fine-tuning (before dad4bb5)
    "fine-tune lr auto (rise/10)": {"fine_tune_lr": "auto"},  # with its rise/10 rule against the flat level
    "advise's command": {"advise": True},  # the base and --freeze that graftkit.advise recommends for fit/
    # With ../shared/weights as $GRAFT_WEIGHTS_DIR, advise probes four bases: its base rule at work.
    "advise's command, 4 bases": {"advise": True, "shared_weights": True},
    "mobilenet_v2_0.5": {"base": "mobilenet_v2_0.5", "shared_weights": True},
    "mobilenet_v2_0.35": {"base": "mobilenet_v2_0.35", "shared_weights": True},
    "mobilenet_0.25": {"base": "mobilenet_0.25", "shared_weights": True},
    "gradual unfreezing every 2 epochs": {"unfreeze_every": 2},
    "adam head 200 ep, patience 3, frozen": {"head_solver": "adam", "freeze": "all", "epochs": 200},
    "hidden 1024, 10 ep, frozen": {"hidden": [1024], "freeze": "all"},
    "hidden 1024, 200 ep, frozen": {"hidden": [1024], "freeze": "all", "epochs": 200},
    "hidden 1024, 200 ep, patience 10, frozen": {"hidden": [1024], "freeze": "all", "epochs": 200, "patience": 10},
    "fine-tune lr 1e-5:1e-4": {"fine_tune_lr": "1e-5:1e-4"},
    "last:10%": {"freeze": "last:10%"},
    "last:50%": {"freeze": "last:50%"},
    "fine-tune lr 3e-4": {"fine_tune_lr": 3e-4},
    "no class weights": {"class_weights": "none"},
    "no class weights, 4 fine-tuning views": {"class_weights": "none", "fine_tune_views": 4},
    "no class weights, train BN": {"class_weights": "none", "train_bn": True},
    "no class weights, fine-tuning cache off": {"class_weights": "none", "fine_tune_cache": "off"},
    "last:50%, 20 epochs": {"freeze": "last:50%", "fine_tune_epochs": 20},
    "no class weights, last:50%, 20 epochs": {"class_weights": "none", "freeze": "last:50%", "fine_tune_epochs": 20},
    # --head-input (multi-level features): top was the only head input before; auto is stages since. These ran
    # with average pooling, the default then (--pooling auto takes avgmax for the L-BFGS head since the fifth round).
    "head input top": {"head_input": "top", "pooling": "avg"},
    "head input stages": {"head_input": "stages", "pooling": "avg"},
    "head input top, frozen": {"head_input": "top", "freeze": "all", "pooling": "avg"},
    "head input stages, frozen": {"head_input": "stages", "freeze": "all", "pooling": "avg"},
    "300 px, no class weights, last:50%, 20 epochs": {"image_size": 300, "class_weights": "none",
                                                      "freeze": "last:50%", "fine_tune_epochs": 20},
    # --pooling avgmax: each map's average and maximum side by side (fastai's concat pooling); the default for the
    # L-BFGS head since the fifth round (--pooling auto).
    "pooling avgmax": {"pooling": "avgmax"},
    "pooling avgmax, frozen": {"pooling": "avgmax", "freeze": "all"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["hymenoptera", "flowers128", "elpv", "few"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--work", default="/tmp/graftkit-recipe-study", help="where the layouts and runs go")
    parser.add_argument("--results", default=None, help="JSON lines of every run (default WORK/results.jsonl)")
    parser.add_argument("--table-only", action="store_true", help="print the table of the results so far")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(json.loads(args.child))
    work = Path(args.work)
    results = Path(args.results or work / "results.jsonl")
    if not args.table_only:
        work.mkdir(parents=True, exist_ok=True)
        done = {(r["set"], r["seed"], r["variant"]) for r in _read(results)}
        for seed in args.seeds:
            for name in args.sets:
                layout = _layout(name, seed, work / f"{name}-{seed}")
                for variant in args.variants:
                    if (name, seed, variant) in done:
                        continue
                    row = _run(name, seed, variant, layout, work)
                    with results.open("a") as file:
                        file.write(json.dumps(row) + "\n")
                    print(f"{name} seed {seed} {variant}: test {row.get('test_accuracy')} "
                          f"(tta {row.get('test_accuracy_tta')}) in {row.get('seconds')} s", file=sys.stderr, flush=True)
    _table([r for r in _read(results) if r["variant"] in args.variants and r["set"] in args.sets
            and r["seed"] in args.seeds], args.sets, args.variants)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _run(name: str, seed: int, variant: str, layout: Path, work: Path) -> dict:
    out = work / "runs" / f"{name}-{seed}-{variant.replace(' ', '_').replace('/', '_').replace(':', '_')}"
    options = dict(VARIANTS[variant])
    env = dict(os.environ)
    if options.pop("shared_weights", False):
        from graftkit.settings import shared_dir

        env["GRAFT_WEIGHTS_DIR"] = str(shared_dir() / "weights")
    job = {"fit": str(layout / "fit"), "test": str(layout / "test"), "out": str(out), "seed": seed, "options": options}
    started = time.perf_counter()
    child = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                           env=env)
    row = {"set": name, "seed": seed, "variant": variant, "seconds": round(time.perf_counter() - started, 1)}
    if child.returncode != 0:
        return {**row, "error": (child.stderr.strip().splitlines() or ["?"])[-1]}
    return {**row, **json.loads(child.stdout.strip().splitlines()[-1])}


def _child(job: dict) -> None:
    import shutil

    import graftkit
    from graftkit import log

    log.set_quiet(True)
    shutil.rmtree(job["out"], ignore_errors=True)
    options, advised = dict(job["options"]), {}
    if options.pop("advise", False):
        started = time.perf_counter()
        advice = graftkit.advise(job["fit"], seed=job["seed"])
        advised = {"base": advice.base, "freeze": advice.freeze, "seconds": round(time.perf_counter() - started, 1),
                   "probes": {c.base: [c.accuracy, c.spread, c.images_per_second] for c in advice.candidates
                              if c.accuracy is not None}}
        options.update(base=advice.base, **({"freeze": advice.freeze} if advice.freeze else {}))
    run = graftkit.train(job["fit"], out=job["out"], seed=job["seed"], **options)
    scores = run.evaluate(job["test"])
    recalls = [entry["recall"] for entry in scores["per_class"].values()]
    row = {**({"advised": advised} if advised else {}), "test_accuracy": round(scores["accuracy"], 4),
           "test_mean_recall": round(sum(recalls) / len(recalls), 4),  # balanced accuracy: the rare classes' share
           "val_accuracy": run.metrics.get("accuracy"),
           "stages": {name: {key: stage[key] for key in ("best_epoch", "seconds", "kept")}
                      for name, stage in run.metrics["stages"].items()},
           "head_epochs": _epochs(run), "run_seconds": run.metrics["seconds"],
           **({"learning_rates": run.metrics["learning_rates"]} if "learning_rates" in run.metrics else {})}
    try:
        row["test_accuracy_tta"] = round(run.evaluate(job["test"], tta=True)["accuracy"], 4)
    except TypeError:  # no test-time augmentation in this version
        pass
    print(json.dumps(row))
    shutil.rmtree(job["out"], ignore_errors=True)


def _epochs(run) -> int:
    history = json.loads((Path(run.run_dir) / "history.json").read_text())
    return len(history.get("head", {}).get("loss", []))


def _layout(name: str, seed: int, folder: Path) -> Path:
    """The set's fit/train, fit/val and test class folders of links, made once per seed."""
    import numpy as np

    from graftkit.data.layout import list_images
    from graftkit.settings import shared_dir

    if (folder / "test").is_dir():
        return folder
    data = shared_dir() / "data"
    rng = np.random.default_rng(seed)

    def put(part: str, label: str, files) -> None:
        target = folder / part / label
        target.mkdir(parents=True, exist_ok=True)
        for file in files:
            link = target / Path(file).name
            if not link.exists():
                link.symlink_to(Path(file).resolve())

    def classes(root: Path) -> dict[str, list[str]]:
        return {d.name: sorted(list_images([str(d)])) for d in sorted(root.iterdir()) if d.is_dir()}

    if name == "elpv":
        from graftkit.demo import elpv_folders

        elpv_folders(folder / "split", seed=seed)
        for part, target in (("train", "fit/train"), ("val", "fit/val"), ("test", "test")):
            (folder / target).parent.mkdir(parents=True, exist_ok=True)
            (folder / target).symlink_to(folder / "split" / part)
        return folder
    if name == "hymenoptera":
        for label, files in classes(data / "hymenoptera" / "train").items():
            order = rng.permutation(files)
            cut = int(len(order) * 0.8)
            put("fit/train", label, order[:cut])
            put("fit/val", label, order[cut:])
        for label, files in classes(data / "hymenoptera" / "val").items():
            put("test", label, files)
        return folder
    if name == "flowers128":
        for label, files in classes(data / "flowers128").items():
            order = rng.permutation(files)
            cuts = (int(len(order) * 0.6), int(len(order) * 0.8))
            for part, chunk in zip(("fit/train", "fit/val", "test"), np.split(order, cuts)):
                put(part, label, chunk)
        return folder
    if name == "few":
        pools = classes(data / "flowers128")
        for label in ("ants", "bees"):
            pools[label] = sorted(list_images([str(data / "hymenoptera" / "train" / label),
                                               str(data / "hymenoptera" / "val" / label)]))
        for label, files in pools.items():
            order = rng.permutation(files)
            put("fit/train", label, order[:14])
            put("fit/val", label, order[14:20])
            put("test", label, order[20:60])
        return folder
    raise SystemExit(f"unknown set '{name}': use hymenoptera, flowers128, elpv or few")


def _table(rows: list[dict], sets: list[str], variants: list[str]) -> None:
    import numpy as np

    def cell(values):
        return f"{np.mean(values):.3f} ± {np.std(values):.3f} (n={len(values)})" if values else "—"

    print("| variant | " + " | ".join(sets) + " | mean over sets | mean s a run |")
    print("|---|" + "---:|" * (len(sets) + 2))
    for key, suffix in (("test_accuracy", ""), ("test_accuracy_tta", ", + --tta"),
                        ("test_mean_recall", ", mean recall over the classes")):
        for variant in variants:
            chosen = [r for r in rows if r["variant"] == variant and key in r]
            if not chosen:
                continue
            per_set = {name: [r[key] for r in chosen if r["set"] == name] for name in sets}
            means = [np.mean(v) for v in per_set.values() if v]
            mean = f"{np.mean(means):.3f}" if len(means) == len(sets) else "—"
            print(f"| {variant}{suffix} | " + " | ".join(cell(per_set[name]) for name in sets) +
                  f" | {mean} | {np.mean([r['seconds'] for r in chosen]):.0f} |")
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print(f"error: {r['set']} seed {r['seed']} {r['variant']}: {r['error']}", file=sys.stderr)


if __name__ == "__main__":
    main()
