"""The user's own ("personal") model as a base: load it safely, find where to cut it.

Loads Keras 3 ``.keras`` files, Keras 2 (tf-keras) ``.h5`` files and SavedModel
folders. Keras 3 cannot rebuild many Keras 2 ``.h5`` configs as written (MobileNet's
``DepthwiseConv2D(groups=1)``, DenseNet's ``conv1/conv`` names, nested models), so
the config is translated first; the weights are loaded by Keras itself, unchanged.
"""

from __future__ import annotations

import base64
import copy
import inspect
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

from graftkit.bases.preprocess import Preprocess
from graftkit.errors import GraftError
from graftkit.surgery import _graph, _is_container, _producer, flatten_layers

H5_SUFFIXES = (".h5", ".hdf5")
TRUST_HINT = "pass --trust-model only if you trust its author"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FIX_CUSTOM = ("re-save the model with Keras' built-in layers only, or load it in Python with its code and use "
               "graftkit's functions (cut_at, build_head, assemble) on the keras.Model")
_RANDOM_NOISE = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                 keras.layers.AlphaDropout, keras.layers.SpatialDropout1D,
                 keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D,
                 keras.layers.ActivityRegularization)


# ---------------------------------------------------------------- loading
def load_personal(path, *, trust: bool = False) -> keras.Model:
    """Load a model file of the user's to use as a base.

    Accepts a Keras 3 ``.keras`` file, a Keras 2 ``.h5`` / ``.hdf5`` file, or a
    SavedModel folder. A SavedModel can only be run, not trained, in Keras 3: it
    comes back wrapped in a model marked ``_graft_inference_only = True``.

    Args:
        path: the file or folder.
        trust: allow files that run their author's code: Python ``Lambda`` layers (in a
            ``.keras`` file, or marshalled bytecode in a Keras 2 ``.h5``) and SavedModel
            folders (TensorFlow programs whose ops can read and write files). Only for
            files from an author you trust. Without it, ``.keras`` and ``.h5`` files load
            in Keras safe mode.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        GraftError: the path is missing, not a model, damaged, in a format Keras 3
            cannot read, uses a custom class, or holds code and ``trust`` is False.

    Example:
        >>> model = load_personal("my_classifier.h5")  # doctest: +SKIP
        >>> base = graftkit.surgery.cut_at(model, find_cut(model))  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise GraftError(f"model file '{path}' does not exist: check the path")
    if path.is_dir():
        model = _load_savedmodel(path, trust)
    elif path.suffix.lower() in H5_SUFFIXES:
        model = _load_h5(path, trust)
    elif path.suffix.lower() == ".keras":
        model = _load_keras_zip(path, trust)
    else:
        raise GraftError(f"model file '{path}' has an unknown format '{path.suffix}': "
                         "pass a .keras or .h5 file or a SavedModel folder")
    model._graft_source = str(path)
    return model


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


def _class_names(config):
    """Every ``class_name`` in a (nested) Keras config."""
    if isinstance(config, dict):
        if isinstance(config.get("class_name"), str):
            yield config["class_name"]
        for value in config.values():
            yield from _class_names(value)
    elif isinstance(config, list):
        for value in config:
            yield from _class_names(value)


def _is_bytecode(text: str) -> bool:
    """Whether ``text`` is base64 of a marshalled Python code object (how Keras stores a lambda)."""
    text = text.replace("\n", "")
    if len(text) < 40 or len(text) % 4 or not _BASE64.fullmatch(text):
        return False
    return base64.b64decode(text)[0] & 0x7F == ord("c")  # marshal's code-object type byte


def _has_python_function(config) -> bool:
    """Whether a (nested) config holds a serialized Python function, whatever class carries it."""
    if isinstance(config, dict):
        if config.get("function_type") == "lambda" or config.get("output_shape_type") == "lambda":
            return True
        return any(_has_python_function(value) for value in config.values())
    if isinstance(config, list):
        return any(_has_python_function(value) for value in config)
    return isinstance(config, str) and _is_bytecode(config)


def _unknown_classes(config) -> list[str]:
    """Classes in a Keras 3 config that are neither Keras' own nor registered in this process."""
    found = []
    if isinstance(config, dict):
        name, module = config.get("class_name"), config.get("module")
        if isinstance(name, str) and "module" in config and not name.startswith("__"):
            registered = config.get("registered_name")
            builtin = isinstance(module, str) and (module in ("keras", "builtins") or module.startswith("keras."))
            if not builtin and not (registered and keras.saving.get_registered_object(registered)):
                found.append(registered or name)
        for value in config.values():
            found += _unknown_classes(value)
    elif isinstance(config, list):
        for value in config:
            found += _unknown_classes(value)
    return found


