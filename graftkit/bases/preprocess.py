"""The preprocessing of each base, as a Keras layer saved inside the model.

Putting it in the model means a trained graftkit model takes plain RGB pixels
(0..255) and can never be fed the wrong ``preprocess_input`` later.
"""

from __future__ import annotations

import keras
from keras import ops

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


@keras.saving.register_keras_serializable(package="graftkit")
class Preprocess(keras.layers.Layer):
    """Map RGB pixels in 0..255 to the input range a base was trained on.

    Args:
        mode: one of ``none``, ``unit``, ``tf``, ``lite``, ``torch``, ``caffe``.

    Example:
        >>> import numpy as np
        >>> from graftkit.bases.preprocess import Preprocess
        >>> float(Preprocess("tf")(np.full((1, 2, 2, 3), 255.0, "float32")).numpy().max())
        1.0
    """

    def __init__(self, mode: str = "none", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing '{mode}': use one of {', '.join(MODES)}")
        self.mode = mode

    def call(self, inputs):
        offset, scale, to_bgr = MODES[self.mode]
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "none":
            return x
        x = (x - ops.convert_to_tensor(offset, x.dtype)) / ops.convert_to_tensor(scale, x.dtype)
        return ops.flip(x, axis=-1) if to_bgr else x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
