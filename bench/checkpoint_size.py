"""Size of one epoch's ``checkpoint.npz`` for a large base: every weight kept (before) vs only what trains (now).

Run from the project root::

    python bench/checkpoint_size.py --base resnet50 --image-size 224

Builds the base with random weights (sizes do not depend on the values), graftkit's default head
(GAP, dropout, 2 classes), freezes it as each stage does, builds Adam's slots, and writes the
checkpoint an epoch leaves: ``before`` as graftkit wrote it up to format 1 (the whole model's weights,
the best weights, the optimizer; written here as that format's arrays), ``now`` through :meth:`Checkpointer.record` (trainable and BatchNorm
weights, current and best, and the optimizer). Also the checkpoint after the fine-tuning stage ends
(its final weights). ``now`` is measured twice: with the best epoch the current one (its weights are
written once) and with an earlier best epoch. Prints one Markdown table row per case.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--freeze", nargs="+", default=["last:30%", "none"])
    args = parser.parse_args()

    from graftkit.bases.loader import load_base
    from graftkit.model.freeze import apply_freeze, parse_freeze
    from graftkit.model.head import assemble, build_head
    from graftkit.training.checkpoint import Checkpointer
    from graftkit.training.stages import StageResult, Stopper, compile_for

    base = load_base(args.base, image_size=args.image_size, weights=None)
    head = build_head(base.feature_shape, 2)
    model = assemble(base, head)
    total = sum(int(w.numpy().size) for w in model.weights)
    print(f"{args.base} at {args.image_size} px: {total:,} weights ({total * 4 / 1e6:.0f} MB as float32)")
    print("| stage | trainable params | before (MB) | now, best = this epoch (MB) | now, best earlier (MB) |")
    print("|---|---:|---:|---:|---:|")
    cases = [("head (--feature-cache off)", None)] + [(f"fine-tune --freeze {spec}", spec) for spec in args.freeze]
    for label, spec in cases:
        base.model.trainable = False
        if spec is not None:
            apply_freeze(base.model, parse_freeze(spec))
        compile_for(model, 1e-4)
        model.optimizer.build(model.trainable_variables)
        stopper = Stopper(patience=3)
        stopper.set_model(model)
        stopper.on_train_begin()
        stopper.best_weights = model.get_weights()
        trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
        sizes = []
        for how in ("before", "now", "earlier"):
            if how == "earlier":  # the best epoch was an earlier one: its weights differ from the current ones
                stopper.best_weights = [w + 1 for w in stopper.best_weights]
            with tempfile.TemporaryDirectory() as folder:
                saver = Checkpointer(Path(folder))
                stage = "head" if spec is None else "fine_tune"
                if how == "before":
                    format_1(Path(folder), model.get_weights(), stopper.best_weights,
                             [v.numpy() for v in model.optimizer.variables])
                else:
                    saver.record(stage, 1, {"loss": [0.5]}, model, model.optimizer.variables, stopper)
                sizes.append((Path(folder) / "checkpoint.npz").stat().st_size / 1e6)
        print(f"| {label} | {trainable:,} | {sizes[0]:.1f} | {sizes[1]:.1f} | {sizes[2]:.1f} |")
        if spec == args.freeze[0]:  # the run's last checkpoint: fine-tuning done, its final weights kept
            finals = []
            for how in ("before", "now"):
                with tempfile.TemporaryDirectory() as folder:
                    saver = Checkpointer(Path(folder))
                    if how == "before":
                        format_1(Path(folder), model.get_weights())
                        finals.append((Path(folder) / "checkpoint.npz").stat().st_size / 1e6)
                        continue
                    saver.record("fine_tune", 1, {"loss": [0.5]}, model, model.optimizer.variables, stopper)
                    saver.stage_done(StageResult("fine_tune"), final_weights=model.get_weights())
                    finals.append((Path(folder) / "checkpoint.npz").stat().st_size / 1e6)
            print(f"| fine-tuning done (final weights, --freeze {spec}) | – | {finals[0]:.1f} | {finals[1]:.1f} | – |")


def format_1(folder: Path, weights: list, best: list | None = None, optimizer: list | None = None) -> None:
    """The arrays a format-1 checkpoint held: every weight, every best weight, the optimizer (the JSON state aside)."""
    import numpy as np

    arrays = {}
    for name, values in (("weights", weights), ("best", best), ("optimizer", optimizer)):
        arrays.update({f"{name}_{i}": np.asarray(v) for i, v in enumerate(values or [])})
    with open(folder / "checkpoint.npz", "wb") as file:
        np.savez(file, **arrays)


if __name__ == "__main__":
    main()
