"""Global pooling of a feature map into one vector (``--pooling``): its average, its maximum, or both side by side.

``avgmax`` is fastai's concat pooling (``AdaptiveConcatPool2d``): the average says how much of a pattern the
image holds, the maximum whether it holds it anywhere (a small defect on a large surface, say). The
head, the feature cache and the stage features all pool through :func:`pooler`, so the features a head
was fitted on and those it sees in the saved model are pooled the same way, with built-in Keras layers only.
"""

from __future__ import annotations

MODES = ("avg", "max", "avgmax")
CHOICES = ("auto", *MODES)  # --pooling's values; auto is resolved by :func:`pooling_for`


def pooling_for(pooling: str, head_trains_by_epochs: bool) -> str:
    """The pooling ``--pooling`` means for a head: ``auto`` (the default) is ``avgmax`` for the linear head fitted
    by L-BFGS, which standardizes each feature, and ``avg`` for a head that trains by epochs (``--hidden`` or
    ``--head-solver adam``: avgmax was measured only with the L-BFGS head, docs/benchmarks.md section 12, fifth
    round); any other value is taken as it is.

    Example:
        >>> pooling_for("auto", False), pooling_for("auto", True), pooling_for("max", False)
        ('avgmax', 'avg', 'max')
    """
    if pooling != "auto":
        return pooling
    return "avg" if head_trains_by_epochs else "avgmax"


def check_mode(mode: str) -> None:
    """Refuse a pooling that is not one of :data:`MODES`, naming the option and its values.

    Example:
        >>> check_mode("mean")
        Traceback (most recent call last):
        graftkit.errors.GraftError: unknown --pooling 'mean': use avg, max, avgmax
    """
    from graftkit.errors import GraftError

    if mode not in MODES:
        raise GraftError(f"unknown --pooling '{mode}': use {', '.join(MODES)}")


def _layers() -> dict:
    """Rank of one example's features -> its (average, maximum) global pooling layer classes."""
    import keras

    return {3: (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D),
            2: (keras.layers.GlobalAveragePooling1D, keras.layers.GlobalMaxPooling1D)}


def pooler(rank: int, mode: str, *, name: str = "pool"):
    """A callable that pools a batch of feature maps of ``rank`` dimensions per example (3: images, 2: sequences).

    Args:
        rank: dimensions of one example's features, channels included.
        mode: one of :data:`MODES`; ``avgmax`` puts the average's channels first, then the maximum's.
        name: the layer's name (``avgmax``: the Concatenate's; its two poolings get ``_avg`` and ``_max`` after it).

    Example:
        >>> import numpy as np
        >>> pool = pooler(3, "avgmax")
        >>> pool(np.arange(8, dtype="float32").reshape(1, 2, 2, 2)).numpy().tolist()
        [[3.0, 4.0, 6.0, 7.0]]
    """
    import keras

    from graftkit.errors import GraftError

    check_mode(mode)
    kinds = _layers()
    if rank not in kinds:
        raise GraftError(f"cannot pool features of rank {rank} with '{mode}': pooling takes image or sequence maps")
    average, maximum = kinds[rank]
    if mode != "avgmax":
        return (average if mode == "avg" else maximum)(name=name)
    both = average(name=f"{name}_avg"), maximum(name=f"{name}_max")
    join = keras.layers.Concatenate(name=name)
    return lambda x: join([both[0](x), both[1](x)])


def pooled_width(channels: int, mode: str) -> int:
    """How many numbers :func:`pooler` makes of ``channels`` channels.

    Example:
        >>> pooled_width(1280, "avg"), pooled_width(1280, "avgmax")
        (1280, 2560)
    """
    return channels * (2 if mode == "avgmax" else 1)


def pooling_mode(layer) -> str | None:
    """``avg`` or ``max`` when ``layer`` is a global pooling layer, else None.

    Example:
        >>> import keras
        >>> pooling_mode(keras.layers.GlobalMaxPooling2D()), pooling_mode(keras.layers.Dense(2))
        ('max', None)
    """
    modes = {kind: mode for pair in _layers().values() for kind, mode in zip(pair, ("avg", "max"))}
    return modes.get(type(layer))
