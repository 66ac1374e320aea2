"""The one-call Python API: ``train``, ``resume``, ``lr_find`` and ``load``, thin calls into training/ and
results/."""

from __future__ import annotations

from pathlib import Path

from graftkit import log
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.results.trained import Run, load
from graftkit.runfolder import CONFIG_FILE, MODEL_FILE, remove_leftovers

__all__ = ["Run", "load", "lr_find", "resume", "train"]


def train(data: str | Path, base: str | None = None, **options) -> Run:
    """Train a classifier on a folder of images by transfer from a pre-trained base.

    Stage 1 trains a new head on the frozen base; stage 2 unfreezes the layers chosen by
    ``freeze`` and fine-tunes them at a tenth of the learning rate. Everything is written
    to a run folder: ``model.keras``, ``classes.json``, ``config.json``, ``split.json``,
    ``inputs.json``, ``history.json``, ``metrics.json``, ``curves.png``, ``confusion.png`` and
    the HTML report ``report.html``.

    Args:
        data: a folder with one subfolder per class (or ``train/`` and ``val/`` folders of them).
        base: a base name from ``graft bases`` or a personal ``.keras``/``.h5``/SavedModel path.
        **options: any field of :class:`graftkit.config.TrainConfig` (``epochs``, ``freeze``, ``out``...),
            by the same name as the command line's option without its dashes; ``lr="auto"`` and
            ``fine_tune_lr="auto"`` find a stage's rate by a learning-rate sweep at its start (see :func:`lr_find`).

    Returns:
        A :class:`Run`, whose ``predict``, ``evaluate`` and ``export`` are the command line's verbs.

    Example:
        >>> run = graftkit.train("hymenoptera", base="mobilenet_v2_0.5", epochs=5,
        ...                      freeze="last:20", out="runs/ants")  # doctest: +SKIP
        >>> run.metrics["accuracy"]  # doctest: +SKIP
        0.93
    """
    from graftkit.training.pipeline import train_config

    config = TrainConfig.from_options(data=str(data), **({"base": base} if base else {}), **options)
    return train_config(config.validated())


def lr_find(data: str | Path, base: str | None = None, **options):
    """Suggest learning rates for :func:`train` by fastai-style sweeps (``graft lr-find DATA``).

    Builds what ``train`` would build from the same options, sweeps the head's learning rate on the cached
    features, trains the head as ``train`` does, then (unless ``freeze="all"``) sweeps fine-tuning's through
    the model with the freeze spec applied. The model is put back after each sweep; nothing of a run is
    written, only ``lr_find.png`` (loss against rate) and ``lr_find.json`` in ``out`` (default
    ``runs/TIME-lr-find-BASE``). ``lr`` defaults to ``"auto"`` here (the head trained at its found rate
    before fine-tuning is swept). ``train(..., lr="auto", fine_tune_lr="auto")`` runs the same sweeps at the
    start of each stage instead.

    Args:
        data: as for :func:`train`.
        base: as for :func:`train`.
        **options: any field of :class:`graftkit.config.TrainConfig`, as for :func:`train`.

    Returns:
        A :class:`graftkit.training.find_rates.Finding`: ``head`` and ``fine_tune`` sweeps (each with its
        ``suggestion``, ``lrs`` and ``losses``), ``plot``, and ``lines()`` as ``graft train`` options.

    Example:
        >>> found = graftkit.lr_find("hymenoptera", base="mobilenet_v2_0.5")  # doctest: +SKIP
        >>> found.head.suggestion, found.fine_tune.suggestion  # doctest: +SKIP
        (0.0112, 0.000316)
    """
    from graftkit.config import AUTO
    from graftkit.training.find_rates import lr_find_config

    config = TrainConfig.from_options(data=str(data), **({"base": base} if base else {}), **{"lr": AUTO, **options})
    return lr_find_config(config.validated())


def resume(run_dir: str | Path) -> Run:
    """Continue an interrupted run from its last completed epoch (``graft train --resume RUN_DIR``).

    The run's own ``config.json`` says what to train; its ``checkpoint.npz`` (written after
    every epoch) gives the weights, optimizer state, early-stopping state and history to go
    on from. The run then goes through every epoch it had left and ends in the same folder,
    with the same files as an uninterrupted run. A head stage on cached features comes out
    exactly as it would have (its shuffles and dropout draws are replayed); a resumed
    fine-tuning stage draws new shuffles and augmentations for its remaining epochs, and the
    final scores are then computed through the full model rather than on cached features.

    Example:
        >>> run = graftkit.resume("runs/ants")  # doctest: +SKIP
    """
    from graftkit.training import checkpoint
    from graftkit.training.distribute import writes_run
    from graftkit.training.pipeline import train_config

    folder = Path(run_dir)
    checkpoint.release(folder)  # this process may have started it (a Ctrl-C in Python, then resume)
    if not (folder / CONFIG_FILE).is_file():
        raise GraftError(f"'{folder}' is not a graftkit run folder (no {CONFIG_FILE}): pass the --out folder "
                         "of the run to resume")
    config = TrainConfig.from_file(folder / CONFIG_FILE)
    writes = writes_run(config.distribute)  # a multi-worker run's workers but the chief only read its folder
    if writes and checkpoint.is_running(folder):
        raise GraftError(f"run '{folder}' is still being trained by another process: let it finish, or stop it "
                         "and then resume")
    if not checkpoint.is_unfinished(folder):
        if (folder / MODEL_FILE).is_file():
            raise GraftError(f"run '{folder}' has finished already: nothing to resume")
        raise GraftError(f"run '{folder}' stopped before its training started: start it again, with --out {folder}")
    config.out = None  # the run's own folder, which holds the unfinished run that --out would refuse
    config = config.validated()
    config.out = str(folder)
    if writes:
        remove_leftovers(folder)
    state = checkpoint.load(folder)
    if writes:
        checkpoint.mark_unfinished(folder)
    log.info(f"resuming run {folder}: {state.describe() if state else 'no epoch finished'}")
    return train_config(config, resume=state or checkpoint.Resume())
