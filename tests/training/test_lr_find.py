"""The learning-rate finder: sweeps that leave no trace, their suggestion, `graft lr-find` and `--lr auto`."""

from __future__ import annotations

import json
import math
import random

import keras
import numpy as np
import pytest

from graftkit import api
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.training.lr_find import END, START, find_lr, suggest, sweep_rates
from tests.helpers import quiet_main, tiny_cnn


def toy_problem(seed: int = 0, n: int = 96):
    """Two overlapping Gaussian blobs in 8 dimensions: a logistic regression learns most of them in a few steps,
    and overshoots into confident mistakes at a rate far too high."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype("int32")
    x = (rng.normal(size=(n, 8)) + 0.4 * y[:, None]).astype("float32")
    return x, y


def batches_of(x, y, size: int = 16):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(x), size)]


def small_model(seed: int = 0):
    """Dense, BatchNorm (its statistics move in training), seeded Dropout (its seed state moves), softmax."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                             keras.layers.BatchNormalization(), keras.layers.Dropout(0.3, seed=seed),
                             keras.layers.Dense(2, activation="softmax")])


def test_sweep_restores_weights_optimizer_flags_and_randomness_bit_for_bit():
    x, y = toy_problem()
    model = small_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # the optimizer has state of its own now
    model.layers[0].trainable = False  # a flag the sweep must leave as it found it
    variables = [v.numpy().copy() for v in model.variables]
    assert any("seed_generator" in v.path for v in model.variables)  # dropout's seed state is among them
    slots = [v.numpy().copy() for v in model.optimizer.variables]
    flags = [layer.trainable for layer in model.layers]
    python_state, numpy_state = random.getstate(), np.random.get_state()

    model.layers[0].trainable = True
    sweep = find_lr(model, batches_of(x, y), steps=40)
    model.layers[0].trainable = False  # (the sweep trained every layer; put the test's own change back)

    assert sweep.steps > 5
    for before, variable in zip(variables, model.variables):
        assert before.dtype == variable.numpy().dtype and np.array_equal(before, variable.numpy()), variable.path
    for before, variable in zip(slots, model.optimizer.variables):
        assert np.array_equal(before, variable.numpy()), variable.path
    assert [layer.trainable for layer in model.layers] == flags
    assert random.getstate() == python_state
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))


def test_sweep_resets_trainable_flags_it_changed():
    x, y = toy_problem()
    model = small_model()
    model.layers[0].trainable = False
    from graftkit.training.lr_find import left_as_it_was

    with left_as_it_was(model):
        for layer in model.layers:
            layer.trainable = True
        find_lr(model, batches_of(x, y), steps=10)
    assert [layer.trainable for layer in model.layers] == [False, True, True, True]


def test_training_at_the_found_rate_equals_training_at_that_rate_given():
    x, y = toy_problem()

    def fit(model, rate):
        model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=True)
        return model.get_weights()

    swept = small_model()
    rate = find_lr(swept, batches_of(x, y), steps=60).suggestion
    after_sweep = fit(swept, rate)
    given = fit(small_model(), rate)
    for a, b in zip(after_sweep, given):
        assert np.array_equal(a, b)


def test_toy_curve_falls_then_rises_and_the_suggestion_lies_on_the_way_down():
    x, y = toy_problem()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    sweep = find_lr(model, batches_of(x, y), steps=100)
    losses = [math.inf if v is None else v for v in sweep.losses]
    low = int(np.argmin(losses))
    assert 0 < low < len(losses) - 1, losses
    assert losses[0] > losses[low] * 1.2 and losses[-1] > losses[low] * 2  # down, then up
    assert sweep.stopped == "diverged" and sweep.steps < 100  # stopped early, once the loss had blown up
    assert START <= sweep.lrs[0] <= sweep.suggestion <= sweep.lrs[-1] <= END
    assert sweep.suggestion <= sweep.lrs[low]  # valley: on the way down to the least loss
    assert sweep.rule == "valley"


