"""Scores of a trained classifier on labelled images."""

from __future__ import annotations

import numpy as np


def score(labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix.

    Example:
        >>> s = score(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
        >>> s["accuracy"], s["confusion_matrix"]
        (0.6667, [[1, 0], [1, 1]])
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    return {
        "accuracy": round(float(np.mean(predicted == labels)), 4),
        "count": int(len(labels)),
        "per_class": {
            name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "class_names": list(class_names),
    }


def evaluate_images(model, image_set, *, batch_size: int = 32) -> tuple[dict, np.ndarray]:
    """Score ``model`` on an :class:`graftkit.data.ImageSet`; returns the scores and the probabilities."""
    from graftkit.data.pipeline import make_dataset
    from graftkit.model.infer import input_size, predict_dataset

    dataset = make_dataset(image_set.paths, image_size=input_size(model), batch_size=batch_size)
    probabilities = predict_dataset(model, dataset)
    return score(image_set.labels, probabilities, image_set.class_names), probabilities


def format_scores(scores: dict) -> str:
    """The scores as a plain-text table, for the terminal."""
    names = scores["class_names"]
    width = max(len(n) for n in names + ["class"])
    lines = [f"accuracy {scores['accuracy']:.4f} on {scores['count']} images", "",
             f"{'class':<{width}}  precision  recall     f1  support"]
    for name in names:
        row = scores["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:5.4f}"
                     f"  {row['support']:7d}")
    cell = max(5, *(len(str(v)) for row in scores["confusion_matrix"] for v in row))
    lines += ["", "confusion matrix (rows: true class, columns: predicted class number)",
              " " * (width + 6) + " ".join(f"{f'[{i}]':>{cell}}" for i in range(len(names)))]
    for i, (name, row) in enumerate(zip(names, scores["confusion_matrix"])):
        lines.append(f"[{i}] {name:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
