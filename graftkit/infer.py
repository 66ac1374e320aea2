"""Fast inference: a compiled forward pass over a tf.data pipeline."""

from __future__ import annotations

import numpy as np


def compiled_forward(model):
    """A ``tf.function`` running ``model`` in inference mode, steadier and faster than ``model.predict``.

    Example:
        >>> import keras, numpy as np
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> compiled_forward(m)(np.zeros((4, 3), "float32")).shape
        TensorShape([4, 2])
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(batch):
        return model(batch, training=False)

    return forward


def predict_dataset(model, dataset, *, progress=None) -> np.ndarray:
    """Run ``model`` over every batch of ``dataset`` (images, or (images, labels)) and stack the outputs.

    Args:
        model: a Keras model.
        dataset: a batched ``tf.data.Dataset``.
        progress: optional callable receiving the number of examples done after each batch.
    """
    forward = compiled_forward(model)
    outputs = []
    done = 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        outputs.append(forward(images).numpy())
        done += len(outputs[-1])
        if progress:
            progress(done)
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output.shape[1:]), "float32")
