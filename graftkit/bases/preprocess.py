"""The preprocessing of each base, built from Keras' own layers and saved inside the model.

Putting it in the model means a trained graftkit model takes plain RGB pixels (0..255) and can
never be fed the wrong ``preprocess_input`` later; building it from built-in layers
(``Rescaling``, and a fixed channel permutation for BGR bases) means the saved model loads
in plain Keras, without graftkit.
"""

from __future__ import annotations

# mode -> (per-channel offset subtracted from RGB 0..255, divisor, reverse channels to BGR)
MODES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], bool]] = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), False),
    "unit": ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0), False),
    "tf": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5), False),
    "lite": ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0), False),
    "torch": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), False),
    "caffe": ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0), True),
}
MODE_HELP = {
    "none": "pixels unchanged (the base rescales inside)",
    "unit": "x / 255 to [0, 1]",
    "tf": "x / 127.5 - 1 to [-1, 1]",
    "lite": "(x - 127) / 128 (EfficientNet-Lite)",
    "torch": "x / 255, then ImageNet mean / std",
    "caffe": "RGB to BGR, minus the ImageNet mean (ResNet50, VGG)",
}


def preprocessing_layer(mode: str, *, channels: int = 3, name: str = "preprocess"):
    """A layer mapping RGB pixels 0..255 to what a base was trained on, made of built-in Keras layers.

    ``(x - offset) / scale`` per channel is a ``Rescaling`` layer computing
    ``x * (1 / scale) + (-offset / scale)`` (the same to a float32 rounding; exact for ``caffe``
    and ``none``); ``caffe`` then reverses the channels to BGR with a fixed, bias-free 1x1
    ``Dense`` of zeros and ones, which is exact. ``channels=1`` (a grayscale base) uses the mean
    of the three channels' constants.

    ``Rescaling`` makes its constants inside each call, so the layer works in any graph a caller
    traces it into and converts as it is (TFLite, ONNX); ``Normalization`` keeps its mean as a
    tensor made once, which a graph traced later captures as an input (tf2onnx then asks for it).

    Example:
        >>> import numpy as np
        >>> layer = preprocessing_layer("tf")
        >>> float(layer(np.full((1, 2, 2, 3), 255.0, "float32")).numpy().max())
        1.0
        >>> bgr = preprocessing_layer("caffe")(np.array([[[[0.0, 0.0, 255.0]]]], "float32")).numpy()
        >>> [round(float(v), 3) for v in bgr[0, 0, 0]]  # blue first, minus the ImageNet mean
        [151.061, -116.779, -123.68]
    """
    import keras
    import numpy as np

    if mode not in MODES:
        raise ValueError(f"unknown preprocessing '{mode}': use one of {', '.join(MODES)}")
    offset, scale, to_bgr = MODES[mode]
    offset, scale = np.asarray(offset, "float64"), np.asarray(scale, "float64")
    if channels == 1:
        offset, scale = offset.mean(keepdims=True), scale.mean(keepdims=True)
    layers = [keras.Input((None, None, channels), name=f"{name}_pixels"),
              keras.layers.Rescaling(scale=(1 / scale).tolist(), offset=(-offset / scale).tolist(),
                                     name=f"{name}_scale")]
    if to_bgr and channels > 1:
        layers.append(keras.layers.Dense(channels, use_bias=False, trainable=False, name=f"{name}_bgr",
                                         kernel_initializer=keras.initializers.Constant(np.eye(channels)[::-1])))
    return keras.Sequential(layers, name=name)


# Keras Applications architectures a personal model may hold, told by layer names they always have
# (after graftkit.bases.keras2 turned "/" into "_"): name, the names, and what Keras' own model takes.
KNOWN_ARCHITECTURES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("MobileNetV2", ("expanded_conv_project", "block_1_expand"), "tf"),
    ("MobileNet", ("conv_dw_1", "conv_pw_1"), "tf"),
    ("DenseNet", ("pool2_conv", "conv2_block1_0_bn"), "torch"),
    ("ResNetV2", ("conv1_conv", "conv2_block1_preact_bn"), "tf"),
    ("ResNet", ("conv1_conv", "conv2_block1_1_conv"), "caffe"),
    ("VGG", ("block1_conv1", "block5_conv1"), "caffe"),
    ("Xception", ("block1_conv1_bn", "block14_sepconv2"), "tf"),
    ("InceptionResNetV2", ("conv_7b", "block8_10"), "tf"),
    ("InceptionV3", ("mixed9_1", "mixed10"), "tf"),
)


def explain_preprocessing(model) -> tuple[str, str, bool]:
    """The preprocessing mode a personal model takes, why, and whether it is only a guess.

    In order: a model that scales its own input (a ``Rescaling`` or ``Normalization`` layer before
    any learned layer) takes pixels unchanged (``none``); a Teachable Machine image export (a
    MobileNetV2 under TF.js layer names) takes [-1, 1] (``tf``); a Keras Applications architecture
    inside (see :data:`KNOWN_ARCHITECTURES`) takes what Keras' own model takes; anything else is
    guessed as x / 255 (``unit``), the most common choice, and says so.

    Returns:
        ``(mode, why, guessed)``: a mode of :data:`MODES`, one clause saying why, True for a guess.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
        >>> explain_preprocessing(m)[0::2]
        ('unit', True)
    """
    import re

    import keras

    from graftkit.model.graph import flatten_layers

    layers = flatten_layers(model)
    for layer in layers:
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            return "none", f"the model scales its own input (its '{layer.name}' layer)", False
        if layer.weights:
            break
    names = {layer.name for layer in layers}
    for architecture, markers, mode in KNOWN_ARCHITECTURES:
        if all(marker in names for marker in markers):
            if architecture == "MobileNetV2" and any(re.fullmatch(r"dense_Dense\d+", n) for n in names):
                return mode, "a Teachable Machine image export (a MobileNetV2 under TF.js layer names)", False
            return mode, f"a {architecture} inside (layer '{markers[0]}'), preprocessed as Keras' {architecture}", False
    return "unit", "no Rescaling layer and no known architecture inside the model", True


def guess_preprocessing(model) -> str:
    """The preprocessing mode of a personal model: see :func:`explain_preprocessing` (its mode alone).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
        ...                       keras.layers.Conv2D(2, 3)])
        >>> guess_preprocessing(m)
        'none'
    """
    return explain_preprocessing(model)[0]
