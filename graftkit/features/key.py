"""The feature cache's keys: a hash of everything that changes a base's features, and each image's identity."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from graftkit.errors import GraftError

FORMAT = 1


def feature_key(base, *, view: int | None = None, seed: int = 0, dtype: str = "float32",
                pool: str | None = None) -> tuple[str, dict]:
    """The cache key of a base's features: a hash of everything that changes them.

    Covers the base's layer configuration (which pins the architecture and input size) and
    its weight values (so a weights file, a personal model and random weights are all told
    apart), the cut layer, input size, preprocessing, the view (exact, or augmented view
    ``view`` drawn from ``seed`` with the augmentation's configuration), the pooling and the storage dtype.

    Args:
        base: a :class:`graftkit.bases.loader.Base`.
        view: None for the exact (unaugmented) features, else the index of an augmented view.
        seed: seed of the augmented views.
        dtype: ``float32`` or ``float16`` storage.
        pool: None for the base's outputs, ``avg`` or ``max`` for them globally pooled.

    Returns:
        ``(hex key, the description it hashes)``.

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> feature_key(base)[0] != feature_key(base, view=0)[0]
        True
    """
    description = {
        "format": FORMAT,
        "architecture": _architecture_hash(base.model),
        "weights": _weights_hash(base.model),
        "cut": base.cut,
        "image_size": None if is_text(base) else int(base.image_size),
        "preprocessing": base.preprocessing,
        "feature_shape": [int(d) for d in base.feature_shape],
        "pool": pool,
        "view": "exact" if view is None else {"index": int(view), "seed": int(seed),
                                              "augmentation": _augmentation_config()},
        "dtype": np.dtype(dtype).name,
    }
    if is_text(base):
        description["max_length"] = int(base.max_length)
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32], description


def is_text(base) -> bool:
    """Whether ``base`` encodes texts (a :class:`graftkit.bases.text.TextBase`) rather than images."""
    return getattr(base, "kind", "image") == "text"


def item_keys(base, items) -> list[str]:
    """One identity per example: an image file's (:func:`image_keys`), or a text's digest.

    Example:
        >>> class Encoder: kind = "text"
        >>> item_keys(Encoder(), ["hello"]) == item_keys(Encoder(), ["hello"])
        True
    """
    if is_text(base):
        from graftkit.data.text import text_digest

        return [text_digest(text) for text in items]
    return image_keys(items)


def image_keys(paths) -> list[str]:
    """One identity per image file: its absolute path, size and modification time, hashed.

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (8, 8)).save("/tmp/graftkit_key.png")
        >>> len(image_keys(["/tmp/graftkit_key.png"])[0])
        32
    """
    keys = []
    for path in paths:
        absolute = os.path.abspath(os.fsdecode(path))
        try:
            stat = os.stat(absolute)
        except OSError as error:
            raise GraftError(f"cannot read image '{path}' ({error.strerror}): replace the file or leave it out") \
                from None
        text = f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}"
        keys.append(hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32])
    return keys


def view_seed(seed: int, view: int) -> int:
    return (int(seed) * 1000003 + 7919 * (int(view) + 1)) % (2 ** 31 - 3)


def _architecture_hash(model) -> str:
    """A hash of each layer's class and configuration, without what leaves the outputs alone.

    Names are left out (Keras numbers unnamed layers per session), and so is ``trainable``.
    """
    digest = hashlib.sha256()
    for layer in model.layers:
        config = _without_trainable({k: v for k, v in layer.get_config().items() if k != "name"})
        digest.update(f"{type(layer).__name__}:{json.dumps(config, sort_keys=True, default=str)}\n".encode())
    return digest.hexdigest()[:32]


def _without_trainable(config):
    """``config`` with every ``trainable`` entry removed, nested layers' too (freezing changes no output)."""
    if isinstance(config, dict):
        return {k: _without_trainable(v) for k, v in config.items() if k != "trainable"}
    if isinstance(config, (list, tuple)):
        return [_without_trainable(v) for v in config]
    return config


def _weights_hash(model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()[:32]


def _augmentation_config():
    from graftkit.data.pipeline import augmentation

    return [{k: v for k, v in layer.get_config().items() if k not in ("name", "seed")}
            for layer in augmentation().layers]
