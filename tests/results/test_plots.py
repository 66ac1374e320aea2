"""The run's pictures: training curves, a confusion matrix that stays readable for any number of classes,
precision-recall curves of many labels and a regression's predicted-against-true plot, all under 2,000 px."""

import numpy as np
from PIL import Image

from graftkit.results.plots import (
    PLOT_CLASSES,
    _logged_metric,
    _most_confused,
    plot_confusion,
    plot_curves,
    plot_pr_curves,
    plot_regression,
    plot_scores,
)
from tests.results.synthetic import many_class_scores


def test_curves_png(tmp_path):
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]}
    path = plot_curves([{"name": "head", "history": history}, {"name": "fine_tune", "history": history}],
                       tmp_path / "curves.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1000, 400)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left beside it


def test_confusion_of_few_classes_is_small(tmp_path):
    path = plot_confusion([[3, 1, 0], [0, 4, 1], [2, 0, 5]], ["ant", "bee", "cicada"], tmp_path / "c.png")
    with Image.open(path) as image:
        assert image.size == (400, 400)


def test_confusion_of_101_classes_stays_under_2000_px(tmp_path):
    s = many_class_scores()
    path = plot_confusion(s["confusion_matrix"], s["class_names"], tmp_path / "confusion.png")
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert 1000 <= width <= 2000 and 1000 <= height <= 2000  # was 6260 x 6260
    assert pixels.std() > 10  # something was drawn


def test_most_confused_classes_are_those_of_the_largest_mistakes():
    matrix = np.diag(np.full(100, 10))
    matrix[70, 3] = 9
    matrix[99, 98] = 7
    matrix[41, 42] = 1
    shown = _most_confused(matrix, PLOT_CLASSES)
    assert len(shown) == PLOT_CLASSES and list(shown) == sorted(shown)
    assert {3, 70, 98, 99, 41, 42} <= set(shown.tolist())
    assert list(_most_confused(matrix, 4)) == [3, 70, 98, 99]


def test_curves_of_a_regression_show_mae(tmp_path):
    history = {"loss": [0.9, 0.4], "val_loss": [1.0, 0.6], "mae": [0.5, 0.3], "val_mae": [0.6, 0.4],
               "learning_rate": [1e-3, 1e-3]}
    assert _logged_metric([history]) == "mae"
    assert _logged_metric([{"loss": [1.0], "accuracy": [0.5], "mae": [0.1]}]) == "accuracy"
    assert _logged_metric([{"loss": [1.0]}]) is None
    with Image.open(plot_curves([{"name": "head", "history": history}], tmp_path / "c.png")) as image:
        assert image.size == (1000, 400)


def drawn_colours(path) -> int:
    """How many distinct strong colours a picture holds (each curve has its own)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    strong = pixels[(pixels.max(axis=1) - pixels.min(axis=1)) > 60]
    return len({tuple(p) for p in strong // 16})


def test_pr_curves_of_many_labels_stay_small(tmp_path):
    rng = np.random.default_rng(0)
    frequency = np.linspace(0.02, 0.6, 50)
    labels = rng.random((400, 50)) < frequency
    outputs = np.clip(labels * 0.4 + rng.random((400, 50)) * 0.6, 0, 1)
    names = [f"label_with_a_long_name_{i:02d}" for i in range(50)]
    path = plot_pr_curves(labels, outputs, names, tmp_path / "pr.png")
    with Image.open(path) as image:
        assert image.size == (1100, 650) and max(image.size) <= 2000
    assert drawn_colours(path) > 10  # curves were drawn
    few = plot_pr_curves(labels[:, :2], outputs[:, :2], names[:2], tmp_path / "few.png")
    assert drawn_colours(few) < drawn_colours(path)
    empty = plot_pr_curves(np.zeros((4, 2)), rng.random((4, 2)), ["a", "b"], tmp_path / "empty.png")
    assert empty.is_file()  # no label with a positive example: a picture that says so


def test_regression_plot_has_two_panels(tmp_path):
    rng = np.random.default_rng(0)
    targets = rng.choice([0, 1 / 3, 2 / 3, 1], 300)
    path = plot_regression(targets, targets + rng.normal(0, 0.1, 300), tmp_path / "r.png", name="defect probability")
    with Image.open(path) as image:
        assert image.size == (1100, 500)
        pixels = np.asarray(image.convert("L"))
    assert pixels[:, :550].std() > 10 and pixels[:, 550:].std() > 10  # both panels drawn


def test_plot_scores_draws_the_task_picture(tmp_path):
    single = {"task": {"kind": "single"}, "confusion_matrix": [[1, 0], [0, 1]], "class_names": ["a", "b"]}
    assert plot_scores(single, None, None, tmp_path) == {"Confusion matrix": tmp_path / "confusion.png"}
    multi = {"task": "multilabel", "class_names": ["a", "b"]}
    drawn = plot_scores(multi, np.eye(2), np.eye(2) * 0.8, f"{tmp_path}/eval-")
    assert drawn == {"Precision-recall curves": tmp_path / "eval-pr_curves.png"} and all(
        p.is_file() for p in drawn.values())
    regression = {"task": {"kind": "regression", "mean": 0.0, "scale": 1.0}, "class_names": ["t"]}
    assert list(plot_scores(regression, [1.0, 2.0], [[1.0], [2.5]], tmp_path)) == ["Predicted and true values"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "confusion.png", "eval-pr_curves.png", "regression.png"]