def _check_config(path: Path, config, trust: bool) -> None:
    names = set(_class_names(config))
    if ({"Lambda", "__lambda__"} & names or _has_python_function(config)) and not trust:
        raise GraftError(f"model file '{path}' contains custom Python code (a Lambda layer): "
                         + TRUST_HINT)
    unknown = _unknown_classes(config)
    if unknown:
        raise GraftError(f"model file '{path}' uses a custom class ('{unknown[0]}') whose code graftkit does not "
                         f"have: {_FIX_CUSTOM}")
    tf_ops = sorted(names & {"TFOpLambda", "SlicingOpLambda"})
    if tf_ops:
        raise GraftError(f"model file '{path}' calls TensorFlow functions directly ({tf_ops[0]} "
                         "layers), which Keras 3 cannot rebuild: export it from tf-keras as a "
                         "SavedModel folder and use that (inference only)")


def _keras_load(path: Path, trust: bool, what: str) -> keras.Model:
    """``keras.models.load_model`` with its deserialization errors turned into GraftErrors."""
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust)
    except OSError as error:  # h5py: truncated or unreadable data
        raise GraftError(f"model file '{what}' is damaged or truncated ({_first_line(error)}): "
                         "copy it again from where it was saved") from error
    except (TypeError, ValueError) as error:
        message = _first_line(error)
        chain = [_first_line(e) for e in _causes(error)]  # Keras wraps the real reason in generic errors
        if any("safe_mode" in m for m in chain):
            raise GraftError(f"model file '{what}' contains custom code: {TRUST_HINT}") from error
        custom = [m for m in chain if m.startswith(("Unknown layer", "Could not locate", "Could not deserialize"))]
        if custom:
            raise GraftError(f"model file '{what}' uses a custom class ({custom[0].split('.')[0]}) "
                             f"whose code graftkit does not have: {_FIX_CUSTOM}") from error
        raise GraftError(f"Keras 3 cannot rebuild model file '{what}' ({message}): re-save it with "
                         "the Keras that made it, or load it in Python and pass the model") from error


