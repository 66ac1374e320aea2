"""Per-epoch checkpoints of a run, so that an interrupted run can be resumed (``graft train --resume``).

After every epoch a run writes ``checkpoint.npz`` in its folder: the weights of the model
the stage trains, the optimizer's state, early stopping's state (its best weights too) and
the history so far, plus the results of the stages already finished. The file is written
to a temporary name and renamed, so a run killed at any moment leaves the previous
epoch's checkpoint whole. A run folder holds an ``UNFINISHED`` marker from its start until
its model is written; then the marker and the checkpoint go.

The checkpoint is a NumPy ``.npz`` read with ``allow_pickle=False``: resuming runs no code.

It keeps only what training changes: the trainable and BatchNorm variables (current and best, the best
written once when they are the current ones) and the optimizer's slots. A weight left out is one no stage trains (the frozen part of the base): a resumed run
rebuilds the model from the same base, which holds that weight as it was, so weight lists read back hold
None there and :func:`put_back` and :func:`filled` take the model's own value. For ResNet50 this is the
difference between about 280 MB and a few MB an epoch in the head stage (docs/benchmarks.md).
"""

from __future__ import annotations

import fcntl
import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graftkit import runfolder
from graftkit.errors import GraftError
from graftkit.files import atomic_write_text, temporary_beside

CHECKPOINT_FILE = runfolder.CHECKPOINT_FILE
UNFINISHED_FILE = runfolder.UNFINISHED_FILE
FORMAT = 2  # 2: weights no stage trains are left out (None when read back)
READABLE = (1, 2)


@dataclass
class StageState:
    """Where a stage stood after its last completed epoch.

    Attributes:
        stage: ``head`` or ``fine_tune``.
        epoch: epochs completed.
        history: per-epoch metrics of those epochs.
        weights: weights of the model the stage trains (``get_weights`` order); None for a weight left out
            (see :func:`changing_only`).
        optimizer: the optimizer's variables, in its own order.
        stopper: early stopping's ``wait``, ``best``, ``best_epoch`` and whether it stopped.
        best_weights: the weights early stopping would restore.
        seeds: the states of the model's random seed generators (dropout's draws go on as they would have).
    """

    stage: str
    epoch: int
    history: dict
    weights: list
    optimizer: list
    stopper: dict
    best_weights: list | None = None
    seeds: list | None = None


@dataclass
class Resume:
    """What an interrupted run had done: finished stages, and the stage under way.

    Attributes:
        done: one dict per finished stage (the fields of :class:`graftkit.training.stages.StageResult`).
        head_weights: the head's weights after the head stage (fine-tuning's roll-back point).
        final_weights: the whole model's weights once every stage was done.
        current: the stage under way, or None.
        data: a digest of the training and validation images the run saw (see :func:`data_digest`).
    """

    done: list = field(default_factory=list)
    head_weights: list | None = None
    final_weights: list | None = None
    current: StageState | None = None
    data: str | None = None

    def finished(self, stage: str) -> dict | None:
        """The result of ``stage`` when it had finished, else None."""
        return next((result for result in self.done if result["name"] == stage), None)

    def state_of(self, stage: str) -> StageState | None:
        """The state of ``stage`` when it was under way, else None."""
        return self.current if self.current is not None and self.current.stage == stage else None

    def describe(self) -> str:
        """One line on where the run stood, for the log."""
        parts = [f"{r['name']} stage done (best epoch {r['best_epoch']})" for r in self.done]
        if self.current is not None:
            parts.append(f"{self.current.stage} stage after epoch {self.current.epoch}")
        return ", ".join(parts) or "no epoch finished"


