"""Model surgery: cut a base at a layer, freeze / unfreeze it, list its layers.

Everything takes and returns plain Keras objects. Nested models (a base inside a
``Sequential``) are handled: :func:`flatten_layers` expands them, :func:`cut_at`
can cut inside them, and :func:`apply_freeze` never lets a container's
``trainable`` flag hide its inner layers' flags.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

import keras

from graftkit.errors import GraftError

FREEZE_FORMS = "all, none, last:N, last:P% or from:LAYER"


# ---------------------------------------------------------------- graph helpers
def _graph(model):
    """The functional graph of ``model`` (a built Sequential keeps it in ``_functional``)."""
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise GraftError(f"model '{model.name}' has no input shape yet: build it on an Input first")
        return graph
    return model


def _node(model, layer):
    """The node where ``layer`` is called in ``model``'s own graph (not in other models)."""
    from keras.src.ops.function import make_node_key  # Keras 3 has no public graph API for this

    keys = _graph(model)._nodes
    for index, node in enumerate(layer._inbound_nodes):
        if make_node_key(layer, index) in keys:
            return node
    raise ValueError(f"layer '{layer.name}' is not called in model '{model.name}'")


def _inputs(model):
    """The model's input tensor (or list of them when it has several)."""
    inputs = _graph(model).inputs
    return inputs[0] if len(inputs) == 1 else inputs


def _producer(tensor):
    """The layer that computed a symbolic tensor, and the node it did it in."""
    layer, node_index, _ = tensor._keras_history
    return layer, layer._inbound_nodes[node_index]


def _is_container(layer) -> bool:
    return isinstance(layer, keras.Model)


def _is_inference_only(model) -> bool:
    return bool(getattr(model, "_graft_inference_only", False)) or any(
        isinstance(layer, keras.layers.TFSMLayer) for layer in flatten_layers(model))


def _locate(model, name: str):
    """The chain of layers from ``model``'s top level down to the layer called ``name``, or None."""
    for layer in model.layers:
        if layer.name == name and not isinstance(layer, keras.layers.InputLayer):
            return [layer]
    for layer in model.layers:
        if _is_container(layer):
            inner = _locate(layer, name)
            if inner:
                return [layer, *inner]
    return None


def _names(model) -> list[str]:
    names = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
            if _is_container(layer):
                names += _names(layer)
    return names


def _near(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=4, cutoff=0.5)
    return ", ".join(close) if close else "none"


def _output_of(model, path):
    """The symbolic output of ``path[-1]`` in ``model``'s graph, cutting inside nested models."""
    node = _node(model, path[0])
    if len(path) == 1:
        return node.output_tensors[0]
    inner = path[0]
    inner_cut = keras.Model(_inputs(inner), _output_of(inner, path[1:]), name=inner.name)
    feed = node.input_tensors
    return inner_cut(feed[0] if len(feed) == 1 else feed)


# ---------------------------------------------------------------- public API
def flatten_layers(model) -> list[keras.layers.Layer]:
    """The layers of ``model`` in order, nested models replaced by their own layers.

    Input layers are left out: they have nothing to freeze or describe.

    Example:
        >>> import keras
        >>> inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="c")])
        >>> outer = keras.Sequential([keras.Input((8, 8, 3)), inner, keras.layers.Flatten(name="f")])
        >>> [layer.name for layer in flatten_layers(outer)]
        ['c', 'f']
    """
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        layers += flatten_layers(layer) if _is_container(layer) else [layer]
    return layers


