"""Which layers of a base train while fine-tuning: the ``--freeze`` spec and applying it.

Parsing a spec imports no TensorFlow, so the command line checks ``--freeze`` in a moment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from graftkit.errors import GraftError

FREEZE_FORMS = "all, none, last:N, last:P%, blocks:N or from:LAYER"


@dataclass(frozen=True)
class FreezeSpec:
    """Which layers of a base to train: ``all`` frozen, ``none`` frozen, the ``last`` N / P%, or ``from`` a layer.

    Example:
        >>> FreezeSpec("last", count=20, percent=None, layer=None).count
        20
    """

    kind: str
    count: int | None = None
    percent: float | None = None
    layer: str | None = None


def parse_freeze(text: str) -> FreezeSpec:
    """Parse a ``--freeze`` value: ``all``, ``none``, ``last:20``, ``last:30%``, ``blocks:2`` or ``from:LAYER``.

    ``all`` freezes the whole base; ``none`` trains all of it; ``last`` trains the
    last N layers or P percent of them; ``blocks`` trains the last N blocks of a named base
    (its spec's layer groups, stem first: ``graft inspect NAME`` shows them), so a cut never
    falls inside a residual block; ``from`` trains a named layer and all after it.

    Raises:
        GraftError: the text is none of these forms.

    Example:
        >>> parse_freeze("last:30%")
        FreezeSpec(kind='last', count=None, percent=30.0, layer=None)
        >>> parse_freeze("from:block_13_expand").layer
        'block_13_expand'
        >>> parse_freeze("blocks:2").count
        2
    """
    value = str(text).strip()
    kind, _, arg = value.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind in ("all", "none") and not arg:
        return FreezeSpec(kind)
    if kind == "from" and arg:
        return FreezeSpec("from", layer=arg)
    if kind == "blocks" and arg.isdigit() and int(arg) > 0:
        return FreezeSpec("blocks", count=int(arg))
    if kind == "last":
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", arg)
        if match and 0 < float(match.group(1)) <= 100:
            return FreezeSpec("last", percent=float(match.group(1)))
        if arg.isdigit() and int(arg) > 0:
            return FreezeSpec("last", count=int(arg))
    raise GraftError(f"--freeze '{text}' is not understood{_suggestion(value)}: use {FREEZE_FORMS} "
                     "(N > 0, 0 < P <= 100)")


def for_base(spec: FreezeSpec, base) -> FreezeSpec:
    """``spec`` as it applies to ``base``: for a text encoder, ``last`` counts transformer blocks, not layers.

    A transformer block is a dozen layers (attention, norms, the feed-forward pair) that only make
    sense trained together, so ``last:2`` fine-tunes a text encoder's top two blocks and
    ``last:30%`` the top 30% of its blocks (at least one).

    Example:
        >>> class Encoder: kind, blocks = "text", 6
        >>> for_base(parse_freeze("last:30%"), Encoder()), for_base(parse_freeze("last:9"), Encoder()).count
        (FreezeSpec(kind='blocks', count=2, percent=None, layer=None), 6)
    """
    if getattr(base, "kind", "image") != "text" or spec.kind != "last":
        return spec
    count = spec.count if spec.count is not None else math.ceil(base.blocks * spec.percent / 100)
    return FreezeSpec("blocks", count=max(1, min(count, base.blocks)))


def _suggestion(value: str) -> str:
    """``: did you mean last:30%?`` for ``last30%``, ``last=30``, ``frozen``...; empty when nothing is close."""
    import difflib

    match = re.fullmatch(r"(?i)\s*(last|from|blocks)\s*[-=_ ]?\s*(\S.*?)\s*", value)
    if match:
        guess = f"{match.group(1).lower()}:{match.group(2)}"
        return f" (did you mean {guess}?)" if guess != value else ""
    close = difflib.get_close_matches(value.lower(), ["all", "none", "frozen", "unfrozen"], n=1, cutoff=0.5)
    guess = {"frozen": "all", "unfrozen": "none"}.get(close[0], close[0]) if close else None
    return f" (did you mean {guess}?)" if guess else ""


def _first_trained(layers, spec: FreezeSpec, train_bn: bool, model) -> int:
    """Index in ``layers`` of the first layer to train."""
    from graftkit.model.graph import (
        flatten_layers,
        is_container,
        layer_names,
        locate,
        near_names,
    )

    if spec.kind == "all":
        return len(layers)
    if spec.kind == "none":
        return 0
    if spec.kind == "from":
        path = locate(model, spec.layer)
        if path is None:
            raise GraftError(
                f"--freeze from:{spec.layer}: the base has no layer '{spec.layer}' (close names: "
                f"{near_names(spec.layer, layer_names(model))}); list its layers with `graft inspect MODEL`")
        target = path[-1]
        first = flatten_layers(target)[0] if is_container(target) else target
        return next(i for i, layer in enumerate(layers) if layer is first)
    if spec.kind == "blocks":
        return _first_of_blocks(layers, spec.count, model)
    if spec.count is not None:
        return max(len(layers) - spec.count, 0)
    start = len(layers) - math.ceil(len(layers) * spec.percent / 100)
    # At least one layer that will really learn something.
    while start > 0 and not any(_learns(layer, train_bn) for layer in layers[start:]):
        start -= 1
    return start


def _first_of_blocks(layers, count: int, model) -> int:
    """Index of the first layer of the last ``count`` blocks, by the base's layer groups (regexes, stem first)."""
    groups = getattr(model, "_graft_layer_groups", ())
    check_blocks(count, groups, getattr(model, "_graft_source", model.name))
    pattern = re.compile(groups[-count])
    return next((i for i, layer in enumerate(layers) if pattern.search(layer.name)), len(layers))


def check_blocks(count: int, groups, base: str) -> None:
    """Refuse ``blocks:N`` for a base without blocks, or with fewer than N.

    Example:
        >>> check_blocks(6, ("^stem", "^block1", "^block2"), "tiny")
        Traceback (most recent call last):
        graftkit.errors.GraftError: --freeze blocks:6: base 'tiny' has 3 blocks (stem included): use blocks:1 to blocks:3
    """
    if not groups:
        raise GraftError(f"--freeze blocks:{count}: base '{base}' has no known blocks (only named bases do): "
                         "use last:N, last:P% or from:LAYER")
    if count > len(groups):
        raise GraftError(f"--freeze blocks:{count}: base '{base}' has {len(groups)} blocks (stem included): "
                         f"use blocks:1 to blocks:{len(groups)}")


def _learns(layer, train_bn: bool) -> bool:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization) and not train_bn:
        return False
    return bool(layer.weights)


