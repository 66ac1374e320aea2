"""Issue 16: gradual unfreezing (``--unfreeze-every E``): the base's trained layer groups open one at a time from the top.

A closed group does not move at all (not by Adam's step, not by AdamW's weight decay); each group opens at its step,
counted by the optimizer's own step counter, so a resumed run has the groups it had opened; a run logs when each opens,
with Keras' fit and with graftkit's own loop under a tf.distribute strategy.
"""

from __future__ import annotations

import math
import re
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from graftkit import log
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.model.groups import variable_depths
from graftkit.training.schedules import GroupedAdamW, fine_tune_optimizer
from graftkit.training.stages import fit_stage
from graftkit.training.unfreeze import GradualUnfreezing
from tests.helpers import quiet_main, tiny_cnn, write_images
from tests.training.test_layer_rates import (EPOCHS, OPTIONS, Interrupted, _recording, batch, interrupt_at,
                                             named_model)

EVERY = 2  # steps after which the next group down opens
OPENS_2 = r"gradual unfreezing: epoch 2: group 2 from the top \('rescaling\w*'...\) opens"  # the tiny CNN's stem


def _gradual(model, base, head, **more):
    depths = {id(v): d for v, d in variable_depths(base, head)}
    return fine_tune_optimizer(1e-2, weight_decay=0.1, depth=lambda v: depths[id(v)], steps_per_group=EVERY, **more)


def _step(model, optimizer):
    x, y = batch()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))


def _moved(model, before) -> dict:
    """Each layer group's depth -> whether any of its variables moved since ``before``."""
    _, base, head = model
    moved = {}
    for variable, depth in variable_depths(base, head):
        moved[depth] = moved.get(depth, False) or not np.array_equal(variable.numpy(), before[variable.path])
    return moved


def test_groups_open_one_at_a_time_and_a_closed_group_does_not_move():
    model, base, head = made = named_model()
    optimizer = _gradual(model, base, head)
    assert isinstance(optimizer, GroupedAdamW)
    opened = []
    for _ in range(3 * EVERY):
        before = {v.path: v.numpy().copy() for v in model.trainable_variables}
        _step(model, optimizer)
        opened.append(_moved(made, before))
    # Steps 0-1: the head (0) and the top group (1); steps 2-3: block1 (2) too; from step 4: the stem (3) too.
    assert [sorted(d for d, m in step.items() if m) for step in opened] == [[0, 1]] * EVERY + [[0, 1, 2]] * EVERY \
        + [[0, 1, 2, 3]] * EVERY


def test_a_closed_group_is_not_decayed_either():
    made = model, base, head = named_model()
    optimizer = _gradual(model, base, head)  # AdamW, weight decay 0.1 at rate 1e-2
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])  # weight decay alone
    assert _moved(made, before) == {0: True, 1: True, 2: False, 3: False}
    kernel = base.get_layer("block2_conv").kernel  # open: shrunk by the decay
    np.testing.assert_allclose(kernel.numpy(), before[kernel.path] * (1 - 1e-2 * 0.1), rtol=1e-6)


def test_a_resumed_optimizer_opens_what_its_step_count_says():
    model, base, head = made = named_model()
    optimizer = _gradual(model, base, head)
    optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(2 * EVERY)  # as a checkpoint puts it back
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    _step(model, optimizer)
    assert _moved(made, before) == {0: True, 1: True, 2: True, 3: True}


def test_the_gates_hold_through_kerass_compiled_training_step():
    model, base, head = made = named_model()
    x, y = batch()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)  # 2 steps an epoch
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    log.set_quiet(True)
    try:
        fit_stage("fine_tune", model, data, data, epochs=1, learning_rate=1e-2,
                  optimizer=lambda: _gradual(model, base, head))
    finally:
        log.set_quiet(False)
    assert _moved(made, before) == {0: True, 1: True, 2: False, 3: False}  # 2 steps: block1 and the stem wait


class _Snapshots(keras.callbacks.Callback):
    """Which layer groups moved in each epoch."""

    def __init__(self, made):
        super().__init__()
        self.made, self.moved = made, []

    def on_epoch_begin(self, epoch, logs=None):
        self.before = {v.path: v.numpy().copy() for v in self.made[0].trainable_variables}

    def on_epoch_end(self, epoch, logs=None):
        self.moved.append(sorted(d for d, m in _moved(self.made, self.before).items() if m))


