"""Recipe options of issue 16: label smoothing, the fine-tuning schedule, the L-BFGS head's path."""

import json

import numpy as np
import pytest

from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.model.head import build_head
from graftkit.model.task import Task
from tests.helpers import train_tiny_run


def test_label_smoothing_is_kerass_smoothed_cross_entropy_in_the_fused_head_loop():
    import keras

    rng = np.random.default_rng(0)
    y = np.arange(40) % 4
    p = rng.dirichlet(np.ones(4), size=40).astype("float32")
    smoothed = np.asarray(Task(label_smoothing=0.2).per_example_loss(y, p))
    reference = keras.losses.CategoricalCrossentropy(label_smoothing=0.2, reduction=None)(np.eye(4)[y], p)
    np.testing.assert_allclose(smoothed, np.asarray(reference), rtol=1e-5)
    assert np.all(smoothed != np.asarray(Task().per_example_loss(y, p)))
    multi = np.asarray(Task("multilabel", label_smoothing=0.2).per_example_loss(np.eye(4)[y], p))
    np.testing.assert_allclose(multi, np.asarray(keras.losses.binary_crossentropy(np.eye(4)[y], p,
                                                                                  label_smoothing=0.2)), rtol=1e-5)


def test_a_smoothed_head_trained_by_adam_is_less_confident():
    from graftkit.model.infer import predict_features
    from graftkit.training.head_stage import fit_on_features

    rng = np.random.default_rng(1)
    y = np.arange(60) % 3
    x = (np.eye(3)[y] * 4 + rng.normal(size=(60, 3))).astype("float32")
    confidences = []
    for smoothing in (0.0, 0.3):
        head = build_head((3,), 3, dropout=0.0)
        fit_on_features("head", head, x, y, x, y, batch_size=10, epochs=60, learning_rate=0.05, patience=60,
                        task=Task(label_smoothing=smoothing))
        confidences.append(predict_features(head, x).max(axis=1).mean())
    assert confidences[1] < confidences[0] - 0.05


def test_options_are_checked_once(tmp_path):
    with pytest.raises(GraftError, match="--label-smoothing 1.0 is out of range"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", label_smoothing=1.0).validated()
    with pytest.raises(GraftError, match="--task regression"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", label_smoothing=0.1, task="regression").validated()
    with pytest.raises(GraftError, match="--schedule 'linear' is not one of auto, constant, cosine"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", schedule="linear").validated()


def test_cosine_schedule_and_smoothing_end_to_end(tmp_path, monkeypatch):
    """An image run with --schedule cosine fine-tunes with AdamW's warm-up and cosine decay over all its steps."""
    from graftkit.training import schedules

    made = []
    real = schedules.warmup_cosine_adamw
    monkeypatch.setattr(schedules, "warmup_cosine_adamw",
                        lambda lr, steps: made.append((lr, steps)) or real(lr, steps))
    run_dir = train_tiny_run(tmp_path, schedule="cosine", label_smoothing=0.1)
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["schedule"] == "cosine" and metrics["task"]["label_smoothing"] == 0.1
    train_images = metrics["train_images"]
    assert made == [(config["fine_tune_lr"], -(-train_images // 8))]  # 1 epoch of batches of 8
    assert "fine_tune" in metrics["stages"]


def test_the_l_bfgs_path_stops_once_the_validation_loss_has_risen_twice(capsys):
    from graftkit import log
    from graftkit.training.linear_head import fit_linear_head

    rng = np.random.default_rng(2)
    y = np.arange(80) % 2
    x = (rng.normal(size=(80, 60)) + y[:, None] * 0.3).astype("float32")  # weak signal, many dimensions
    xv = (rng.normal(size=(80, 60)) + y[:, None] * 0.3).astype("float32")
    log.set_quiet(False)
    fit_linear_head(build_head((60,), 2), x, y, xv, y, grid=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0))
    line = [entry for entry in capsys.readouterr().err.splitlines() if "kept C" in entry][0]
    assert "100:" not in line and line.count("val loss") < 6


def test_an_l_bfgs_head_shows_in_tensorboard(tmp_path):
    run_dir = train_tiny_run(tmp_path, head_solver="lbfgs", tensorboard=True)
    for part in ("train", "validation"):
        assert list((run_dir / "logs" / "head" / part).glob("events.out.tfevents.*")), part
    assert json.loads((run_dir / "metrics.json").read_text())["stages"]["head"]["best_epoch"] == 1
