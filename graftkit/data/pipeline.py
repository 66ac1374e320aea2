"""Streamed ``tf.data`` pipelines of decoded, resized (and augmented) batches; class weights."""

from __future__ import annotations

import os

import numpy as np

from graftkit import log
from graftkit.data.check import reason_of
from graftkit.data.decode import decode_resized


def make_dataset(paths, labels=None, *, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0, augment: bool = False, channels: int = 3):
    """A streamed, batched ``tf.data.Dataset`` of images (float32, 0..255) and labels (see :func:`label_array`).

    Images are decoded in parallel as they are needed, never all held in memory. Without
    ``shuffle`` the order is exactly ``paths``; with it, the order is reshuffled every
    epoch from ``seed``. Pixels are not normalised: each base normalises inside its model.
    A file that cannot be read when its turn comes (it changed or vanished after the
    check) gives a blank image and a warning naming it: an epoch never stops for it.

    Args:
        paths: image files.
        labels: one label per path (a class index, a 0/1 row or a number), or None to yield images alone.
        image_size: side of the square the images are squashed to.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle the order every epoch.
        seed: seed of the shuffle.
        augment: apply :func:`augmentation` to every batch.
        channels: 3 for RGB images, 1 for grayscale ones (for a model whose input has one channel; see
            :func:`graftkit.data.decode.read_image`).

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (64, 48), "white").save("/tmp/graftkit_example.png")
        >>> ds = make_dataset(["/tmp/graftkit_example.png"] * 3, [0, 1, 1], image_size=96, batch_size=2)
        >>> [(tuple(x.shape), float(x[0, 0, 0, 0]), y.numpy().tolist()) for x, y in ds]
        [((2, 96, 96, 3), 255.0, [0, 1]), ((1, 96, 96, 3), 255.0, [1])]
    """
    import tensorflow as tf

    paths = [os.fsencode(p) for p in paths]  # bytes survive any file name the OS allows
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} paths")

    failed = set()

    def load(path):
        try:
            return decode_resized(os.fsdecode(path), image_size, channels)
        except Exception as error:  # it passed the check, then changed or vanished: never stop an epoch for it
            if path not in failed:  # a blank image keeps every batch and row where it was
                failed.add(path)
                log.warn(f"could not read '{os.fsdecode(path)}' any more ({reason_of(error)}): "
                         "used a blank image in its place")
            return np.zeros((image_size, image_size, channels), np.uint8)

    def decode(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, channels))
        return image

    def on_images(function):  # apply ``function`` to the images, pass labels through
        return function if labels is None else lambda x, y: (function(x), y)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    if labels is not None:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(label_array(labels)))
    if shuffle:
        ds = ds.shuffle(max(len(paths), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(on_images(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).map(on_images(lambda x: tf.cast(x, tf.float32)))
    if augment:
        layers = augmentation()
        ds = ds.map(on_images(lambda x: layers(x, training=True)), num_parallel_calls=tf.data.AUTOTUNE)
    # Without autotuning: with it, some passes ran at half speed, one core idle (docs/benchmarks.md,
    # section 4). The maps then use every core, and two batches wait ready.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def augmentation(seed: int | None = None):
    """The default light augmentation: horizontal flip, rotation up to 18 degrees, zoom up to 10%.

    Reflection fills the borders, so pixels stay in the 0..255 range of the input.
    ``seed`` makes the random draws repeatable (the feature cache seeds each augmented view).

    Example:
        >>> import numpy as np
        >>> augmentation()(np.zeros((2, 32, 32, 3), "float32"), training=True).shape
        TensorShape([2, 32, 32, 3])
    """
    import keras

    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seeds[0]),
        keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seeds[1]),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seeds[2]),
    ], name="augmentation")


def label_array(labels) -> np.ndarray:
    """Labels as a model trains on them: int32 class indices, or float32 (0/1 rows of a multi-label task,
    numbers of a regression).

    Example:
        >>> label_array([1, 0]).dtype, label_array([[1.0, 0.0]]).dtype
        (dtype('int32'), dtype('float32'))
    """
    labels = np.asarray(labels)
    return labels.astype(np.float32) if labels.dtype.kind == "f" else labels.astype(np.int32)


def weight_table(class_weight: dict | None, num_classes: int) -> np.ndarray:
    """Class weights as an array indexed by class (1 for a class without one), for a loop of graftkit's own.

    Example:
        >>> weight_table({1: 2.5}, 3).tolist(), weight_table(None, 2).tolist()
        ([1.0, 2.5, 1.0], [1.0, 1.0])
    """
    table = np.ones(num_classes, np.float32)
    for index, weight in (class_weight or {}).items():
        table[int(index)] = weight
    return table


def class_weights(labels, num_classes: int) -> dict[int, float] | None:
    """Balanced class weights when the classes are imbalanced, else None.

    Imbalanced means the largest class has at least 1.5 times the images of the smallest.
    Weights are sklearn's "balanced" ones, ``n / (classes * count)``; a class with no
    images gets weight 1.

    Args:
        labels: class index of every training image.
        num_classes: how many classes the model has.

    Returns:
        ``{class index: weight}`` for Keras ``fit(class_weight=...)``, or None.

    Example:
        >>> class_weights([0, 0, 0, 1], 2)
        {0: 0.6666666666666666, 1: 2.0}
        >>> class_weights([0, 1], 2) is None
        True
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    present = np.flatnonzero(counts)
    if len(present) == 0 or counts[present].max() < 1.5 * counts[present].min():
        return None
    weights = dict.fromkeys(range(num_classes), 1.0)
    balanced = compute_class_weight("balanced", classes=present, y=labels)
    weights.update({int(c): float(w) for c, w in zip(present, balanced)})
    return weights