def test_a_sweep_from_a_near_perfect_fit_is_not_stopped_by_its_first_noisy_step():
    # An L-BFGS head that already fits its batches starts fine-tuning's sweep at a loss near 0, where 4 times
    # the minimum is noise: such a sweep stopped at its second step and suggested 1.89e-7.
    rng = np.random.default_rng(0)
    y = (np.arange(96) % 2).astype("int32")
    x = (rng.normal(size=(96, 8)) + 8.0 * y[:, None] * np.eye(8)[0]).astype("float32")  # apart along x0
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2, activation="softmax")])
    kernel = np.zeros((8, 2), "float32")
    kernel[0] = [-2.0, 2.0]
    model.layers[0].set_weights([kernel, np.array([8.0, -8.0], "float32")])  # the boundary at x0 = 4
    start_loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, model.predict(x, verbose=0))))
    sweep = find_lr(model, batches_of(x, y), steps=60, rule="rise/10")
    assert start_loss < 0.05 and sweep.steps > 20, (start_loss, sweep.steps)
    assert sweep.suggestion >= 1e-5


def test_suggestion_is_clamped_to_the_sane_range_and_the_sweep():
    lrs = list(sweep_rates(1e-7, 10.0, 60))
    rising = [1.0 + i for i in range(60)]  # never falls: min/10 of the first rate, then clamped up
    assert suggest(lrs, rising) == (1e-6, "min/10")
    falling = [100.0 - i for i in range(60)]  # falls all the way: the valley's rate, at most 0.1
    rate, rule = suggest(lrs, falling)
    assert rule == "valley" and 1e-6 <= rate <= 0.1


def test_lr_option_takes_a_rate_or_auto_and_nothing_else(tmp_path):
    config = TrainConfig(data=str(tmp_path), base="resnet50", lr="auto").validated()
    assert config.lr == "auto" and config.fine_tune_lr is None  # set once the head's rate is found
    assert TrainConfig(data=str(tmp_path), base="resnet50", lr=0.01).validated().fine_tune_lr == 0.001
    with pytest.raises(GraftError, match=r"^--lr fast is not understood: use a positive learning rate"):
        TrainConfig(data=str(tmp_path), base="resnet50", lr="fast").validated()
    with pytest.raises(GraftError, match=r"^--fine-tune-lr -1 is out of range"):
        TrainConfig(data=str(tmp_path), base="resnet50", fine_tune_lr=-1).validated()


