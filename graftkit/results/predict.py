"""Predictions for image files, streamed in batches and written as they come."""

from __future__ import annotations

import csv
import itertools
import json
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

FORMATS = ("table", "csv", "json")


def predict_files(model, paths: list[str], class_names: list[str], *, top_k: int = 3,
                  batch_size: int = 32, progress: Callable[[int], None] | None = None, task="single",
                  thresholds=None, tta: bool = False) -> Iterator[dict]:
    """Yield one row per image, for the model's task.

    - single: ``path``, ``label`` (the top class), ``probability`` and ``top_k`` (``(name, p)`` pairs).
    - multilabel: ``path``, ``label`` (every label at or over its threshold, ``;``-joined in output
      order; empty when none is), ``labels`` (those labels as ``(name, p)`` pairs) and ``top_k``
      (the most probable labels, over their threshold or not).
    - regression: ``path`` and ``value`` (the prediction, in the target's units).

    Images are decoded and run through the model a batch at a time, so any number of files fits in
    memory: only the current batches and the list of paths are held.

    Args:
        model: a Keras model taking RGB pixels 0..255 (a graftkit model).
        paths: image files, in the order rows are wanted.
        class_names: names of the model's outputs.
        top_k: how many labels each row lists (at most the number of classes).
        batch_size: images per forward pass.
        progress: called with the number of images done after each batch.
        task: ``single``, ``multilabel`` or ``regression``, or a :class:`graftkit.model.task.Task`.
        thresholds: multilabel only: one per label (a sequence or ``{label: t}``), 0.5 each when None.
        tta: test-time augmentation: each image's outputs averaged with its mirror image's.

    Example:
        >>> rows = predict_files(model, ["cat.jpg"], ["cat", "dog"])  # doctest: +SKIP
        >>> next(rows)["label"]  # doctest: +SKIP
        'cat'
    """
    from graftkit.data.pipeline import make_dataset
    from graftkit.model.infer import input_channels, input_size

    rows = _row_maker(task, class_names, top_k, thresholds)  # a wrong task or thresholds fail before any work
    dataset = make_dataset(paths, image_size=input_size(model), batch_size=batch_size,
                           channels=input_channels(model)).with_options(_steady())
    yield from _rows(model, dataset, paths, rows, progress, tta)


def predict_arrays(model, pixels, class_names: list[str], *, top_k: int = 3, batch_size: int = 32,
                   task="single", thresholds=None, tta: bool = False) -> Iterator[dict]:
    """Like :func:`predict_files` for RGB arrays (0..255), resized as training resized its images;
    ``path`` is each array's index.

    Example:
        >>> rows = predict_arrays(model, np.zeros((2, 224, 224, 3)), ["cat", "dog"])  # doctest: +SKIP
    """
    from graftkit.data.decode import resize_pixels
    from graftkit.model.infer import input_size

    rows = _row_maker(task, class_names, top_k, thresholds)
    size = input_size(model)
    images = list(pixels[None] if isinstance(pixels, np.ndarray) and pixels.ndim == 3 else pixels)
    batches = (np.stack([resize_pixels(p, size) for p in images[i:i + batch_size]])
               for i in range(0, len(images), batch_size))
    yield from _rows(model, batches, list(range(len(images))), rows, None, tta)


def prediction_rows(outputs, names, class_names: list[str], *, task="single", top_k: int = 3,
                    thresholds=None) -> list[dict]:
    """The rows :func:`predict_files` yields, from model outputs already computed.

    Example:
        >>> prediction_rows(np.array([[.9, .2, .7]]), ["a.png"], ["cat", "dog", "sun"], task="multilabel",
        ...                 top_k=1)
        [{'path': 'a.png', 'label': 'cat;sun', 'labels': [('cat', 0.9), ('sun', 0.7)], 'top_k': [('cat', 0.9)]}]
        >>> prediction_rows(np.array([[2.5]]), ["a.png"], ["size"], task="regression")
        [{'path': 'a.png', 'value': 2.5}]
    """
    make = _row_maker(task, class_names, top_k, thresholds)
    return [make(name, row) for name, row in zip(names, np.asarray(outputs))]


def text_rows(rows: list[dict]) -> list[dict]:
    """Prediction rows of texts: each row's ``path`` named ``text`` (the CSV's and JSON's first column then too).

    Example:
        >>> text_rows([{"path": "free prize", "label": "spam"}])
        [{'text': 'free prize', 'label': 'spam'}]
    """
    return [{"text": row["path"], **{k: v for k, v in row.items() if k != "path"}} for row in rows]


