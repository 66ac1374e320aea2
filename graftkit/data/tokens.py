"""Token ids in batches of like length: texts are tokenized once, and each batch is padded only to its own longest.

A transformer's cost grows with the padded length of a batch, and real texts vary: SMS messages
have a median of 20 tokens and a 90th percentile of 49. Batching texts of like length (a
"sortish" order: shuffled, then sorted by length within chunks of many batches, fastai's
``SortishSampler``) pads each batch to little more than its own texts, while every epoch still
sees a new order. Id 0 is padding (the encoder masks it), so a batch is a plain int32 matrix.
"""

from __future__ import annotations

import numpy as np

CHUNK_BATCHES = 50  # batches whose texts are sorted together: large enough to group lengths, small enough to mix


def length_batches(lengths, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0) -> list:
    """Row indices per batch, each batch of texts of like length.

    Without ``shuffle`` the rows are sorted by length (longest first, so the first batch shows the
    memory peak); with it, each ``epoch`` gets its own order from ``seed``: shuffled, sorted within
    chunks of :data:`CHUNK_BATCHES` batches, and the batches themselves shuffled.

    Example:
        >>> [b.tolist() for b in length_batches([5, 1, 4, 2], 2)]
        [[0, 2], [3, 1]]
    """
    lengths = np.asarray(lengths)
    if not shuffle:
        order = np.argsort(-lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = batch_size * CHUNK_BATCHES
    order = np.concatenate([part[np.argsort(-lengths[part], kind="stable")]
                            for part in (order[i:i + chunk] for i in range(0, len(order), chunk))] or [order])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def pad_batch(token_lists, rows) -> np.ndarray:
    """The texts ``rows`` of ``token_lists`` as one int32 matrix, padded with 0 to the longest of them.

    Example:
        >>> pad_batch([np.array([7, 8, 9]), np.array([5])], [0, 1])
        array([[7, 8, 9],
               [5, 0, 0]], dtype=int32)
    """
    from graftkit.bases.text import pad_ids

    return pad_ids([token_lists[i] for i in rows])


def token_dataset(token_lists, labels=None, *, batch_size: int = 32, shuffle: bool = False, seed: int = 0):
    """A ``tf.data.Dataset`` of ``(token ids, labels)`` batches (ids alone without labels), of like-length texts.

    Each pass over the dataset (each epoch of ``fit``) draws a new order when ``shuffle``.

    Args:
        token_lists: each text's int32 ids, without padding (see ``TextTokenizer.encode``).
        labels: one label per text (see :func:`graftkit.data.pipeline.label_array`), or None.
        batch_size: texts per batch.
        shuffle: a new order every epoch, from ``seed``.
        seed: seed of the orders.

    Example:
        >>> ds = token_dataset([np.array([3, 4]), np.array([5])], [0, 1], batch_size=2)
        >>> [(x.shape, y.numpy().tolist()) for x, y in ds]
        [(TensorShape([2, 2]), [0, 1])]
    """
    import tensorflow as tf

    from graftkit.data.pipeline import label_array

    lengths = np.array([len(ids) for ids in token_lists])
    y = None if labels is None else label_array(labels)
    epochs = iter(range(1 << 30))

    def batches():
        for rows in length_batches(lengths, batch_size, shuffle=shuffle, seed=seed, epoch=next(epochs)):
            x = pad_batch(token_lists, rows)
            yield x if y is None else (x, y[rows])

    ids = tf.TensorSpec((None, None), tf.int32)
    signature = ids if y is None else (ids, tf.TensorSpec((None, *y.shape[1:]), tf.as_dtype(y.dtype)))
    steps = -(-len(token_lists) // batch_size)  # a known length: Keras then counts the steps of every epoch
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(2)


def padded_batches(token_lists, batch_size: int):
    """``(rows, token ids padded with 0)`` batch by batch, the texts sorted by length (inference, any order).

    Example:
        >>> [(rows.tolist(), x.shape) for rows, x in padded_batches([np.array([4]), np.array([5, 6])], 2)]
        [([1, 0], (2, 2))]
    """
    for rows in length_batches([len(ids) for ids in token_lists], batch_size):
        yield rows, pad_batch(token_lists, rows)


def token_outputs(model, token_lists, *, batch_size: int = 64, progress=None) -> np.ndarray:
    """A model's outputs for texts given as token ids, in their order (batched by length, inference mode).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(10, 2, mask_zero=True),
        ...                       keras.layers.GlobalAveragePooling1D()])
        >>> token_outputs(m, [np.array([1, 2]), np.array([3])]).shape
        (2, 2)
    """
    from graftkit.model.infer import compiled_forward

    forward = compiled_forward(model, input_shape=(None,), dtype="int32")
    out, done = None, 0
    for rows, batch in padded_batches(token_lists, batch_size):
        values = forward(batch).numpy()
        if out is None:
            out = np.empty((len(token_lists), *values.shape[1:]), values.dtype)
        out[rows] = values
        done += len(rows)
        if progress:
            progress(done)
    if out is None:
        return np.zeros((0, *model.output.shape[1:]), "float32")
    return out


def choose_max_length(lengths, limit: int, *, share: float = 99.0) -> int:
    """The longest token sequence to keep: the ``share`` percentile of the data's lengths, within the encoder's limit.

    Texts longer than that are cut at it; the 99th percentile keeps almost every text whole
    while a few very long ones no longer set the cost of every batch they land in.

    Example:
        >>> choose_max_length([10] * 99 + [400], 512), choose_max_length([900], 512)
        (14, 512)
    """
    lengths = np.asarray(lengths)
    if not len(lengths):
        return min(limit, 128)
    wanted = int(np.ceil(np.percentile(lengths, share)))
    return int(min(limit, max(8, wanted)))
