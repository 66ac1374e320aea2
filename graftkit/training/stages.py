"""Training in stages: the head on a frozen base, then fine-tuning the top of the base."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from graftkit import log
from graftkit.model.freeze import FreezeSpec, apply_freeze
from graftkit.training.checkpoint import Checkpointer, StageState, restore_training


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


def compile_for(model: keras.Model, learning_rate: float) -> None:
    """(Re)compile ``model`` for sparse-label classification; required after any change of ``trainable``.

    Example:
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> compile_for(m, 1e-3); round(float(m.optimizer.learning_rate.numpy()), 6)
        0.001
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


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
            self.best_weights = self.resume.best_weights

    def state(self) -> dict:
        """What :meth:`on_train_begin` puts back on a resume (the best weights go beside it)."""
        return {"wait": int(self.wait), "best": None if self.best is None else float(self.best),
                "best_epoch": int(self.best_epoch), "stopped_epoch": int(self.stopped_epoch)}

    @property
    def stopped(self) -> bool:
        return self.stopped_epoch > 0


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
) -> StageResult:
    """Compile and fit ``model`` for one stage, keeping the weights of the best validation epoch.

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

    Returns:
        A :class:`StageResult`; the model holds the best epoch's weights.
    """
    import time

    compile_for(model, learning_rate)
    stopper = Stopper(patience, resume)
    history = {key: list(values) for key, values in (resume.history if resume else {}).items()}
    first = resume.epoch if resume else 0
    if resume:
        model.optimizer.build(model.trainable_variables)  # its variables exist now, to be put back
        restore_training(resume, model, model.optimizer.variables)
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    log.info(f"{name} stage: up to {epochs} epochs at learning rate {learning_rate:g}, "
             f"{trainable:,} trainable parameters" + (f", resumed after epoch {first}" if resume else ""))
    recorder = _Recorder(name, stopper, history, checkpoint)
    start = time.perf_counter()
    if first < epochs and not (resume and resume.stopper.get("stopped_epoch")):
        model.fit(
            train_data, validation_data=val_data, epochs=epochs, initial_epoch=first, class_weight=class_weight,
            callbacks=[stopper, recorder, *(callbacks or [])], verbose=log.keras_verbosity(), shuffle=False,
        )
    else:  # the interrupted run had ended this stage: only its best weights to put back
        stopper.set_model(model)
        stopper.on_train_begin()
        stopper.on_train_end()
    return StageResult(
        name=name,
        history=history,
        best_epoch=stopper.best_epoch + 1,
        best_val_loss=float(stopper.best),
        seconds=time.perf_counter() - start,
        trainable_params=trainable,
    )


class _Recorder(keras.callbacks.Callback):
    """Keeps the stage's history and writes a checkpoint after every epoch (after early stopping's turn)."""

    def __init__(self, name: str, stopper: Stopper, history: dict, checkpoint: Checkpointer | None):
        super().__init__()
        self.name, self.stopper, self.history, self.checkpoint = name, stopper, history, checkpoint

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        if self.checkpoint is not None:
            self.checkpoint.record(self.name, epoch + 1, self.history, self.model, self.model.optimizer.variables,
                                   self.stopper)


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
) -> StageResult:
    """Unfreeze the top of the base by ``freeze`` and train at a lower learning rate.

    When no epoch beats ``baseline_val_loss`` (the head stage's best), the weights from
    before fine-tuning are put back and the result is marked ``kept=False``. ``checkpoint``
    and ``resume`` are as for :func:`fit_stage`.
    """
    before = model.get_weights()
    apply_freeze(base_model, freeze, train_bn=train_bn)
    result = fit_stage("fine_tune", model, train_data, val_data, epochs=epochs,
                       learning_rate=learning_rate, patience=patience, class_weight=class_weight,
                       callbacks=callbacks, checkpoint=checkpoint, resume=resume)
    if result.best_val_loss > baseline_val_loss:
        model.set_weights(before)
        result.kept = False
        log.info(f"fine-tuning did not beat the head stage (val loss {result.best_val_loss:.4f} > "
                 f"{baseline_val_loss:.4f}): kept the head-stage weights")
    base_model.trainable = False
    return result
