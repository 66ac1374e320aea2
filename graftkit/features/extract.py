"""Running a frozen base over images once: features computed, cached and served as ``tf.data`` batches.

A frozen base maps the same image to the same features every epoch, so graftkit computes
them once, keeps them (:mod:`graftkit.features.store`, under the key of
:mod:`graftkit.features.key`), and trains the head on them; a changed or added image
recomputes only itself.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from graftkit import log, settings
from graftkit.errors import GraftError
from graftkit.features.key import feature_key, is_text, item_keys, view_seed
from graftkit.features.store import CACHE_MODES, Store, default_memory_budget_mb


def extract_features(base, paths, *, view: int | None = None, seed: int = 0, batch_size: int = 32,
                     feature_cache: str = "auto", feature_memory_mb: int | None = None, dtype: str = "float32",
                     pool: str | None = None, stats: dict | None = None):
    """The base's outputs for every image, computed once and kept in the feature cache.

    Images already in the cache under the same :func:`feature_key` are read back (each row
    checked); the others are decoded and run through preprocessing and the frozen base in
    inference mode, in streamed batches with a progress bar, and filed in the cache.

    Args:
        base: a :class:`graftkit.bases.loader.Base`.
        paths: image files; the rows come back in this order.
        view: None for exact features; ``v`` for augmented view ``v`` (images augmented by
            :func:`graftkit.data.augmentation` seeded from ``seed`` and ``v``).
        seed: seed of the augmented views.
        batch_size: least images per forward pass (small images go in larger batches, see
            :func:`extraction_batch`; in inference mode the batch does not change the features).
        feature_cache: ``auto``: use the disk cache, return an in-memory array when it fits
            ``feature_memory_mb`` and a read-only memmap of a cache file otherwise;
            ``memory``: no disk at all, always in memory; ``disk``: always a memmap.
        feature_memory_mb: the most MB to hold in memory (default :func:`default_memory_budget_mb`).
        dtype: ``float32``, or ``float16`` to halve memory and disk (features then differ by rounding).
        pool: None for the base's outputs; ``avg`` or ``max`` to keep them globally pooled, as a
            head's first layer would (a 7x7 map then takes 49 times less room).
        stats: when a dict, filled with ``computed``, ``cached``, ``dropped_shards``, ``in_memory``, ``key``.

    Returns:
        An array (or ``np.memmap``) of shape ``(len(paths), *base.feature_shape)``, or
        ``(len(paths), channels)`` when pooled.

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> from PIL import Image
        >>> Image.new("RGB", (40, 30), "red").save("/tmp/graftkit_red.png")
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> extract_features(base, ["/tmp/graftkit_red.png"] * 2, feature_cache="memory").shape
        (2, 3, 3, 1280)
    """
    if feature_cache not in CACHE_MODES:
        raise GraftError(f"unknown feature cache mode '{feature_cache}': use one of {', '.join(CACHE_MODES)}")
    dtype = np.dtype(dtype)
    if dtype.name not in ("float32", "float16"):
        raise GraftError(f"feature dtype '{dtype}' is not supported: use float32 or float16")
    paths = [os.fsdecode(p) for p in paths]
    shape = pooled_shape(base.feature_shape, pool)
    row_bytes = int(np.prod(shape)) * dtype.itemsize
    budget = (default_memory_budget_mb() if feature_memory_mb is None else feature_memory_mb) * 2 ** 20
    in_memory = feature_cache == "memory" or (feature_cache == "auto" and len(paths) * row_bytes <= budget)
    key, description = feature_key(base, view=view, seed=seed, dtype=dtype.name, pool=pool)
    report = {"computed": 0, "cached": 0, "dropped_shards": 0, "in_memory": in_memory, "key": key}
    if stats is not None:
        stats.clear()
        stats.update(report)
        report = stats
    if feature_cache == "memory":
        out = np.empty((len(paths), *shape), dtype)
        _compute(base, paths, range(len(paths)), out, view, seed, pool, batch_size)
        report["computed"] = len(paths)
        return out

    keys = item_keys(base, paths)
    try:
        store = Store(settings.cache_dir() / "features" / key, shape, dtype, description)
    except GraftError as error:
        if feature_cache == "disk":
            raise
        log.info(f"{error}; keeping features in memory only")
        return extract_features(base, paths, view=view, seed=seed, batch_size=batch_size, feature_cache="memory",
                                dtype=dtype.name, pool=pool, stats=stats)
    found = store.lookup(keys)
    if not in_memory:
        whole = store.whole_shard(keys, found)
        if whole is not None:
            report["cached"] = len(paths)
            return whole
    out = np.empty((len(paths), *shape), dtype) if in_memory else store.new_shard(len(paths))
    try:
        missing, salvaged = store.read(keys, found, out)
        report["cached"] = len(paths) - len(missing)
        report["computed"] = len(missing)
        _compute(base, paths, missing, out, view, seed, pool, batch_size)
    except BaseException:
        store.abandon_shard()
        raise
    if in_memory:
        rows = sorted(set(missing) | set(salvaged))
        if rows:
            store.write_rows([keys[i] for i in rows], out[rows])
    else:
        out = store.commit_shard(out, keys)
    report["dropped_shards"] = store.drop_bad()
    store.collect_garbage()
    return out


def as_views(features) -> list:
    """Cached training features as a list of views: one array (exact features) becomes a list of one.

    Example:
        >>> import numpy as np
        >>> len(as_views(np.zeros((3, 2)))), len(as_views([np.zeros((3, 2))] * 4))
        (1, 4)
    """
    return list(features) if isinstance(features, (list, tuple)) else [features]


def features_dataset(views, labels, *, batch_size: int, shuffle: bool = False, seed: int = 0):
    """A batched ``tf.data.Dataset`` of (features, labels) from cached features, for training a head.

    With several views (augmented copies of the same images), each epoch draws, for every
    image, one of its views at random. In-memory arrays are gathered inside TensorFlow;
    memmaps are read a batch at a time, so features larger than memory stream from disk.

    Args:
        views: one array (or memmap) of features, or a list of them with the same images in the same order.
        labels: every image's label (see :func:`graftkit.data.pipeline.label_array`).
        batch_size: rows per batch.
        shuffle: reshuffle the images every epoch (from ``seed``).
        seed: seed of the shuffle and of the choice of view.

    Example:
        >>> import numpy as np
        >>> ds = features_dataset(np.zeros((5, 4), "float32"), [0, 1, 0, 1, 1], batch_size=2)
        >>> [tuple(x.shape) for x, _ in ds]
        [(2, 4), (2, 4), (1, 4)]
    """
    import tensorflow as tf

    views = as_views(views)
    count, n_views = len(views[0]), len(views)
    from graftkit.data.pipeline import label_array

    labels = label_array(labels)
    if len(labels) != count or any(len(v) != count for v in views):
        raise ValueError("every view needs one row per label")
    rows = tf.data.Dataset.range(count)
    if shuffle:
        rows = rows.shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    if n_views > 1:
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        rows = tf.data.Dataset.zip(rows, draws).map(lambda row, draw: row + (draw % n_views) * count)
    rows = rows.batch(batch_size)
    label_table = tf.constant(labels)
    if all(not isinstance(v, np.memmap) for v in views):
        table = tf.constant(np.concatenate(views) if n_views > 1 else views[0])

        def gather(index):
            return tf.cast(tf.gather(table, index), tf.float32), tf.gather(label_table, index % count)
    else:
        shape = views[0].shape[1:]

        def take(index):
            return np.stack([views[i // count][i % count] for i in index]).astype(np.float32, copy=False)

        def gather(index):
            x = tf.numpy_function(take, [index], tf.float32, stateful=False)
            x.set_shape((None, *shape))
            return x, tf.gather(label_table, index % count)
    return rows.map(gather, num_parallel_calls=1).prefetch(2)


def _compute(base, paths, rows, out, view, seed, pool, batch_size) -> None:
    """Run the base over ``paths[rows]`` (image files, or texts) and write the features into ``out[rows]``."""
    rows = list(rows)
    if not rows:
        return
    if is_text(base):
        _compute_texts(base, [paths[i] for i in rows], np.asarray(rows), out, batch_size)
        return
    from graftkit.data.pipeline import make_dataset

    forward = _forward(base, view, seed, pool)
    # Positions ride along as labels: a file that fails to decode is left out, never cached as a blank image.
    dataset = make_dataset([paths[i] for i in rows], np.arange(len(rows)), image_size=base.image_size,
                           channels=base.channels, batch_size=extraction_batch(batch_size, base.image_size))
    label = "features" if view is None else f"features, augmented view {view + 1}"
    bar = log.progress(len(rows), label)
    rows = np.asarray(rows)
    written = np.zeros(len(rows), bool)
    for images, positions in dataset:
        positions = positions.numpy()
        out[rows[positions]] = forward(images).numpy()
        written[positions] = True
        bar.update(int(written.sum()))
    bar.close()
    if not written.all():
        path = paths[rows[np.flatnonzero(~written)[0]]]
        raise GraftError(f"cannot read image '{path}' any more (it changed while graftkit ran): "
                         "replace the file or leave it out, then run again")


def _compute_texts(base, texts, rows, out, batch_size) -> None:
    """A text encoder's pooled outputs for ``texts``, tokenized once and run in batches of like length."""
    from graftkit.data.tokens import token_outputs

    tokens = base.tokenizer.encode(texts, base.max_length)
    bar = log.progress(len(texts), "text features", unit="texts")
    out[rows] = token_outputs(base.model, tokens, batch_size=max(batch_size, 64), progress=bar.update)
    bar.close()