def cut_at(model: keras.Model, layer_name: str | None = None) -> keras.Model:
    """A new model from ``model``'s input to the output of the layer ``layer_name``.

    The new model shares its layers (and so its weights) with ``model``. A layer
    inside a nested model can be named too. ``None`` picks the cut with
    :func:`graftkit.bases.personal.find_cut`.

    Args:
        model: a built Sequential or Functional model.
        layer_name: the layer whose output becomes the new model's output.

    Returns:
        A functional ``keras.Model`` (so ``.input`` and ``.output`` are defined).

    Raises:
        GraftError: no layer has that name.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                       keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        >>> cut_at(m, "conv").output.shape
        (None, 6, 6, 4)
    """
    if layer_name is None:
        from graftkit.bases.personal import find_cut

        layer_name = find_cut(model)
    path = _locate(model, layer_name)
    if path is None:
        raise GraftError(
            f"--cut: model '{model.name}' has no layer '{layer_name}' (close names: "
            f"{_near(layer_name, _names(model))}); list its layers with `graft inspect MODEL`")
    cut = keras.Model(_inputs(model), _output_of(model, path), name=f"{model.name}_cut")
    for flag in ("_graft_inference_only", "_graft_source"):  # set by load_personal
        if hasattr(model, flag):
            setattr(cut, flag, getattr(model, flag))
    return cut


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
    """Parse a ``--freeze`` value: ``all``, ``none``, ``last:20``, ``last:30%`` or ``from:LAYER``.

    ``all`` freezes the whole base; ``none`` trains all of it; ``last`` trains the
    last N layers or P percent of them; ``from`` trains a named layer and all after it.

    Raises:
        GraftError: the text is none of these forms.

    Example:
        >>> parse_freeze("last:30%")
        FreezeSpec(kind='last', count=None, percent=30.0, layer=None)
        >>> parse_freeze("from:block_13_expand").layer
        'block_13_expand'
    """
    value = str(text).strip()
    kind, _, arg = value.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind in ("all", "none") and not arg:
        return FreezeSpec(kind)
    if kind == "from" and arg:
        return FreezeSpec("from", layer=arg)
    if kind == "last":
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", arg)
        if match and 0 < float(match.group(1)) <= 100:
            return FreezeSpec("last", percent=float(match.group(1)))
        if arg.isdigit() and int(arg) > 0:
            return FreezeSpec("last", count=int(arg))
    raise GraftError(f"--freeze '{text}' is not understood: use {FREEZE_FORMS} "
                     "(N > 0, 0 < P <= 100)")


def _first_trained(layers, spec: FreezeSpec, train_bn: bool, model) -> int:
    """Index in ``layers`` of the first layer to train."""
    if spec.kind == "all":
        return len(layers)
    if spec.kind == "none":
        return 0
    if spec.kind == "from":
        path = _locate(model, spec.layer)
        if path is None:
            raise GraftError(
                f"--freeze from:{spec.layer}: the base has no layer '{spec.layer}' (close names: "
                f"{_near(spec.layer, _names(model))}); list its layers with `graft inspect MODEL`")
        target = path[-1]
        first = flatten_layers(target)[0] if _is_container(target) else target
        return next(i for i, layer in enumerate(layers) if layer is first)
    if spec.count is not None:
        return max(len(layers) - spec.count, 0)
    start = len(layers) - math.ceil(len(layers) * spec.percent / 100)
    # At least one layer that will really learn something.
    while start > 0 and not any(_learns(layer, train_bn) for layer in layers[start:]):
        start -= 1
    return start


def _learns(layer, train_bn: bool) -> bool:
    if isinstance(layer, keras.layers.BatchNormalization) and not train_bn:
        return False
    return bool(layer.weights)


def apply_freeze(base: keras.Model, spec: FreezeSpec, *, train_bn: bool = False) -> int:
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
    layers = flatten_layers(base)
    first = _first_trained(layers, spec, train_bn, base)
    if first < len(layers) and _is_inference_only(base):
        source = getattr(base, "_graft_source", base.name)
        raise GraftError(
            f"'{source}' is a SavedModel, which Keras 3 loads for inference only: it can only be "
            "frozen (--freeze all); to fine-tune it, load the original model as .keras or .h5")
    base.trainable = True  # containers first, so they do not mask their layers' flags
    for index, layer in enumerate(layers):
        layer.trainable = index >= first and (
            train_bn or not isinstance(layer, keras.layers.BatchNormalization))
    if spec.kind == "all":
        base.trainable = False
    return len(base.trainable_weights)


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or called several times
        return None


def describe_layers(model, cut: str | None = None) -> list[dict]:
    """One row per layer for ``graft inspect``: nested models get a row, then their layers.

    Each row has ``name``, ``type``, ``output_shape``, ``params`` (a nested model's
    row counts everything inside it), ``trainable``, ``is_cut`` and ``depth``
    (0 at the top level, 1 inside a nested model, ...).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                       keras.layers.Flatten(name="flat")])
        >>> [(r["name"], r["output_shape"], r["params"], r["is_cut"]) for r in describe_layers(m, "conv")]
        [('conv', (None, 6, 6, 4), 112, True), ('flat', (None, 144), 0, False)]
    """
    rows = []

    def walk(container, depth):
        for layer in container.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            rows.append({
                "name": layer.name, "type": type(layer).__name__,
                "output_shape": _output_shape(layer) if not _is_container(layer) else tuple(
                    _node(container, layer).output_tensors[0].shape),
                "params": layer.count_params() if layer.built else 0,
                "trainable": bool(layer.trainable), "is_cut": layer.name == cut, "depth": depth,
            })
            if _is_container(layer):
                walk(layer, depth + 1)

    walk(model, 0)
    return rows
