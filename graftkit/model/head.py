"""The new head put on a cut base, and the classifier that joins them."""

from __future__ import annotations

from typing import Sequence

import keras

from graftkit.errors import GraftError
from graftkit.model.pooling import check_mode, pooler


def build_head(
    feature_shape: Sequence[int | None],
    num_classes: int,
    *,
    pooling: str = "avg",
    hidden: Sequence[int] = (),
    dropout: float = 0.2,
    seed: int = 0,
    task=None,
) -> keras.Model:
    """A head from base features to class probabilities (or, per ``task``, label probabilities or a number).

    Pooling is added only when the features are spatial (rank 3 per example or
    more), so a base that already ends in a vector is never pooled twice.

    Args:
        feature_shape: the base's output shape without the batch axis.
        num_classes: number of classes (the softmax width).
        pooling: global pooling of spatial features: ``avg``, ``max`` or ``avgmax`` (both side by side, see
            :mod:`graftkit.model.pooling`).
        hidden: sizes of hidden Dense (ReLU) layers, each followed by dropout.
        dropout: dropout rate before each Dense layer; 0 disables it.
        seed: seed of the dropout and weight initialisers.
        task: a :class:`graftkit.model.task.Task`; single-label classification by default.

    Example:
        >>> head = build_head((7, 7, 1280), 5, hidden=[256])
        >>> head.output.shape
        (None, 5)
    """
    from graftkit.model.task import Task

    task = task or Task()
    if num_classes < 2 and task.kind == "single":
        raise GraftError(f"a classifier needs at least 2 classes, got {num_classes}")
    check_mode(pooling)  # also where nothing is pooled
    inputs = keras.Input(tuple(feature_shape), name="features")
    x = inputs
    rank = len(feature_shape)
    if rank in (2, 3):
        x = pooler(rank, pooling)(x)
    elif rank > 3:
        x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate(hidden):
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + index, name=f"dropout_{index}")(x)
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{index}",
                               kernel_initializer=keras.initializers.HeNormal(seed=seed + index))(x)
    if dropout:
        x = keras.layers.Dropout(dropout, seed=seed + len(hidden), name="dropout")(x)
    outputs = task.output(x, num_classes, seed=seed)
    return keras.Model(inputs, outputs, name="head")


def assemble(base, head: keras.Model, *, train_bn: bool = False) -> keras.Model:
    """Join preprocessing, a cut base and a head into one model that takes RGB pixels 0..255 (or, for a text
    encoder, token ids).

    The base is called with ``training=False`` unless ``train_bn``: its BatchNorm layers then
    keep using their ImageNet statistics even while unfrozen (the fine-tuning trap of keras#9965).

    Args:
        base: a :class:`graftkit.bases.loader.Base`.
        head: from :func:`build_head`.
        train_bn: let BatchNorm layers of the base run in training mode.

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> model = assemble(base, build_head(base.feature_shape, 3))
        >>> [layer.name for layer in model.layers]
        ['image', 'preprocess', 'base', 'head']
    """
    if getattr(base, "kind", "image") == "text":  # token ids (0 = padding) of any length; dropout on in training
        inputs = keras.Input((None,), dtype="int32", name="token_ids")
        return keras.Model(inputs, head(base.model(inputs)), name="graft")
    size = base.image_size
    inputs = keras.Input((size, size, base.channels), name="image")
    x = base.preprocessing_layer()(inputs)
    x = base.model(x, training=None if train_bn else False)
    outputs = head(x)
    return keras.Model(inputs, outputs, name="graft")
