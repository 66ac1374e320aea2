"""Layer groups of a base, stem first, and each trainable variable's depth from the top (head 0, top group 1...).

Fine-tuning with ``--lr-decay D`` trains a variable ``k`` groups below the head at ``fine_tune_lr * D**k``
(layer-wise learning-rate decay: Howard & Ruder 2018's discriminative fine-tuning, timm's ``group_matcher``,
BEiT/ELECTRA's layer decay). The groups come from one of three rules, in this order:

1. **the base's own groups**: a named base's spec (:class:`graftkit.bases.spec.BaseSpec` ``layer_groups``:
   regexes over layer names, stem first) or a text encoder's (embeddings, then each transformer block), read
   from ``model._graft_layer_groups``. Group ``i`` starts at the first layer (in the model's order) whose name
   matches regex ``i`` and runs to the start of the next, the reading ``--freeze blocks:N`` has, so
   ``blocks:N`` trains exactly the top ``N`` groups;
2. **resolution stages**, for a base without groups (a personal model, a named base whose spec lists none): a
   new group starts at each layer whose output has at most half the spatial positions of the current group's
   first output (a strided convolution, a pooling; not a valid convolution's lost border); a layer whose output
   is a vector (rank 2) has none, fewer than any map. Named bases' groups are the same stages (ResNet's
   ``conv2_``..``conv5_``, VGG's blocks between poolings, MobileNet's groups of blocks at one resolution), so
   a personal ResNet gets the groups a named one has;
3. **equal chunks**, when the stages give fewer than two groups with weights (a model that never downsamples,
   or one whose sizes are unknown): :data:`CHUNKS` groups holding as equal a number of layers with weights as
   can be, in order (a normalization layer is not counted: it stays with the layer before it).

A group with no weights is merged into the next one (into the previous at the top), so every group has weights
and depths count only groups that can learn.
"""

from __future__ import annotations

import math
import re

CHUNKS = 4  # groups of the equal-chunk rule: about the stages a named base has (4-5)
SHRINK = 2  # a new resolution stage: outputs with at most 1/SHRINK of the stage's positions (a stride 2 has 1/4)


def layer_groups(base) -> list[list]:
    """The layers of ``base`` (nested models' layers in their place, no input layers) in groups, stem first.

    Args:
        base: a Keras model; its ``_graft_layer_groups`` regexes are used when it has them.

    Returns:
        A list of lists of layers; every group holds a layer with weights.

    Example:
        >>> import keras
        >>> x = inputs = keras.Input((16, 16, 3))
        >>> x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(x)
        >>> x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(x)
        >>> x = keras.layers.Conv2D(4, 3, padding="same", name="same")(x)
        >>> [[layer.name for layer in group] for group in layer_groups(keras.Model(inputs, x))]
        [['stem'], ['down', 'same']]
    """
    return _grouped(base)[0]


def group_rule(base) -> str:
    """Which rule made ``base``'s groups, in words for the log.

    Example:
        >>> import keras
        >>> group_rule(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)]))
        'equal chunks of its layers with weights: its outputs keep one size'
    """
    return _grouped(base)[1]


def variable_depths(base, head=None) -> list[tuple[object, int]]:
    """Each trainable variable of ``base`` and ``head`` with its group's depth from the top.

    The head is depth 0, the base's top group 1, the group below it 2, and so on (frozen groups count too, so
    a depth does not change with ``--freeze``).

    Args:
        base: the base model, its ``trainable`` flags set (:func:`graftkit.model.freeze.apply_freeze`).
        head: the head model, or None.

    Returns:
        ``(variable, depth)`` pairs, the head's first.

    Example:
        >>> import keras
        >>> x = inputs = keras.Input((16, 16, 3))
        >>> for i, stride in enumerate((1, 2, 2)):
        ...     x = keras.layers.Conv2D(2, 3, strides=stride, padding="same", name=f"c{i}")(x)
        >>> base = keras.Model(inputs, x)
        >>> head = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Flatten(), keras.layers.Dense(2, name="d")],
        ...                         name="head")
        >>> [(v.path, depth) for v, depth in variable_depths(base, head) if v.name == "kernel"]
        [('head/d/kernel', 0), ('c0/kernel', 3), ('c1/kernel', 2), ('c2/kernel', 1)]
    """
    pairs = [(variable, 0) for variable in (head.trainable_variables if head is not None else [])]
    groups = layer_groups(base)
    seen = {id(variable) for variable, _ in pairs}
    for index, group in enumerate(groups):
        for layer in group:
            for variable in layer.trainable_variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    pairs.append((variable, len(groups) - index))
    return pairs