def test_bad_lr_on_the_command_line_is_one_line(tiny_images, capsys):
    from graftkit.cli import main

    code = main(["train", str(tiny_images), "--lr", "fast"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0, err
    assert err.startswith("graft: error: --lr fast is not understood") and "or auto" in err


def test_lr_auto_runs_each_sweep_and_equals_a_run_at_the_found_rates(tiny_images, tmp_path):
    personal = tiny_cnn(tmp_path / "personal.keras")
    common = dict(base=str(personal), epochs=3, fine_tune_epochs=2, batch_size=8, freeze="last:2",
                  head_solver="adam", patience=5)
    auto = api.train(tiny_images, lr="auto", fine_tune_lr="auto", out=str(tmp_path / "auto"), **common)
    folder = tmp_path / "auto"
    metrics = json.loads((folder / "metrics.json").read_text())
    rates = metrics["learning_rates"]
    head, fine_tune = rates["head"]["lr"], rates["fine_tune"]["lr"]
    assert rates["head"]["how"].startswith("found by lr-find") and rates["fine_tune"]["how"].startswith("found")
    saved = json.loads((folder / "lr_find.json").read_text())["sweeps"]
    assert saved["head"]["suggestion"] == head and saved["fine_tune"]["suggestion"] == fine_tune
    assert metrics["lr_find"]["plot"] == "lr_find.png" and (folder / "lr_find.png").stat().st_size > 0
    assert json.loads((folder / "config.json").read_text())["lr"] == "auto"  # the options as given
    report = (folder / "report.html").read_text()
    assert "Learning rate finder" in report and f"{head:g}" in report
    assert auto.config["lr"] == "auto"

    given = api.train(tiny_images, lr=head, fine_tune_lr=fine_tune, out=str(tmp_path / "given"), **common)
    assert "learning_rates" not in given.metrics
    assert [s.history for s in auto.stages] == [s.history for s in given.stages]
    for a, b in zip(auto.model.get_weights(), given.model.get_weights()):
        assert np.array_equal(a, b)


def test_cli_lr_auto_with_an_lbfgs_head_records_the_rates_used(tiny_images, tmp_path):
    personal = tiny_cnn(tmp_path / "personal.keras")
    run_dir = tmp_path / "run"
    code = quiet_main(["train", str(tiny_images), "--base", str(personal), "--epochs", "2", "--fine-tune-epochs",
                       "1", "--batch-size", "8", "--freeze", "last:2", "--lr", "auto", "--out", str(run_dir)])
    assert code == 0
    rates = json.loads((run_dir / "metrics.json").read_text())["learning_rates"]
    assert rates["head"]["lr"] is None and "L-BFGS" in rates["head"]["how"]  # no rate to find: no sweep
    assert rates["fine_tune"]["lr"] == 1e-4  # a tenth of the default, as without --lr auto
    assert not (run_dir / "lr_find.png").exists()


def test_graft_lr_find_prints_two_rates_and_writes_the_curves(tiny_images, tmp_path, capsys):
    from graftkit.cli import main

    personal = tiny_cnn(tmp_path / "personal.keras")
    out = tmp_path / "found"
    code = main(["lr-find", str(tiny_images), "--base", str(personal), "--batch-size", "8", "--freeze", "last:2",
                 "--epochs", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("--lr ") and lines[1].startswith("--fine-tune-lr "), lines
    head, fine_tune = (float(line.split()[1]) for line in lines)
    assert 1e-6 <= head <= 0.1 and 1e-6 <= fine_tune <= 0.1
    assert (out / "lr_find.png").stat().st_size > 0 and str(out / "lr_find.png") in captured.err
    saved = json.loads((out / "lr_find.json").read_text())["sweeps"]
    assert saved["head"]["suggestion"] == head and saved["fine_tune"]["suggestion"] == fine_tune
    assert not (out / "model.keras").exists() and not (out / "config.json").exists()  # not a run


def test_a_resumed_run_uses_the_rates_found_before_it_was_interrupted(tiny_images, tmp_path, monkeypatch):
    from graftkit.training import checkpoint, lr_find

    personal = tiny_cnn(tmp_path / "personal.keras")
    folder = tmp_path / "run"
    record = checkpoint.Checkpointer.epoch_done

    def interrupted(self, stage, epoch, *args, **kwargs):
        if stage == "fine_tune":
            raise KeyboardInterrupt
        record(self, stage, epoch, *args, **kwargs)

    monkeypatch.setattr(checkpoint.Checkpointer, "epoch_done", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=1, batch_size=8, freeze="last:2",
                  head_solver="adam", lr="auto", fine_tune_lr="auto", out=str(folder))
    found = json.loads((folder / "lr_find.json").read_text())["learning_rates"]
    assert set(found) == {"head", "fine_tune"}
    monkeypatch.setattr(checkpoint.Checkpointer, "epoch_done", record)

    def no_sweep(*args, **kwargs):
        raise AssertionError("a resumed run swept again")

    monkeypatch.setattr(lr_find, "head_sweep", no_sweep)
    monkeypatch.setattr(lr_find, "fine_tune_sweep", no_sweep)
    run = api.resume(folder)
    assert run.metrics["learning_rates"] == found and set(run.metrics["lr_find"]) == {"head", "fine_tune", "plot"}


def test_fine_tunings_flat_curve_gets_a_tenth_of_where_the_loss_climbs():
    """From a trained head the curve is noise until it climbs: its longest decreasing run is no valley."""
    lrs = list(sweep_rates(1e-7, 10.0, 30))[:17]  # fine-tuning's 30-step sweep on hymenoptera, diverged at step 17
    noisy = [0.091, 0.079, 0.114, 0.103, 0.088, 0.093, 0.094, 0.085, 0.091, 0.082, 0.098, 0.096, 0.096, 0.094,
             0.089, 0.120, 0.416]  # the smoothed losses graft lr-find recorded on hymenoptera
    assert suggest(lrs, noisy)[0] < 1e-5  # the valley rule: deep in the noise
    rate, rule = suggest(lrs, noisy, rule="rise/10")
    assert rule == "rise/10" and rate == pytest.approx(lrs[15] / 10, rel=1e-2)  # climbs from 1.4e-3
    assert suggest(lrs, [1.0 - 0.01 * i for i in range(17)], rule="rise/10")[1] == "valley"  # never climbs
