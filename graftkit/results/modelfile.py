"""A trained model file read back: the model (plain Keras), its class names and its run's split."""

from __future__ import annotations

import json
from pathlib import Path

from graftkit.errors import GraftError, error_chain
from graftkit.runfolder import CLASSES_FILE, MODEL_FILE, SPLIT_FILE, UNFINISHED_FILE


def split_files(run_dir: str | Path) -> dict:
    """The run's ``split.json``: ``{"train": [[path, label], ...], "val": [...], "class_names": [...]}``."""
    split = read_json(Path(run_dir) / SPLIT_FILE)
    if split is None:
        raise GraftError(f"'{run_dir}' has no {SPLIT_FILE} naming its images (a run from an older graftkit): "
                         "pass --data FOLDER")
    return split


def read_json(path: Path):
    """The JSON value in ``path``, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_trained(path: str | Path, *, trust_model: bool = False):
    """Load a model trained by graftkit and its class names from a run folder or a ``.keras`` file.

    The model is plain Keras: it loads without graftkit too (see the README). A model from an
    older graftkit, which held graftkit's own preprocessing layer, still loads here.

    Args:
        path: a run folder or a ``.keras`` file.
        trust_model: load a model that holds Python code (a Lambda layer) outside Keras' safe mode.

    Returns:
        ``(model, class_names)``; class names fall back to ``class_0 ...`` when no
        ``classes.json`` lies beside the model.

    Raises:
        GraftError: no model there, an unfinished run, a file that is not a Keras model, or a
            model holding Python code without ``trust_model``.

    Example:
        >>> model, class_names = load_trained("runs/ants")  # doctest: +SKIP
        >>> model.input_shape, class_names  # doctest: +SKIP
        ((None, 160, 160, 3), ['ants', 'bees'])
    """
    import keras

    path = Path(path)
    model_path = path / MODEL_FILE if path.is_dir() else path
    if not model_path.is_file() and (model_path.parent / UNFINISHED_FILE).is_file():
        raise GraftError(f"the run in '{model_path.parent}' has not finished: continue it with "
                         f"graft train --resume {model_path.parent}")
    if not model_path.is_file():
        raise GraftError(f"no trained model at '{path}': pass a run folder or its {MODEL_FILE}")
    try:
        model = keras.saving.load_model(model_path, compile=False, safe_mode=not trust_model,
                                        custom_objects={"graftkit>Preprocess": _legacy_preprocess()})
    except Exception as error:  # Keras raises many types for a file that is not a model
        if any("safe_mode" in str(e) for e in error_chain(error)):
            raise GraftError(f"model '{model_path}' holds Python code (a Lambda layer of its personal base): pass "
                             "--trust-model (trust_model=True) only if you trust the run") from None
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise GraftError(f"cannot load model '{model_path}' ({reason}): pass a model saved by graftkit") from None
    class_names = read_json(model_path.parent / CLASSES_FILE)
    if class_names is None:
        class_names = [f"class_{i}" for i in range(model.output.shape[-1])]
    return model, class_names


def holds_python_code(model) -> bool:
    """Whether ``model`` holds a ``Lambda`` layer (Python code), which Keras loads only with ``safe_mode=False``.

    Example:
        >>> import keras
        >>> holds_python_code(keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]))
        True
    """
    import keras

    from graftkit.model.graph import flatten_layers

    return any(isinstance(layer, keras.layers.Lambda) for layer in flatten_layers(model))


def _legacy_preprocess():
    """The preprocessing layer of models saved by graftkit before it used built-in Keras layers."""
    import keras

    from graftkit.bases.preprocess import MODES

    class Preprocess(keras.layers.Layer):
        def __init__(self, mode: str = "none", **kwargs):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, inputs):
            offset, scale, to_bgr = MODES[self.mode]
            x = keras.ops.cast(inputs, self.compute_dtype)
            x = (x - keras.ops.convert_to_tensor(offset, x.dtype)) / keras.ops.convert_to_tensor(scale, x.dtype)
            return keras.ops.flip(x, axis=-1) if to_bgr else x

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return Preprocess
