"""Keras 2 (tf-keras) model configs translated into what Keras 3 can rebuild.

Keras 3 cannot rebuild many Keras 2 ``.h5`` configs as written (MobileNet's
``DepthwiseConv2D(groups=1)``, DenseNet's ``conv1/conv`` names, nested models); the config is
translated here, and the weights are then loaded by Keras itself, unchanged.
"""

from __future__ import annotations

import copy
import inspect

import keras

_NESTED_CLASSES = ("Functional", "Model", "Sequential")
_KERAS2_MODULES = ("tf_keras", "tensorflow.python.keras", "tensorflow.keras", "keras.engine", "keras.src.engine")


def keras2_config_for_keras3(config: dict) -> dict:
    """A copy of a tf-keras model config with what Keras 3 rejects translated.

    Fixes, at every nesting level: arguments Keras 3 refuses where dropping them
    changes nothing (``groups=1`` on depthwise / separable / transposed convolutions,
    unused ``kernel_*`` on separable ones, ``rng_type``, ``None`` values), list
    ``axis`` on BatchNormalization, ``/`` in layer names, one input / output written
    as a list of one, the node numbers of nested models (Keras 2 counted a node
    of their own that Keras 3 does not create), and a Keras 2.2-2.3 Sequential with no
    ``InputLayer`` whose first layer carries ``batch_input_shape`` (Keras 3 would make
    that shape, batch axis included, the shape of one example: an input of rank 5), and
    the module tf-keras names for a nested model (``tf_keras.src.engine.functional``).

    Example:
        >>> keras2_config_for_keras3({"class_name": "DepthwiseConv2D",
        ...                           "config": {"name": "dw", "groups": 1}})["config"]
        {'name': 'dw'}
    """
    config = copy.deepcopy(config)
    _fix_layer(config)
    if isinstance(config.get("config"), dict) and "/" in str(config["config"].get("name", "")):
        config["config"]["name"] = config["config"]["name"].replace("/", "_")
    return config


def _accepted_kwargs(layer_class) -> set[str] | None:
    """Constructor arguments a Keras 3 layer class takes (following ``**kwargs`` up its bases)."""
    accepted = set()
    for klass in layer_class.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        accepted |= set(params)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return accepted
        if klass is keras.layers.Layer:
            return accepted | {"input_shape", "input_dim", "batch_input_shape", "batch_size"}
    return None


def _drop_stale_kwargs(cls: str, cfg: dict) -> None:
    """Drop Keras 2 arguments a Keras 3 layer refuses, where dropping them changes nothing."""
    layer_class = getattr(keras.layers, cls, None)
    if not isinstance(layer_class, type) or not issubclass(layer_class, keras.layers.Layer):
        return
    if cls == "LeakyReLU" and "alpha" in cfg:
        cfg.setdefault("negative_slope", cfg.pop("alpha"))
    accepted = _accepted_kwargs(layer_class)
    if accepted is None:
        return
    for key in [k for k in cfg if k not in accepted]:
        value = cfg[key]
        if (value is None or key in ("rng_type", "force_generator", "trainable")
                or (key == "groups" and value == 1)
                or (cls.startswith("SeparableConv") and key.startswith("kernel_"))):
            del cfg[key]


def _fix_layer(entry) -> None:
    cls, cfg = entry.get("class_name"), entry.get("config")
    if not isinstance(cls, str) or not isinstance(cfg, dict):
        return
    module = entry.get("module")
    if cls in _NESTED_CLASSES and isinstance(module, str) and module.startswith(_KERAS2_MODULES):
        # tf-keras names its own module (tf_keras.src.engine.functional), which Keras 3 cannot import:
        # without it, Keras 3 rebuilds the model as the legacy config it is.
        entry.pop("module")
        entry.pop("registered_name", None)
    _drop_stale_kwargs(cls, cfg)
    axis = cfg.get("axis")
    if cls == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        cfg["axis"] = int(axis[0])
    if cls == "Sequential" and isinstance(cfg.get("layers"), list):
        _add_sequential_input(cfg)
    if cls in _NESTED_CLASSES and isinstance(cfg.get("layers"), list):
        _fix_graph(cfg)
        for sub in cfg["layers"]:
            _fix_layer(sub)


def _add_sequential_input(cfg: dict) -> None:
    """Give a Keras 2.2-2.3 Sequential the ``InputLayer`` its first layer's ``batch_input_shape`` stands for."""
    entries = cfg["layers"]
    if not entries or not isinstance(entries[0], dict) or entries[0].get("class_name") == "InputLayer":
        return
    first = entries[0].get("config")
    shape = first.get("batch_input_shape") if isinstance(first, dict) else None
    if not isinstance(shape, list) or not shape:
        return
    del first["batch_input_shape"]
    taken = {str(e.get("config", {}).get("name")) for e in entries if isinstance(e, dict)}
    name = f"{first.get('name', 'input')}_input"
    while name in taken:
        name += "_"
    entries.insert(0, {"class_name": "InputLayer", "config": {
        "batch_shape": list(shape), "dtype": first.get("dtype") or "float32", "sparse": False, "name": name}})


def _fix_graph(cfg: dict) -> None:
    """Rename ``a/b`` layers and renumber calls of nested models in one model's config."""
    entries = cfg["layers"]
    taken = {e.get("name") or e.get("config", {}).get("name") for e in entries}
    renames = {}
    for name in sorted(n for n in taken if isinstance(n, str) and "/" in n):
        new = name.replace("/", "_")
        while new in taken:
            new += "_"
        taken.add(new)
        renames[name] = new
    # Keras 2 gave a nested model built on an Input a node of its own (node 0).
    shifted = set()
    for e in entries:
        inner = e.get("config", {})
        layers = inner.get("layers") if isinstance(inner, dict) else None
        if e.get("class_name") in ("Functional", "Model") or (
                e.get("class_name") == "Sequential" and layers
                and layers[0].get("class_name") == "InputLayer"):
            shifted.add(e.get("name") or inner.get("name"))

    def fix_refs(value, shift_from):
        if isinstance(value, list):
            if (len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int)
                    and isinstance(value[2], int)):
                name = value[0]
                if name in shift_from and value[1] > 0:
                    value[1] -= 1
                value[0] = renames.get(name, name)
            for item in value:
                fix_refs(item, shift_from)
        elif isinstance(value, dict):
            for item in value.values():
                fix_refs(item, shift_from)

    for e in entries:
        for holder in (e, e.get("config", {})):
            if isinstance(holder, dict) and holder.get("name") in renames:
                holder["name"] = renames[holder["name"]]
        if "inbound_nodes" in e:
            fix_refs(e["inbound_nodes"], shifted)
    # Keras 3 itself renumbers output references to nested Functional models, not to Sequential ones.
    sequential = {e.get("name") for e in entries if e.get("class_name") == "Sequential"}
    for key, shift in (("input_layers", set()), ("output_layers", shifted & sequential)):
        if key in cfg:
            fix_refs(cfg[key], shift)
            # Keras 2 wrote one input / output as a list of one: Keras 3 would then return lists.
            refs = cfg[key]
            if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
                cfg[key] = refs[0]