def _grouped(base) -> tuple[list[list], str]:
    rows = _layers_and_areas(base)
    layers = [layer for layer, _ in rows]
    patterns = tuple(getattr(base, "_graft_layer_groups", ()) or ())
    if patterns:
        starts = [next((i for i, layer in enumerate(layers) if re.search(p, layer.name)), None) for p in patterns]
        starts = sorted(s for s in starts if s is not None)[1:]  # the layers before the first join the first group
        groups = _merged(_split(layers, starts))
        if groups:
            return groups, "the blocks it names"
    groups = _merged(_split(layers, _stage_starts(rows)))
    if len(groups) >= 2:
        return groups, "resolution stages: a group starts where the feature map shrinks"
    return _chunks(layers, CHUNKS), "equal chunks of its layers with weights: its outputs keep one size"


def _layers_and_areas(model) -> list[tuple[object, float | None]]:
    """The layers of ``model`` in order (nested models' in their place) with their outputs' spatial positions:
    ``H * W`` of a map, the length of a sequence, 0 for a vector, None when unknown."""
    import keras

    from graftkit.model.graph import is_container, node_of

    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if is_container(layer):
            rows += _layers_and_areas(layer)
            continue
        try:  # the node in this model's own graph: a layer reused elsewhere (the boundary cache's top) has more
            shape = node_of(model, layer).output_tensors[0].shape
        except (ValueError, IndexError, AttributeError):
            shape = None
        rows.append((layer, _area(shape)))
    return rows


def _area(shape) -> float | None:
    if shape is None or len(shape) < 2:
        return None
    spatial = tuple(shape[1:-1])
    if any(d is None for d in spatial):
        return None
    return float(math.prod(spatial)) if spatial else 0.0


def _stage_starts(rows) -> list[int]:
    """Indices of the layers (rows of :func:`_layers_and_areas`) where a new resolution stage starts: an output
    with at most half the positions of the current stage's first (a stride or a pooling; a valid convolution's
    lost border alone is not a new stage)."""
    starts, stage = [], None
    for i, (_, area) in enumerate(rows):
        if area is None:
            continue
        if stage is None:
            stage = area
        elif area < stage and area <= stage / SHRINK:
            starts.append(i)
            stage = area
    return starts


def _split(layers, starts) -> list[list]:
    """``layers`` cut before each index in ``starts``."""
    cuts = sorted({s for s in starts if 0 < s < len(layers)})
    edges = [0, *cuts, len(layers)]
    return [layers[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def _merged(groups) -> list[list]:
    """Groups without weights merged into the next group (the last ones into the one before)."""
    merged, pending = [], []
    for group in groups:
        pending += group
        if any(layer.weights for layer in group):
            merged.append(pending)
            pending = []
    if pending and merged:
        merged[-1] += pending
    return merged


def _chunks(layers, count: int) -> list[list]:
    """``layers`` in ``count`` groups (fewer when fewer layers have weights) of near-equal numbers of layers with
    weights; normalization layers are not counted, so each stays with the layer before it."""
    weighted = [i for i, layer in enumerate(layers)
                if layer.weights and not type(layer).__name__.endswith("Normalization")]
    if not weighted:
        return [list(layers)] if layers else []
    count = min(count, len(weighted))
    starts = [weighted[(len(weighted) * k) // count] for k in range(count)]
    return _merged(_split(layers, starts))
