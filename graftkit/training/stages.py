"""Training in stages: the head on a frozen base, then fine-tuning the top of the base."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field, replace

import keras

from graftkit import log
from graftkit.errors import GraftError
from graftkit.model.freeze import FreezeSpec, apply_freeze
from graftkit.training.checkpoint import Checkpointer, StageState, changing_only, filled, restore_training


@dataclass
class StageResult:
    """What one training stage did.

    Attributes:
        name: ``head`` or ``fine_tune``.
        history: per-epoch metrics as Keras reports them.
        best_epoch: 1-based epoch whose weights were kept.
        best_val_loss: validation loss of those weights.
        seconds: wall time of the stage.
        trainable_params: number of parameters the stage trained.
        kept: False when the stage's result was discarded for being worse than the one before.
    """

    name: str
    history: dict = field(default_factory=dict)
    best_epoch: int = 0
    best_val_loss: float = float("inf")
    seconds: float = 0.0
    trainable_params: int = 0
    kept: bool = True


def compile_for(model: keras.Model, learning_rate: float, task=None, optimizer=None) -> None:
    """(Re)compile ``model`` for its task (single-label by default); required after any change of ``trainable``.

    Example:
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> compile_for(m, 1e-3); round(float(m.optimizer.learning_rate.numpy()), 6)
        0.001
    """
    from graftkit.model.task import Task

    (task or Task()).compile(model, learning_rate, optimizer)


class Stopper(keras.callbacks.EarlyStopping):
    """Early stopping on the validation loss with the best weights restored, whose state survives a restart.

    Example:
        >>> stopper = Stopper(patience=3)
        >>> stopper.on_train_begin(); stopper.state()
        {'wait': 0, 'best': None, 'best_epoch': 0, 'stopped_epoch': 0}
    """

    def __init__(self, patience: int, resume: StageState | None = None):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True, verbose=0)
        self.resume = resume

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.resume is not None:
            for name, value in self.resume.stopper.items():
                setattr(self, name, value)
            self.best_weights = filled(self.model, self.resume.best_weights)

    def state(self) -> dict:
        """What :meth:`on_train_begin` puts back on a resume (the best weights go beside it)."""
        return {"wait": int(self.wait), "best": None if self.best is None else float(self.best),
                "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch)}

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch > 0


class StageRun:
    """One training stage under way: what it tells the user and what it keeps after every epoch.

    Both ways of fitting a stage share it: :func:`fit_stage` (Keras' ``fit``, through
    :class:`StageCallback`) and :func:`graftkit.training.head_stage.fit_on_features` (a compiled
    loop on cached features). It counts the trainable parameters and says what the stage will do;
    shows a live bar inside each epoch (images done, images/s, running loss; plain lines when
    stderr is not a terminal); then prints one line for the epoch, appends its metrics to the
    history and writes the checkpoint.

    Args:
        name: ``head`` or ``fine_tune`` (any name, for other loops).
        model: the model being trained, its ``trainable`` flags set.
        epochs: the most epochs the stage runs.
        learning_rate: the stage's learning rate, for its opening line.
        samples: training examples per epoch, so the bar counts images; None counts batches.
        checkpoint: where to record the state after every epoch, or None.
        stopper: the stage's :class:`Stopper`, whose state goes into the checkpoint.
        slots: the optimizer's variables to checkpoint; None for ``model.optimizer.variables``.
        resume: the state an interrupted run reached: its history goes on.
        on_epoch: a function of the 0-based epoch called as each epoch begins, before its bar (gradual
            unfreezing's log: :class:`graftkit.training.unfreeze.GradualUnfreezing`), or None.

    Example:
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> stage = StageRun("head", m, epochs=1, learning_rate=1e-3, samples=8)
        >>> stage.trainable
        10
        >>> stage.begin_epoch(0, steps=2); stage.batch_done(0, loss=0.71); stage.batch_done(1, loss=0.69)
        >>> stage.end_epoch(0, {"loss": 0.69, "accuracy": 0.5, "val_loss": 0.6, "val_accuracy": 0.5})
        >>> stage.history["val_loss"]
        [0.6]
    """

    def __init__(self, name: str, model: keras.Model, *, epochs: int, learning_rate: float,
                 samples: int | None = None, checkpoint: Checkpointer | None = None, stopper: Stopper | None = None,
                 slots: list | None = None, resume: StageState | None = None, on_epoch=None):
        self.name, self.model, self.epochs, self.samples, self.on_epoch = name, model, epochs, samples, on_epoch
        self.checkpoint, self.stopper, self.slots = checkpoint, stopper, slots
        self.history = {key: list(values) for key, values in (resume.history if resume else {}).items()}
        self.trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
        self._bar, self._per_step = None, 1
        self._started, self._trained, self._done = time.perf_counter(), None, 0
        resumed = f", resumed after epoch {resume.epoch}" if resume else ""
        log.info(f"{name} stage: up to {epochs} epochs at learning rate {learning_rate:g}, "
                 f"{self.trainable:,} trainable parameters{resumed}")

    def begin_epoch(self, epoch: int, steps: int | None = None) -> None:
        """Start 0-based ``epoch``; ``steps`` batches are to come (a bar is shown only when given)."""
        self.close()
        if self.on_epoch is not None:
            self.on_epoch(epoch)
        self._started, self._trained, self._done = time.perf_counter(), None, 0
        if steps:
            images = bool(self.samples)
            self._per_step = -(-self.samples // steps) if images else 1
            self._bar = log.progress(self.samples if images else steps, self._label(epoch),
                                     unit=log.examples() if images else "batches")

    def batch_done(self, batch: int, loss: float | None = None) -> None:
        """Record that batch ``batch`` (0-based) of the epoch is trained; ``loss`` is the epoch's running loss."""
        self._trained = time.perf_counter()
        if self._bar is not None:
            self._done = min((batch + 1) * self._per_step, self._bar.total or (batch + 1) * self._per_step)
            self._bar.update(self._done, **({} if loss is None else {"loss": float(loss)}))

    def end_epoch(self, epoch: int, logs: dict) -> None:
        """Finish 0-based ``epoch`` with its metrics: one line, the history, the checkpoint.

        When a :class:`Stopper` decides on this epoch, call its ``on_epoch_end`` first, so the
        checkpoint holds its decision.
        """
        logs = {key: float(value) for key, value in (logs or {}).items()}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        now = time.perf_counter()
        images = self.samples or self._done
        shown = [key for key in ("loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae") if key in logs]
        shown += [key for key in logs if key not in shown]
        timing = f"{now - self._started:.1f} s"  # the whole epoch, validation included
        if images:  # the rate is of training alone
            unit = log.examples() if self.samples else "batches"
            timing = f"{images} {unit}, {log.rate(images, (self._trained or now) - self._started)} {unit}/s, {timing}"
        message = f"{self._label(epoch)}: " + ", ".join(f"{key} {logs[key]:.4f}" for key in shown) + f" ({timing})"
        if self._bar is not None:
            self._bar.close(message)
            self._bar = None
        else:
            log.info(message)
        if self.checkpoint is not None:
            slots = self.model.optimizer.variables if self.slots is None else self.slots
            self.checkpoint.record(self.name, epoch + 1, self.history, self.model, slots, self.stopper)

    def close(self) -> None:
        """End the bar of an epoch that did not finish (an error, an interruption) with a line of how far it got."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def result(self, stopper: Stopper, seconds: float) -> StageResult:
        """The :class:`StageResult` of the stage once ``stopper`` has put the best weights back."""
        return StageResult(name=self.name, history=self.history, best_epoch=stopper.best_epoch + 1,
                           best_val_loss=float(stopper.best), seconds=seconds, trainable_params=self.trainable)

    def _label(self, epoch: int) -> str:
        return f"{self.name} epoch {epoch + 1}/{self.epochs}"


class StageCallback(keras.callbacks.Callback):
    """Hands Keras' ``fit`` events to a :class:`StageRun`, in place of Keras' own progress output.

    Fit with ``verbose=0``; list this callback after early stopping, whose decision it checkpoints.

    Example:
        >>> import numpy as np
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> compile_for(m, 1e-3)
        >>> x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int32")
        >>> stage = StageRun("demo", m, epochs=2, learning_rate=1e-3, samples=8)
        >>> _ = m.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[StageCallback(stage)])
        >>> len(stage.history["loss"])
        2
    """

    def __init__(self, stage: StageRun):
        super().__init__()
        self.stage = stage

    def on_epoch_begin(self, epoch, logs=None):
        self.stage.begin_epoch(epoch, steps=(self.params or {}).get("steps"))

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        self.stage.batch_done(batch, loss=None if loss is None else float(loss))

    def on_epoch_end(self, epoch, logs=None):
        self.stage.end_epoch(epoch, logs)


def fit_stage(
    name: str,
    model: keras.Model,
    train_data,
    val_data,
    *,
    epochs: int,
    learning_rate: float,
    patience: int = 3,
    class_weight: dict | None = None,
    callbacks: list | None = None,
    checkpoint: Checkpointer | None = None,
    resume: StageState | None = None,
    samples: int | None = None,
    task=None,
    optimizer=None,
    strategy=None,
    inputs=None,
    on_epoch=None,
) -> StageResult:
    """Compile and fit ``model`` for one stage, keeping the weights of the best validation epoch.

    Progress goes to stderr through :class:`StageRun` (Keras' own output is off), so stdout
    stays for results.

    Args:
        name: stage name for messages and the history.
        model: any Keras classifier with its ``trainable`` flags already set.
        train_data: a ``tf.data.Dataset`` of (images, labels) (or features, labels).
        val_data: the same for validation.
        epochs: most epochs to run; early stopping may end sooner.
        learning_rate: Adam learning rate.
        patience: epochs without a better validation loss before stopping.
        class_weight: per-class loss weights, or None.
        callbacks: more Keras callbacks for ``fit`` (e.g. TensorBoard), beside early stopping.
        checkpoint: where to record the state after every epoch, or None.
        resume: the state this stage reached in an interrupted run: it goes on from there.
        samples: training examples in ``train_data``, so the progress bar counts images (else batches).
        task: the :class:`graftkit.model.task.Task` (loss and metric); single-label by default.
        optimizer: a callable making the optimizer (see :mod:`graftkit.training.schedules`); None: Adam at
            ``learning_rate``.
        strategy: a ``tf.distribute`` strategy (whose scope made ``model``) to train on its replicas with
            graftkit's own loop (:func:`graftkit.training.distribute.fit_epochs`) instead of Keras' ``fit``;
            ``train_data`` may then be a function of the 0-based epoch returning its dataset.
        inputs: with ``strategy``, as for :func:`graftkit.training.distribute.fit_epochs`.
        on_epoch: a function of the 0-based epoch called as each epoch begins, with or without ``strategy``
            (see :class:`StageRun`).

    Returns:
        A :class:`StageResult`; the model holds the best epoch's weights.

    Example:
        >>> import numpy as np, tensorflow as tf
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> data = tf.data.Dataset.from_tensor_slices((np.eye(4, dtype="float32"), [0, 1, 0, 1])).batch(2)
        >>> fit_stage("head", m, data, data, epochs=2, learning_rate=1e-2, samples=4).best_epoch in (1, 2)
        True
    """
    if strategy is not None and callbacks:
        raise GraftError("Keras callbacks (e.g. --tensorboard) do not run under --distribute: drop them")
    with strategy.scope() if strategy is not None else contextlib.nullcontext():  # the optimizer's variables too
        compile_for(model, learning_rate, task, optimizer() if optimizer else None)
        stopper = Stopper(patience, resume)
        first = resume.epoch if resume else 0
        if resume:
            model.optimizer.build(model.trainable_variables)  # its variables exist now, to be put back
            restore_training(resume, model, model.optimizer.variables)
    stage = StageRun(name, model, epochs=epochs, learning_rate=learning_rate, samples=samples,
                     checkpoint=checkpoint, stopper=stopper, resume=resume, on_epoch=on_epoch)
    start = time.perf_counter()
    if first < epochs and not (resume and resume.stopper.get("stopped_epoch")):
        try:
            if strategy is None:
                model.fit(
                    train_data, validation_data=val_data, epochs=epochs, initial_epoch=first,
                    class_weight=class_weight, callbacks=[stopper, StageCallback(stage), *(callbacks or [])],
                    verbose=0, shuffle=False,
                )
            else:
                _fit_on_replicas(strategy, model, train_data, val_data, epochs=epochs, first=first, stage=stage,
                                 stopper=stopper, task=task, class_weight=class_weight, inputs=inputs)
        finally:
            stage.close()
    else:  # the interrupted run had ended this stage: only its best weights to put back
        stopper.set_model(model)
        stopper.on_train_begin()
        stopper.on_train_end()
    return stage.result(stopper, time.perf_counter() - start)


def _fit_on_replicas(strategy, model, train_data, val_data, *, stopper: Stopper, task, **options) -> None:
    """What ``model.fit`` does in :func:`fit_stage`, with the stopper's events, as tf.distribute steps."""
    from graftkit.model.task import Task
    from graftkit.training.distribute import fit_epochs

    stopper.set_model(model)
    model.stop_training = False
    stopper.on_train_begin()
    fit_epochs(strategy, model, train_data, val_data, stopper=stopper, task=task or Task(), **options)
    stopper.on_train_end()


def fine_tune_stage(
    model: keras.Model,
    base_model: keras.Model,
    train_data,
    val_data,
    *,
    freeze: FreezeSpec,
    train_bn: bool,
    epochs: int,
    learning_rate: float,
    patience: int,
    class_weight: dict | None,
    baseline_val_loss: float,
    callbacks: list | None = None,
    checkpoint: Checkpointer | None = None,
    resume: StageState | None = None,
    samples: int | None = None,
    task=None,
    cache=None,
    optimizer=None,
    strategy=None,
    on_epoch=None,
) -> StageResult:
    """Unfreeze the top of the base by ``freeze`` and train at a lower learning rate.

    When no epoch beats ``baseline_val_loss`` (the head stage's best), the weights from
    before fine-tuning are put back and the result is marked ``kept=False``. ``checkpoint``
    ``resume``, ``samples``, ``task``, ``optimizer`` and ``on_epoch`` are as for :func:`fit_stage`.

    ``cache``, when given, is called once the base is frozen by spec and returns a
    :class:`graftkit.features.boundary.FineTuneCache` (or None, having said why): the stage then
    trains the top of the base and the head on the tensors cached at the freeze boundary instead
    of ``train_data`` and ``val_data``, the same layers with the same optimizer, early stopping and
    class weights. Its checkpoints hold the whole model's weights either way, so a run resumes
    whichever way it fine-tunes.

    ``strategy`` is as for :func:`fit_stage`; with one, the stage runs the whole base every step
    (the boundary cache is filled by one process and is not split between workers).
    """
    if strategy is not None and cache is not None:
        log.info("fine-tuning runs the whole base every step under --distribute (no boundary cache)")
        cache = None
    before = model.get_weights()
    apply_freeze(base_model, freeze, train_bn=train_bn)
    if cache is not None and resume is not None:
        from graftkit.training.checkpoint import put_back

        put_back(model, resume.weights)  # the cache is filled by the weights the run had reached
    cached = cache() if cache is not None else None
    if cached is None:
        result = fit_stage("fine_tune", model, train_data, val_data, epochs=epochs,
                           learning_rate=learning_rate, patience=patience, class_weight=class_weight,
                           callbacks=callbacks, checkpoint=checkpoint, resume=resume, samples=samples, task=task,
                           optimizer=optimizer, strategy=strategy, on_epoch=on_epoch)
    else:
        whole = _WholeWeights(model, cached.model)
        result = fit_stage("fine_tune", cached.model, cached.train, cached.val, epochs=epochs,
                           learning_rate=learning_rate, patience=patience, class_weight=class_weight,
                           callbacks=callbacks, checkpoint=whole.checkpointer(checkpoint),
                           resume=whole.part_state(resume), samples=samples, task=task, optimizer=optimizer,
                           on_epoch=on_epoch)
    if result.best_val_loss > baseline_val_loss:
        model.set_weights(before)
        result.kept = False
        log.info(f"fine-tuning did not beat the head stage (val loss {result.best_val_loss:.4f} > "
                 f"{baseline_val_loss:.4f}): kept the head-stage weights")
    base_model.trainable = False
    return result


class _WholeWeights:
    """Translates weights between a model and a part of it that shares its layers (cached fine-tuning's model).

    A checkpoint written while training the part holds the whole model's weights, and a state
    read from any checkpoint is cut down to the part's, so checkpoints do not depend on which
    model trained.
    """

    def __init__(self, whole: keras.Model, part: keras.Model):
        self.whole, self.part = whole, part
        where = {id(variable): i for i, variable in enumerate(whole.weights)}
        self.rows = [where[id(variable)] for variable in part.weights]

    def to_whole(self, weights: list | None) -> list | None:
        if weights is None:
            return None
        values = self.whole.get_weights()
        for row, value in zip(self.rows, weights):
            values[row] = value
        return values

    def to_part(self, weights: list | None) -> list | None:
        return None if weights is None else [weights[row] for row in self.rows]

    def part_state(self, state: StageState | None) -> StageState | None:
        if state is None:
            return None
        return replace(state, weights=self.to_part(state.weights), best_weights=self.to_part(state.best_weights))

    def checkpointer(self, checkpoint: Checkpointer | None):
        if checkpoint is None:
            return None
        translate = self

        class Whole:
            def record(self, stage, epoch, history, model, optimizer_slots, stopper):
                whole = translate.whole
                checkpoint.epoch_done(stage, epoch, history,
                                      changing_only(whole, translate.to_whole(model.get_weights())),
                                      [v.numpy() for v in optimizer_slots], stopper.state(),
                                      changing_only(whole, translate.to_whole(stopper.best_weights)),
                                      [v.numpy() for v in translate.whole.variables if "seed_generator" in v.path])

        return Whole()
