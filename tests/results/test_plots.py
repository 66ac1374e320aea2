"""The run's pictures: training curves and a confusion matrix that stays readable for any number of classes."""

import numpy as np
from PIL import Image

from graftkit.results.plots import (
    PLOT_CLASSES,
    _most_confused,
    plot_confusion,
    plot_curves,
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
