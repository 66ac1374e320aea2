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


LINE_WIDTH = 100
"""Longest terminal line :func:`format_scores` writes."""


def top_confusions(scores: dict, limit: int = 20) -> list[dict]:
    """The most frequent mistakes: which true class was taken for which, most often first.

    Args:
        scores: :func:`score` output.
        limit: most pairs returned.

    Returns:
        Dicts with ``true``, ``predicted``, ``count`` and ``share`` (of the true class's images).

    Example:
        >>> s = score(np.array([0, 0, 0, 1]), np.array([[.2, .8], [.3, .7], [.9, .1], [.1, .9]]), ["ant", "bee"])
        >>> top_confusions(s)
        [{'true': 'ant', 'predicted': 'bee', 'count': 2, 'share': 0.6667}]
    """
    matrix = np.asarray(scores["confusion_matrix"], dtype=np.int64).reshape(len(scores["class_names"]), -1)
    names = scores["class_names"]
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    counts = off[rows, cols]
    shares = counts / matrix.sum(axis=1)[rows]
    order = np.lexsort((cols, rows, -shares, -counts))[:limit]  # most first, then the larger share
    return [{"true": names[rows[i]], "predicted": names[cols[i]], "count": int(counts[i]),
             "share": round(float(shares[i]), 4)} for i in order]


def shorten(name: str, width: int) -> str:
    """``name`` cut to ``width`` characters in the middle, where an ellipsis stands for the cut.

    The start and the end stay, so names that differ only in their end remain apart.

    Example:
        >>> shorten("american_staffordshire_terrier_2", 16)
        'american…rrier_2'
    """
    if len(name) <= width:
        return name
    tail = (width - 1) // 2
    return name[:width - 1 - tail] + "…" + name[len(name) - tail:]


def format_scores(scores: dict, *, confusions: int = 20) -> str:
    """The scores as plain text for the terminal, no line longer than :data:`LINE_WIDTH`.

    Accuracy, then one line per class (precision, recall, F1, support), then the confusion
    matrix when its rows fit on a line (a dozen classes or so), otherwise the ``confusions``
    most frequent mistakes. Long class names are shortened with an ellipsis.

    Example:
        >>> s = score(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["ant", "bee"])
        >>> print(format_scores(s))
        accuracy 0.6667 on 3 images
        <BLANKLINE>
        class  precision  recall      f1  support
        ant       0.5000  1.0000  0.6667        1
        bee       1.0000  0.5000  0.6667        2
        <BLANKLINE>
        confusion matrix (rows: true class, columns: predicted class number)
                   [0]   [1]
        [0] ant      1     0
        [1] bee      1     1
    """
    names = scores["class_names"]
    width = min(40, max(len(n) for n in names + ["class"]))
    lines = [f"accuracy {scores['accuracy']:.4f} on {scores['count']} images", "",
             f"{'class':<{width}}  precision  recall      f1  support"]
    for name in names:
        row = scores["per_class"][name]
        lines.append(f"{shorten(name, width):<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:6.4f}  {row['support']:7d}")
    matrix = scores["confusion_matrix"]
    cell = max(5, *(len(str(v)) for row in matrix for v in row))
    label = min(24, max(len(n) for n in names))
    prefix = len(f"[{len(names) - 1}] ") + label + 2
    if prefix + len(names) * (cell + 1) <= LINE_WIDTH:
        lines += ["", "confusion matrix (rows: true class, columns: predicted class number)",
                  " " * prefix + " ".join(f"{f'[{i}]':>{cell}}" for i in range(len(names)))]
        for i, (name, row) in enumerate(zip(names, matrix)):
            lines.append(f"{f'[{i}]':<{prefix - label - 2}}{shorten(name, label):<{label}}  "
                         + " ".join(f"{v:>{cell}d}" for v in row))
        return "\n".join(lines)
    top = top_confusions(scores, confusions)
    if not top:
        return "\n".join(lines + ["", f"no mistakes among the {len(names)} classes"])
    side = min(30, max(10, *(len(n) for pair in top for n in (pair["true"], pair["predicted"]))))
    lines += ["", f"most frequent mistakes ({len(names)} classes: the full confusion matrix is in the JSON scores)",
              f"{'true class':<{side}}    {'predicted':<{side}}  count  share of true class"]
    lines += [f"{shorten(p['true'], side):<{side}} -> {shorten(p['predicted'], side):<{side}}  {p['count']:5d}"
              f"  {p['share']:6.1%}" for p in top]
    return "\n".join(lines)