def extraction_batch(batch_size: int, image_size: int) -> int:
    """Images per forward pass when extracting features: ``batch_size``, or more for small images.

    A batch of small images leaves the CPU's cores idle between layers: MobileNetV2 at 128 px
    ran 1.3x faster per image at 64 than at 32; at 224 px the batch made no difference.
    About a million pixels per batch, at most 128 images.

    Example:
        >>> extraction_batch(32, 224), extraction_batch(32, 128), extraction_batch(32, 64), extraction_batch(8, 224)
        (32, 64, 128, 16)
    """
    by_pixels = 2 ** int(np.log2(max(1, 2 ** 20 // (image_size * image_size))))
    return max(batch_size, min(128, by_pixels))


def extractor(base, *, pool: str | None = None):
    """The compiled forward pass from RGB pixels 0..255 to ``base``'s exact features, as extraction runs it.

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> extractor(base, pool="avg")(np.zeros((2, 96, 96, 3), "float32")).shape
        TensorShape([2, 1280])
    """
    return _forward(base, None, 0, pool)


_EXTRACTORS = weakref.WeakKeyDictionary()  # base model -> {(preprocessing, view seed): compiled forward}


def _forward(base, view, seed, pool):
    """The compiled forward pass from RGB pixels 0..255 to features, traced once per base, view and pooling."""
    from graftkit.model.infer import compiled_forward

    size = base.image_size
    key = (base.preprocessing, size, None if view is None else view_seed(seed, view), pool)
    known = _EXTRACTORS.setdefault(base.model, {})
    if key not in known:
        known[key] = compiled_forward(_extractor(base, view, seed, pool), input_shape=(size, size, base.channels))
    return known[key]


def _extractor(base, view, seed, pool=None):
    """A callable from RGB pixels 0..255 to the base's features (augmented first for a view).

    A plain function rather than a Keras model: a model called with ``training=False`` would
    pass that to the augmentation layers too and switch them off. It holds the base weakly,
    so the cache of compiled extractors never keeps a base alive.
    """
    from graftkit.bases.preprocess import preprocessing_layer
    from graftkit.data.pipeline import augmentation

    preprocess = preprocessing_layer(base.preprocessing, channels=base.channels)
    augment = None if view is None else augmentation(seed=view_seed(seed, view))
    pooling = _pooling_layer(len(base.feature_shape), pool)
    owner = weakref.ref(base.model)

    def extract(images, training=False):
        x = images if augment is None else augment(images, training=True)
        x = owner()(preprocess(x), training=False)
        return x if pooling is None else pooling(x)

    return extract


def pooled_shape(feature_shape, pool: str | None) -> tuple:
    """The shape of one example's cached features: the base's, or its pooled channels when pooled.

    Example:
        >>> pooled_shape((7, 7, 1280), "avg"), pooled_shape((7, 7, 1280), "avgmax"), pooled_shape((7, 7, 1280), None)
        ((1280,), (2560,), (7, 7, 1280))
    """
    from graftkit.model.pooling import MODES, pooled_width

    shape = tuple(int(d) for d in feature_shape)
    if pool is None:
        return shape
    if pool not in MODES or len(shape) not in (2, 3):
        raise GraftError(f"cannot pool features of shape {shape} with '{pool}': use {', '.join(MODES)} on spatial "
                         "features")
    return (pooled_width(shape[-1], pool),)


def _pooling_layer(rank: int, pool: str | None):
    """The global pooling a head built by :func:`graftkit.model.head.build_head` starts with."""
    from graftkit.model.pooling import pooler

    return None if pool is None else pooler(rank, pool)