def _planned(base, head, every=1, steps_per_epoch=2, epochs=3):
    """A :class:`GradualUnfreezing` and its optimizer's options for ``base`` under ``head``."""
    from graftkit.model.groups import layer_groups

    unfreezing = GradualUnfreezing(every)
    depths = {id(v): d for v, d in variable_depths(base, head)}
    return unfreezing, unfreezing.options(depths, layer_groups(base), steps_per_epoch=steps_per_epoch, epochs=epochs)


def _fit(made, options, epochs, **more):
    """``fit_stage`` on ``made``'s model for ``epochs`` of 2 steps each, the optimizer AdamW with ``options``."""
    x, y = batch()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    log.set_quiet(True)
    try:
        fit_stage("fine_tune", made[0], data, data, epochs=epochs, learning_rate=1e-2, patience=epochs,
                  optimizer=lambda: fine_tune_optimizer(1e-2, weight_decay=0.1, **options), **more)
    finally:
        log.set_quiet(False)


def test_one_group_opens_an_epoch_in_keras_fit_and_the_log_says_so():
    made = named_model()
    unfreezing, options = _planned(made[1], made[2])
    snapshots, lines = _Snapshots(made), []
    _fit(made, options, 3, callbacks=[snapshots], on_epoch=lambda epoch: lines.extend(unfreezing.openings(epoch)))
    assert snapshots.moved == [[0, 1], [0, 1, 2], [0, 1, 2, 3]]  # the head and block2, then block1, then the stem
    assert lines == ["gradual unfreezing: epoch 2: group 2 from the top ('block1_conv'...) opens",
                     "gradual unfreezing: epoch 3: group 3 from the top ('stem_conv'...) opens"]


def test_a_resumed_stage_names_the_groups_opened_before_it():
    made = named_model()
    unfreezing, _ = _planned(made[1], made[2])
    assert unfreezing.openings(2) == [
        "gradual unfreezing: epoch 3: group 2 from the top ('block1_conv'...) is open (since epoch 2, before the resume)",
        "gradual unfreezing: epoch 3: group 3 from the top ('stem_conv'...) opens"]
    assert unfreezing.openings(3) == []


def test_layer_rates_and_gates_multiply():
    made = model, base, head = named_model()
    _, options = _planned(base, head)
    factors = {id(v): 0.5 ** d for v, d in variable_depths(base, head)}
    optimizer = fine_tune_optimizer(1e-2, factor=lambda v: factors[id(v)], **options)  # Adam at a constant rate
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    _step(model, optimizer)
    assert _moved(made, before) == {0: True, 1: True, 2: False, 3: False}
    kernel = base.get_layer("block2_conv").kernel
    assert np.median(np.abs(kernel.numpy() - before[kernel.path])) == pytest.approx(1e-2 * 0.5, rel=0.05)


def test_a_frozen_top_group_does_not_hold_back_the_groups_below():
    made = model, base, head = named_model()
    base.get_layer("block2_conv").trainable = False  # group 1 trains nothing: group 2 is the topmost trained
    _, options = _planned(base, head)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    _fit(made, options, 1)
    assert _moved(made, before) == {0: True, 2: True, 3: False}


def test_the_gates_and_the_log_hold_under_a_distribution_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        made = named_model()
    unfreezing, options = _planned(made[1], made[2])
    moved, lines, before = [], [], {}

    def on_epoch(epoch):  # Keras callbacks do not run under a strategy: the stage's own hook takes the snapshots
        if before:
            moved.append(sorted(d for d, m in _moved(made, before).items() if m))
        before.update({v.path: v.numpy().copy() for v in made[0].trainable_variables})
        lines.extend(unfreezing.openings(epoch))

    _fit(made, options, 2, strategy=strategy, on_epoch=on_epoch)
    on_epoch(2)
    assert moved == [[0, 1], [0, 1, 2]]
    assert lines[0] == "gradual unfreezing: epoch 2: group 2 from the top ('block1_conv'...) opens"