class Checkpointer:
    """Writes a run's checkpoint after every epoch and after every stage.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> saver = Checkpointer(folder)
        >>> saver.epoch_done("head", 1, {"loss": [0.5]}, [np.ones(2)], [np.zeros(2)], {"wait": 0})
        >>> load(folder).current.epoch
        1
    """

    def __init__(self, run_dir: Path, resume: Resume | None = None, data: str | None = None):
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.resume = resume or Resume()
        self.resume.data = data or self.resume.data

    def epoch_done(self, stage: str, epoch: int, history: dict, weights: list, optimizer: list, stopper: dict,
                   best_weights: list | None = None, seeds: list | None = None) -> None:
        """Record the state after ``epoch`` (1-based) of ``stage``."""
        self.resume.current = StageState(stage, epoch, history, weights, optimizer, stopper, best_weights, seeds)
        self._write()

    def record(self, stage: str, epoch: int, history: dict, model, optimizer_slots, stopper) -> None:
        """Record, after ``epoch``, what ``model``, its optimizer (its slot variables) and ``stopper`` hold.

        ``stopper`` is a :class:`graftkit.training.stages.Stopper`; :func:`restore_training` puts it all back.
        """
        self.epoch_done(stage, epoch, history, changing_only(model, model.get_weights()),
                        [v.numpy() for v in optimizer_slots], stopper.state(),
                        changing_only(model, stopper.best_weights), [v.numpy() for v in _seed_states(model)])

    def stage_done(self, result, *, head_weights: list | None = None, final_weights: list | None = None) -> None:
        """Record a finished stage (a :class:`graftkit.training.stages.StageResult`) and the weights it left.

        ``final_weights`` keep only the weights the stage's last checkpointed epoch kept (what it trained):
        the others are as the base was loaded.
        """
        current = self.resume.current
        if final_weights is not None and current is not None and current.stage == result.name \
                and len(current.weights) == len(final_weights):
            final_weights = [w if c is not None else None for w, c in zip(final_weights, current.weights)]
        self.resume.done = [r for r in self.resume.done if r["name"] != result.name] + [asdict(result)]
        if head_weights is not None:
            self.resume.head_weights = head_weights
        if final_weights is not None:
            self.resume.final_weights = final_weights
        self.resume.current = None
        self._write()

    def _write(self) -> None:
        resume = self.resume
        arrays = {}
        for name, values in (("head", resume.head_weights), ("final", resume.final_weights)):
            arrays.update(_numbered(name, values))
        state = {"format": FORMAT, "done": resume.done, "current": None, "data": resume.data}
        if resume.current is not None:
            current = resume.current
            state["current"] = {"stage": current.stage, "epoch": current.epoch, "history": current.history,
                                "stopper": current.stopper}
            arrays.update(_numbered("weights", current.weights))
            arrays.update(_numbered("optimizer", current.optimizer))
            best, same = current.best_weights, []
            if best is not None and len(best) == len(current.weights):  # the best epoch is often this one
                same = [i for i, (b, w) in enumerate(zip(best, current.weights))
                        if b is not None and w is not None and np.array_equal(b, w)]
                kept_once = set(same)
                best = [None if i in kept_once else b for i, b in enumerate(best)]
                arrays["best_same"] = np.array(same, np.int64)
            arrays.update(_numbered("best", best))
            arrays.update(_numbered("seeds", current.seeds))
        arrays["state"] = np.array(json.dumps(state, default=_plain))
        with temporary_beside(self.path, suffix=".npz") as tmp:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)


def load(run_dir: str | Path) -> Resume | None:
    """The checkpoint of an interrupted run, or None when it finished no epoch.

    Raises:
        GraftError: the checkpoint cannot be read.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            state = json.loads(str(npz["state"]))
            arrays = {name: npz[name] for name in npz.files if name != "state"}
        if state.get("format") not in READABLE:
            raise GraftError(f"checkpoint '{path}' is of another graftkit version: remove it to start the run over")
        current = None
        if state["current"] is not None:
            values = state["current"]
            weights, best = _listed(arrays, "weights"), _listed(arrays, "best")
            for i in arrays.get("best_same", []):  # best weights written once, as the current ones
                best[int(i)] = weights[int(i)]
            current = StageState(values["stage"], values["epoch"], values["history"], weights,
                                 _listed(arrays, "optimizer"), values["stopper"], best, _listed(arrays, "seeds"))
        return Resume(done=state["done"], head_weights=_listed(arrays, "head"),
                      final_weights=_listed(arrays, "final"), current=current, data=state.get("data"))
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        raise GraftError(f"cannot read the checkpoint '{path}' ({type(error).__name__}: {error}): "
                         "remove it to start the run over") from None


def data_digest(split, root) -> str:
    """A digest of which images under ``root`` a run trains and validates on, and their labels.

    Paths count relative to ``root``, so the same folder reached by another path gives the same digest.
    """
    import hashlib
    import os

    digest = hashlib.sha256()
    texts = getattr(split, "modality", "image") == "text"  # the examples are texts, not files under root
    for part in (split.train, split.val):
        for path, label in zip(part.paths, part.labels):
            text = str(int(label)) if label.dtype.kind in "iu" else repr(label.tolist())  # a class, a row, a number
            item = path.encode("utf-8", "surrogatepass") if texts else os.fsencode(os.path.relpath(path, root))
            digest.update(item + b"\0" + text.encode() + b"\n")
        digest.update(b"--\n")
    return digest.hexdigest()


def restore_training(state: StageState, model, optimizer_slots) -> None:
    """Put back what :meth:`Checkpointer.record` took from ``model`` and its optimizer's slot variables."""
    put_back(model, state.weights)
    if len(optimizer_slots) != len(state.optimizer):
        raise _does_not_fit(f"{len(state.optimizer)} optimizer variables saved, the optimizer has "
                            f"{len(optimizer_slots)}")
    for variable, value in zip(optimizer_slots, state.optimizer):
        variable.assign(value)
    seeds = _seed_states(model)
    if state.seeds is not None and len(state.seeds) == len(seeds):
        for variable, value in zip(seeds, state.seeds):
            variable.assign(value)


