"""Features from every resolution stage of a base, not its top alone (``--head-input stages``, and ``auto``, the
default, wherever the base can be tapped).

The head of a frozen base usually sees the base's last feature map, pooled. The stages below it hold features
that are less specific to ImageNet (edges, textures, parts), and a linear head on all of them together learns
faster and better on data unlike ImageNet (Evci et al. 2022, Head2Toe; Hariharan et al. 2015, hypercolumns).
Here the end of each of the base's layer groups (:func:`graftkit.model.groups.layer_groups`: a named base's
blocks, else its resolution stages) whose feature map has at most 1/:data:`MIN_SHRINK` of the input's positions
(1/8 of each side: the coarse stages, where features are cheap to keep) is pooled, and so is the base's
output; the pooled vectors are put side by side. The base becomes a model that ends in that one vector, so
the feature cache, the head stage, fine-tuning and the saved model all take it as they take any base that
ends in a vector, and the model a user keeps holds built-in Keras layers only.
"""

from __future__ import annotations

import dataclasses
import math

from graftkit.errors import GraftError

MIN_SHRINK = 64  # a stage's map has at most 1/64 of the input's positions (1/8 of each side) to be tapped
POOL_PREFIX = "stage_pool_"
OUTPUT_NAME = "stage_features"


def stage_taps(model) -> list:
    """The layers whose outputs ``--head-input stages`` pools: each coarse stage's last map, then the output's.

    Args:
        model: a functional base (not nested).

    Returns:
        Layers, input side first; the base's last layer is always the last one.

    Example:
        >>> import keras
        >>> x = inputs = keras.Input((64, 64, 3))
        >>> for i in range(5):
        ...     x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name=f"down{i}")(x)
        >>> [layer.name for layer in stage_taps(keras.Model(inputs, x))]
        ['down2', 'down3', 'down4']
    """
    from graftkit.model.graph import producer
    from graftkit.model.groups import layer_groups

    inputs = model.inputs[0].shape[1:-1]
    if len(inputs) != 2 or None in inputs:
        return []
    limit = math.prod(inputs) / MIN_SHRINK
    taps = []
    for group in layer_groups(model)[:-1]:
        shape = _output(model, group[-1]).shape
        if len(shape) == 4 and None not in shape[1:3] and shape[1] * shape[2] <= limit:
            taps.append(group[-1])
    return [*taps, producer(model.outputs[0])[0]]


def _output(model, layer):
    from graftkit.model.graph import node_of

    return node_of(model, layer).output_tensors[0]


def check_stages(model, source: str) -> str:
    """Why ``model`` cannot give its stages' features, or ``""`` when it can.

    Example:
        >>> import keras
        >>> flat = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3)])
        >>> check_stages(flat, "tiny.keras")
        "'tiny.keras' has no coarse stages below its output (no feature map at 1/8 of the input's side or smaller)"
    """
    from graftkit.model.graph import is_container, is_inference_only

    if is_inference_only(model):
        return f"'{source}' is an inference-only SavedModel, whose inner layers cannot be tapped"
    if any(is_container(layer) for layer in model.layers):
        return f"'{source}' nests models, whose inner layers cannot be tapped from outside"
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        return f"'{source}' does not take one image input"
    if len(stage_taps(model)) < 2:
        return (f"'{source}' has no coarse stages below its output (no feature map at 1/8 of the input's side "
                "or smaller)")
    return ""


def with_stage_features(base, *, pooling: str = "avgmax"):
    """``base`` (a :class:`graftkit.bases.loader.Base`) ending in its stages' pooled features side by side.

    Each tap of :func:`stage_taps` is pooled globally (``pooling``: one of :data:`graftkit.model.pooling.MODES`;
    a tap that is already a vector is taken as it is) and the results are concatenated into one vector.

    Raises:
        GraftError: the base cannot be tapped (:func:`check_stages` says why).

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = with_stage_features(load_base("mobilenet_v2_0.35", image_size=96, weights=None))
        >>> base.feature_shape
        (2656,)
    """
    import keras

    from graftkit.model.pooling import pooler

    model = base.model
    why = check_stages(model, base.source)
    if why:
        raise GraftError(f"--head-input stages: {why}; use --head-input top")
    pooled = []
    for index, layer in enumerate(stage_taps(model)):
        tensor = _output(model, layer)
        pooled.append(pooler(3, pooling, name=f"{POOL_PREFIX}{index}")(tensor) if len(tensor.shape) == 4 else tensor)
    outputs = keras.layers.Concatenate(name=OUTPUT_NAME)(pooled)
    tapped = keras.Model(model.inputs[0], outputs, name=model.name)
    for flag in ("_graft_layer_groups", "_graft_source"):
        if hasattr(model, flag):
            setattr(tapped, flag, getattr(model, flag))
    return dataclasses.replace(base, model=tapped)


def is_stage_layer(layer) -> bool:
    """Whether ``layer`` is one that :func:`with_stage_features` added (they have no weights to train).

    Example:
        >>> import keras
        >>> is_stage_layer(keras.layers.Concatenate(name="stage_features")), is_stage_layer(keras.layers.ReLU())
        (True, False)
    """
    return layer.name == OUTPUT_NAME or layer.name.startswith(POOL_PREFIX)


def head_input_base(base, head_input: str = "top", *, pooling: str = "avgmax"):
    """``base`` as ``--head-input`` has the head take it: ``top`` as it is, ``stages`` through
    :func:`with_stage_features`, ``auto`` through it where the base can be tapped and as it is otherwise
    (both logged).

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> head_input_base(base) is base, head_input_base(base, "auto").feature_shape
        (True, (2656,))
    """
    from graftkit import log

    if head_input == "top":
        return base
    if head_input == "auto":
        why = check_stages(base.model, base.source)
        if why:
            log.info(f"head input: the base's output only ({why})")
            return base
    tapped = with_stage_features(base, pooling=pooling)
    names = [layer.name for layer in stage_taps(base.model)]
    log.info(f"head input: {len(names)} stages pooled side by side ({', '.join(names)}) -> {tapped.feature_shape}")
    return tapped


def has_stage_features(model) -> bool:
    """Whether ``model`` (a base, or a whole model holding one) ends in :func:`with_stage_features`' vector.

    Example:
        >>> import keras
        >>> has_stage_features(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        False
    """
    from graftkit.model.graph import flatten_layers

    return any(layer.name == OUTPUT_NAME for layer in flatten_layers(model))
