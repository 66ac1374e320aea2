"""Labels for each task, and the data that looks wrong before any training.

A task decides what a label is: ``single`` (one class per example, an int index), ``multilabel``
(any number of classes, a 0/1 row), or ``regression`` (a number). The checks here look for what
trains silently on wrong data: the same image under two labels, classes too small to learn, images
blown up far past their size, class folders that are really numbers.
"""

from __future__ import annotations

import numpy as np

from graftkit import log

TASKS = ("single", "multilabel", "regression")
FEW_IMAGES = 5  # a class with fewer training images than this is warned about
MAX_UPSCALE = 2.0  # an image whose short side is blown up more than this to the input size is warned about


def encode(label_lists: list[list[str]], task: str, names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Label cells to the array a model trains on, and the names of its outputs.

    Args:
        label_lists: each example's labels (one each for ``single`` and ``regression``).
        task: ``single``, ``multilabel`` or ``regression``.
        names: the output names to encode against (a trained model's); by default the labels
            seen, sorted (``regression``: one output, ``target``).

    Example:
        >>> encode([["dog"], ["cat"]], "single")[0].tolist()
        [1, 0]
        >>> encode([["cat", "dog"], ["dog"]], "multilabel")[0].tolist()
        [[1.0, 1.0], [0.0, 1.0]]
        >>> encode([["0.5"], ["2"]], "regression")
        (array([0.5, 2. ], dtype=float32), ['target'])
    """
    if task == "regression":
        return np.array([float(labels[0]) for labels in label_lists], np.float32), list(names or ["target"])
    names = list(names) if names is not None else sorted({label for labels in label_lists for label in labels})
    index = {name: i for i, name in enumerate(names)}
    if task == "single":
        return np.array([index[labels[0]] for labels in label_lists], np.int32), names
    rows = np.zeros((len(label_lists), len(names)), np.float32)
    for row, labels in zip(rows, label_lists):
        row[[index[label] for label in labels]] = 1.0
    return rows, names


def split_indices(labels: np.ndarray, task: str, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train / validation indices: stratified per class for ``single`` (at least one of each class
    held out, never all of it), a random share otherwise.

    Example:
        >>> train, val = split_indices(np.array([0, 0, 0, 0, 1, 1]), "single", 0.25, seed=0)
        >>> sorted(np.array([0, 0, 0, 0, 1, 1])[val].tolist())
        [0, 1]
    """
    rng = np.random.default_rng(seed)
    if task != "single":
        order = rng.permutation(len(labels))
        n_val = min(max(round(len(labels) * val_split), 1), len(labels) - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])
    train, val = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_val = min(max(round(len(members) * val_split), 1), len(members) - 1)
        order = rng.permutation(members)
        val += order[:n_val].tolist()
        train += order[n_val:].tolist()
    return np.array(sorted(train), int), np.array(sorted(val), int)


def counts(labels: np.ndarray, task: str, names: list[str]) -> dict[str, int]:
    """Examples per output name (multi-label: examples carrying each label); empty for regression.

    Example:
        >>> counts(np.array([[1.0, 1.0], [0.0, 1.0]]), "multilabel", ["cat", "dog"])
        {'cat': 1, 'dog': 2}
    """
    if task == "regression":
        return {}
    totals = labels.sum(axis=0) if task == "multilabel" else np.bincount(labels, minlength=len(names))
    return {name: int(n) for name, n in zip(names, totals)}


def conflicting_labels(paths: list[str], label_lists: list[list[str]], digests: dict[str, str]) -> list[dict]:
    """Files with the same content under different labels: ``{"paths": [...], "labels": [...]}`` per content.

    Example:
        >>> conflicting_labels(["a/x.png", "b/y.png"], [["a"], ["b"]], {"a/x.png": "1", "b/y.png": "1"})
        [{'paths': ['a/x.png', 'b/y.png'], 'labels': ['a', 'b']}]
    """
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        if path in digests:
            groups.setdefault(digests[path], []).append(i)
    found = []
    for members in groups.values():
        labels = sorted({label for i in members for label in label_lists[i]})
        if len(members) > 1 and len(labels) > 1:
            found.append({"paths": [paths[i] for i in members], "labels": labels})
    return found


def data_warnings(split, *, digests: dict[str, str] | None = None, label_lists=None) -> list[dict]:
    """What looks wrong in a split, each warned about once (``graft: warning:``) and returned for metrics.json.

    Checks: the same image content under two labels in single-label mode (suggests ``--task
    multilabel``); a class with fewer than :data:`FEW_IMAGES` training images; class names that are
    all numbers (suggests ``--task regression``).
    """
    found = []
    if split.task == "single" and digests and label_lists is not None:
        paths = split.train.paths + split.val.paths
        for conflict in conflicting_labels(paths, label_lists, digests):
            found.append({"kind": "conflicting_labels", **conflict, "message":
                          f"the same image is labelled {' and '.join(conflict['labels'])}: "
                          f"{', '.join(repr(p) for p in conflict['paths'][:2])}; if an image can have several "
                          "labels, train with --task multilabel, else remove the wrong copy"})
    if split.task != "regression":
        small = {name: n for name, n in counts(split.train.labels, split.task, split.class_names).items()
                 if n < FEW_IMAGES}
        for name, n in small.items():
            found.append({"kind": "few_images", "class": name, "count": n, "message":
                          f"class '{name}' has only {n} training image{'s' * (n != 1)}: too few to learn it "
                          f"reliably; add images (at least {FEW_IMAGES}, better 20 or more)"})
    if split.task == "single" and all(is_number(name) for name in split.class_names):
        found.append({"kind": "numeric_classes", "classes": split.class_names, "message":
                      f"the class names are all numbers ({', '.join(split.class_names[:4])}...): if they are "
                      "a quantity, train with --task regression"})
    for warning in found:
        log.warn(warning["message"])
    return found


def upscale_warning(sizes: dict[str, tuple[int, int]], paths: list[str], image_size: int) -> dict | None:
    """A warning when images are blown up more than :data:`MAX_UPSCALE` times to the input size.

    Example:
        >>> upscale_warning({"a.png": (32, 32)}, ["a.png"], 128)["count"]
        1
    """
    small = [p for p in paths if p in sizes and min(sizes[p]) * MAX_UPSCALE < image_size]
    if not small:
        return None
    width, height = sizes[small[0]]
    warning = {"kind": "upscaled", "count": len(small), "example": small[0], "message":
               f"{len(small)} of {len(paths)} images are upscaled more than {MAX_UPSCALE:g}x to {image_size} px "
               f"(e.g. '{small[0]}', {width}x{height}): blurry inputs; a base built for smaller images, or "
               f"--image-size closer to theirs, may do better"}
    log.warn(warning["message"])
    return warning


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (a class folder named by a quantity).

    Example:
        >>> is_number("0.5"), is_number("cats")
        (True, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return True
