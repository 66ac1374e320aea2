"""The frozen-base feature cache: a frozen base is paid for once per image, not once per epoch.

A frozen base maps the same image to the same features every epoch, so graftkit computes
them once, keeps them, and trains the head on them. The cache lives under
``settings.cache_dir()/features/<key>/``, where ``<key>`` hashes everything that changes
the features (:func:`feature_key`): the base's architecture and weight values, its cut
layer, input size, preprocessing, the augmentation view and the storage dtype. Inside,
each row of features is filed under the identity of its image (absolute path, size and
mtime; :func:`image_keys`), so a changed or added image recomputes only itself.

Storage is plain NumPy: a folder holds shards, each a ``<id>.npy`` array of rows with a
``<id>.json`` index written after it (atomically, by rename) listing each row's image key
and CRC-32. A row is used only when its shard opens with the expected shape and dtype and
its CRC matches; anything else (a truncated, corrupt or half-written shard) is recomputed
and the shard dropped, never trusted. Shards whose rows all have newer copies are deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import weakref
import zlib
from pathlib import Path

import numpy as np

from graftkit import log, settings
from graftkit.errors import GraftError

FORMAT = 1
CACHE_MODES = ("auto", "memory", "disk")
_ORPHAN_SECONDS = 3600  # a shard without an index this old was left by a crashed writer


def default_memory_budget_mb() -> int:
    """How many MB of features one data set may hold in memory by default: an eighth of RAM, at most 2 GiB.

    Example:
        >>> 0 < default_memory_budget_mb() <= 2048
        True
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return int(min(total // 8, 2 << 30) >> 20)


def feature_key(base, *, view: int | None = None, seed: int = 0, dtype: str = "float32",
                pool: str | None = None) -> tuple[str, dict]:
    """The cache key of a base's features: a hash of everything that changes them.

    Covers the base's layer configuration (which pins the architecture and input size) and
    its weight values (so a weights file, a personal model and random weights are all told
    apart), the cut layer, input size, preprocessing, the view (exact, or augmented view
    ``view`` drawn from ``seed`` with the augmentation's configuration), the pooling and the storage dtype.

    Args:
        base: a :class:`graftkit.bases.loader.Base`.
        view: None for the exact (unaugmented) features, else the index of an augmented view.
        seed: seed of the augmented views.
        dtype: ``float32`` or ``float16`` storage.
        pool: None for the base's outputs, ``avg`` or ``max`` for them globally pooled.

    Returns:
        ``(hex key, the description it hashes)``.

    Example:
        >>> from graftkit.bases.loader import load_base
        >>> base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
        >>> feature_key(base)[0] != feature_key(base, view=0)[0]
        True
    """
    description = {
        "format": FORMAT,
        "architecture": _architecture_hash(base.model),
        "weights": _weights_hash(base.model),
        "cut": base.cut,
        "image_size": int(base.image_size),
        "preprocessing": base.preprocessing,
        "feature_shape": [int(d) for d in base.feature_shape],
        "pool": pool,
        "view": "exact" if view is None else {"index": int(view), "seed": int(seed),
                                              "augmentation": _augmentation_config()},
        "dtype": np.dtype(dtype).name,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32], description


def image_keys(paths) -> list[str]:
    """One identity per image file: its absolute path, size and modification time, hashed.

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (8, 8)).save("/tmp/graftkit_key.png")
        >>> len(image_keys(["/tmp/graftkit_key.png"])[0])
        32
    """
    keys = []
    for path in paths:
        absolute = os.path.abspath(os.fsdecode(path))
        try:
            stat = os.stat(absolute)
        except OSError as error:
            raise GraftError(f"cannot read image '{path}' ({error.strerror}): replace the file or leave it out") \
                from None
        text = f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}"
        keys.append(hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32])
    return keys