def _causes(error: BaseException) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain and len(chain) < 20:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _load_h5(path: Path, trust: bool) -> keras.Model:
    import h5py

    if not h5py.is_hdf5(path):
        raise GraftError(f"model file '{path}' is not an HDF5 (.h5) model: "
                         "check that it is the saved model and not another file renamed")
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", b"2")
            has_weights = "model_weights" in f
    except OSError as error:
        raise GraftError(f"model file '{path}' is damaged or truncated ({_first_line(error)}): "
                         "copy it again from where it was saved") from error
    if raw is None:
        raise GraftError(f"'{path}' holds only weights, no model: save the whole model "
                         "(model.save), or build the architecture in code and load these weights")
    try:
        config = json.loads(raw.decode("utf-8") if hasattr(raw, "decode") else raw)
    except ValueError as error:
        raise GraftError(f"model file '{path}' has a damaged model config ({_first_line(error)}): "
                         "copy it again from where it was saved") from error
    _check_config(path, config, trust)
    if not has_weights:
        raise GraftError(f"model file '{path}' has no weights (no model_weights group): "
                         "copy it again from where it was saved")
    version = version.decode("utf-8") if hasattr(version, "decode") else str(version)
    fixed = keras2_config_for_keras3(config) if not version.startswith("3") else config
    if fixed == config:
        return _keras_load(path, trust, str(path))
    # Keras 3 reads only files: write the translated config beside a copy of the weights.
    folder = tempfile.mkdtemp(prefix="graftkit-h5-")
    try:
        copy_path = Path(folder) / "model.h5"
        with h5py.File(path, "r") as src, h5py.File(copy_path, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["model_config"] = json.dumps(fixed)
            src.copy(src["model_weights"], dst, "model_weights")
        return _keras_load(copy_path, trust, str(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_keras_zip(path: Path, trust: bool) -> keras.Model:
    if not zipfile.is_zipfile(path):
        raise GraftError(f"model file '{path}' is not a Keras .keras file (not a zip archive): "
                         "check that it is the saved model, complete and not renamed")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if not {"config.json", "metadata.json"} <= names:
                raise GraftError(f"'{path}' is a zip archive but not a Keras model "
                                 "(no config.json): pass the file written by model.save")
            metadata = json.loads(archive.read("metadata.json"))
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise GraftError(f"model file '{path}' is damaged ({_first_line(error)}): "
                         "copy it again from where it was saved") from error
    if str(metadata.get("keras_version", "3")).startswith("2."):
        raise GraftError(f"model file '{path}' was saved by tf-keras (Keras 2) as .keras, which "
                         "Keras 3 cannot read: re-save it with tf-keras as .h5 (model.save('model.h5'))")
    _check_config(path, config, trust)
    return _keras_load(path, trust, str(path))


def _load_savedmodel(path: Path, trust: bool) -> keras.Model:
    if not (path / "saved_model.pb").exists():
        raise GraftError(f"model folder '{path}' is not a SavedModel (no saved_model.pb): "
                         "pass the folder written by tf.saved_model.save or model.export")
    if not trust:  # Keras has no safe mode for these: its graph may hold any op, file reads and writes too
        raise GraftError(f"model folder '{path}' is a SavedModel, a TensorFlow program that runs its author's "
                         f"ops (which can read and write files): {TRUST_HINT}")
    import tensorflow as tf

    layer = None
    for endpoint in ("serving_default", "serve"):
        try:
            layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint, trainable=False,
                                           name="savedmodel")
            break
        except ValueError:  # no such endpoint
            continue
        except (OSError, tf.errors.OpError) as error:
            raise GraftError(f"SavedModel '{path}' could not be read ({_first_line(error)}): "
                             "copy it again from where it was saved") from error
    if layer is None:
        raise GraftError(f"SavedModel '{path}' has no 'serving_default' signature: "
                         "export it with model.export or a serving signature")
    args, kwargs = layer.call_endpoint_fn.structured_input_signature
    specs = list(args) + list(kwargs.values())
    if len(specs) != 1 or not hasattr(specs[0], "shape"):
        raise GraftError(f"SavedModel '{path}' takes {len(specs)} inputs: graftkit needs "
                         "a model with one image input")
    spec = specs[0]
    inputs = keras.Input(tuple(spec.shape[1:]), dtype=spec.dtype.name, name="image")
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise GraftError(f"SavedModel '{path}' has {len(outputs)} outputs "
                             f"({', '.join(sorted(outputs))}): graftkit needs one")
        outputs = next(iter(outputs.values()))
    model = keras.Model(inputs, outputs, name=path.name.replace("/", "_") or "savedmodel")
    model._graft_inference_only = True
    return model


# ---------------------------------------------------------------- Keras 2 configs
_NESTED_CLASSES = ("Functional", "Model", "Sequential")


def keras2_config_for_keras3(config: dict) -> dict:
    """A copy of a tf-keras model config with what Keras 3 rejects translated.

    Fixes, at every nesting level: arguments Keras 3 refuses where dropping them
    changes nothing (``groups=1`` on depthwise / separable / transposed convolutions,
    unused ``kernel_*`` on separable ones, ``rng_type``, ``None`` values), list
    ``axis`` on BatchNormalization, ``/`` in layer names, one input / output written
    as a list of one, and the node numbers of nested models (Keras 2 counted a node
    of their own that Keras 3 does not create).

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
    _drop_stale_kwargs(cls, cfg)
    axis = cfg.get("axis")
    if cls == "BatchNormalization" and isinstance(axis, list) and len(axis) == 1:
        cfg["axis"] = int(axis[0])
    if cls in _NESTED_CLASSES and isinstance(cfg.get("layers"), list):
        _fix_graph(cfg)
        for sub in cfg["layers"]:
            _fix_layer(sub)


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


# ---------------------------------------------------------------- cut and preprocessing
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
        todo += [_producer(t) for t in current_node.input_tensors]
    return False


def _penultimate(model) -> str:
    """The layer feeding the final classifier, skipping activations and trailing dropout."""
    layer, node = _producer(_graph(model).outputs[0])
    while not layer.weights and node.input_tensors:
        layer, node = _producer(node.input_tensors[0])
    if node.input_tensors:
        layer, node = _producer(node.input_tensors[0])
        while isinstance(layer, _RANDOM_NOISE) and node.input_tensors:
            layer, node = _producer(node.input_tensors[0])
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
    output = _graph(model).outputs[0]
    layer, node = _producer(output)
    if _rank(output) == 4 or getattr(model, "_graft_inference_only", False):
        return layer.name
    todo, seen = [output], set()
    while todo:
        tensor = todo.pop(0)
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        layer, node = _producer(tensor)
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if _rank(tensor) == 4:
            if _has_features_before(layer, node):
                return layer.name
            break
        if _is_container(layer) and any(_rank(t) == 4 for t in _graph(layer).inputs):
            return find_cut(layer)  # the pooling happens inside this nested model
        todo += node.input_tensors
    return _penultimate(model)


def guess_preprocessing(model: keras.Model) -> str:
    """``"none"`` if the model scales its own input (Rescaling, Normalization or graftkit
    Preprocess among its first layers, before any learned layer), else ``"unit"`` (x / 255).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
        ...                       keras.layers.Conv2D(2, 3)])
        >>> guess_preprocessing(m)
        'none'
    """
    scaling = (keras.layers.Rescaling, keras.layers.Normalization, Preprocess)
    for layer in flatten_layers(model):
        if isinstance(layer, scaling):
            return "none"
        if layer.weights:
            break
    return "unit"


__all__ = ["load_personal", "find_cut", "guess_preprocessing", "keras2_config_for_keras3"]
