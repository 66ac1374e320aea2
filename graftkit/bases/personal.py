"""The user's own ("personal") model file, loaded safely: ``.keras``, Keras 2 ``.h5`` and SavedModel."""

from __future__ import annotations

import base64
import json
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import keras

from graftkit.bases.keras2 import keras2_config_for_keras3
from graftkit.errors import GraftError, error_chain

H5_SUFFIXES = (".h5", ".hdf5")


TRUST_HINT = "pass --trust-model only if you trust its author"


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


_FIX_CUSTOM = ("re-save the model with Keras' built-in layers only, or load it in Python with its code and use "
               "graftkit's functions (cut_at, build_head, assemble) on the keras.Model")


def load_personal(path, *, trust_model: bool = False) -> keras.Model:
    """Load a model file of the user's to use as a base.

    Accepts a Keras 3 ``.keras`` file, a Keras 2 ``.h5`` / ``.hdf5`` file, or a
    SavedModel folder. A SavedModel can only be run, not trained, in Keras 3: it
    comes back wrapped in a model marked ``_graft_inference_only = True``.

    Args:
        path: the file or folder.
        trust_model: allow files that run their author's code: Python ``Lambda`` layers (in a
            ``.keras`` file, or marshalled bytecode in a Keras 2 ``.h5``) and SavedModel
            folders (TensorFlow programs whose ops can read and write files). Only for
            files from an author you trust. Without it, ``.keras`` and ``.h5`` files load
            in Keras safe mode.

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        GraftError: the path is missing, not a model, damaged, in a format Keras 3
            cannot read, uses a custom class, or holds code and ``trust_model`` is False.

    Example:
        >>> model = load_personal("my_classifier.h5")  # doctest: +SKIP
        >>> base = graftkit.surgery.cut_at(model, find_cut(model))  # doctest: +SKIP
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise GraftError(f"model file '{path}' does not exist: check the path")
    if path.is_dir():
        model = _load_savedmodel(path, trust_model)
    elif path.suffix.lower() in H5_SUFFIXES:
        model = _load_h5(path, trust_model)
    elif path.suffix.lower() == ".keras":
        model = _load_keras_zip(path, trust_model)
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
            builtin = isinstance(module, str) and (module in ("keras", "builtins") or module.startswith("keras.")
                                                   or (module.startswith(_KERAS2_MODULES) and _is_keras_class(name)))
            if not builtin and not (registered and keras.saving.get_registered_object(registered)):
                found.append(registered or name)
        for value in config.values():
            found += _unknown_classes(value)
    elif isinstance(config, list):
        for value in config:
            found += _unknown_classes(value)
    return found


_KERAS2_MODULES = ("tf_keras.", "tensorflow.python.keras.", "tensorflow.keras.")


def _is_keras_class(name: str) -> bool:
    """Whether Keras 3 has a layer or model class of this name (what a Keras 2 module path refers to)."""
    return name in ("Functional", "Sequential", "Model") or isinstance(getattr(keras.layers, name, None), type)


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
    except EOFError as error:  # marshal.loads on the bytecode of a Lambda saved by another Python
        raise GraftError(_other_python(what)) from error
    except (TypeError, ValueError) as error:
        message = _first_line(error)
        chain = [_first_line(e) for e in error_chain(error)]  # Keras wraps the real reason in generic errors
        if any(isinstance(e, EOFError) or "marshal data" in str(e) for e in error_chain(error)):
            raise GraftError(_other_python(what)) from error
        if any("safe_mode" in m for m in chain):
            raise GraftError(f"model file '{what}' contains custom code: {TRUST_HINT}") from error
        custom = [m for m in chain if m.startswith(("Unknown layer", "Could not locate", "Could not deserialize"))]
        if custom:
            raise GraftError(f"model file '{what}' uses a custom class ({custom[0].split('.')[0]}) "
                             f"whose code graftkit does not have: {_FIX_CUSTOM}") from error
        raise GraftError(f"Keras 3 cannot rebuild model file '{what}' ({message}): re-save it with "
                         "the Keras that made it, or load it in Python and pass the model") from error


def _other_python(what: str) -> str:
    import sys

    return (f"model file '{what}' holds a Lambda layer whose Python code was saved by another Python version "
            f"(Keras 2 stores it as bytecode, which Python {sys.version_info.major}.{sys.version_info.minor} cannot "
            "read): re-save the model without the Lambda in the Python that made it, or rebuild the model in code "
            "and load these weights (model.load_weights(file, by_name=True))")


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
        except (AttributeError, ImportError) as error:
            if "add_slot" not in str(error) and "optimizer" not in str(error):
                raise
            # TF 2.0-2.x Keras saved the optimizer's slot variables, which TensorFlow recreates through
            # tf-keras' optimizer class; without tf-keras it fails (tensorflow#52370).
            raise GraftError(f"SavedModel '{path}' holds the state of its Keras 2 optimizer, which TensorFlow "
                             "restores only with tf-keras installed (tensorflow#52370): pip install tf-keras, or "
                             "re-save it without the optimizer (model.save(path, include_optimizer=False))") from error
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
