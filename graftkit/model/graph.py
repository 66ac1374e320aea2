"""Walking a Keras model's layers and graph, nested models included.

Keras 3 has no public API for a layer's node in one particular model or for cutting inside
a nested model; the helpers here are the one place graftkit reaches for them.
"""

from __future__ import annotations

import difflib

import keras

from graftkit.errors import GraftError


def graph_of(model):
    """The functional graph of ``model`` (a built Sequential keeps it in ``_functional``)."""
    if isinstance(model, keras.Sequential):
        graph = getattr(model, "_functional", None)
        if graph is None:
            raise GraftError(f"model '{model.name}' has no input shape yet: build it on an Input first")
        return graph
    return model


def node_of(model, layer):
    """The node where ``layer`` is called in ``model``'s own graph (not in other models)."""
    from keras.src.ops.function import (
        make_node_key,  # Keras 3 has no public graph API for this
    )

    keys = graph_of(model)._nodes
    for index, node in enumerate(layer._inbound_nodes):
        if make_node_key(layer, index) in keys:
            return node
    raise ValueError(f"layer '{layer.name}' is not called in model '{model.name}'")


def inputs_of(model):
    """The model's input tensor (or list of them when it has several)."""
    inputs = graph_of(model).inputs
    return inputs[0] if len(inputs) == 1 else inputs


def producer(tensor):
    """The layer that computed a symbolic tensor, and the node it did it in."""
    layer, node_index, _ = tensor._keras_history
    return layer, layer._inbound_nodes[node_index]


def is_container(layer) -> bool:
    return isinstance(layer, keras.Model)


def is_inference_only(model) -> bool:
    return bool(getattr(model, "_graft_inference_only", False)) or any(
        isinstance(layer, keras.layers.TFSMLayer) for layer in flatten_layers(model))


def locate(model, name: str):
    """The chain of layers from ``model``'s top level down to the layer called ``name``, or None."""
    for layer in model.layers:
        if layer.name == name and not isinstance(layer, keras.layers.InputLayer):
            return [layer]
    for layer in model.layers:
        if is_container(layer):
            inner = locate(layer, name)
            if inner:
                return [layer, *inner]
    return None


def layer_names(model) -> list[str]:
    names = []
    for layer in model.layers:
        if not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
            if is_container(layer):
                names += layer_names(layer)
    return names


def near_names(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=4, cutoff=0.5)
    return ", ".join(close) if close else "none"


def output_of(model, path):
    """The symbolic output of ``path[-1]`` in ``model``'s graph, cutting inside nested models."""
    node = node_of(model, path[0])
    if len(path) == 1:
        return node.output_tensors[0]
    inner = path[0]
    inner_cut = keras.Model(inputs_of(inner), output_of(inner, path[1:]), name=inner.name)
    feed = node.input_tensors
    return inner_cut(feed[0] if len(feed) == 1 else feed)


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
        layers += flatten_layers(layer) if is_container(layer) else [layer]
    return layers


def output_shape(layer):
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
                "output_shape": output_shape(layer) if not is_container(layer) else tuple(
                    node_of(container, layer).output_tensors[0].shape),
                "params": layer.count_params() if layer.built else 0,
                "trainable": bool(layer.trainable), "is_cut": layer.name == cut, "depth": depth,
            })
            if is_container(layer):
                walk(layer, depth + 1)

    walk(model, 0)
    return rows
