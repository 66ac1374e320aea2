"""The one-call Python API: ``graftkit.train`` and what it returns."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from graftkit import log, runfiles
from graftkit.config import TrainConfig


@dataclass
class Run:
    """A finished training run.

    Attributes:
        model: the trained Keras model (RGB pixels 0..255 in, class probabilities out).
        class_names: class names in output order.
        metrics: final validation scores (see :func:`graftkit.evaluate.score`) plus timings.
        stages: what each training stage did.
        config: the full configuration used.
        run_dir: the folder everything was written to.
    """

    model: object
    class_names: list[str]
    metrics: dict
    stages: list = field(default_factory=list)
    config: TrainConfig | None = None
    run_dir: Path | None = None


def train(data: str | Path, base: str | None = None, **options) -> Run:
    """Train a classifier on a folder of images by transfer from a pre-trained base.

    Stage 1 trains a new head on the frozen base; stage 2 unfreezes the layers chosen by
    ``freeze`` and fine-tunes them at a tenth of the learning rate. Everything is written
    to a run folder: ``model.keras``, ``classes.json``, ``config.json``, ``history.json``,
    ``metrics.json``, ``curves.png`` and ``confusion.png``.

    Args:
        data: a folder with one subfolder per class (or ``train/`` and ``val/`` folders of them).
        base: a base name from ``graft bases`` or a personal ``.keras``/``.h5``/SavedModel path.
        **options: any field of :class:`graftkit.config.TrainConfig` (``epochs``, ``freeze``, ``out``...).

    Returns:
        A :class:`Run`.

    Example:
        >>> run = graftkit.train("hymenoptera", base="mobilenet_v2_0.5", epochs=5,
        ...                      freeze="last:20", out="runs/ants")  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
        0.93
    """
    config = TrainConfig(data=str(data), **({"base": base} if base else {}), **options).validated()
    return train_config(config)


def train_config(config: TrainConfig) -> Run:
    """Run the training described by a validated :class:`TrainConfig`."""
    from graftkit.bases.loader import load_base
    from graftkit.data import class_weights, load_split, make_dataset
    from graftkit.evaluate import evaluate_images, format_scores
    from graftkit.head import assemble, build_head
    from graftkit.surgery import parse_freeze
    from graftkit.train import fine_tune_stage, fit_stage

    started = time.perf_counter()
    split = load_split(config.data, val_split=config.val_split, seed=config.seed)
    log.info(f"data: {len(split.train)} training and {len(split.val)} validation images, "
             f"{len(split.class_names)} classes ({split.how})")
    base = load_base(config.base, image_size=config.image_size, weights=config.weights, cut=config.cut,
                     preprocessing=config.preprocessing, trust=config.trust_model)
    config.image_size = base.image_size
    log.info(f"base: {base.source} cut at '{base.cut}' -> features {base.feature_shape}, "
             f"preprocessing '{base.preprocessing}', weights {base.weights}")
    run_dir = runfiles.new_run_dir(config.out, Path(config.base).name)
    config.out = str(run_dir)

    head = build_head(base.feature_shape, len(split.class_names), pooling=config.pooling,
                      hidden=config.hidden, dropout=config.dropout, seed=config.seed)
    model = assemble(base, head, train_bn=config.train_bn)
    train_data = make_dataset(split.train.paths, split.train.labels, image_size=base.image_size,
                              batch_size=config.batch_size, shuffle=True, seed=config.seed,
                              augment=config.augment)
    val_data = make_dataset(split.val.paths, split.val.labels, image_size=base.image_size,
                            batch_size=config.batch_size)
    weights = class_weights(split.train.labels, len(split.class_names)) if config.class_weights == "auto" else None
    if weights:
        log.info("classes are imbalanced: weighting the loss by " +
                 ", ".join(f"{split.class_names[i]} {w:.2f}" for i, w in weights.items()))

    stages = []
    base.model.trainable = False
    if config.epochs:
        stages.append(fit_stage("head", model, train_data, val_data, epochs=config.epochs,
                                learning_rate=config.lr, patience=config.patience, class_weight=weights))
    freeze = parse_freeze(config.freeze)
    if config.fine_tune_epochs and freeze.kind != "all":
        baseline = stages[-1].best_val_loss if stages else float("inf")
        stages.append(fine_tune_stage(model, base.model, train_data, val_data, freeze=freeze,
                                      train_bn=config.train_bn, epochs=config.fine_tune_epochs,
                                      learning_rate=config.fine_tune_lr, patience=config.patience,
                                      class_weight=weights, baseline_val_loss=baseline))
    elif config.fine_tune_epochs:
        log.info("--freeze all: no fine-tuning stage")

    scores, _ = evaluate_images(model, split.val, batch_size=config.batch_size)
    metrics = {
        **scores,
        "stages": {s.name: {"best_epoch": s.best_epoch, "best_val_loss": s.best_val_loss,
                            "val_accuracy": s.history.get("val_accuracy", [None])[s.best_epoch - 1],
                            "seconds": round(s.seconds, 2), "trainable_params": s.trainable_params,
                            "kept": s.kept} for s in stages},
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_images": len(split.train),
        "val_images": len(split.val),
    }
    run = Run(model=model, class_names=split.class_names, metrics=metrics, stages=stages, config=config,
              run_dir=run_dir)
    write_run(run)
    log.info(format_scores(scores))
    log.info(f"run folder: {run_dir}")
    return run


def write_run(run: Run) -> None:
    """Write a run's files; the model last, so a folder with ``model.keras`` is always complete."""
    from graftkit.plots import plot_confusion, plot_curves

    folder = run.run_dir
    runfiles.atomic_write_text(folder / "config.json", run.config.to_json() + "\n")
    runfiles.atomic_write_json(folder / runfiles.CLASSES_FILE, run.class_names)
    runfiles.atomic_write_json(folder / "history.json", {s.name: s.history for s in run.stages})
    runfiles.atomic_write_json(folder / "metrics.json", run.metrics)
    plot_curves([{"name": s.name, "history": s.history} for s in run.stages], folder / "curves.png")
    plot_confusion(run.metrics["confusion_matrix"], run.class_names, folder / "confusion.png")
    runfiles.atomic_save_model(run.model, folder / runfiles.MODEL_FILE)