def _row_maker(task, class_names, top_k, thresholds) -> Callable[[object, np.ndarray], dict]:
    """``(path, output row) -> prediction row`` for the task."""
    from graftkit.results.evaluate import task_kind, threshold_array

    kind = task_kind(task)
    k = max(1, min(top_k, len(class_names)))
    if kind == "regression":
        return lambda path, row: {"path": path, "value": float(np.reshape(row, -1)[0])}

    def top(row):
        order = np.argsort(-row, kind="stable")[:k]
        return [(class_names[i], float(row[i])) for i in order]

    if kind == "multilabel":
        cut = threshold_array(thresholds, class_names)

        def multilabel(path, row):
            over = [(class_names[i], float(row[i])) for i in np.flatnonzero(row >= cut)]
            return {"path": path, "label": ";".join(name for name, _ in over), "labels": over, "top_k": top(row)}

        return multilabel

    def single(path, row):
        best = top(row)
        return {"path": path, "label": best[0][0], "probability": best[0][1], "top_k": best}

    return single


def _rows(model, batches, names, make_row, progress, tta: bool = False) -> Iterator[dict]:
    from graftkit.model.infer import image_forward

    forward = image_forward(model, tta=tta)
    start = 0
    for images in batches:
        outputs = forward(images).numpy()
        for offset, row in enumerate(outputs):
            yield make_row(names[start + offset], row)
        start += len(outputs)
        if progress:
            progress(start)


def _steady():
    """tf.data options without autotuning: on 2 cores its extra decode threads slowed the forward pass
    by up to half in some runs (flowers128: 77-175 images/s with it, 142-250 without)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def write_predictions(rows: Iterable[dict], stream: TextIO, format: str = "csv") -> int:
    """Write prediction rows to ``stream`` one at a time; returns how many were written.

    The rows' task is read from the first row (rows with ``value``: regression; with ``labels``:
    multi-label). ``csv`` has the columns ``path, label, probability, top_k`` (single label),
    ``path, label, labels, top_k`` (multi-label; ``label`` the ``;``-joined set, ``labels`` and
    ``top_k`` as ``name:p;name:p``) or ``path, value`` (regression), with ``text`` for ``path`` when the rows
    are texts' (:func:`text_rows`); ``json`` is one array of row
    objects, written row by row; ``table`` is for reading.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> write_predictions([{"path": "a.png", "label": "cat", "probability": 0.9,
        ...                     "top_k": [("cat", 0.9), ("dog", 0.1)]}], out, "csv")
        1
        >>> out.getvalue().splitlines()
        ['path,label,probability,top_k', 'a.png,cat,0.9000,cat:0.9000;dog:0.1000']
        >>> out = io.StringIO()
        >>> write_predictions([{"path": "a.png", "value": 2.5}], out, "csv"), out.getvalue().splitlines()
        (1, ['path,value', 'a.png,2.5'])
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format '{format}': use one of {', '.join(FORMATS)}")
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        stream.write("[]\n" if format == "json" else "path,label,probability,top_k\n" if format == "csv" else "")
        return 0
    rows = itertools.chain([first], rows)
    kind = "regression" if "value" in first else "multilabel" if "labels" in first else "single"
    item = "text" if "text" in first else "path"
    count = 0
    if format == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([item, *CSV_COLUMNS[kind][1:]])
        for row in rows:
            writer.writerow(_csv_row(kind, {**row, "path": row[item]}))
            count += 1
    elif format == "json":
        stream.write("[")
        for row in rows:
            stream.write(("," if count else "") + "\n  " + json.dumps(row))
            count += 1
        stream.write("\n]\n")
    else:
        for row in rows:
            stream.write(_table_line(kind, {**row, "path": row[item]}) + "\n")
            count += 1
    return count


CSV_COLUMNS = {"single": ["path", "label", "probability", "top_k"],
               "multilabel": ["path", "label", "labels", "top_k"],
               "regression": ["path", "value"]}
"""The columns of each task's CSV predictions."""


def _pairs(pairs) -> str:
    return ";".join(f"{name}:{p:.4f}" for name, p in pairs)


def _csv_row(kind: str, row: dict) -> list:
    if kind == "regression":
        return [row["path"], f"{row['value']:.6g}"]
    if kind == "multilabel":
        return [row["path"], row["label"], _pairs(row["labels"]), _pairs(row["top_k"])]
    return [row["path"], row["label"], f"{row['probability']:.4f}", _pairs(row["top_k"])]


def _table_line(kind: str, row: dict) -> str:
    if kind == "regression":
        return f"{row['value']:<16.6g} {row['path']}"
    if kind == "multilabel":
        over = "  ".join(f"{name} {p:.3f}" for name, p in row["labels"])
        return f"{row['label'] or '(none)':<16} {row['path']}" + (f"   ({over})" if over else "")
    others = "  ".join(f"{name} {p:.3f}" for name, p in row["top_k"][1:])
    return f"{row['label']:<16} {row['probability']:.3f}  {row['path']}" + (f"   ({others})" if others else "")
