"""Predictions for image files, streamed in batches."""

from __future__ import annotations

from typing import Iterator

import numpy as np


def predict_files(model, paths: list[str], class_names: list[str], *, top_k: int = 3,
                  batch_size: int = 32) -> Iterator[dict]:
    """Yield one row per image: path, top label and probability, and the top-k labels.

    Images are decoded and classified a batch at a time, so any number of files fits in memory.

    Example:
        >>> rows = predict_files(model, ["cat.jpg"], ["cat", "dog"])  # doctest: +SKIP
        >>> next(rows)["label"]  # doctest: +SKIP
        'cat'
    """
    from graftkit.data import make_dataset
    from graftkit.infer import compiled_forward

    forward = compiled_forward(model)
    size = int(model.inputs[0].shape[1])
    k = max(1, min(top_k, len(class_names)))
    dataset = make_dataset(paths, image_size=size, batch_size=batch_size)
    start = 0
    for images in dataset:
        probabilities = forward(images).numpy()
        for offset, row in enumerate(probabilities):
            order = np.argsort(-row)[:k]
            yield {
                "path": paths[start + offset],
                "label": class_names[order[0]],
                "probability": float(row[order[0]]),
                "top_k": [(class_names[i], float(row[i])) for i in order],
            }
        start += len(probabilities)
