"""Scores of a trained model on labelled images, for each task: one class, several labels, or a number.

Every score dict has ``task``, ``count``, and ``headline`` / ``headline_name``: the one number to quote
(accuracy, mean average precision, or mean absolute error).
"""

from __future__ import annotations

import numpy as np

from graftkit.errors import GraftError

HEADLINES = {"single": "accuracy", "multilabel": "mAP", "regression": "MAE"}
"""The name of each task's headline number."""


def task_kind(task) -> str:
    """The task's name from a name, a :class:`graftkit.model.task.Task`, its dict (as in metrics.json)
    or None (``single``).

    Example:
        >>> from graftkit.model.task import Task
        >>> task_kind(Task("regression")), task_kind({"kind": "multilabel", "mean": 0.0}), task_kind(None)
        ('regression', 'multilabel', 'single')
    """
    from graftkit.model.task import TASKS

    kind = task.get("kind") if isinstance(task, dict) else getattr(task, "kind", task)
    kind = kind or "single"
    if kind not in TASKS:
        raise GraftError(f"unknown task '{kind}': use one of {', '.join(TASKS)}")
    return kind


def threshold_array(thresholds, class_names: list[str]) -> np.ndarray:
    """Per-label thresholds as an array in output order, from None (0.5 each), a sequence or ``{label: t}``.

    Example:
        >>> threshold_array({"cat": 0.3, "dog": 0.7}, ["cat", "dog"]).tolist()
        [0.3, 0.7]
    """
    k = len(class_names)
    if thresholds is None:
        return np.full(k, 0.5)
    if isinstance(thresholds, dict):
        missing = [name for name in class_names if name not in thresholds]
        if missing:
            raise GraftError(f"thresholds name no value for the label(s) {', '.join(missing[:5])}: "
                             "give one threshold per label (thresholds.json beside the model)")
        return np.array([float(thresholds[name]) for name in class_names])
    values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(values) != k:
        raise GraftError(f"{len(values)} thresholds for {k} labels: give one threshold per label")
    return values


def score(labels, probabilities, class_names: list[str], task="single", thresholds=None) -> dict:
    """The scores of a model's outputs against the true labels, for the model's task.

    - ``single``: accuracy, per-class precision / recall / F1 / support, and the confusion matrix.
    - ``multilabel``: mean average precision (``mAP``, the mean of the per-label average precision
      over the labels with a positive example), micro and macro F1 (macro over the labels with a
      positive example), the exact-match ratio (every label of an image right) and the share of
      single label decisions right, all at ``thresholds``; ``per_class`` holds each label's
      threshold, precision, recall, F1, average precision and support (images with the label).
    - ``regression``: MAE, RMSE, R² (None when every target is the same), and the mean and
      standard deviation of the targets.

    Args:
        labels: class indices ``(n,)`` (single), 0/1 rows ``(n, k)`` (multilabel) or targets ``(n,)``.
        probabilities: the model's outputs: softmax ``(n, k)``, sigmoid ``(n, k)`` or values ``(n, 1)``.
        class_names: names of the outputs (for regression, the target's name).
        task: ``single``, ``multilabel`` or ``regression``, or a :class:`graftkit.model.task.Task`.
        thresholds: multilabel only: a label is predicted when its probability is at least its
            threshold; one per label (a sequence or ``{label: t}``), 0.5 each when None.

    Example:
        >>> s = score(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
        >>> s["accuracy"], s["confusion_matrix"]
        (0.6667, [[1, 0], [1, 1]])
        >>> m = score(np.array([[1, 0], [1, 1]]), np.array([[.9, .2], [.8, .7]]), ["a", "b"], "multilabel")
        >>> m["headline_name"], m["headline"], m["exact_match"]
        ('mAP', 1.0, 1.0)
        >>> r = score(np.array([1.0, 2.0]), np.array([[2.0], [3.0]]), ["size"], "regression")
        >>> r["mae"], r["rmse"]
        (1.0, 1.0)
    """
    kind = task_kind(task)
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    if len(labels) != len(probabilities):
        raise GraftError(f"{len(labels)} labels for {len(probabilities)} model outputs: give one label per image")
    if kind == "multilabel":
        scores = _multilabel_score(labels, probabilities, list(class_names), threshold_array(thresholds, class_names))
    elif kind == "regression":
        scores = _regression_score(labels, probabilities, list(class_names))
    else:
        scores = _single_score(labels, probabilities, list(class_names))
    return scores