def apply_freeze(base, spec: FreezeSpec, *, train_bn: bool = False) -> int:
    """Set ``trainable`` on the layers of ``base`` as ``spec`` says.

    BatchNormalization layers stay frozen unless ``train_bn`` (a frozen BN layer
    runs in inference mode in Keras 3, so its moving statistics are kept). Nested
    models are kept trainable themselves so that their inner layers' flags count.
    Compile the model again after calling this (Keras reads ``trainable`` at compile time).

    Args:
        base: the base model (usually the result of :func:`cut_at`).
        spec: from :func:`parse_freeze`.
        train_bn: also train BatchNormalization layers in the unfrozen part.

    Returns:
        The number of trainable weight tensors of ``base`` afterwards.

    Raises:
        GraftError: ``from:LAYER`` names no layer, or the base is inference-only
            (a SavedModel) and the spec asks to train part of it.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
        ...                       keras.layers.BatchNormalization(), keras.layers.Conv2D(4, 3)])
        >>> apply_freeze(m, parse_freeze("last:2"))
        2
    """
    import keras

    from graftkit.model.graph import flatten_layers, is_inference_only
    from graftkit.model.stages import is_stage_layer

    layers = [layer for layer in flatten_layers(base) if not is_stage_layer(layer)]  # last:P% counts the base's own
    first = _first_trained(layers, spec, train_bn, base)
    if first < len(layers) and is_inference_only(base):
        source = getattr(base, "_graft_source", base.name)
        raise GraftError(
            f"'{source}' is a SavedModel, which Keras 3 loads for inference only: it can only be "
            "frozen (--freeze all); to fine-tune it, load the original model as .keras or .h5")
    base.trainable = True  # containers first, so they do not mask their layers' flags
    for index, layer in enumerate(layers):
        layer.trainable = index >= first and (
            train_bn or not isinstance(layer, keras.layers.BatchNormalization))
    for layer in flatten_layers(base):
        if is_stage_layer(layer):
            layer.trainable = False  # weightless, and frozen: the boundary cache may take them into its prefix
    if spec.kind == "all":
        base.trainable = False
    return len(base.trainable_weights)
