"""Fast inference: a compiled forward pass over a tf.data pipeline."""

from __future__ import annotations

import weakref

import numpy as np

_TRACES = weakref.WeakKeyDictionary()  # model -> its compiled forward pass, traced once


def compiled_forward(model, *, input_shape=None, dtype: str | None = None):
    """A compiled inference-mode forward pass of ``model``, steadier and faster than ``model.predict``.

    Traced once for any batch size (the batch axis is left open), and kept with the model,
    so later calls for the same model reuse the trace instead of paying for it again, as
    ``model.predict`` does with its cached predict function. Batches are cast to float32.

    Args:
        model: a Keras model, or any callable ``f(batch, training=False)``.
        input_shape: the shape of one example, for a callable without ``inputs``; None leaves
            the shape open (a trace per new shape). ``None`` inside it is an open axis (a text's length).
        dtype: what batches are cast to: ``float32`` (pixels, features) by default, the model's own
            input dtype when that is an integer (token ids).

    Example:
        >>> import keras, numpy as np
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> compiled_forward(m)(np.zeros((4, 3), "float32")).shape
        TensorShape([4, 2])
        >>> compiled_forward(m).traced is compiled_forward(m).traced  # one trace per model
        True
    """
    import keras
    import tensorflow as tf

    is_model = isinstance(model, keras.layers.Layer)
    dtype = tf.as_dtype(dtype or _input_dtype(model))
    traced = _TRACES.get(model) if is_model else None
    if traced is None:
        # The cache holds the model weakly and so must the trace, or no model would ever be freed.
        owner = weakref.ref(model) if is_model else (lambda: model)
        shape = input_shape if input_shape is not None else _example_shape(model)
        signature = None if shape is None else [tf.TensorSpec((None, *shape), dtype)]

        @tf.function(input_signature=signature, reduce_retracing=True, autograph=False)  # no Python control flow
        def traced(batch):                                                               # to convert: faster trace
            return owner()(batch, training=False)

        if is_model:
            _TRACES[model] = traced

    def forward(batch):
        return traced(tf.convert_to_tensor(batch, tf.string) if dtype == tf.string else tf.cast(batch, dtype))

    forward.model = model  # what is handed out keeps its model alive for as long as it is used
    forward.traced = traced
    return forward


def _example_shape(model):
    """The shape of one example of a single-input model with a fixed float input (or int ids of any
    length), else None."""
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    shape = tuple(inputs[0].shape[1:])
    dtype = str(getattr(inputs[0], "dtype", "float32"))
    if "int" in dtype or "string" in dtype:
        return shape
    return shape if all(d is not None for d in shape) and "float" in dtype else None


def _input_dtype(model) -> str:
    """``float32``, or the integer (or string) dtype of a single-input model that takes ids (or texts)."""
    inputs = getattr(model, "inputs", None)
    dtype = str(getattr(inputs[0], "dtype", "float32")) if inputs and len(inputs) == 1 else "float32"
    return dtype if "int" in dtype or "string" in dtype else "float32"


def with_flips(forward):
    """Test-time augmentation of an image model's ``forward``: the mean of its outputs on each image and on
    its mirror image (left to right, the flip graftkit trains with).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((1, 2, 1)), keras.layers.Flatten()])
        >>> with_flips(compiled_forward(m))(np.array([[[[0.0], [2.0]]]])).numpy().tolist()
        [[1.0, 1.0]]
    """
    import tensorflow as tf

    def averaged(batch):
        batch = tf.cast(batch, tf.float32)
        return (forward(batch) + forward(tf.reverse(batch, axis=[2]))) / 2.0

    averaged.model, averaged.traced = getattr(forward, "model", None), getattr(forward, "traced", None)
    return averaged


def image_forward(model, *, tta: bool = False):
    """The compiled forward pass of an image model (:func:`compiled_forward`), test-time augmented with ``tta``
    (:func:`with_flips`).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((1, 2, 1)), keras.layers.Flatten()])
        >>> image_forward(m, tta=True)(np.array([[[[0.0], [2.0]]]])).numpy().tolist()
        [[1.0, 1.0]]
    """
    forward = compiled_forward(model)
    return with_flips(forward) if tta else forward


def check_tta(tta: bool, modality: str) -> None:
    """Refuse ``--tta`` for a text model: texts have no augmentation to average over.

    Example:
        >>> check_tta(True, "text")
        Traceback (most recent call last):
        graftkit.errors.GraftError: --tta averages over flipped images, and this is a text model: drop --tta
    """
    from graftkit.errors import GraftError

    if tta and modality == "text":
        raise GraftError("--tta averages over flipped images, and this is a text model: drop --tta")


def predict_dataset(model, dataset, *, progress=None, tta: bool = False) -> np.ndarray:
    """Run ``model`` over every batch of ``dataset`` (images, or (images, labels)) and stack the outputs.

    Args:
        model: a Keras model.
        dataset: a batched ``tf.data.Dataset``.
        progress: optional callable receiving the number of examples done after each batch.
        tta: average each image's outputs with its mirror image's (:func:`with_flips`).
    """
    forward = image_forward(model, tta=tta)
    outputs = []
    done = 0
    for batch in dataset:
        images = batch[0] if isinstance(batch, tuple) else batch
        outputs.append(forward(images).numpy())
        done += len(outputs[-1])
        if progress:
            progress(done)
    return np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output.shape[1:]), "float32")


def input_channels(model) -> int:
    """The colour channels a graftkit model takes: 3 (RGB), or 1 for a model made from a grayscale base.

    Example:
        >>> import keras
        >>> input_channels(keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten()]))
        1
    """
    return int(model.inputs[0].shape[-1] or 3)


def input_size(model) -> int:
    """The side of the square images a graftkit model takes (its input is ``(None, size, size, 3)``).

    Example:
        >>> import keras
        >>> input_size(keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Flatten()]))
        96
    """
    return int(model.inputs[0].shape[1])


def predict_features(head, features, *, batch_size: int = 256) -> np.ndarray:
    """The head's class probabilities for cached features, in inference mode.

    Equal, to float tolerance, to the full model's predictions on the images themselves
    while the base is unchanged.

    Example:
        >>> import keras, numpy as np
        >>> from graftkit.model.head import build_head
        >>> predict_features(build_head((4,), 3), np.zeros((5, 4), "float32")).shape
        (5, 3)
    """
    forward = compiled_forward(head)
    outputs = [forward(np.asarray(features[i:i + batch_size], np.float32)).numpy()
               for i in range(0, len(features), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, int(head.output.shape[-1])), "float32")
