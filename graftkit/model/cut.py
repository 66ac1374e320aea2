"""Cutting a base: where its features end, and a new model up to there."""

from __future__ import annotations

import keras

from graftkit.errors import GraftError
from graftkit.model.graph import (
    graph_of,
    inputs_of,
    is_container,
    layer_names,
    locate,
    near_names,
    output_of,
    producer,
)


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
        from graftkit.model.cut import find_cut

        layer_name = find_cut(model)
    path = locate(model, layer_name)
    if path is None:
        raise GraftError(
            f"--cut: model '{model.name}' has no layer '{layer_name}' (close names: "
            f"{near_names(layer_name, layer_names(model))}); list its layers with `graft inspect MODEL`")
    cut = keras.Model(inputs_of(model), output_of(model, path), name=f"{model.name}_cut")
    for flag in ("_graft_inference_only", "_graft_source"):  # set by load_personal
        if hasattr(model, flag):
            setattr(cut, flag, getattr(model, flag))
    return cut


_RANDOM_NOISE = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                 keras.layers.AlphaDropout, keras.layers.SpatialDropout1D,
                 keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D,
                 keras.layers.ActivityRegularization)


def _rank(tensor) -> int:
    return len(tensor.shape)


def _has_features_before(layer, node) -> bool:
    """Whether ``layer`` or anything feeding it has learned weights (not just preprocessing)."""
    seen, todo = set(), [(layer, node)]
    while todo:
        current, current_node = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if current.weights and not isinstance(current, keras.layers.Normalization):
            return True
        todo += [producer(t) for t in current_node.input_tensors]
    return False


def _penultimate(model) -> str:
    """The layer feeding the final classifier, skipping activations and trailing dropout."""
    layer, node = producer(graph_of(model).outputs[0])
    while not layer.weights and node.input_tensors:
        layer, node = producer(node.input_tensors[0])
    if node.input_tensors:
        layer, node = producer(node.input_tensors[0])
        while isinstance(layer, _RANDOM_NOISE) and node.input_tensors:
            layer, node = producer(node.input_tensors[0])
    if isinstance(layer, keras.layers.InputLayer) or not node.input_tensors:
        raise GraftError(f"model '{model.name}' has no layer before its classifier to cut at: "
                         "name a layer with --cut or use a named base")
    if not _has_features_before(layer, node):
        raise GraftError(f"model '{model.name}' has no learned layer before its classifier "
                         f"(only '{layer.name}' and layers without weights): there are no features to "
                         "transfer; use a named base or a model with convolutional layers")
    return layer.name


def find_cut(model: keras.Model) -> str:
    """The name of the layer to cut ``model`` at to use it as a feature extractor.

    That is the last layer with a spatial (4-D) output feeding the model's own
    pooling / flatten / classifier. A model whose output is already 4-D is kept
    whole (its last layer); one without any 4-D layer is cut before its final
    classifier (skipping trailing Dropout). A nested model whose output is 4-D is
    kept whole (its name is returned); the cut can also fall inside a nested model.
    A SavedModel base cannot be cut inside: its last layer is returned.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
        ...                       keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        >>> find_cut(m)
        'conv'
    """
    output = graph_of(model).outputs[0]
    layer, node = producer(output)
    if _rank(output) == 4 or getattr(model, "_graft_inference_only", False):
        return layer.name
    todo, seen = [output], set()
    while todo:
        tensor = todo.pop(0)
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        layer, node = producer(tensor)
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if _rank(tensor) == 4:
            while isinstance(layer, _RANDOM_NOISE) and node.input_tensors:  # a Dropout is identity at inference
                layer, node = producer(node.input_tensors[0])
            if _has_features_before(layer, node):
                return layer.name
            break
        if is_container(layer) and any(_rank(t) == 4 for t in graph_of(layer).inputs):
            return find_cut(layer)  # the pooling happens inside this nested model
        todo += node.input_tensors
    return _penultimate(model)


def probability_note(model: keras.Model, cut_model: keras.Model, cut: str) -> str:
    """A warning when a cut keeps ``model``'s own class probabilities as the features, else ``""``.

    That is a cut at the model's final softmax (always so for a SavedModel, which cannot be cut
    inside): a new head then learns from the old classes' scores alone. Told by running the
    cut model on two random images: non-negative outputs summing to 1.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="conv"),
        ...                       keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax", name="top")])
        >>> probability_note(m, cut_at(m, "top"), "top")[:40]
        "the cut 'top' is the model's own output:"
        >>> probability_note(m, cut_at(m, "conv"), "conv")
        ''
    """
    import numpy as np

    output = cut_model.outputs[0]
    if _rank(output) != 2 or tuple(output.shape) != tuple(graph_of(model).outputs[0].shape):
        return ""
    shape = [d if d is not None else 64 for d in cut_model.inputs[0].shape[1:]]
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    y = np.asarray(cut_model(x, training=False), "float64")
    if y.min() < 0 or not np.allclose(y.sum(axis=-1), 1, atol=1e-3):
        return ""
    inference_only = getattr(model, "_graft_inference_only", False)
    return (f"the cut '{cut}' is the model's own output: its {output.shape[-1]} features are the old classes' "
            "probabilities (a softmax), so the new head learns from those scores alone; "
            + ("a SavedModel cannot be cut inside: use the model's .keras / .h5 file to cut at its last feature map"
               if inference_only else "cut at an earlier layer with --cut (graft inspect lists them)"))
