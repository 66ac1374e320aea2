"""Predictions for image files, streamed in batches and written as they come."""

from __future__ import annotations

import csv
import json
from typing import Callable, Iterable, Iterator, TextIO

import numpy as np

FORMATS = ("table", "csv", "json")


def predict_files(model, paths: list[str], class_names: list[str], *, top_k: int = 3,
                  batch_size: int = 32, progress: Callable[[int], None] | None = None) -> Iterator[dict]:
    """Yield one row per image: path, top label and probability, and the top-k labels.

    Images are decoded and classified a batch at a time, so any number of files fits in memory:
    only the current batches and the list of paths are held.

    Args:
        model: a Keras model taking RGB pixels 0..255 (a graftkit model).
        paths: image files, in the order rows are wanted.
        class_names: names of the model's outputs.
        top_k: how many labels each row lists (at most the number of classes).
        batch_size: images per forward pass.
        progress: called with the number of images done after each batch.

    Example:
        >>> rows = predict_files(model, ["cat.jpg"], ["cat", "dog"])  # doctest: +SKIP
        >>> next(rows)["label"]  # doctest: +SKIP
        'cat'
    """
    from graftkit.data.pipeline import make_dataset
    from graftkit.model.infer import input_channels, input_size

    dataset = make_dataset(paths, image_size=input_size(model), batch_size=batch_size,
                           channels=input_channels(model)).with_options(_steady())
    yield from _rows(model, dataset, paths, class_names, top_k, progress)


def predict_arrays(model, pixels, class_names: list[str], *, top_k: int = 3, batch_size: int = 32) -> Iterator[dict]:
    """Like :func:`predict_files` for RGB arrays (0..255), resized as training resized its images;
    ``path`` is each array's index.

    Example:
        >>> rows = predict_arrays(model, np.zeros((2, 224, 224, 3)), ["cat", "dog"])  # doctest: +SKIP
    """
    from graftkit.data.decode import resize_pixels
    from graftkit.model.infer import input_size

    size = input_size(model)
    images = list(pixels[None] if isinstance(pixels, np.ndarray) and pixels.ndim == 3 else pixels)
    batches = (np.stack([resize_pixels(p, size) for p in images[i:i + batch_size]])
               for i in range(0, len(images), batch_size))
    yield from _rows(model, batches, list(range(len(images))), class_names, top_k, None)


def _rows(model, batches, names, class_names, top_k, progress) -> Iterator[dict]:
    from graftkit.model.infer import compiled_forward

    forward = compiled_forward(model)
    k = max(1, min(top_k, len(class_names)))
    start = 0
    for images in batches:
        probabilities = forward(images).numpy()
        for offset, row in enumerate(probabilities):
            order = np.argsort(-row)[:k]
            yield {
                "path": names[start + offset],
                "label": class_names[order[0]],
                "probability": float(row[order[0]]),
                "top_k": [(class_names[i], float(row[i])) for i in order],
            }
        start += len(probabilities)
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

    ``csv`` has the columns ``path, label, probability, top_k`` (top-k as ``name:p;name:p``);
    ``json`` is one array of row objects, written row by row; ``table`` is for reading.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> write_predictions([{"path": "a.png", "label": "cat", "probability": 0.9,
        ...                     "top_k": [("cat", 0.9), ("dog", 0.1)]}], out, "csv")
        1
        >>> out.getvalue().splitlines()
        ['path,label,probability,top_k', 'a.png,cat,0.9000,cat:0.9000;dog:0.1000']
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format '{format}': use one of {', '.join(FORMATS)}")
    count = 0
    if format == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["path", "label", "probability", "top_k"])
        for row in rows:
            writer.writerow([row["path"], row["label"], f"{row['probability']:.4f}",
                             ";".join(f"{name}:{p:.4f}" for name, p in row["top_k"])])
            count += 1
    elif format == "json":
        stream.write("[")
        for row in rows:
            stream.write(("," if count else "") + "\n  " + json.dumps(row))
            count += 1
        stream.write("\n]\n" if count else "]\n")
    else:
        for row in rows:
            others = "  ".join(f"{name} {p:.3f}" for name, p in row["top_k"][1:])
            stream.write(f"{row['label']:<16} {row['probability']:.3f}  {row['path']}"
                         + (f"   ({others})" if others else "") + "\n")
            count += 1
    return count