def extract_features(base, paths, *, view: int | None = None, seed: int = 0, batch_size: int = 32,
                     cache: str = "auto", memory_budget_mb: int | None = None, dtype: str = "float32",
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
        cache: ``auto``: use the disk cache, return an in-memory array when it fits
            ``memory_budget_mb`` and a read-only memmap of a cache file otherwise;
            ``memory``: no disk at all, always in memory; ``disk``: always a memmap.
        memory_budget_mb: the most MB to hold in memory (default :func:`default_memory_budget_mb`).
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
        >>> extract_features(base, ["/tmp/graftkit_red.png"] * 2, cache="memory").shape
        (2, 3, 3, 1280)
    """
    if cache not in CACHE_MODES:
        raise GraftError(f"unknown feature cache mode '{cache}': use one of {', '.join(CACHE_MODES)}")
    dtype = np.dtype(dtype)
    if dtype.name not in ("float32", "float16"):
        raise GraftError(f"feature dtype '{dtype}' is not supported: use float32 or float16")
    paths = [os.fsdecode(p) for p in paths]
    shape = pooled_shape(base.feature_shape, pool)
    row_bytes = int(np.prod(shape)) * dtype.itemsize
    budget = (default_memory_budget_mb() if memory_budget_mb is None else memory_budget_mb) * 2 ** 20
    in_memory = cache == "memory" or (cache == "auto" and len(paths) * row_bytes <= budget)
    key, description = feature_key(base, view=view, seed=seed, dtype=dtype.name, pool=pool)
    report = {"computed": 0, "cached": 0, "dropped_shards": 0, "in_memory": in_memory, "key": key}
    if stats is not None:
        stats.clear()
        stats.update(report)
        report = stats
    if cache == "memory":
        out = np.empty((len(paths), *shape), dtype)
        _compute(base, paths, range(len(paths)), out, view, seed, pool, batch_size)
        report["computed"] = len(paths)
        return out

    keys = image_keys(paths)
    try:
        store = _Store(settings.cache_dir() / "features" / key, shape, dtype, description)
    except GraftError as error:
        if cache == "disk":
            raise
        log.info(f"{error}; keeping features in memory only")
        return extract_features(base, paths, view=view, seed=seed, batch_size=batch_size, cache="memory",
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


def features_dataset(views, labels, *, batch_size: int, shuffle: bool = False, seed: int = 0):
    """A batched ``tf.data.Dataset`` of (features, labels) from cached features, for training a head.

    With several views (augmented copies of the same images), each epoch draws, for every
    image, one of its views at random. In-memory arrays are gathered inside TensorFlow;
    memmaps are read a batch at a time, so features larger than memory stream from disk.

    Args:
        views: one array (or memmap) of features, or a list of them with the same images in the same order.
        labels: class index of every image.
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

    views = list(views) if isinstance(views, (list, tuple)) else [views]
    count, n_views = len(views[0]), len(views)
    labels = np.asarray(labels, np.int32)
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


def clear_cache() -> int:
    """Delete the whole feature cache; returns the number of files removed.

    Example:
        >>> clear_cache()  # doctest: +SKIP
        12
    """
    root = settings.cache_dir() / "features"
    removed = 0
    if root.is_dir():
        for file in sorted(root.rglob("*"), reverse=True):
            if file.is_file():
                file.unlink(missing_ok=True)
                removed += 1
            else:
                file.rmdir()
    return removed


# ---------------------------------------------------------------- computing features


def _compute(base, paths, rows, out, view, seed, pool, batch_size) -> None:
    """Run the base over ``paths[rows]`` and write the features into ``out[rows]``."""
    rows = list(rows)
    if not rows:
        return
    from graftkit.data import make_dataset

    forward = _forward(base, view, seed, pool)
    # Positions ride along as labels: a file that fails to decode is left out, never cached as a blank image.
    dataset = make_dataset([paths[i] for i in rows], np.arange(len(rows)), image_size=base.image_size,
                           batch_size=extraction_batch(batch_size, base.image_size))
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
    from graftkit.infer import compiled_forward

    size = base.image_size
    key = (base.preprocessing, size, None if view is None else _view_seed(seed, view), pool)
    known = _EXTRACTORS.setdefault(base.model, {})
    if key not in known:
        known[key] = compiled_forward(_extractor(base, view, seed, pool), input_shape=(size, size, 3))
    return known[key]


def _extractor(base, view, seed, pool=None):
    """A callable from RGB pixels 0..255 to the base's features (augmented first for a view).

    A plain function rather than a Keras model: a model called with ``training=False`` would
    pass that to the augmentation layers too and switch them off. It holds the base weakly,
    so the cache of compiled extractors never keeps a base alive.
    """
    from graftkit.bases.preprocess import Preprocess
    from graftkit.data import augmentation

    preprocess = Preprocess(base.preprocessing)
    augment = None if view is None else augmentation(seed=_view_seed(seed, view))
    pooling = _pooling_layer(len(base.feature_shape), pool)
    owner = weakref.ref(base.model)

    def extract(images, training=False):
        x = images if augment is None else augment(images, training=True)
        x = owner()(preprocess(x), training=False)
        return x if pooling is None else pooling(x)

    return extract


def pooled_shape(feature_shape, pool: str | None) -> tuple:
    """The shape of one example's cached features: the base's, or its channels when pooled.

    Example:
        >>> pooled_shape((7, 7, 1280), "avg"), pooled_shape((7, 7, 1280), None)
        ((1280,), (7, 7, 1280))
    """
    shape = tuple(int(d) for d in feature_shape)
    if pool is None:
        return shape
    if pool not in ("avg", "max") or len(shape) not in (2, 3):
        raise GraftError(f"cannot pool features of shape {shape} with '{pool}': use avg or max on spatial features")
    return shape[-1:]


def _pooling_layer(rank: int, pool: str | None):
    """The Keras global pooling layer a head built by :func:`graftkit.head.build_head` starts with."""
    import keras

    if pool is None:
        return None
    layers = {(3, "avg"): keras.layers.GlobalAveragePooling2D, (3, "max"): keras.layers.GlobalMaxPooling2D,
              (2, "avg"): keras.layers.GlobalAveragePooling1D, (2, "max"): keras.layers.GlobalMaxPooling1D}
    return layers[(rank, pool)]()


def _view_seed(seed: int, view: int) -> int:
    return (int(seed) * 1000003 + 7919 * (int(view) + 1)) % (2 ** 31 - 3)


def _architecture_hash(model) -> str:
    """A hash of each layer's class and configuration, without what leaves the outputs alone.

    Names are left out (Keras numbers unnamed layers per session), and so is ``trainable``.
    """
    digest = hashlib.sha256()
    for layer in model.layers:
        config = _without_trainable({k: v for k, v in layer.get_config().items() if k != "name"})
        digest.update(f"{type(layer).__name__}:{json.dumps(config, sort_keys=True, default=str)}\n".encode())
    return digest.hexdigest()[:32]


def _without_trainable(config):
    """``config`` with every ``trainable`` entry removed, nested layers' too (freezing changes no output)."""
    if isinstance(config, dict):
        return {k: _without_trainable(v) for k, v in config.items() if k != "trainable"}
    if isinstance(config, (list, tuple)):
        return [_without_trainable(v) for v in config]
    return config


def _weights_hash(model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.data)
    return digest.hexdigest()[:32]


def _augmentation_config():
    from graftkit.data import augmentation

    return [{k: v for k, v in layer.get_config().items() if k not in ("name", "seed")}
            for layer in augmentation().layers]


# ---------------------------------------------------------------- the shards on disk


class _Store:
    """The shards of one feature key: ``<id>.npy`` rows with a ``<id>.json`` index of keys and CRCs."""

    def __init__(self, folder: Path, shape: tuple, dtype: np.dtype, description: dict):
        self.folder, self.shape, self.dtype = folder, shape, dtype
        self.bad: set[str] = set()
        self.arrays: dict[str, np.ndarray] = {}
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not (folder / "key.json").is_file():
                from graftkit.runfiles import atomic_write_json

                atomic_write_json(folder / "key.json", description)
        except (OSError, GraftError) as error:
            raise GraftError(f"cannot use the feature cache '{folder}' ({error}): set GRAFT_CACHE_DIR "
                             "to a writable folder or pass --feature-cache memory") from None
        self.shards = self._load_indices()

    def _load_indices(self) -> dict[str, dict]:
        """Shard id -> its index, oldest first; unreadable indices are dropped."""
        shards = {}
        for path in sorted(self.folder.glob("*.json")):
            if path.name == "key.json":
                continue
            try:
                index = json.loads(path.read_text())
                ok = (index.get("format") == FORMAT and len(index["keys"]) == len(index["crc32"])
                      == index["shape"][0] and tuple(index["shape"][1:]) == self.shape
                      and index["dtype"] == self.dtype.name)
            except (OSError, ValueError, KeyError, TypeError, IndexError):
                ok = False
            if ok:
                shards[path.stem] = index
            else:
                self.bad.add(path.stem)
        return shards

    def lookup(self, keys: list[str]) -> dict[str, tuple[str, int]]:
        """Image key -> (shard, row) of its newest copy, for the keys asked for."""
        wanted = set(keys)
        found = {}
        for shard, index in self.shards.items():  # oldest first: newer copies win
            for row, key in enumerate(index["keys"]):
                if key in wanted:
                    found[key] = (shard, row)
        return found

    def _array(self, shard: str) -> np.ndarray | None:
        if shard in self.bad:
            return None
        if shard not in self.arrays:
            try:
                array = np.load(self.folder / f"{shard}.npy", mmap_mode="r", allow_pickle=False)
                if array.shape != tuple(self.shards[shard]["shape"]) or array.dtype != self.dtype:
                    raise ValueError("shape or dtype differ from the index")
            except (OSError, ValueError, EOFError):  # missing, truncated or not an .npy file
                self.bad.add(shard)
                return None
            self.arrays[shard] = array
        return self.arrays[shard]

    def read(self, keys, found, out) -> tuple[list[int], list[int]]:
        """Copy the cached rows into ``out``; returns the rows still missing and the rows saved from bad shards."""
        by_shard: dict[str, list[tuple[int, int]]] = {}
        missing = []
        for i, key in enumerate(keys):
            if key in found:
                shard, row = found[key]
                by_shard.setdefault(shard, []).append((i, row))
            else:
                missing.append(i)
        salvaged = []
        for shard, pairs in by_shard.items():
            array = self._array(shard)
            if array is None:
                missing += [i for i, _ in pairs]
                continue
            crcs = self.shards[shard]["crc32"]
            pairs.sort(key=lambda pair: pair[1])
            rows = np.array([row for _, row in pairs])
            targets = np.array([i for i, _ in pairs])
            out[targets] = array[rows]
            failed = {i for i, row in pairs if zlib.crc32(out[i]) != crcs[row]}
            if failed:  # the rows that check out are kept and filed again; the shard is dropped
                self.bad.add(shard)
                missing += sorted(failed)
                salvaged += [i for i, _ in pairs if i not in failed]
        return sorted(missing), sorted(salvaged)

    def whole_shard(self, keys, found) -> np.ndarray | None:
        """The cached rows as one read-only memmap when one shard holds exactly ``keys`` in order, checked."""
        if not keys or any(k not in found for k in keys):
            return None
        shard, start = found[keys[0]]
        index = self.shards[shard]
        if index["keys"][start:start + len(keys)] != keys or any(found[k][0] != shard for k in keys):
            return None
        array = self._array(shard)
        if array is None:
            return None
        crcs = index["crc32"]
        for row in range(start, start + len(keys)):
            if zlib.crc32(np.ascontiguousarray(array[row])) != crcs[row]:
                self.bad.add(shard)
                return None
        return array[start:start + len(keys)]

    def _new_id(self) -> str:
        return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"

    def new_shard(self, count: int) -> np.memmap:
        """An empty shard file to fill, under a temporary name until :meth:`commit_shard`."""
        self._pending = self.folder / f".{self._new_id()}.npy.tmp"
        return np.lib.format.open_memmap(self._pending, mode="w+", dtype=self.dtype, shape=(count, *self.shape))

    def abandon_shard(self) -> None:
        """Remove the shard being filled through :meth:`new_shard`, if any (the work failed)."""
        pending = getattr(self, "_pending", None)
        if pending is not None:
            pending.unlink(missing_ok=True)
            self._pending = None

    def commit_shard(self, array: np.memmap, keys: list[str]) -> np.ndarray:
        """Index a shard filled through :meth:`new_shard`; returns it reopened read-only."""
        array.flush()
        crcs = [zlib.crc32(np.ascontiguousarray(row)) for row in array]
        del array
        shard = self._new_id()
        target = self.folder / f"{shard}.npy"
        os.replace(self._pending, target)
        self._write_index(shard, keys, crcs)
        return np.load(target, mmap_mode="r", allow_pickle=False)

    def write_rows(self, keys: list[str], rows: np.ndarray) -> None:
        """File ``rows`` (features of the images ``keys``) as a new shard."""
        from graftkit.runfiles import temporary_beside

        shard = self._new_id()
        try:
            with temporary_beside(self.folder / f"{shard}.npy", suffix=".npy.tmp") as tmp, open(tmp, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(rows, self.dtype), allow_pickle=False)
        except GraftError as error:
            log.info(f"{error}: features kept in memory only")
            return
        self._write_index(shard, keys, [zlib.crc32(np.ascontiguousarray(row)) for row in rows])

    def _write_index(self, shard: str, keys: list[str], crcs: list[int]) -> None:
        from graftkit.runfiles import atomic_write_json

        index = {"format": FORMAT, "keys": list(keys), "crc32": [int(c) for c in crcs],
                 "shape": [len(keys), *self.shape], "dtype": self.dtype.name}
        atomic_write_json(self.folder / f"{shard}.json", index)
        self.shards[shard] = index

    def drop_bad(self) -> int:
        """Delete the shards found corrupt (their rows were recomputed); index first, so none is half-trusted."""
        for shard in self.bad:
            (self.folder / f"{shard}.json").unlink(missing_ok=True)
            (self.folder / f"{shard}.npy").unlink(missing_ok=True)
            self.shards.pop(shard, None)
            self.arrays.pop(shard, None)
        count = len(self.bad)
        self.bad = set()
        return count

    def collect_garbage(self) -> None:
        """Delete shards all of whose rows have newer copies, and files abandoned by crashed writers."""
        newest = {}
        for shard, index in self.shards.items():
            for key in index["keys"]:
                newest[key] = shard
        for shard, index in list(self.shards.items()):
            if not any(newest[key] == shard for key in index["keys"]):
                (self.folder / f"{shard}.json").unlink(missing_ok=True)
                (self.folder / f"{shard}.npy").unlink(missing_ok=True)
                self.shards.pop(shard)
        now = time.time()
        for path in self.folder.iterdir():
            orphan = path.suffix == ".tmp" or (path.suffix == ".npy" and path.stem not in self.shards)
            try:
                if orphan and now - path.stat().st_mtime > _ORPHAN_SECONDS:
                    path.unlink()
            except OSError:
                pass