def test_a_bad_unfreeze_every_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(GraftError, match=r"^--unfreeze-every -1 is out of range: use 0 \(all groups at once\)"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", unfreeze_every=-1).validated()
    assert quiet_main(["train", str(tmp_path), "--base", "mobilenet_v2", "--unfreeze-every", "-2"]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--unfreeze-every -2 is out of range" in error, error


def test_a_run_unfreezes_gradually_end_to_end(tmp_path_factory, monkeypatch, capsys):
    from graftkit.api import train

    root = tmp_path_factory.mktemp("unfreeze")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    made = _recording(monkeypatch)
    log.set_quiet(False)
    options = {**OPTIONS, "lr_decay": 1.0, "freeze": "none", "unfreeze_every": 1}
    run = train(root / "images", base=str(root / "personal.keras"), out=str(root / "run"), **options)
    err = capsys.readouterr().err
    assert "gradual unfreezing (--unfreeze-every 1; the base in 2 groups" in err, err
    assert re.search(r"the head and group 1 \('c2'...\) from epoch 1, group 2 \('rescaling\w*'...\) from epoch 2\b",
                     err), err  # the rescaling layer's name has a suffix when other tests made one before
    assert err.count("gradual unfreezing: epoch") == 1, err
    assert re.search(OPENS_2, err), err
    assert err.index("gradual unfreezing: epoch 2") < err.index("fine_tune epoch 2/2:"), err
    optimizer = made[0]
    steps_per_epoch = math.ceil(run.metrics["train_images"] / OPTIONS["batch_size"])
    assert optimizer._steps_per_group == steps_per_epoch
    depths = {v.path: optimizer._depths[optimizer._get_variable_index(v)] for v in optimizer._trainable_variables}
    assert {d for p, d in depths.items() if p.startswith("c1/")} == {2}
    assert {d for p, d in depths.items() if p.startswith("c2/")} == {1}
    assert int(optimizer.iterations.numpy()) == EPOCHS * steps_per_epoch
    assert run.metrics["stages"]["fine_tune"]["trainable_params"] > 0
    config = zipfile.ZipFile(run.run_dir / "model.keras").read("config.json").decode()
    assert "Grouped" not in config and "optimizer" not in config  # the model file is plain Keras


@pytest.mark.parametrize("freeze, said", [
    ("last:2", "--freeze last:2 trains 1 layer group of the base, nothing to open one at a time"),  # c2 only
    ("all", "--freeze all: no fine-tuning stage, nothing to open one at a time for --unfreeze-every")])
def test_one_trained_group_has_nothing_to_open(tmp_path_factory, capsys, freeze, said):
    from graftkit.api import train

    root = tmp_path_factory.mktemp("unfreeze_one")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    log.set_quiet(False)
    train(root / "images", base=str(root / "personal.keras"), out=str(root / "run"),
          **{**OPTIONS, "lr_decay": 1.0, "fine_tune_epochs": 1, "unfreeze_every": 1, "freeze": freeze})
    err = capsys.readouterr().err
    assert err.count(said) == 1 and "gradual unfreezing: epoch" not in err, err


def test_an_interrupted_run_resumes_with_the_groups_it_had_opened(tmp_path_factory, monkeypatch, capsys):
    from graftkit.api import resume, train
    from graftkit.training import checkpoint

    root = tmp_path_factory.mktemp("unfreeze_resume")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    real = interrupt_at(monkeypatch, "fine_tune", 1)
    options = {**OPTIONS, "lr_decay": 1.0, "freeze": "none", "unfreeze_every": 1, "fine_tune_epochs": 3}
    log.set_quiet(True)
    try:
        with pytest.raises(Interrupted):
            train(root / "images", base=str(root / "personal.keras"), out=str(root / "run"), **options)
    finally:
        log.set_quiet(False)
    monkeypatch.setattr(checkpoint.Checkpointer, "epoch_done", real)
    made = _recording(monkeypatch)
    capsys.readouterr()
    run = resume(root / "run")
    err = capsys.readouterr().err
    assert re.search(OPENS_2, err), err
    steps_per_epoch = math.ceil(run.metrics["train_images"] / OPTIONS["batch_size"])
    assert int(made[0].iterations.numpy()) == 3 * steps_per_epoch  # the checkpoint's steps went on
