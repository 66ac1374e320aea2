"""Peak memory of a run with many classes against one with few, on the same number of images.

Run from the project root, with the shared weights beside it::

    python bench/many_classes.py --images 1010 --rounds 2

It writes generated images (``tests.helpers.write_images``, 32 px PNGs) for two arms with
the same number of images: 101 classes and 5 classes. Each arm is one ``graftkit.train``
(``mobilenet_v2_0.35`` at 96 px, head stage on cached features, then a short fine-tuning)
in a fresh child process; the arms alternate round by round. Printed per arm: the child's
peak RSS as the kernel counted it (``os.wait4``), and the running peak after each step of
writing the run folder (training, ``curves.png``, ``confusion.png``, ``report.html``,
``model.keras``), so a step that raises the peak shows by how much. Then the ratio of the
medians, 101 classes / 5 classes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STEPS = (("graftkit.results.plots", "plot_curves", "curves.png"),
         ("graftkit.results.plots", "plot_confusion", "confusion.png"),
         ("graftkit.results.report", "write_run_report", "report.html"),
         ("graftkit.training.pipeline", "atomic_save_model", "model.keras"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1010, help="images per arm, split evenly over its classes")
    parser.add_argument("--classes", type=int, nargs=2, default=(101, 5), metavar=("MANY", "FEW"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base", default="mobilenet_v2_0.35")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fine-tune-epochs", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from graftkit.settings import shared_dir
    from tests.helpers import write_images

    env = {**os.environ, "GRAFT_WEIGHTS_DIR": os.environ.get("GRAFT_WEIGHTS_DIR", str(shared_dir() / "weights"))}
    results: dict[int, list[dict]] = {n: [] for n in args.classes}
    with tempfile.TemporaryDirectory(prefix="many-classes-") as scratch:
        folders = {}
        for n in args.classes:
            width = len(str(n))
            folders[n] = write_images(Path(scratch) / f"data{n}",
                                      {f"class_{i:0{width}d}": args.images // n for i in range(n)}, size=32)
        for r in range(args.rounds):
            for n in args.classes:
                out = Path(scratch) / f"runs{n}-{r}"
                command = [sys.executable, __file__, "--child", str(folders[n]), str(out),
                           "--base", args.base, "--image-size", str(args.image_size),
                           "--epochs", str(args.epochs), "--fine-tune-epochs", str(args.fine_tune_epochs)]
                process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, cwd=ROOT)
                stdout = process.stdout.read()
                _, status, usage = os.wait4(process.pid, 0)
                if status:
                    raise SystemExit(f"arm {n} classes failed (status {status})")
                result = json.loads(stdout.decode().strip().splitlines()[-1])
                result["peak_mb"] = round(usage.ru_maxrss / 1024, 1)
                results[n].append(result)
                steps = ", ".join(f"{k} {v:.0f}" for k, v in result["steps"].items())
                print(f"round {r + 1}, {n:3d} classes: peak {result['peak_mb']:.0f} MB "
                      f"({result['seconds']:.0f} s, accuracy {result['accuracy']:.3f}); running peak after: {steps}",
                      flush=True)
    many, few = args.classes
    medians = {n: statistics.median(r["peak_mb"] for r in results[n]) for n in args.classes}
    print(f"\nmedian peak RSS: {many} classes {medians[many]:.0f} MB, {few} classes {medians[few]:.0f} MB, "
          f"ratio {medians[many] / medians[few]:.3f}")


def child(args) -> None:
    """One arm: train, recording the running peak RSS after training and after each file of the run folder."""
    import importlib
    import time

    import graftkit
    from graftkit import log

    steps = {}

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def watched(function, name):
        def step(*positional, **named):
            steps.setdefault("training", peak_mb())
            result = function(*positional, **named)
            steps[name] = peak_mb()
            return result
        return step

    for module, function, name in STEPS:
        module = importlib.import_module(module)
        setattr(module, function, watched(getattr(module, function), name))
    log.set_quiet(True)
    started = time.perf_counter()
    run = graftkit.train(args.child[0], base=args.base, image_size=args.image_size, epochs=args.epochs,
                         fine_tune_epochs=args.fine_tune_epochs, freeze="last:10", out=args.child[1], seed=0)
    print(json.dumps({"seconds": time.perf_counter() - started, "accuracy": run.metrics["accuracy"],
                      "steps": steps}))


if __name__ == "__main__":
    main()
