"""Writing files so that no reader ever sees half of one: a temporary file beside the target, then a rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from graftkit.errors import GraftError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    path = Path(path)
    with temporary_beside(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, value) -> None:
    """Write ``value`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, default=_jsonable) + "\n")


def atomic_save_model(model, path: str | Path) -> None:
    """Save a Keras model to ``path`` (``.keras``) atomically, as an inference model: no optimizer, no compile state.

    A compiled model's file would carry its optimizer, and ``keras.models.load_model`` would then
    compile it afresh and warn that it skips the saved optimizer variables. The file written here
    holds only the architecture and weights, so it loads in plain Keras without a warning.
    (Resuming a run never needed the saved optimizer: it reads ``checkpoint.npz``.)

    Example:
        >>> import keras, tempfile, zipfile
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> m.compile("adam", "mse")
        >>> path = Path(tempfile.mkdtemp()) / "m.keras"
        >>> atomic_save_model(m, path)
        >>> "optimizer" in zipfile.ZipFile(path).read("config.json").decode()
        False
    """
    path = Path(path)
    plain = uncompiled_copy(model)
    with temporary_beside(path, suffix=path.suffix) as tmp:
        plain.save(tmp)


def uncompiled_copy(model):
    """``model`` itself when neither it nor a model inside it is compiled, else a copy with the same
    architecture and weights and no optimizer, loss or metrics anywhere.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> m.compile("adam", "mse")
        >>> copy = uncompiled_copy(m)
        >>> copy.compiled, copy is uncompiled_copy(copy)
        (False, True)
    """
    import keras

    config = keras.saving.serialize_keras_object(model)
    if not _drop_compile_configs(config):
        return model
    # Deserializing the model's own config runs no code it does not already hold (a Lambda's function
    # included), so safe mode, which guards files from elsewhere, has nothing to refuse here.
    copy = keras.saving.deserialize_keras_object(config, safe_mode=False)
    if [v.shape for v in copy.weights] != [v.shape for v in model.weights]:
        raise ValueError(f"the copy of model '{model.name}' has other weights than the model")
    copy.set_weights(model.get_weights())
    return copy


def _drop_compile_configs(config) -> bool:
    """Remove every non-empty ``compile_config`` from a serialized Keras object; whether one was found."""
    found = False
    if isinstance(config, dict):
        if config.get("compile_config"):
            config["compile_config"] = None
            found = True
        for value in config.values():
            found = _drop_compile_configs(value) or found
    elif isinstance(config, list):
        for value in config:
            found = _drop_compile_configs(value) or found
    return found


class temporary_beside:
    """A temporary path in the target's folder, renamed onto the target on success, removed on failure."""

    def __init__(self, target: Path, suffix: str = ".tmp"):
        self.target = target
        self.suffix = suffix

    def __enter__(self) -> Path:
        handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=self.suffix,
                                        dir=self.target.parent)
        os.close(handle)
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes files private; a run's files are meant to be shared
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, kind, error, trace):
        if kind is None:
            try:
                os.replace(self.tmp, self.target)
                return False
            except OSError as failure:
                error = failure
        self.tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise GraftError(f"cannot write '{self.target}': {error.strerror or error}") from None
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
