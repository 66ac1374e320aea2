"""The results side of each task on tiny models and synthetic arrays (no training): a multi-label model's
thresholds and a regression's values carried from the run folder through predict, evaluate, the reports and
the export check."""

import json

import numpy as np
import pytest

from graftkit.results.evaluate import score
from graftkit.results.export import REGRESSION_TOLERANCE, compare
from graftkit.results.predict import predict_arrays
from graftkit.results.trained import Run


def tiny_model(units: int, activation: str | None):
    """8 x 8 RGB in, the mean colour through a fixed Dense layer out: outputs known from the pixels."""
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    x = keras.layers.Rescaling(1 / 255)(x)
    outputs = keras.layers.Dense(units, activation=activation, kernel_initializer="identity" if units == 3 else
                                 "ones", bias_initializer="zeros")(x)
    return keras.Model(inputs, outputs)


def coloured(*colours):
    return np.stack([np.full((12, 12, 3), colour, "float32") for colour in colours])


def test_predict_arrays_multilabel_at_thresholds_and_regression_values():
    model = tiny_model(3, "sigmoid")  # sigmoid(mean channel / 255): 0.5 .. 0.73
    pixels = coloured((255, 0, 0), (0, 255, 255), (0, 0, 0))
    rows = list(predict_arrays(model, pixels, ["red", "green", "blue"], task="multilabel",
                               thresholds={"red": 0.6, "green": 0.6, "blue": 0.6}))
    assert [r["label"] for r in rows] == ["red", "green;blue", ""]
    assert rows[0]["labels"] == [("red", pytest.approx(1 / (1 + np.exp(-1)), abs=1e-4))]
    rows = list(predict_arrays(model, pixels, ["red", "green", "blue"], task="multilabel"))  # 0.5 each
    assert [r["label"] for r in rows] == ["red;green;blue"] * 3  # sigmoid(0) = 0.5 is at the threshold
    regression = tiny_model(1, None)  # sum of the mean channels / 255
    values = list(predict_arrays(regression, pixels, ["brightness"], task="regression"))
    assert [r["value"] for r in values] == pytest.approx([1.0, 2.0, 0.0], abs=1e-5)
    assert set(values[0]) == {"path", "value"}


def test_run_knows_its_task_and_thresholds(tmp_path):
    model = tiny_model(3, "sigmoid")
    metrics = {"task": {"kind": "multilabel", "mean": 0.0, "scale": 1.0},
               "thresholds": {"red": 0.6, "green": 0.6, "blue": 0.6}}
    run = Run(model=model, class_names=["red", "green", "blue"], metrics=metrics)
    assert run.task == "multilabel" and run.thresholds == metrics["thresholds"]
    assert [r["label"] for r in run.predict(coloured((255, 0, 0), (0, 0, 0)))] == ["red", ""]
    assert Run(model=model, class_names=["a", "b", "c"]).task == "single"  # a run from before tasks
    assert Run(model=model, class_names=["a", "b", "c"]).thresholds is None
    regression = Run(model=tiny_model(1, None), class_names=["brightness"],
                     metrics={"task": {"kind": "regression", "mean": 1.0, "scale": 0.5}})
    assert regression.task == "regression" and regression.predict(coloured((255, 255, 0)))[0]["value"] == \
        pytest.approx(2.0, abs=1e-5)


def test_export_check_per_task():
    model = tiny_model(3, "sigmoid")
    batch = coloured((255, 0, 0), (0, 255, 255), (0, 0, 0), (76, 76, 76))
    batch = np.stack([np.resize(b, (8, 8, 3)) for b in batch])
    thresholds = np.array([0.6, 0.6, 0.6], "float32")

    def nudged(x):  # every output 0.01 higher: the grey image's 0.574 stays under the thresholds
        return model(x).numpy() + 0.01

    check = compare(model, nudged, [batch], min_agreement=1, max_allowed=0.05, task="multilabel",
                    thresholds=thresholds)
    assert check.passed and check.agreement == 1 and check.max_difference == pytest.approx(0.01, abs=1e-5)
    flipping = compare(model, lambda x: model(x).numpy() + 0.06, [batch], min_agreement=1, task="multilabel",
                       thresholds=thresholds)
    # the grey image's 0.574 + 0.06 crosses 0.6; the black one's 0.5 + 0.06 does not
    assert flipping.agreement == 0.75 and not flipping.passed and "label-set agreement" in flipping.describe()
    regression = tiny_model(1, None)
    off = compare(regression, lambda x: regression(x).numpy() + 0.04, [batch], min_agreement=1, max_allowed=0.05,
                  task="regression", scale=0.5)
    assert off.max_difference == pytest.approx(0.08, abs=1e-4)  # 0.04 in units of a 0.5 standard deviation
    assert off.agreement == 1 and not off.passed and "standard deviations" in off.describe()
    far = compare(regression, lambda x: regression(x).numpy() + REGRESSION_TOLERANCE * 2, [batch],
                  min_agreement=0.9, task="regression")
    assert far.agreement == 0 and not far.passed


def test_evaluation_report_of_each_task_writes_its_picture(tmp_path):
    from graftkit.results.report import write_evaluation_report

    rng = np.random.default_rng(0)
    labels = (rng.random((30, 4)) < 0.5).astype("float32")
    outputs = np.clip(labels * 0.4 + rng.random((30, 4)) * 0.6, 0, 1)
    s = score(labels, outputs, list("abcd"), "multilabel")
    path = write_evaluation_report(tmp_path / "multi.html", scores=s, mistakes=[], data="cells",
                                   labels=labels, outputs=outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi-pr_curves.png", "multi.html", "multi.json"]
    assert json.loads((tmp_path / "multi.json").read_text())["mean_average_precision"] == s["mean_average_precision"]
    assert 'id="precision-recall-curves"' in path.read_text()
    targets = rng.random(30)
    s = score(targets, targets[:, None] + 0.1, ["defect"], "regression")
    write_evaluation_report(tmp_path / "reg.html", scores=s, mistakes=[], data="cells", labels=targets,
                            outputs=targets[:, None] + 0.1)
    assert {"reg-regression.png", "reg.html", "reg.json"} <= {p.name for p in tmp_path.iterdir()}
    bare = write_evaluation_report(tmp_path / "bare.html", scores=s, mistakes=[], data="cells")
    assert not (tmp_path / "bare-regression.png").exists() and 'id="mae"' in bare.read_text()
