"""What training tells the user: one progress style on stderr for both stages, nothing but the result on stdout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from graftkit import log
from graftkit.training.head_stage import fit_on_features
from graftkit.training.stages import fit_stage
from tests.helpers import write_images

EPOCH_LINE = re.compile(r"graft: (head|fine_tune) epoch (\d+)/(\d+): loss [\d.]+, accuracy [\d.]+, "
                        r"val_loss [\d.]+, val_accuracy [\d.]+ \((\d+) images, [\d.]+ images/s, [\d.]+ s\)")
CONTROL = re.compile(r"[\r\x1b]")


def tiny_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])


def tiny_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, 4)).astype("float32"), np.arange(10) % 2


def epoch_lines(err: str) -> list[tuple]:
    return [match.groups() for match in map(EPOCH_LINE.fullmatch, err.splitlines()) if match]


def test_keras_fit_reports_images_within_each_epoch_on_stderr(capsys, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(log, "LINE_EVERY", 0.0)  # a log line at every batch, not every 10 s
    x, y = tiny_data()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    fit_stage("fine_tune", tiny_model(), data, data, epochs=2, learning_rate=1e-2, samples=10)
    out, err = capsys.readouterr()
    assert out == ""  # Keras' own progress bar and epoch lines are off
    assert not CONTROL.search(err)
    assert "graft: fine_tune stage: up to 2 epochs at learning rate 0.01, 10 trainable parameters" in err
    within = re.findall(r"graft: fine_tune epoch 1/2: (\d+)/10 images, [\d.]+ images/s, loss ([\d.]+), \d+ s", err)
    assert [done for done, _ in within] == ["4", "8"]  # images, not batches; the epoch's own line says 10
    assert epoch_lines(err) == [("fine_tune", "1", "2", "10"), ("fine_tune", "2", "2", "10")]


def test_head_on_features_reports_epochs_in_the_same_style(capsys):
    x, y = tiny_data()
    from graftkit.model.head import build_head

    result = fit_on_features("head", build_head((4,), 2), x, y, x, y, batch_size=4, epochs=3, learning_rate=1e-2,
                             patience=5)
    err = capsys.readouterr().err
    assert "graft: head stage: up to 3 epochs at learning rate 0.01, 10 trainable parameters" in err
    assert epoch_lines(err) == [("head", str(epoch), "3", "10") for epoch in (1, 2, 3)]
    assert result.trainable_params == 10 and len(result.history["val_loss"]) == 3


def test_graft_train_prints_only_its_json_line_on_stdout(tmp_path):
    images = write_images(tmp_path / "images", {"red": 12, "green": 12, "blue": 12})
    command = [sys.executable, "-c", "import sys; from graftkit.cli import main; sys.exit(main())", "train",
               str(images), "--base", "mobilenet_v2_0.35", "--weights", "none", "--image-size", "96",
               "--epochs", "2", "--head-solver", "adam", "--fine-tune-epochs", "2", "--batch-size", "8", "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TERM": "xterm"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout[-3000:]
    answer = json.loads(lines[0])
    assert set(answer) == {"run_dir", "task", "accuracy"} and answer["task"] == "single" and Path(answer["run_dir"]).is_dir()
    err = result.stderr
    assert not CONTROL.search(err), "control characters in a non-terminal stderr"
    assert re.search(r"^graft: features: 36/36 images in [\d.]+ s \([\d.]+ images/s\)$", err, re.MULTILINE)
    assert [(stage, epoch) for stage, epoch, _, count in epoch_lines(err) if count == "30"] == [
        ("head", "1"), ("head", "2"), ("fine_tune", "1"), ("fine_tune", "2")]
