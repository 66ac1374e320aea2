"""Issue 16: layer-wise learning rates (``--lr-decay``) with the fine-tuning schedule (``--schedule``).

Each layer group's step is its own rate (Adam's first step from zero moments moves a weight by its rate times the
gradient's sign, whatever the gradient's scale), AdamW's weight decay follows the same rate, and a tiny run with
``lr_decay=0.5, schedule="cosine"`` fine-tunes on the boundary cache over exactly its steps, and resumes.
"""

from __future__ import annotations

import json
import math
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from graftkit import log
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.model.freeze import apply_freeze, parse_freeze
from graftkit.model.groups import variable_depths
from graftkit.model.head import build_head
from graftkit.training import schedules
from graftkit.training.schedules import GroupedAdam, GroupedAdamW, fine_tune_optimizer
from graftkit.training.stages import fit_stage
from tests.helpers import quiet_main, tiny_cnn, write_images

LR, DECAY = 1e-3, 0.5


def named_model():
    """A 3-group base (stem, block1, block2: its spec's regexes) under a head, all trainable."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((8, 8, 3))
    for name in ("stem_conv", "block1_conv", "block2_conv"):
        x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name=name)(x)
    base = keras.Model(inputs, x, name="base")
    base._graft_layer_groups = (r"^stem_", r"^block1_", r"^block2_")
    head = build_head((8, 8, 4), 3, dropout=0.0)
    image = keras.Input((8, 8, 3))
    apply_freeze(base, parse_freeze("none"))
    return keras.Model(image, head(base(image))), base, head


def batch():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 8, 8, 3)).astype("float32"), np.arange(16) % 3


def one_step(model, optimizer, scale=None):
    """Each trainable variable's change after one optimizer step and its gradient, by the variable's path."""
    x, y = batch()
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(x)))
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    before = [v.numpy().copy() for v in variables]
    optimizer.apply_gradients([(g * (scale(v) if scale else 1.0), v) for g, v in zip(grads, variables)])
    return {v.path: (v.numpy() - b, g.numpy()) for v, b, g in zip(variables, before, grads)}


def test_each_groups_first_adam_step_is_its_own_learning_rate():
    model, base, head = named_model()
    depths = {v.path: d for v, d in variable_depths(base, head)}
    assert sorted(set(depths.values())) == [0, 1, 2, 3]  # head, block2, block1, stem
    factors = {id(v): DECAY ** d for v, d in variable_depths(base, head)}
    steps = one_step(model, fine_tune_optimizer(LR, factor=lambda v: factors[id(v)]))
    eps = 1e-7 / math.sqrt(1 - 0.999)  # Adam's first step from zero moments: rate * g / (|g| + eps / sqrt(1 - beta_2))
    for path, (delta, grad) in steps.items():
        rate = LR * DECAY ** depths[path]
        np.testing.assert_allclose(-delta, rate * grad / (np.abs(grad) + eps), rtol=1e-3, atol=1e-9, err_msg=path)
        assert np.allclose(np.abs(delta[np.abs(grad) > 1e-3]), rate, rtol=1e-2), path  # rate * sign(g)
    # Scaling the gradients instead changes nothing: Adam's step does not depend on their scale.
    model, base, head = named_model()
    factors = {id(v): DECAY ** d for v, d in variable_depths(base, head)}
    scaled = one_step(model, keras.optimizers.Adam(LR), scale=lambda v: factors[id(v)])
    assert all(np.isclose(np.median(np.abs(d[np.abs(g) > 1e-3])), LR, rtol=5e-2) for d, g in scaled.values())


def test_the_rates_hold_through_kerass_compiled_training_step():
    model, base, head = named_model()
    depths = {v.path: d for v, d in variable_depths(base, head)}
    factors = {id(v): DECAY ** d for v, d in variable_depths(base, head)}
    x, y = batch()
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    log.set_quiet(True)
    try:
        fit_stage("fine_tune", model, data, data, epochs=1, learning_rate=LR,
                  optimizer=lambda: fine_tune_optimizer(LR, factor=lambda v: factors[id(v)]))
    finally:
        log.set_quiet(False)
    assert isinstance(model.optimizer, GroupedAdam)
    for v in model.trainable_variables:
        moved = np.abs(v.numpy() - before[v.path])
        assert np.isclose(np.median(moved[moved > 0]), LR * DECAY ** depths[v.path], rtol=1e-2), v.path


def test_adamw_decays_each_group_at_its_own_rate():
    top, low = keras.Variable(np.ones(3, "float32"), name="top"), keras.Variable(np.ones(3, "float32"), name="low")
    optimizer = GroupedAdamW(learning_rate=0.1, weight_decay=0.5, factor=lambda v: 0.25 if v is low else 1.0)
    optimizer.apply_gradients([(np.zeros(3, "float32"), top), (np.zeros(3, "float32"), low)])  # no Adam step
    np.testing.assert_allclose(top.numpy(), 1 - 0.5 * 0.1, rtol=1e-6)
    np.testing.assert_allclose(low.numpy(), 1 - 0.5 * 0.1 * 0.25, rtol=1e-6)


@pytest.mark.parametrize("grouped, plain", [(GroupedAdam, keras.optimizers.Adam),
                                            (GroupedAdamW, keras.optimizers.AdamW)])
def test_grouped_optimizers_hold_the_variables_of_plain_ones(grouped, plain):
    """A checkpoint holds the optimizer's variables in order: the grouped ones are the plain ones'."""
    model, _, _ = named_model()
    mine, theirs = grouped(LR, name="opt", factor=lambda v: 0.5), plain(LR, name="opt")
    for optimizer in (mine, theirs):
        optimizer.build(model.trainable_variables)
    assert [v.path for v in mine.variables] == [v.path for v in theirs.variables]
    assert {mine.rate_factor(v) for v in model.trainable_variables} == {0.5}
    assert grouped.from_config(mine.get_config()).get_config() == mine.get_config()


def test_a_bad_lr_decay_is_a_one_line_error(tmp_path, capsys):
    for value in (0, 1.5, -0.5):
        with pytest.raises(GraftError, match=rf"^--lr-decay {value} is out of range: use 0 < D <= 1, such as 0.5$"):
            TrainConfig(data=str(tmp_path), base="mobilenet_v2", lr_decay=value).validated()
    assert quiet_main(["train", str(tmp_path), "--base", "mobilenet_v2", "--lr-decay", "0"]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--lr-decay 0.0 is out of range" in error, error


# ---------------------------------------------------------------- end to end: a tiny personal model
EPOCHS = 2
OPTIONS = dict(epochs=10, fine_tune_epochs=EPOCHS, lr=0.05, batch_size=8, freeze="last:2", patience=5,
               lr_decay=DECAY, schedule="cosine")


class Interrupted(Exception):
    pass


def interrupt_at(monkeypatch, stage: str, epoch: int):
    """Make the run raise :class:`Interrupted` once the checkpoint of ``stage``'s ``epoch`` is written; returns
    the real ``Checkpointer.epoch_done``."""
    from graftkit.training import checkpoint

    real = checkpoint.Checkpointer.epoch_done

    def dying(self, at_stage, at_epoch, *args, **kwargs):
        real(self, at_stage, at_epoch, *args, **kwargs)
        if (at_stage, at_epoch) == (stage, epoch):
            raise Interrupted

    monkeypatch.setattr(checkpoint.Checkpointer, "epoch_done", dying)
    return real


def _recording(monkeypatch):
    """The optimizers fine-tuning makes, as they are made."""
    made = []
    real = schedules.fine_tune_optimizer
    monkeypatch.setattr(schedules, "fine_tune_optimizer", lambda *a, **k: made.append(real(*a, **k)) or made[-1])
    return made


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("layer_rates")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    return root


def _train(root, out, **more):
    from graftkit.api import train

    log.set_quiet(True)
    try:
        return train(root / "images", base=str(root / "personal.keras"), out=str(root / out), **OPTIONS, **more)
    finally:
        log.set_quiet(False)


def _history(run) -> dict:
    return json.loads((run.run_dir / "history.json").read_text())["fine_tune"]


def _check_fine_tuning(optimizer, train_images):
    steps = EPOCHS * math.ceil(train_images / OPTIONS["batch_size"])
    assert isinstance(optimizer, GroupedAdamW)
    assert int(optimizer.iterations.numpy()) == steps  # on the boundary cache: every step the schedule counted
    assert float(optimizer.learning_rate_schedule(steps)) < 1e-12  # it ends at 0 on the last step
    factors = {v.path: optimizer.rate_factor(v) for v in optimizer._trainable_variables}
    assert {p: f for p, f in factors.items() if p.startswith("c2/")} == {"c2/kernel": DECAY, "c2/bias": DECAY}
    assert {f for p, f in factors.items() if not p.startswith("c2/")} == {1.0}  # the head


def test_lr_decay_and_cosine_end_to_end_on_the_boundary_cache(tiny, monkeypatch, capsys):
    made = _recording(monkeypatch)
    log.set_quiet(False)
    from graftkit.api import train

    run = train(tiny / "images", base=str(tiny / "personal.keras"), out=str(tiny / "full"), **OPTIONS)
    err = capsys.readouterr().err
    assert "fine-tuning on the boundary cache" in err
    assert "layer-wise learning rates (--lr-decay 0.5; the base in 2 groups" in err and "('c2'...) 0.0025" in err
    stage = run.metrics["stages"]["fine_tune"]
    assert stage["trainable_params"] > 0 and len(_history(run)["loss"]) == EPOCHS and stage["kept"]
    assert len(made) == 1
    _check_fine_tuning(made[0], run.metrics["train_images"])
    personal = keras.models.load_model(tiny / "personal.keras")
    trained = run.model.get_layer("base").get_layer("c2").kernel.numpy()
    assert not np.allclose(trained, personal.get_layer("c2").kernel.numpy())  # the fine-tune stage trained
    config = zipfile.ZipFile(run.run_dir / "model.keras").read("config.json").decode()
    assert "Grouped" not in config and "optimizer" not in config  # the model file is plain Keras
    assert json.loads((run.run_dir / "config.json").read_text())["lr_decay"] == DECAY


def test_an_interrupted_run_resumes_its_rates_and_schedule(tiny, monkeypatch):
    from graftkit.api import resume
    from graftkit.training import checkpoint

    real = interrupt_at(monkeypatch, "fine_tune", 1)
    with pytest.raises(Interrupted):
        _train(tiny, "interrupted")
    trained = []

    def counting(self, stage, epoch, *args, **kwargs):
        trained.append((stage, epoch))
        real(self, stage, epoch, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpointer, "epoch_done", counting)
    made = _recording(monkeypatch)
    log.set_quiet(True)
    try:
        run = resume(tiny / "interrupted")
    finally:
        log.set_quiet(False)
    assert trained == [("fine_tune", 2)] and len(_history(run)["loss"]) == EPOCHS
    _check_fine_tuning(made[0], run.metrics["train_images"])  # one epoch here: its steps went on from the checkpoint's


def test_a_text_encoders_blocks_get_their_rates_under_its_warm_up_and_cosine(tmp_path, monkeypatch, capsys):
    from graftkit.api import train
    from tests.helpers import write_tiny_encoder

    rng = np.random.default_rng(0)
    words = {"cat": "the cat sat on a mat".split(), "dog": "dog ran far away quick brown fox".split()}
    rows = [(label, " ".join(rng.choice(w, size=5))) for label, w in words.items() for _ in range(16)]
    (tmp_path / "texts.tsv").write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    made = _recording(monkeypatch)
    log.set_quiet(False)
    run = train(tmp_path / "texts.tsv", base=str(write_tiny_encoder(tmp_path / "encoder")), epochs=3,
                fine_tune_epochs=1, lr=0.01, batch_size=8, freeze="last:2", lr_decay=DECAY, out=str(tmp_path / "run"))
    assert "the base in 3 groups, the blocks it names" in capsys.readouterr().err
    optimizer = made[0]
    assert isinstance(optimizer, GroupedAdamW) and hasattr(optimizer, "learning_rate_schedule")  # auto: cosine
    factors = {v.path: optimizer.rate_factor(v) for v in optimizer._trainable_variables}
    assert {f for p, f in factors.items() if p.startswith("block_1_")} == {DECAY}
    assert {f for p, f in factors.items() if p.startswith("block_0_")} == {DECAY ** 2}
    assert not [p for p in factors if p.startswith("embeddings")]  # frozen
    assert {f for p, f in factors.items() if not p.startswith("block_")} == {1.0}  # the head
    assert run.metrics["stages"]["fine_tune"]["trainable_params"] > 0


def test_a_fine_tune_lr_range_puts_the_lowest_trained_group_at_low(tiny, monkeypatch, capsys):
    """``--fine-tune-lr LOW:HIGH`` (fastai's slice): the head at HIGH, the lowest trained group at LOW."""
    made = _recording(monkeypatch)
    log.set_quiet(False)
    from graftkit.api import train

    options = {**OPTIONS, "lr_decay": 1.0, "fine_tune_lr": (1e-4, 1e-3), "fine_tune_epochs": 1}
    run = train(tiny / "images", base=str(tiny / "personal.keras"), out=str(tiny / "range"), **options)
    err = capsys.readouterr().err
    assert "layer-wise learning rates (--fine-tune-lr 0.0001:0.001: 0.1 a group" in err, err
    optimizer = made[0]
    factors = {v.path: optimizer.rate_factor(v) for v in optimizer._trainable_variables}
    assert [round(f, 9) for p, f in factors.items() if p.startswith("c2/")] == [0.1, 0.1]  # LOW / HIGH
    assert {f for p, f in factors.items() if not p.startswith("c2/")} == {1.0}
    steps = math.ceil(run.metrics["train_images"] / OPTIONS["batch_size"])
    assert max(float(optimizer.learning_rate_schedule(s)) for s in range(steps + 1)) == pytest.approx(1e-3)
    assert json.loads((run.run_dir / "config.json").read_text())["fine_tune_lr"] == "0.0001:0.001"


def test_a_bad_fine_tune_lr_range_is_a_one_line_error(tmp_path, capsys):
    for value in ("1e-3:1e-4", "0:1e-4", "a:b"):
        with pytest.raises(GraftError, match=r"^--fine-tune-lr .* use .* LOW:HIGH with 0 < LOW < HIGH$"):
            TrainConfig(data=str(tmp_path), base="mobilenet_v2", fine_tune_lr=value).validated()
    with pytest.raises(GraftError, match="^--fine-tune-lr 1e-05:0.0001 sets each layer group's rate itself"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", fine_tune_lr="1e-5:1e-4", lr_decay=0.5).validated()
    assert quiet_main(["train", str(tmp_path), "--base", "mobilenet_v2", "--fine-tune-lr", "1e-3:1e-4"]) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--fine-tune-lr 0.001:0.0001" in error, error
