"""The task's loss: label smoothing against the formula worked by hand, and the unsmoothed loss unchanged."""

import numpy as np
import pytest

from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.model.task import Task

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], "float32")
Y = np.array([0, 2])


def test_smoothed_cross_entropy_is_the_hand_worked_value():
    """a = 0.1 over K = 3 classes: the targets are 0.9 + 0.1/3 for the true class and 0.1/3 for the others."""
    a, k = 0.1, 3
    targets = np.eye(k)[Y] * (1 - a) + a / k
    expected = -(targets * np.log(P)).sum(axis=1)
    loss = np.asarray(Task(label_smoothing=a).per_example_loss(Y, P))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert loss[0] == pytest.approx(-(0.9 + 0.1 / 3) * np.log(0.7) - 0.1 / 3 * np.log(0.2 * 0.1), rel=1e-5)


def test_no_smoothing_is_the_sparse_cross_entropy_of_before():
    np.testing.assert_allclose(np.asarray(Task(label_smoothing=0.0).per_example_loss(Y, P)),
                               -np.log(P[np.arange(2), Y]), rtol=1e-5)
    assert Task() == Task(label_smoothing=0.0)


def test_smoothed_binary_cross_entropy_moves_each_label_towards_a_half():
    a = 0.1
    y = np.array([[1.0, 0.0]], "float32")
    p = np.array([[0.8, 0.3]], "float32")
    t = y * (1 - a) + a / 2  # 0.95, 0.05
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)
    np.testing.assert_allclose(np.asarray(Task("multilabel", label_smoothing=a).per_example_loss(y, p)), expected,
                               rtol=1e-5)
    plain = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)
    np.testing.assert_allclose(np.asarray(Task("multilabel").per_example_loss(y, p)), plain, rtol=1e-5)


def test_regression_ignores_smoothing_and_old_task_dicts_still_load():
    assert Task.for_labels("regression", [1.0, 3.0], label_smoothing=0.1).label_smoothing == 0.0
    assert Task.for_labels("single", [0, 1], label_smoothing=0.1).to_dict()["label_smoothing"] == 0.1
    old = {"kind": "multilabel", "mean": 0.0, "scale": 1.0}  # metrics.json of a run from before the option
    assert Task(**old).label_smoothing == 0.0


def test_the_option_is_checked(tmp_path):
    with pytest.raises(GraftError, match=r"--label-smoothing -0.1 is out of range.*\[0, 1\)"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", label_smoothing=-0.1).validated()
    with pytest.raises(GraftError, match="--label-smoothing .* --task regression has none: drop it"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", label_smoothing=0.1, task="regression").validated()
    config = TrainConfig(data=str(tmp_path), base="mobilenet_v2", label_smoothing=0.1, task="auto").validated()
    assert config.label_smoothing == 0.1
    assert TrainConfig.from_options(data=str(tmp_path)).label_smoothing == 0.0  # a config.json without it
