"""Issue 16: gradual unfreezing (``--unfreeze-every E``): the base's trained layer groups open one at a time from the top.

A closed group does not move at all (not by Adam's step, not by AdamW's weight decay); each group opens at its step,
counted by the optimizer's own step counter, so a resumed run has the groups it had opened; a run logs when each opens.
"""

from __future__ import annotations

import math

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
from tests.helpers import quiet_main
from tests.training.test_layer_rates import EPOCHS, OPTIONS, _recording, batch, named_model

EVERY = 2  # steps after which the next group down opens


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


def test_a_bad_unfreeze_every_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(GraftError, match=r"^--unfreeze-every -1 is out of range: use 0 \(all groups at once\)"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", unfreeze_every=-1).validated()
    assert quiet_main(["train", str(tmp_path), "--base", "mobilenet_v2", "--unfreeze-every", "-2"]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--unfreeze-every -2 is out of range" in error, error


def test_a_run_unfreezes_gradually_end_to_end(tmp_path_factory, monkeypatch, capsys):
    from graftkit.api import train
    from tests.helpers import tiny_cnn, write_images

    root = tmp_path_factory.mktemp("unfreeze")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    made = _recording(monkeypatch)
    log.set_quiet(False)
    options = {**OPTIONS, "lr_decay": 1.0, "freeze": "none", "unfreeze_every": 1}
    run = train(root / "images", base=str(root / "personal.keras"), out=str(root / "run"), **options)
    err = capsys.readouterr().err
    assert "gradual unfreezing (--unfreeze-every 1; the base in 2 groups" in err, err
    assert "the head and group 1 ('c2'...) from epoch 1, group 2 ('rescaling'...) from epoch 2" in err, err
    optimizer = made[0]
    steps_per_epoch = math.ceil(run.metrics["train_images"] / OPTIONS["batch_size"])
    assert optimizer._steps_per_group == steps_per_epoch
    depths = {v.path: optimizer._depths[optimizer._get_variable_index(v)] for v in optimizer._trainable_variables}
    assert {d for p, d in depths.items() if p.startswith("c1/")} == {2}
    assert {d for p, d in depths.items() if p.startswith("c2/")} == {1}
    assert int(optimizer.iterations.numpy()) == EPOCHS * steps_per_epoch
    assert run.metrics["stages"]["fine_tune"]["trainable_params"] > 0


def test_one_trained_group_has_nothing_to_open(tmp_path_factory, capsys):
    from graftkit.api import train
    from tests.helpers import tiny_cnn, write_images

    root = tmp_path_factory.mktemp("unfreeze_one")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    log.set_quiet(False)
    train(root / "images", base=str(root / "personal.keras"), out=str(root / "run"),
          **{**OPTIONS, "lr_decay": 1.0, "fine_tune_epochs": 1, "unfreeze_every": 1})  # last:2 trains c2 only
    assert "trains 1 layer group of the base, nothing to open one at a time" in capsys.readouterr().err