def _single_score(labels, probabilities, class_names) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    indices = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0
    )
    accuracy = round(float(np.mean(predicted == labels)), 4) if len(labels) else 0.0
    return {
        "task": "single",
        "accuracy": accuracy,
        "count": len(labels),
        "headline": accuracy,
        "headline_name": HEADLINES["single"],
        "per_class": {
            name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
        "class_names": list(class_names),
    }


def _multilabel_score(labels, probabilities, class_names, thresholds) -> dict:
    from sklearn.metrics import average_precision_score

    k = len(class_names)
    truth = labels.reshape(len(labels), -1) > 0.5
    probabilities = probabilities.reshape(len(probabilities), -1)
    if truth.shape[1] != k or probabilities.shape[1] != k:
        raise GraftError(f"multi-label scores need {k} columns (one per label), got labels of shape "
                         f"{labels.shape} and outputs of shape {probabilities.shape}")
    predicted = probabilities >= thresholds
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    support = truth.sum(axis=0)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / np.maximum(tp + fn, 1)
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    present = support > 0
    ap = [float(average_precision_score(truth[:, i], probabilities[:, i])) if present[i] else None
          for i in range(k)]
    mean_ap = _round(np.mean([a for a in ap if a is not None])) if present.any() else None
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    n = len(truth)
    return {
        "task": "multilabel",
        "count": int(n),
        "headline": mean_ap,
        "headline_name": HEADLINES["multilabel"],
        "mean_average_precision": mean_ap,
        "micro_f1": _round(micro),
        "macro_f1": _round(f1[present].mean()) if present.any() else None,
        "exact_match": _round(np.mean(np.all(truth == predicted, axis=1))) if n else 0.0,
        "label_accuracy": _round(np.mean(truth == predicted)) if n else 0.0,
        "per_class": {
            name: {"threshold": round(float(thresholds[i]), 6), "precision": _round(precision[i]),
                   "recall": _round(recall[i]), "f1": _round(f1[i]),
                   "average_precision": None if ap[i] is None else _round(ap[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "thresholds": {name: round(float(thresholds[i]), 6) for i, name in enumerate(class_names)},
        "class_names": list(class_names),
    }


def _regression_score(targets, predictions, class_names) -> dict:
    targets = np.asarray(targets, np.float64).reshape(-1)
    predictions = np.asarray(predictions, np.float64).reshape(len(predictions), -1)
    if predictions.shape[1] != 1:
        raise GraftError(f"regression scores need one output per image, got outputs of shape {predictions.shape}")
    predictions = predictions[:, 0]
    n = len(targets)
    errors = predictions - targets
    variance = float(np.var(targets)) if n else 0.0
    mae = _significant(np.mean(np.abs(errors))) if n else None
    return {
        "task": "regression",
        "count": int(n),
        "headline": mae,
        "headline_name": HEADLINES["regression"],
        "mae": mae,
        "rmse": _significant(np.sqrt(np.mean(errors ** 2))) if n else None,
        "r2": _round(1 - np.mean(errors ** 2) / variance) if variance > 0 else None,
        "mean_target": _significant(np.mean(targets)) if n else None,
        "std_target": _significant(np.sqrt(variance)) if n else None,
        "mean_prediction": _significant(np.mean(predictions)) if n else None,
        "class_names": list(class_names),
    }


def _round(value) -> float:
    return round(float(value), 4)


def _significant(value) -> float:
    """Six significant digits: a target's units may be tiny or huge."""
    return float(f"{float(value):.6g}")


def choose_thresholds(labels, probabilities) -> np.ndarray:
    """Per label, the threshold that maximizes F1 on these (validation) examples.

    The threshold lies halfway between the lowest probability predicted positive and the next
    lower one, so that a model a little off on new images keeps the same decisions; where several
    thresholds give the best F1, the highest is kept. A label without a positive example keeps 0.5.

    Args:
        labels: 0/1 rows ``(n, k)``.
        probabilities: sigmoid outputs ``(n, k)``.

    Returns:
        ``k`` thresholds; a label is predicted when its probability is at least its threshold.

    Example:
        >>> choose_thresholds(np.array([[0], [0], [1], [1]]), np.array([[.1], [.4], [.35], [.8]])).round(3).tolist()
        [0.225]
    """
    truth = np.asarray(labels).reshape(len(labels), -1) > 0.5
    probabilities = np.asarray(probabilities, np.float64).reshape(len(probabilities), -1)
    if truth.shape != probabilities.shape:
        raise GraftError(f"labels of shape {truth.shape} for outputs of shape {probabilities.shape}: "
                         "give one 0/1 column per label")
    chosen = np.full(truth.shape[1], 0.5)
    for i in range(truth.shape[1]):
        positives = int(truth[:, i].sum())
        if not positives:
            continue
        order = np.argsort(-probabilities[:, i], kind="stable")
        scores = probabilities[order, i]
        hits = np.cumsum(truth[order, i])
        last = np.r_[scores[1:] != scores[:-1], True]  # cut only between distinct probabilities
        cut = np.flatnonzero(last)
        f1 = 2 * hits[cut] / (cut + 1 + positives)
        best = cut[int(np.argmax(f1))]  # the first maximum: the highest threshold
        lower = scores[best + 1] if best + 1 < len(scores) else 0.0
        chosen[i] = (scores[best] + lower) / 2
    return chosen


def model_outputs(model, paths, *, batch_size: int = 32, tta: bool = False) -> np.ndarray:
    """The model's outputs on image files, decoded and resized as in training (its input's size and channels);
    with ``tta``, each the mean of the image's and its mirror image's (:func:`graftkit.model.infer.with_flips`).

    Example:
        >>> outputs = model_outputs(model, ["cat.jpg", "dog.png"])  # doctest: +SKIP
    """
    from graftkit.data.pipeline import make_dataset
    from graftkit.model.infer import input_channels, input_size, predict_dataset

    dataset = make_dataset(paths, image_size=input_size(model), batch_size=batch_size, channels=input_channels(model))
    return predict_dataset(model, dataset, tta=tta)


def evaluate_images(model, image_set, *, batch_size: int = 32, task="single",
                    thresholds=None, tta: bool = False) -> tuple[dict, np.ndarray]:
    """Score ``model`` on an :class:`graftkit.data.ImageSet`; returns the scores and the model's outputs.

    Args:
        model: a Keras model taking RGB pixels 0..255.
        image_set: the images with their labels and class names.
        batch_size: images per forward pass.
        task: the model's task (see :func:`score`).
        thresholds: multilabel only: the per-label thresholds (see :func:`score`).
        tta: test-time augmentation (see :func:`model_outputs`); the scores then say so (``"tta": true``),
            and so do :func:`format_scores` and the report.

    Example:
        >>> scores, outputs = evaluate_images(model, images, task="regression")  # doctest: +SKIP
        >>> scores["headline_name"]  # doctest: +SKIP
        'MAE'
    """
    probabilities = model_outputs(model, image_set.paths, batch_size=batch_size, tta=tta)
    scores = score(image_set.labels, probabilities, image_set.class_names, task=task, thresholds=thresholds)
    if tta:
        scores["tta"] = True
    return scores, probabilities


TTA_NOTE = "each averaged with its mirror image (--tta)"
"""How :func:`format_scores` and the evaluation report say that the scores are test-time augmented."""


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


def format_scores(scores: dict, *, confusions: int = 20, unit: str = "images") -> str:
    """The scores as plain text for the terminal, no line longer than :data:`LINE_WIDTH`.

    Multi-label scores: mAP, F1 and exact match, then one line per label (threshold, precision,
    recall, F1, average precision, support). Regression: MAE, RMSE and R², and the targets' spread.
    Single-label scores: accuracy, then one line per class (precision, recall, F1, support), then the confusion
    matrix when its rows fit on a line (a dozen classes or so), otherwise the ``confusions``
    most frequent mistakes. Long class names are shortened with an ellipsis. ``unit`` names the examples
    (``images`` or ``texts``). Test-time augmented scores (``"tta": true``) say so on their first line.

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
        >>> print(format_scores({**s, "tta": True}).splitlines()[0])
        accuracy 0.6667 on 3 images, each averaged with its mirror image (--tta)
    """
    if scores.get("tta"):
        first, newline, rest = format_scores({k: v for k, v in scores.items() if k != "tta"},
                                             confusions=confusions, unit=unit).partition("\n")
        return f"{first}, {TTA_NOTE}{newline}{rest}"
    kind = task_kind(scores.get("task"))
    if kind == "multilabel":
        return _format_multilabel(scores).replace(" images,", f" {unit},", 1)
    if kind == "regression":
        return _format_regression(scores).replace(" images ", f" {unit} ", 1)
    names = scores["class_names"]
    width = min(40, max(len(n) for n in names + ["class"]))
    lines = [f"accuracy {scores['accuracy']:.4f} on {scores['count']} {unit}", "",
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


def _number(value, digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or 4 significant digits when ``digits`` is 0; n/a for None."""
    if value is None:
        return "n/a"
    return f"{value:.4g}" if digits == 0 else f"{value:.{digits}f}"


def _format_multilabel(scores: dict) -> str:
    names = scores["class_names"]
    width = min(40, max(len(n) for n in names + ["label"]))
    lines = [f"mAP {_number(scores['mean_average_precision'])} on {scores['count']} images, {len(names)} labels",
             (f"micro F1 {_number(scores['micro_f1'])}, macro F1 {_number(scores['macro_f1'])}, exact match "
              f"{_number(scores['exact_match'])}, label decisions right {_number(scores['label_accuracy'])}"),
             "", f"{'label':<{width}}  threshold  precision  recall      f1      AP  support"]
    for name in names:
        row = scores["per_class"][name]
        lines.append(f"{shorten(name, width):<{width}}  {row['threshold']:9.4f}  {row['precision']:9.4f}  "
                     f"{row['recall']:6.4f}  {row['f1']:6.4f}  {_number(row['average_precision']):>6}  "
                     f"{row['support']:7d}")
    return "\n".join(lines)


def _format_regression(scores: dict) -> str:
    name = shorten(scores["class_names"][0] if scores.get("class_names") else "target", 40)
    mae, rmse, mean, std, predicted = (_number(scores[k], 0) for k in (
        "mae", "rmse", "mean_target", "std_target", "mean_prediction"))
    return (f"MAE {mae} on {scores['count']} images (RMSE {rmse}, R² {_number(scores['r2'])})\n"
            f"{name}: mean {mean}, standard deviation {std}; mean prediction {predicted}")