def put_back(model, weights: list) -> None:
    """``model.set_weights(weights)`` from a checkpoint, or a one-line error when they do not fit the model.

    A weight the checkpoint left out (None) keeps the model's own value.
    """
    shapes = [tuple(w.shape) for w in model.weights]
    if len(shapes) != len(weights) or any(w is not None and tuple(np.shape(w)) != shape
                                          for w, shape in zip(weights, shapes)):
        raise _does_not_fit(f"{len(weights)} weights saved, the model has {len(shapes)} or other shapes")
    for variable, value in zip(model.weights, weights):
        if value is not None:
            variable.assign(value)


def changing_only(model, weights: list | None) -> list | None:
    """``weights`` (``model``'s, in ``get_weights`` order) with None for those no training changes now.

    Kept: trainable weights and every BatchNormalization weight (its statistics move when it trains);
    left out: the frozen weights, which stay as the base was loaded.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
        >>> m.layers[0].trainable = False
        >>> [w is None for w in changing_only(m, m.get_weights())]
        [True, True, False, False]
    """
    if weights is None:
        return None
    keep = _changing(model)
    return [w if k else None for w, k in zip(weights, keep)]


def filled(model, weights: list | None) -> list | None:
    """``weights`` from a checkpoint with each weight it left out (None) taken from ``model``.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
        >>> [w.tolist() for w in filled(m, [None, np.array([5.0])])]
        [[[1.0], [1.0]], [5.0]]
    """
    if weights is None or all(w is not None for w in weights):
        return weights
    current = model.weights
    if len(current) != len(weights):
        raise _does_not_fit(f"{len(weights)} weights saved, the model has {len(current)}")
    return [v.numpy() if w is None else w for v, w in zip(current, weights)]


def _changing(model) -> list[bool]:
    """Per weight of ``model``: whether training may change it (trainable, or a BatchNormalization weight)."""
    import keras

    from graftkit.model.graph import flatten_layers

    trainable = {id(v) for v in model.trainable_weights}
    batchnorm = {id(v) for layer in flatten_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
                 for v in layer.weights}
    return [id(v) in trainable or id(v) in batchnorm for v in model.weights]


def _does_not_fit(detail: str) -> GraftError:
    return GraftError(f"the checkpoint does not fit this model ({detail}: was the base file changed?): "
                      f"remove {CHECKPOINT_FILE} from the run folder to start the run over")


def _seed_states(model) -> list:
    """The state variables of ``model``'s random seed generators (dropout's, for one), which weights leave out."""
    return [v for v in model.variables if "seed_generator" in v.path]


_STARTED: list[Path] = []  # run folders this process started or resumed
_LOCKS: dict[Path, object] = {}  # run folder -> its marker, open and locked while this process trains it


def mark_unfinished(run_dir: Path) -> None:
    """Mark ``run_dir`` as a run under way, locked to this process (undone by :func:`mark_finished`)."""
    run_dir = Path(run_dir)
    _STARTED.append(run_dir)
    release(run_dir)
    marker = run_dir / UNFINISHED_FILE
    atomic_write_text(marker, f"This run has not finished. Continue it with: graft train --resume {run_dir}\n")
    handle = open(marker)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel when the process dies
    _LOCKS[run_dir.resolve()] = handle


def is_running(run_dir: str | Path) -> bool:
    """Whether another process is training the run in ``run_dir`` now."""
    try:
        handle = open(Path(run_dir) / UNFINISHED_FILE)
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def release(run_dir: Path) -> None:
    """Give up this process's lock on ``run_dir``, if it holds one."""
    handle = _LOCKS.pop(Path(run_dir).resolve(), None)
    if handle is not None:
        handle.close()


def mark_finished(run_dir: Path) -> None:
    """Remove the marker and the checkpoint of a run whose model is written."""
    for name in (UNFINISHED_FILE, CHECKPOINT_FILE):
        (Path(run_dir) / name).unlink(missing_ok=True)
    release(run_dir)


def started_here() -> Path | None:
    """The run folder this process started (or resumed) last, if any: where to resume after a Ctrl-C."""
    return _STARTED[-1] if _STARTED else None


def is_unfinished(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds a run that started and did not finish."""
    return (Path(run_dir) / UNFINISHED_FILE).is_file()


def _numbered(name: str, values: list | None) -> dict:
    if values is None:
        return {}
    arrays = {f"{name}_{i}": np.asarray(value) for i, value in enumerate(values) if value is not None}
    return arrays | {f"{name}_count": np.array(len(values))}


def _listed(arrays: dict, name: str) -> list | None:
    if f"{name}_count" not in arrays:
        return None
    return [arrays.get(f"{name}_{i}") for i in range(int(arrays[f"{name}_count"]))]


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
