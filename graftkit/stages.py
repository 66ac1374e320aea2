"""Training in stages: the head on a frozen base, then fine-tuning the top of the base."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from graftkit import log
from graftkit.surgery import FreezeSpec, apply_freeze


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

    Returns:
        A :class:`StageResult`; the model holds the best epoch's weights.
    """
    import time

    compile_for(model, learning_rate)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=patience, restore_best_weights=True, verbose=0
    )
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    log.info(f"{name} stage: up to {epochs} epochs at learning rate {learning_rate:g}, "
             f"{trainable:,} trainable parameters")
    start = time.perf_counter()
    history = model.fit(
        train_data, validation_data=val_data, epochs=epochs, class_weight=class_weight,
        callbacks=[stopper, *(callbacks or [])], verbose=log.keras_verbosity(), shuffle=False,
    )
    seconds = time.perf_counter() - start
    return StageResult(
        name=name,
        history={key: [float(v) for v in values] for key, values in history.history.items()},
        best_epoch=stopper.best_epoch + 1,
        best_val_loss=float(stopper.best),
        seconds=seconds,
        trainable_params=trainable,
    )


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
) -> StageResult:
    """Unfreeze the top of the base by ``freeze`` and train at a lower learning rate.

    When no epoch beats ``baseline_val_loss`` (the head stage's best), the weights from
    before fine-tuning are put back and the result is marked ``kept=False``.
    """
    before = model.get_weights()
    apply_freeze(base_model, freeze, train_bn=train_bn)
    result = fit_stage("fine_tune", model, train_data, val_data, epochs=epochs,
                       learning_rate=learning_rate, patience=patience, class_weight=class_weight,
                       callbacks=callbacks)
    if result.best_val_loss > baseline_val_loss:
        model.set_weights(before)
        result.kept = False
        log.info(f"fine-tuning did not beat the head stage (val loss {result.best_val_loss:.4f} > "
                 f"{baseline_val_loss:.4f}): kept the head-stage weights")
    base_model.trainable = False
    return result
