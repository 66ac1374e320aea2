"""Training stages on a tiny model: early stopping keeps the best epoch, fine-tuning recompiles after unfreezing."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from graftkit.model.freeze import parse_freeze
from graftkit.training.checkpoint import StageState
from graftkit.training.stages import Stopper, fine_tune_stage, fit_stage


def _data(labels, seed=0, count=32):
    """Batches of 8x8 images whose label is which half is brighter (learnable), labelled by ``labels``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (count, 8, 8, 3)).astype("float32")
    side = rng.integers(0, 2, count)
    x[side == 1, :4] += 1.0
    x[side == 0, 4:] += 1.0
    y = side if labels == "right" else 1 - side
    return tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(8)


def _model():
    """A base of two convolutions (``base``) under a Dense head, seeded."""
    keras.utils.set_random_seed(0)
    base = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="c1"),
                             keras.layers.Conv2D(4, 3, name="c2")], name="base")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2, activation="softmax", name="top")(
        keras.layers.GlobalAveragePooling2D()(base(inputs)))
    return keras.Model(inputs, outputs), base


class _Recorder(keras.callbacks.Callback):
    """The weights and validation loss at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights, self.val_loss = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())
        self.val_loss.append(float(logs["val_loss"]))


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_early_stopping_keeps_the_best_epochs_weights():
    # Validation labels are the opposite of training ones: the better the model learns, the worse the
    # validation loss, so the first epoch is the best and training stops after ``patience`` more.
    model, _ = _model()
    recorder = _Recorder()
    result = fit_stage("head", model, _data("right"), _data("wrong", seed=1), epochs=30, learning_rate=0.05,
                       patience=2, callbacks=[recorder])
    best = int(np.argmin(recorder.val_loss))
    assert len(recorder.val_loss) < 30 and best < len(recorder.val_loss) - 1  # stopped early, after the best
    assert result.best_epoch == best + 1 and result.best_val_loss == pytest.approx(recorder.val_loss[best])
    assert _same(model.get_weights(), recorder.weights[best])
    assert not _same(model.get_weights(), recorder.weights[-1])
    assert len(result.history["loss"]) == len(recorder.val_loss) and result.name == "head"
    assert result.trainable_params == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_best_weights_are_kept_when_training_runs_to_the_end():
    model, _ = _model()
    recorder = _Recorder()
    result = fit_stage("head", model, _data("right"), _data("right", seed=1), epochs=4, learning_rate=0.05,
                       patience=10, callbacks=[recorder])
    best = int(np.argmin(recorder.val_loss))
    assert len(recorder.val_loss) == 4 and result.best_epoch == best + 1
    assert _same(model.get_weights(), recorder.weights[best])


def test_fine_tuning_trains_the_unfrozen_layers_after_a_frozen_head_stage():
    model, base = _model()
    base.trainable = False
    start = [layer.get_weights() for layer in base.layers]
    head = fit_stage("head", model, _data("right"), _data("right", seed=1), epochs=2, learning_rate=0.05)
    assert all(_same(layer.get_weights(), w) for layer, w in zip(base.layers, start))  # frozen: untouched

    # The model was compiled with the base frozen: unfreezing the last layer needs a new compile, which
    # fine_tune_stage does, or the unfrozen layer would not move.
    tuned = fine_tune_stage(model, base, _data("right"), _data("right", seed=1), freeze=parse_freeze("last:1"),
                            train_bn=False, epochs=2, learning_rate=0.05, patience=3, class_weight=None,
                            baseline_val_loss=float("inf"))
    assert tuned.kept and tuned.name == "fine_tune" and head.name == "head"
    assert _same(base.get_layer("c1").get_weights(), start[0])
    assert not _same(base.get_layer("c2").get_weights(), start[1])
    assert tuned.trainable_params == 4 * 4 * 9 + 4 + 2 * 4 + 2  # c2 and the head
    assert base.trainable is False  # frozen again afterwards


def test_fine_tuning_that_does_not_beat_the_head_stage_is_rolled_back():
    model, base = _model()
    before = model.get_weights()
    tuned = fine_tune_stage(model, base, _data("right"), _data("right", seed=1), freeze=parse_freeze("none"),
                            train_bn=False, epochs=2, learning_rate=0.05, patience=3, class_weight=None,
                            baseline_val_loss=0.0)  # no loss beats 0
    assert tuned.kept is False and len(tuned.history["loss"]) == 2
    assert _same(model.get_weights(), before)


def test_stopper_state_is_put_back_on_a_resume():
    model, _ = _model()
    stopper = Stopper(patience=2)
    fit_stage("head", model, _data("right"), _data("wrong", seed=1), epochs=30, learning_rate=0.05, patience=2,
              callbacks=[stopper])
    state = stopper.state()
    assert state["stopped_epoch"] > 0 and state["wait"] == 2 and stopper.stopped
    again = Stopper(patience=2, resume=StageState("head", epoch=3, history={}, weights=[], optimizer=[],
                                                  stopper=state, best_weights=model.get_weights()))
    again.set_model(model)
    again.on_train_begin()
    assert again.state() == state and _same(again.best_weights, model.get_weights())
