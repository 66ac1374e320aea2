"""Run an exported model (Keras, SavedModel, TFLite, ONNX) on a batch of images.

Each loader returns a plain function from a float32 batch of RGB pixels (0..255, NHWC)
to class probabilities, whatever runtime is underneath.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from graftkit.errors import GraftError

Runner = Callable[[np.ndarray], np.ndarray]
EXTENSIONS = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx"}


def guess_format(path: str | Path) -> str:
    """The export format of a file or folder, from its name or content.

    Example:
        >>> guess_format("exports/model-int8.tflite")
        'tflite'
    """
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "savedmodel"
    if path.suffix in EXTENSIONS:
        return EXTENSIONS[path.suffix]
    raise GraftError(f"'{path}' is not an exported model: use a .keras, .tflite or .onnx file or a "
                     "SavedModel folder")


def load_runner(path: str | Path, format: str | None = None, *, trust_model: bool = False) -> Runner:
    """Load an exported model as a function ``batch -> probabilities``.

    Args:
        path: the exported file or SavedModel folder.
        format: ``keras``, ``savedmodel``, ``tflite`` or ``onnx``; guessed from ``path`` when None.
        trust_model: load a ``.keras`` model holding Python code (a Lambda layer) outside safe mode.

    Example:
        >>> run = load_runner("runs/ants/exports/model.tflite")  # doctest: +SKIP
        >>> run(np.zeros((2, 160, 160, 3), "float32")).shape  # doctest: +SKIP
        (2, 2)
    """
    format = format or guess_format(path)
    loaders = {"keras": _keras, "savedmodel": _savedmodel, "tflite": _tflite, "onnx": _onnx}
    if format not in loaders:
        raise GraftError(f"unknown format '{format}': use one of {', '.join(loaders)}")
    if format == "keras":
        return _keras(Path(path), trust_model)
    return loaders[format](Path(path))


def _keras(path: Path, trust_model: bool = False) -> Runner:
    from graftkit.model.infer import compiled_forward
    from graftkit.results.modelfile import load_trained

    model, _ = load_trained(path, trust_model=trust_model)
    forward = compiled_forward(model)
    return lambda batch: forward(as_input(batch)).numpy()


def as_input(batch) -> np.ndarray:
    """A batch as a model takes it: images as float32; token ids (integers) and texts (strings) as they are.

    Example:
        >>> as_input(np.zeros((1, 2), "uint8")).dtype, as_input(np.array([[3, 4]])).dtype.kind
        (dtype('float32'), 'i')
    """
    batch = np.asarray(batch)
    if batch.dtype.kind in "OSU" or (batch.dtype.kind == "i" and batch.dtype.itemsize >= 4):
        return batch
    return batch.astype(np.float32)


def _savedmodel(path: Path) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    name, spec = next(iter(serve.structured_input_signature[1].items()))

    def run(batch):
        outputs = serve(**{name: tf.constant(as_input(batch), spec.dtype)})
        return next(iter(outputs.values())).numpy()

    return run


def tflite_interpreter(model_path: str | Path):
    """A TFLite interpreter: LiteRT's when ``ai-edge-litert`` is installed, else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT replaces it
        warnings.simplefilter("ignore")
        return Interpreter(model_path=str(model_path), num_threads=os.cpu_count() or 1)


def _tflite(path: Path) -> Runner:
    interpreter = tflite_interpreter(path)
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    shape = [None]

    def run(batch):
        batch = as_input(batch)
        if shape[0] != batch.shape:
            interpreter.resize_tensor_input(source["index"], batch.shape, strict=False)
            interpreter.allocate_tensors()
            shape[0] = batch.shape
        interpreter.set_tensor(source["index"], _quantize(batch, source))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(target["index"]), target)

    return run


def _quantize(batch: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if detail["dtype"] == np.float32 or not scale:
        return batch.astype(detail["dtype"])
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(batch / scale + zero), limits.min, limits.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if values.dtype == np.float32 or not scale:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero) * scale


def _onnx(path: Path) -> Runner:
    try:
        import onnxruntime
    except ImportError:
        raise GraftError("running an ONNX model needs onnxruntime: pip install 'graftkit[export]'") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    dtype = np.int32 if "int32" in source.type else np.float32
    return lambda batch: session.run(None, {source.name: np.asarray(as_input(batch), dtype)})[0]
