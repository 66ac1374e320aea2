"""Export a trained model to Keras, SavedModel, TFLite or ONNX, and check it against the Keras model.

Every export is written beside its target under a temporary name, run on a batch of real
images next to the Keras model, and renamed into place only when the two agree: a file at
the target path has always passed its check.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graftkit import log
from graftkit.errors import GraftError

FORMATS = {"keras": ".keras", "savedmodel": "", "tflite": ".tflite", "onnx": ".onnx"}
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
# Least top-1 agreement with the Keras model, by quantization; the largest probability
# difference is bounded only for unquantized exports, which should match to rounding.
MIN_AGREEMENT = {"none": 0.99, "float16": 0.98, "dynamic": 0.97, "int8": 0.9}
MAX_DIFFERENCE = {"none": 0.05}
# A regression export agrees on an image when its value is within this many of the target's standard
# deviations of the Keras model's; its differences are measured in the same unit.
REGRESSION_TOLERANCE = 0.1
ONNX_OPSET = 17


@dataclass
class ExportCheck:
    """How an exported model compares with the Keras model on the same images.

    Attributes:
        images: how many images both were run on.
        agreement: share of images with the same top-1 class (single label), the same label set
            at the thresholds (multi-label), or a value within :data:`REGRESSION_TOLERANCE` of the
            target's standard deviations (regression).
        max_difference: largest absolute difference of any output: a probability, or for regression
            a value in standard deviations of the target.
        min_agreement: the least agreement accepted.
        max_allowed: the largest difference accepted, or None for no bound.
        task: the model's task.
    """

    images: int
    agreement: float
    max_difference: float
    min_agreement: float
    max_allowed: float | None = None
    task: str = "single"

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement and (
            self.max_allowed is None or self.max_difference <= self.max_allowed)

    def describe(self) -> str:
        bound = f", at most {self.max_allowed:g}" if self.max_allowed is not None else ""
        agreement, difference = {
            "single": ("top-1 agreement", "largest probability difference"),
            "multilabel": ("label-set agreement at the thresholds", "largest probability difference"),
            "regression": (f"agreement within {REGRESSION_TOLERANCE:g} standard deviations of the target",
                           "largest difference (in the target's standard deviations)")}[self.task]
        return (f"{agreement} {self.agreement:.4f} on {self.images} images (needs {self.min_agreement:g}), "
                f"{difference} {self.max_difference:.2g}{bound}")


@dataclass
class Export:
    """An export that was written and passed its check."""

    path: Path
    format: str
    quantize: str
    bytes: int
    check: ExportCheck

    def to_dict(self) -> dict:
        return {"path": str(self.path), "format": self.format, "quantize": self.quantize, "bytes": self.bytes,
                "images": self.check.images, "agreement": round(self.check.agreement, 4),
                "max_difference": float(f"{self.check.max_difference:.3g}")}


def export_model(model, path: str | Path, format: str, *, check_images, quantize: str = "none",
                 calibration_images=None, min_agreement: float | None = None,
                 max_difference: float | None = None, task="single", thresholds=None,
                 scale: float = 1.0) -> Export:
    """Write ``model`` in ``format`` to ``path``, check it, and move it into place.

    Args:
        model: a Keras model (a graftkit model takes RGB pixels 0..255 and outputs probabilities).
        path: the target file, or folder for ``savedmodel``; replaced if it exists.
        format: ``keras``, ``savedmodel``, ``tflite`` or ``onnx``.
        check_images: float32 image batches (arrays or tensors) to compare the export on.
        quantize: TFLite only: ``none``, ``float16``, ``dynamic`` (weights int8) or ``int8``
            (full integer, float input and output kept).
        calibration_images: float32 image batches for ``int8``: typical training images.
        min_agreement: least top-1 agreement with ``model`` (default by quantization, see ``MIN_AGREEMENT``).
        max_difference: largest probability difference allowed (default 0.05 unquantized, else none);
            for regression, in standard deviations of the target.
        task: the model's task: what agreement means (see :class:`ExportCheck`).
        thresholds: a multi-label model's per-label thresholds (0.5 each when None).
        scale: a regression target's standard deviation (the unit of its differences).

    Returns:
        The :class:`Export` written.

    Raises:
        GraftError: unknown format, quantization for a format without it, a missing converter
            package, or a failed check (then nothing is written).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
        ...                       keras.layers.Dense(2, activation="softmax")])
        >>> batch = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
        >>> e = export_model(m, tempfile.mkdtemp() + "/m.tflite", "tflite", check_images=[batch])
        >>> e.check.agreement
        1.0
    """
    _check_options(format, quantize)
    _check_limits(min_agreement, max_difference)
    if quantize == "int8" and calibration_images is None:
        raise GraftError("--quantize int8 needs calibration images: pass training images")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    limit = MIN_AGREEMENT[quantize] if min_agreement is None else min_agreement
    bound = MAX_DIFFERENCE.get(quantize) if max_difference is None else max_difference
    with _beside(path, is_folder=format == "savedmodel") as tmp:
        _write(model, tmp, format, quantize, calibration_images)
        from graftkit.results.modelfile import holds_python_code
        from graftkit.results.runtimes import load_runner

        # A Lambda's code in the model already runs in this process: reading it back trusts nothing new.
        try:
            runner = load_runner(tmp, format, trust_model=holds_python_code(model))
        except GraftError:
            raise
        except Exception as error:  # a runtime that cannot load what the converter wrote
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise GraftError(f"the {format} export does not load in its runtime ({first}); nothing written to "
                             f"'{path}'") from None
        check = compare(model, runner, check_images, min_agreement=limit, max_allowed=bound, task=task,
                        thresholds=thresholds, scale=scale)
        if not check.passed:
            raise GraftError(f"export check failed for {format}"
                             f"{'' if quantize == 'none' else ' ' + quantize}: {check.describe()}; nothing "
                             f"written to '{path}' (loosen --min-agreement / --max-difference to accept it)")
        size = _size(tmp)
    return Export(path=path, format=format, quantize=quantize, bytes=size, check=check)


def export_run(run: str | Path, format: str = "tflite", *, quantize: str = "none", out: str | Path | None = None,
               data: str | Path | None = None, check_count: int = 64, calibration_count: int = 200,
               batch_size: int = 32, min_agreement: float | None = None,
               max_difference: float | None = None, seed: int = 0, trust_model: bool = False) -> Export:
    """Export a graftkit run's model, checked on its validation images (int8 calibrated on its training images).

    The default target is ``RUN/exports/model[-QUANTIZE].EXT`` (``RUN/exports/savedmodel`` for a
    SavedModel); ``classes.json`` is written beside it.

    Args:
        run: a run folder or its ``model.keras``.
        format: ``keras``, ``savedmodel``, ``tflite`` or ``onnx``.
        quantize: TFLite only: ``none``, ``float16``, ``dynamic`` or ``int8``.
        out: the target path instead of the default.
        data: a folder of images to check (and calibrate) on, instead of the run's own data.
        check_count: how many images the check runs on.
        calibration_count: how many training images calibrate ``int8``.
        batch_size: images per batch.
        min_agreement: see :func:`export_model`.
        max_difference: see :func:`export_model`.
        seed: seed of the choice of images.
        trust_model: allow a run whose model holds Python code (a Lambda layer of a personal base).

    Example:
        >>> e = export_run("runs/ants", "tflite", quantize="int8")  # doctest: +SKIP
        >>> e.check.agreement >= 0.9  # doctest: +SKIP
        True
    """
    from graftkit.data.pipeline import make_dataset
    from graftkit.files import atomic_write_json
    from graftkit.model.infer import input_channels, input_size
    from graftkit.results.evaluate import task_kind, threshold_array
    from graftkit.results.modelfile import load_trained, read_json
    from graftkit.results.texts import is_text_model, model_batches, takes_strings
    from graftkit.runfolder import CLASSES_FILE, THRESHOLDS_FILE

    _check_options(format, quantize)
    _check_limits(min_agreement, max_difference)
    for option, value in (("--check-images", check_count), ("--calibration-images", calibration_count),
                          ("--batch-size", batch_size)):
        if value < 1:
            raise GraftError(f"{option} {value} is out of range: use 1 or more")
    model, class_names = load_trained(run, trust_model=trust_model)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    task = (read_json(run_dir / "metrics.json") or {}).get("task") or {}
    thresholds = read_json(run_dir / THRESHOLDS_FILE)
    text = is_text_model(model)
    if text and quantize == "int8":
        raise GraftError("--quantize int8 is for image models (it calibrates on images): use float16 or dynamic "
                         "for a text model")
    if text and takes_strings(model) and format in ("tflite", "onnx"):
        raise GraftError(f"the TF-IDF model takes raw strings, which {format} cannot: export it as keras or "
                         "savedmodel (both take the strings)")
    if text and format == "onnx":
        raise GraftError("ONNX cannot run a transformer encoder's exact GELU (tf2onnx writes an Erfc op that "
                         "onnxruntime does not have): export it as keras, savedmodel or tflite")
    check_paths, calibration_paths = _images_for(run_dir, data, check_count, calibration_count, seed, text=text)

    def batches(paths):
        if text:
            return model_batches(model, paths, run_dir, batch_size)
        return (batch.numpy() for batch in make_dataset(paths, image_size=input_size(model), batch_size=batch_size,
                                                        channels=input_channels(model)))

    target = Path(out) if out else run_dir / "exports" / default_name(format, quantize)
    log.info(f"exporting {format}{'' if quantize == 'none' else ' ' + quantize} to {target}, checked on "
             f"{len(check_paths)} {'texts' if text else 'images'}"
             + (f", calibrated on {len(calibration_paths)}" if quantize == "int8" else ""))
    export = export_model(model, target, format, check_images=batches(check_paths), quantize=quantize,
                          calibration_images=batches(calibration_paths) if quantize == "int8" else None,
                          min_agreement=min_agreement, max_difference=max_difference, task=task_kind(task),
                          thresholds=None if thresholds is None else threshold_array(thresholds, class_names),
                          scale=float(task.get("scale", 1.0)) if isinstance(task, dict) else 1.0)
    atomic_write_json(target.parent / CLASSES_FILE, class_names)
    if thresholds is not None:  # a multi-label model's decisions need its thresholds beside it
        atomic_write_json(target.parent / THRESHOLDS_FILE, thresholds)
    if text and not takes_strings(model):  # the ids it takes come from the run's tokenizer
        from graftkit.runfolder import INPUTS_FILE, TOKENIZER_CONTRACT_FILE, TOKENIZER_FILE

        for name in (TOKENIZER_FILE, TOKENIZER_CONTRACT_FILE, INPUTS_FILE):
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, target.parent / name)
        log.info(f"the export takes token ids, not strings (tokenizing needs tensorflow-text inside a graph): "
                 f"{TOKENIZER_FILE} and {TOKENIZER_CONTRACT_FILE} beside it make them (README: 'A text model')")
    return export


def default_name(format: str, quantize: str = "none") -> str:
    """The file name of an export in ``RUN/exports``.

    Example:
        >>> default_name("tflite", "int8"), default_name("savedmodel")
        ('model-int8.tflite', 'savedmodel')
    """
    if format == "savedmodel":
        return "savedmodel"
    return "model" + ("" if quantize == "none" else f"-{quantize}") + FORMATS[format]


def _images_for(run_dir: Path, data, check_count: int, calibration_count: int, seed: int, *, text: bool = False):
    """(check paths, calibration paths): from ``data`` if given, else the run's validation / training split
    (for a text model: texts)."""
    from graftkit.data.layout import list_images
    from graftkit.results.modelfile import split_files

    rng = np.random.default_rng(seed)

    def sample(paths, count):
        chosen = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
        return [paths[i] for i in sorted(chosen)]

    if data is not None:
        if text:
            from graftkit.data.text import list_texts

            paths = list_texts([str(data)])
        else:
            paths = list_images([str(data)])
        return sample(paths, check_count), sample(paths, calibration_count)
    split = split_files(run_dir)
    val, train = [p for p, _ in split["val"]], [p for p, _ in split["train"]]
    if text:
        return sample(val, check_count), sample(train, calibration_count)
    missing = next((p for p in val + train if not Path(p).is_file()), None)
    if missing:
        raise GraftError(f"the run's image '{missing}' is gone: pass --data FOLDER of images to check the export on")
    return sample(val, check_count), sample(train, calibration_count)


def compare(model, runner, batches, *, min_agreement: float, max_allowed: float | None = None, task="single",
            thresholds=None, scale: float = 1.0) -> ExportCheck:
    """Run ``model`` and ``runner`` on the same batches; their agreement and largest output difference.

    Agreement is top-1 (single label), the same label set at ``thresholds`` (multi-label, 0.5
    each when None), or a value within :data:`REGRESSION_TOLERANCE` times ``scale`` (regression,
    whose differences are divided by ``scale``, the target's standard deviation).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
        >>> compare(m, lambda x: m(x).numpy(), [np.ones((5, 3), "float32")], min_agreement=1).passed
        True
    """
    from graftkit.model.infer import compiled_forward
    from graftkit.results.evaluate import task_kind

    kind = task_kind(task)
    unit = scale if kind == "regression" and scale > 0 else 1.0
    forward = compiled_forward(model)
    same = count = 0
    worst = 0.0
    from graftkit.results.runtimes import as_input

    for batch in batches:
        batch = as_input(batch)
        expected = forward(batch).numpy()
        got = np.asarray(runner(batch), np.float32).reshape(expected.shape)
        if kind == "multilabel":
            cut = 0.5 if thresholds is None else np.asarray(thresholds, np.float32)
            same += int(np.sum(np.all((expected >= cut) == (got >= cut), axis=1)))
        elif kind == "regression":
            same += int(np.sum(np.abs(expected - got).reshape(len(batch), -1).max(axis=1) / unit
                               <= REGRESSION_TOLERANCE))
        else:
            same += int(np.sum(expected.argmax(1) == got.argmax(1)))
        worst = max(worst, float(np.max(np.abs(expected - got))) / unit if len(batch) else 0.0)
        count += len(batch)
    if not count:
        raise GraftError("export check has no images to run on: pass a folder of images")
    return ExportCheck(images=count, agreement=same / count, max_difference=worst, min_agreement=min_agreement,
                       max_allowed=max_allowed, task=kind)


def _check_options(format: str, quantize: str) -> None:
    if format not in FORMATS:
        raise GraftError(f"unknown export format '{format}': use one of {', '.join(FORMATS)}")
    if quantize not in QUANTIZATIONS:
        raise GraftError(f"unknown quantization '{quantize}': use one of {', '.join(QUANTIZATIONS)}")
    if quantize != "none" and format != "tflite":
        raise GraftError(f"--quantize {quantize} is for --format tflite only: drop it or export tflite")


def _check_limits(min_agreement: float | None, max_difference: float | None) -> None:
    if min_agreement is not None and not 0 <= min_agreement <= 1:
        raise GraftError(f"--min-agreement {min_agreement} is out of range: use a share from 0 to 1 such as 0.95")
    if max_difference is not None and not 0 <= max_difference <= 1:
        raise GraftError(f"--max-difference {max_difference} is out of range: use a probability from 0 to 1")


def _write(model, path: Path, format: str, quantize: str, calibration_images) -> None:
    if format == "keras":
        from graftkit.files import uncompiled_copy

        uncompiled_copy(model).save(path)
    elif format == "savedmodel":
        model.export(str(path), format="tf_saved_model", verbose=False)
    elif format == "tflite":
        path.write_bytes(_tflite_bytes(model, quantize, calibration_images))
    else:
        _write_onnx(model, path)


def _tflite_bytes(model, quantize: str, calibration_images) -> bytes:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="graftkit-savedmodel-") as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            def representative():
                for batch in calibration_images:
                    for image in np.asarray(batch, np.float32):
                        yield [image[None]]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and others, with long texts
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise GraftError(f"TFLite conversion ({quantize}) failed: {first}") from None


def _write_onnx(model, path: Path) -> None:
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError:
        raise GraftError("ONNX export needs tf2onnx and onnxruntime: pip install 'graftkit[export]'") from None
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    ids = "int" in str(model.inputs[0].dtype)  # a text model takes token ids
    spec = (tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.int32 if ids else tf.float32,
                          name="token_ids" if ids else "images"),)
    try:
        # from_function, not from_keras: tf2onnx's Keras path trips over Keras 3 tensor names.
        forward = tf.function(lambda images: model(images, training=False), input_signature=spec)
        tf2onnx.convert.from_function(forward, input_signature=spec, opset=ONNX_OPSET, output_path=str(path))
    except Exception as error:  # tf2onnx raises many types for an op it cannot convert
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise GraftError(f"ONNX conversion failed (tf2onnx {tf2onnx.__version__}): {first}") from None


@contextlib.contextmanager
def _beside(target: Path, *, is_folder: bool):
    """A temporary path beside ``target``, moved onto it when the block succeeds, removed when not."""
    if not is_folder:
        from graftkit.files import temporary_beside

        with temporary_beside(target, suffix=target.suffix or ".tmp") as tmp:
            yield tmp
        return
    holder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    tmp = holder / target.name
    try:
        yield tmp
        old = holder / "old"
        if target.exists():
            os.replace(target, old)  # a folder cannot be replaced in one rename; keep the gap tiny
        os.replace(tmp, target)
    except OSError as error:
        raise GraftError(f"cannot write '{target}': {error.strerror or error}") from None
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def describe(export: Export) -> str:
    """One line for the terminal: where, how big, how well it agrees."""
    what = export.format + ("" if export.quantize == "none" else f" {export.quantize}")
    return f"exported {what} to {export.path} ({export.bytes / 1e6:.2f} MB): {export.check.describe()}"

