"""The boundary cache: fine-tuning the top of a base on the tensors that cross its freeze boundary.

While fine-tuning, every layer below the first trained one is frozen and runs in inference
mode (BatchNorm included), so the tensors that cross the freeze boundary depend only on the
image and its augmentation. They are computed once per image and augmented view, kept in the
feature cache (:mod:`graftkit.features.extract`, :mod:`graftkit.features.store`: the same key
discipline, keyed on the frozen part's weights and the boundary), and the trainable top of
the base, with the head, trains on them. An epoch then costs the top's forward and backward
passes, not the whole base's.

It applies when the frozen part is a prefix of a flat graph (the layers before the first
trained one in topological order); a spec that trains the first layer, ``--train-bn``, a
base of nested models or shared layers, and an inference-only SavedModel base fine-tune as
before. A boundary through a residual block crosses in several tensors: all of them are
cached, unless they take more than twice the room of the nearest single tensor further down,
which is then cached instead and the frozen layers above it are recomputed every step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import time
from pathlib import Path

import numpy as np

from graftkit import log, settings
from graftkit.errors import GraftError
from graftkit.features.store import default_memory_budget_mb

# Augmented views cached per training image (--fine-tune-views). On hymenoptera (224 px, last:30%, 5 epochs,
# 6 seeds) 1, 2 and 4 views were within a seed's noise (val acc 0.907 +- 0.027, 0.904 +- 0.017, 0.904 +- 0.017)
# while each view adds a pass of the frozen prefix (CPU 16, 21, 32 s): docs/benchmarks.md, section 8.
DEFAULT_VIEWS = 1
MOVE_DOWN_ABOVE = 2.0  # move to a single tensor when the crossing tensors take more than this times its room
FLOAT16_TOLERANCE = 1e-2  # the most a base output may move, relative to its largest value, for float16 storage


@dataclasses.dataclass
class Boundary:
    """Where a frozen base is split for fine-tuning: what is cached below, what trains above.

    Attributes:
        bottom: the base's frozen prefix, from its input to the cached tensors (a list of them).
        top: the rest of the base, from the cached tensors to its output (shares the base's layers).
        names: the layers whose outputs are cached (``input`` for the base's input itself).
        shapes: each cached tensor's shape without the batch axis.
        recomputed: frozen layers above the cached tensors, run again every step (0: none).
        how: one line for the log on where the boundary is and why.
    """

    bottom: object
    top: object
    names: tuple
    shapes: tuple
    recomputed: int
    how: str

    @property
    def values(self) -> int:
        """Numbers cached per image and view (all crossing tensors together)."""
        return sum(math.prod(shape) for shape in self.shapes)

    def fine_tune_model(self, head):
        """The model fine-tuning trains: cached tensors -> the base's top (inference mode) -> ``head``.

        It shares its layers with the full model, so training it trains the full model. The top runs
        with ``training=False``, as :func:`graftkit.model.head.assemble` runs the base: frozen BatchNorm
        keeps its statistics; the head sees the training flag (its dropout is on while fitting).
        """
        import keras

        inputs = [keras.Input(shape, name=f"boundary_{i}") for i, shape in enumerate(self.shapes)]
        x = self.top(inputs if len(inputs) > 1 else inputs[0], training=False)
        return keras.Model(inputs if len(inputs) > 1 else inputs[0], head(x), name="graft_top")

    def flat_model(self, rows: int | None = None):
        """The frozen prefix with its cached tensors flattened into one row per image (what is stored).

        With ``rows`` it runs the prefix's early, large layers over a batch ``rows`` images at a time, one
        slice after the other (the same layers and weights, so the same cache key and the same features;
        see :func:`_in_turns`): filling the cache then holds their activations of ``rows`` images at once.

        Example:
            >>> import keras, numpy as np
            >>> from graftkit.model.freeze import apply_freeze, parse_freeze
            >>> x = inputs = keras.Input((8, 8, 3))
            >>> for i in range(3):
            ...     x = keras.layers.Conv2D(4, 3, padding="same", name=f"c{i}")(x)
            >>> m = keras.Model(inputs, x)
            >>> _ = apply_freeze(m, parse_freeze("last:1"))
            >>> boundary, _ = find_boundary(m)
            >>> whole, turns = boundary.flat_model(), boundary.flat_model(rows=2)
            >>> images = np.random.default_rng(0).random((5, 8, 8, 3), "float32")
            >>> bool(np.allclose(whole(images), turns(images))), turns.layers == whole.layers
            (True, True)
        """
        import keras

        outputs = self.bottom.outputs
        kind, extra = (keras.Model, {}) if rows is None else (_in_turns(), {"rows": rows})
        if len(outputs) == 1:
            return kind(self.bottom.inputs[0], outputs[0], name="boundary", **extra)
        flat = keras.layers.Concatenate(name="boundary_concat")(
            [keras.layers.Flatten(name=f"boundary_flat_{i}")(t) for i, t in enumerate(outputs)])
        return kind(self.bottom.inputs[0], flat, name="boundary", **extra)

    def unflatten(self, rows):
        """Stored rows (a batch of them) back into the cached tensors, as :meth:`fine_tune_model` takes them."""
        import tensorflow as tf

        if len(self.shapes) == 1:
            return rows
        sizes = [math.prod(shape) for shape in self.shapes]
        parts = tf.split(rows, sizes, axis=-1)
        return tuple(tf.reshape(part, (-1, *shape)) for part, shape in zip(parts, self.shapes))


@functools.cache
def _in_turns():
    """The class of a functional model that runs its graph over a batch a slice of ``rows`` images at a time.

    The fill extracts small images in large batches (:func:`graftkit.features.extract.extraction_batch`);
    the frozen prefix's early, high-resolution activations of a whole batch then outweighed a training
    step's, and TensorFlow's CPU allocator keeps the memory it grows to: the cached run peaked 45-60 MB
    above the uncached one (docs/benchmarks.md, section 10; :func:`fill_rows`). The slices run in turn
    (``parallel_iterations=1``), each freed before the next, through the layers up to :func:`_light_from`;
    the rest, whose activations are small, takes the whole batch at once (slicing it too cost 4-12% more
    CPU per image). The layers and weights, so the feature key, are the functional model's own, and so are
    the features.
    """
    import keras
    import tensorflow as tf

    class Parts:  # the two halves of the graph, kept out of Keras' tracking (model.layers stays the graph's)
        def __init__(self, model):
            split = _light_from(model)
            self.sliced = None if split is None else keras.Model(model.inputs[0], split)
            self.whole = None if split is None else keras.Model(split, model.outputs[0])

    class InTurns(keras.Model):
        def __init__(self, inputs, outputs, *, rows: int, **kwargs):
            super().__init__(inputs, outputs, **kwargs)
            self.rows, self.parts = int(rows), Parts(self)

        def call(self, inputs, training=None, mask=None):
            sliced = self.parts.sliced or (lambda x, training: super(InTurns, self).call(x, training=training))
            rows, out = self.rows, (self.parts.sliced or self).outputs[0]
            steps = (tf.shape(inputs)[0] + rows - 1) // rows
            done = tf.TensorArray(out.dtype, size=steps, infer_shape=False, element_shape=(None, *out.shape[1:]))

            def step(i, done):
                return i + 1, done.write(i, sliced(inputs[i * rows:(i + 1) * rows], training=training))

            _, done = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), done), parallel_iterations=1)
            x = done.concat()
            return x if self.parts.whole is None else self.parts.whole(x, training=training)

    return InTurns


def _light_from(model, share: float = 0.25):
    """The first tensor of a functional ``model`` that alone crosses between two of its layers and after which
    no tensor takes more than ``share`` of the room of the largest (per example); None when none does.

    Example:
        >>> import keras
        >>> x = inputs = keras.Input((16, 16, 3))
        >>> x = keras.layers.Conv2D(8, 3, padding="same", name="wide")(x)
        >>> x = keras.layers.Conv2D(4, 3, strides=4, padding="same", name="small")(x)
        >>> x = keras.layers.Conv2D(4, 3, padding="same", name="last")(x)
        >>> _light_from(keras.Model(inputs, x)).shape
        (None, 4, 4, 4)
    """
    import keras

    from graftkit.model.graph import node_of, producer

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = {id(layer): i for i, layer in enumerate(layers)}
    made, last_use, tensors = {}, {}, {}  # tensor id -> producing index, last consuming index, the tensor
    for i, layer in enumerate(layers):
        node = node_of(model, layer)
        for tensor in node.input_tensors:
            maker = producer(tensor)[0]
            made[id(tensor)] = -1 if isinstance(maker, keras.layers.InputLayer) else index[id(maker)]
            last_use[id(tensor)], tensors[id(tensor)] = i, tensor
    output = model.outputs[0]
    made[id(output)], last_use[id(output)], tensors[id(output)] = len(layers) - 1, len(layers), output
    heaviest = max(_size(t) for t in tensors.values())
    for j in range(1, len(layers)):
        crossing = [key for key in made if made[key] < j <= last_use[key]]
        later = [_size(t) for key, t in tensors.items() if made[key] >= j - 1]
        if len(crossing) == 1 and made[crossing[0]] == j - 1 and max(later) <= share * heaviest:
            return tensors[crossing[0]]
    return None


def find_boundary(model, *, train_bn: bool = False, move_down_above: float = MOVE_DOWN_ABOVE):
    """Split a base whose ``trainable`` flags are set (:func:`graftkit.model.freeze.apply_freeze`) at its
    freeze boundary, or say why it cannot be.

    Args:
        model: the base model, frozen by spec.
        train_bn: ``--train-bn`` (BatchNorm then runs in training mode: no cache).
        move_down_above: cache every crossing tensor unless they take more than this many times the room
            of the nearest single tensor below; then cache that one and recompute the layers between.

    Returns:
        ``(Boundary, "")``, or ``(None, why not)``.

    Example:
        >>> import keras
        >>> from graftkit.model.freeze import apply_freeze, parse_freeze
        >>> x = inputs = keras.Input((8, 8, 3))
        >>> for i in range(3):
        ...     x = keras.layers.Conv2D(4, 3, padding="same", name=f"c{i}")(x)
        >>> m = keras.Model(inputs, x)
        >>> _ = apply_freeze(m, parse_freeze("last:1"))
        >>> boundary, _ = find_boundary(m)
        >>> boundary.names, boundary.shapes
        (('c1',), ((8, 8, 4),))
    """
    import keras

    from graftkit.model.graph import is_container, is_inference_only, node_of, producer

    if is_inference_only(model):
        return None, "the base is an inference-only SavedModel"
    if train_bn:
        return None, "--train-bn runs the base's BatchNorm layers in training mode"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        return None, "the base has several inputs or outputs"
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if any(is_container(layer) for layer in layers):
        return None, "the base nests models, so its frozen part is not a prefix of one graph"
    first = next((i for i, layer in enumerate(layers) if layer.trainable), None)
    if first is None or not any(layer.trainable_weights for layer in layers[first:]):
        return None, "nothing in the base trains"
    if not any(layer.weights for layer in layers[:first]):
        name = next(layer.name for layer in layers if layer.weights)
        return None, f"the freeze spec trains the base's first layer ('{name}'): nothing frozen below it to cache"
    layers, first = _frozen_first(model, layers, first)
    index = {id(layer): i for i, layer in enumerate(layers)}
    made, last_use, tensors = {}, {}, {}  # tensor id -> producing index, last consuming index, the tensor
    source = model.inputs[0]
    made[id(source)], tensors[id(source)] = -1, source
    for i, layer in enumerate(layers):
        if len([n for n in layer._inbound_nodes if _in_graph(model, layer, n)]) != 1:
            return None, f"layer '{layer.name}' is called more than once in the base"
        node = node_of(model, layer)
        for tensor in node.input_tensors:
            maker = producer(tensor)[0]
            where = -1 if isinstance(maker, keras.layers.InputLayer) else index.get(id(maker))
            if where is None or where >= i:
                return None, "the base's graph is not in topological order, so its frozen part is not a prefix"
            made[id(tensor)], tensors[id(tensor)] = where, tensor
            last_use[id(tensor)] = max(last_use.get(id(tensor), -1), i)
    output = model.outputs[0]
    last_use[id(output)] = len(layers)

    def crossing(j):  # tensors made below layer j and used at j or above
        return sorted((key for key in made if made[key] < j <= last_use.get(key, -1)), key=lambda k: made[k])

    exact = crossing(first)
    chosen, move = exact, 0
    if len(exact) > 1:
        below = next((j for j in range(first - 1, 0, -1) if len(crossing(j)) == 1), None)
        if below is not None:
            size = _size(tensors[crossing(below)[0]])
            if sum(_size(tensors[k]) for k in exact) > move_down_above * size:
                chosen, move = crossing(below), first - below
    outputs = [tensors[k] for k in chosen]
    names = tuple("input" if made[k] < 0 else layers[made[k]].name for k in chosen)
    shapes = tuple(tuple(int(d) for d in t.shape[1:]) for t in outputs)
    bottom = keras.Model(model.inputs[0], outputs, name="frozen_prefix")
    top = keras.Model(outputs if len(outputs) > 1 else outputs[0], output, name="trained_top")
    where = f"'{layers[first].name}' (layer {first + 1} of {len(layers)})"
    if len(exact) == 1:
        how = f"cached at the freeze boundary below {where}: the output of '{names[0]}' {shapes[0]}"
    elif move:
        how = (f"the freeze boundary below {where} cuts through a block ({len(exact)} tensors cross it): cached "
               f"the output of '{names[0]}' {shapes[0]} {move} layers further down; those frozen layers are "
               "recomputed every step")
    else:
        how = (f"the freeze boundary below {where} cuts through a block: cached all {len(exact)} tensors "
               f"that cross it ({', '.join(f'{n} {s}' for n, s in zip(names, shapes))})")
    return Boundary(bottom, top, names, shapes, move, how), ""


def _frozen_first(model, layers, first: int) -> tuple[list, int]:
    """``layers`` with every weightless layer above ``first`` that takes only frozen tensors moved down into the
    frozen prefix (Keras orders a model's layers by their depth from the output, so the pooling of a low stage,
    :mod:`graftkit.model.stages`, comes last), and the first trained layer's new index: the boundary then
    caches the pooled vector rather than the stage's whole map."""
    import keras

    from graftkit.model.graph import node_of, producer

    prefix, rest = list(layers[:first]), []
    below = {id(layer) for layer in prefix}
    for layer in layers[first:]:
        makers = [producer(tensor)[0] for tensor in node_of(model, layer).input_tensors]
        if not layer.weights and all(isinstance(m, keras.layers.InputLayer) or id(m) in below for m in makers):
            prefix.append(layer)
            below.add(id(layer))
        else:
            rest.append(layer)
    return prefix + rest, len(prefix)


def _in_graph(model, layer, node) -> bool:
    from keras.src.ops.function import make_node_key  # as graftkit.model.graph.node_of

    return make_node_key(layer, layer._inbound_nodes.index(node)) in model._nodes


def _size(tensor) -> int:
    return math.prod(int(d) for d in tensor.shape[1:])


def boundary_base(base, boundary: Boundary, *, rows: int | None = None):
    """A :class:`graftkit.bases.loader.Base` whose "features" are the boundary's tensors, one row per image.

    Extracting its features through :func:`graftkit.features.extract.extract_features` keys them on
    the frozen prefix's layers and weights, the cut, the boundary, the size, the preprocessing and the view.
    ``rows``: run the prefix over that many images at a time (see :meth:`Boundary.flat_model`; the
    features and their key are the same).

    Example:
        >>> boundary_base(base, boundary).cut  # doctest: +SKIP
        'out_relu>boundary:block_11_add'
    """
    return dataclasses.replace(base, model=boundary.flat_model(rows),
                               cut=f"{base.cut}>boundary:{','.join(boundary.names)}")


def fill_rows(batch_size: int, image_size: int) -> int | None:
    """Images the fill runs through the frozen prefix at a time: half a training batch when it decodes and
    augments images in larger batches than training does (:func:`graftkit.features.extract.extraction_batch`:
    small images), else None (whole batches).

    At 128 px the fill's batches are twice a training batch (64 images against 32), and so are their
    pixels and augmentation; through the prefix 64 at once the fill held 182 MB of TensorFlow's memory
    at its peak, 32 at a time 140 MB, 16 at a time (the early layers, :func:`_in_turns`) 100-104 MB,
    against 133 MB for an uncached training step on 32 (MobileNetV2 0.5, ``last:30%``), for 6% less CPU
    per image. Smaller images go in larger batches still, but their activations are smaller.

    Example:
        >>> fill_rows(32, 128), fill_rows(32, 224), fill_rows(8, 224)
        (16, None, 4)
    """
    from graftkit.features.extract import extraction_batch

    return max(1, batch_size // 2) if extraction_batch(batch_size, image_size) > batch_size else None


def choose_dtype(base, boundary: Boundary, paths, *, sample: int = 8, cut=None) -> tuple[str, str]:
    """``float16`` when storing the boundary tensors at half precision moves the base's outputs by less than
    :data:`FLOAT16_TOLERANCE` of their largest value on the first ``sample`` images, else ``float32``; and why.

    The boundary tensors come from the compiled exact extractor of ``cut`` (default
    :func:`boundary_base`), the one the fill then runs over the validation images: one trace for both,
    and none of the prefix's activations held (an eager call of the prefix keeps every one of them
    until it returns: 113 MB for 8 images at 128 px).

    Example:
        >>> choose_dtype(base, boundary, paths)  # doctest: +SKIP
        ('float16', 'float16 (base outputs within 0.0011 of float32 on 8 images)')
    """
    import tensorflow as tf

    from graftkit.data.pipeline import make_dataset
    from graftkit.features.extract import extractor

    cut = cut if cut is not None else boundary_base(base, boundary)
    images = next(iter(make_dataset(list(paths)[:sample], image_size=base.image_size, channels=base.channels,
                                    batch_size=sample)))
    crossing = boundary.unflatten(extractor(cut)(images))
    crossing = list(crossing) if isinstance(crossing, (list, tuple)) else [crossing]
    halved = [tf.cast(tf.cast(t, tf.float16), tf.float32) for t in crossing]
    if not all(bool(tf.reduce_all(tf.math.is_finite(t))) for t in halved):
        return "float32", "float32 (the boundary tensors exceed float16's range)"
    feed = (lambda ts: ts if len(ts) > 1 else ts[0])
    exact = boundary.top(feed(list(crossing)), training=False)
    rounded = boundary.top(feed(halved), training=False)
    error = float(tf.reduce_max(tf.abs(exact - rounded)) / (tf.reduce_max(tf.abs(exact)) + 1e-12))
    if error < FLOAT16_TOLERANCE:
        return "float16", f"float16 (base outputs within {error:.2g} of float32 on {len(images)} images)"
    return "float32", f"float32 (float16 moved the base outputs by {error:.2g} of their range)"


def plan_storage(values: int, dtype: str, train: int, val: int, *, views: int, memory_mb: int | None,
                 free_bytes: int, feature_cache: str = "auto") -> tuple[int, str | None, str]:
    """How many views to cache and where: ``(views, feature_cache mode, why)``, or ``(0, None, why not)``.

    Everything goes in memory when it fits ``memory_mb`` (and a copy on disk for the next run); beyond,
    the views are memory-mapped from the disk cache. Views are dropped (to one) until the cache takes at
    most half the free disk; when even one does not fit disk nor memory the cache is not used.

    Example:
        >>> plan_storage(9408, "float16", 1000, 200, views=2, memory_mb=2048, free_bytes=10 << 30)[:2]
        (2, 'auto')
        >>> plan_storage(9408, "float16", 1000, 200, views=2, memory_mb=2048, free_bytes=0)[:2]
        (2, 'memory')
    """
    row = values * np.dtype(dtype).itemsize
    budget = (memory_mb if memory_mb is not None else default_memory_budget_mb()) * 2 ** 20
    for k in range(views, 0, -1):
        total = row * (train * k + val)
        size = f"{total / 2 ** 20:,.0f} MB in {dtype}"
        if feature_cache != "memory" and total <= free_bytes // 2:
            where = "in memory" if total <= budget and feature_cache != "disk" else "memory-mapped from disk"
            return k, ("disk" if where != "in memory" else feature_cache), f"{_views(k)}, {size}, {where}"
        if total <= budget:
            return k, "memory", f"{_views(k)}, {size}, in memory only (no room on disk)"
    return 0, None, (f"one view of the boundary tensors takes {row * (train + val) / 2 ** 20:,.0f} MB: more "
                     "than the memory budget (--feature-memory-mb) and half the free disk")


def _views(k: int) -> str:
    return "1 view" if k == 1 else f"{k} views"


def free_disk() -> int:
    """Free bytes where the feature cache lives (0 when that cannot be told)."""
    folder = Path(settings.cache_dir())
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


@dataclasses.dataclass
class FineTuneCache:
    """What cached fine-tuning trains on.

    Attributes:
        model: cached tensors -> the base's top -> the head (see :meth:`Boundary.fine_tune_model`).
        train: ``tf.data`` batches of (cached tensors, labels), reshuffled every epoch, one view drawn per image.
        val: the same for the validation images' exact tensors, in order.
        boundary: the :class:`Boundary`.
        views: views cached per training image (1 without augmentation).
    """

    model: object
    train: object
    val: object
    boundary: Boundary
    views: int


def boundary_cache(base, head, split, *, train_bn: bool = False, augment: bool = True, batch_size: int = 32,
                   seed: int = 0, views: int | None = None, feature_cache: str = "auto",
                   feature_memory_mb: int | None = None, dtype: str | None = None) -> FineTuneCache | None:
    """Fill (or reuse) the boundary cache of a split, for fine-tuning ``base`` frozen by spec; None, with the
    reason in the log, when it does not apply.

    Args:
        base: a :class:`graftkit.bases.loader.Base` whose model's ``trainable`` flags are set.
        head: the head the full model ends in (shared: training on the cache trains the full model).
        split: a :class:`graftkit.data.layout.DataSplit`.
        train_bn: ``--train-bn``.
        augment: cache augmented views of the training images (else their exact tensors, one view).
        batch_size: rows per training batch.
        seed: seed of the views, the shuffle and the choice of view.
        views: augmented views per training image, 1 to 64 (default :data:`DEFAULT_VIEWS`, ``--fine-tune-views``;
            ignored without ``augment``); fewer when they do not fit (see :func:`plan_storage`).
        feature_cache: ``auto``, ``memory`` (no disk) or ``disk`` (always memory-mapped), as for
            :func:`graftkit.features.extract.extract_features`.
        feature_memory_mb: the most MB of cached tensors held in memory (an eighth of RAM by default).
        dtype: ``float16`` or ``float32`` storage; None chooses with :func:`choose_dtype`.

    Example:
        >>> cache = boundary_cache(base, head, split)  # doctest: +SKIP
        >>> cache.model.fit(cache.train, validation_data=cache.val)  # doctest: +SKIP
    """
    from graftkit.features.extract import extract_features, features_dataset

    if views is not None and not 1 <= views <= 64:
        raise GraftError(f"--fine-tune-views {views} is out of range: use 1 to 64")
    boundary, why = find_boundary(base.model, train_bn=train_bn)
    if boundary is None:
        log.info(f"fine-tuning runs the whole base every step: {why}")
        return None
    start = time.perf_counter()
    k = (views or DEFAULT_VIEWS) if augment else 1
    cut = boundary_base(base, boundary, rows=fill_rows(batch_size, base.image_size))
    if dtype is None:
        dtype, dtype_why = choose_dtype(base, boundary, split.train.paths, cut=cut)
    else:
        dtype_why = f"{dtype} (asked for)"
    mode = "auto" if feature_cache in ("auto", "off") else feature_cache
    k, mode, storage = plan_storage(boundary.values, dtype, len(split.train), len(split.val), views=k,
                                    memory_mb=feature_memory_mb, free_bytes=free_disk(), feature_cache=mode)
    if not k:
        log.info(f"fine-tuning runs the whole base every step: {storage}")
        return None
    if not augment:
        drawn = ", exact (no augmentation)"
    elif k == 1:
        drawn = ", augmented once: the same view every epoch (--fine-tune-views K caches K, one drawn per epoch)"
    else:
        drawn = ", one view drawn per image each epoch"
    log.info(f"fine-tuning on the boundary cache: {boundary.how}; {dtype_why}; {storage}{drawn}")
    budget = feature_memory_mb if feature_memory_mb is not None else default_memory_budget_mb()  # the plan checked the sum
    counts = {"computed": 0, "cached": 0}

    def extract(paths, view):
        stats = {}
        rows = extract_features(cut, paths, view=view, seed=seed, batch_size=batch_size, feature_cache=mode,
                                feature_memory_mb=budget, dtype=dtype, stats=stats)
        counts["computed"] += stats["computed"]
        counts["cached"] += stats["cached"]
        return rows

    train = [extract(split.train.paths, view if augment else None) for view in range(k)]
    val = extract(split.val.paths, None)
    log.info(f"boundary tensors: {counts['computed']} computed, {counts['cached']} from the cache, "
             f"{time.perf_counter() - start:.1f} s")

    def batches(dataset):
        return dataset.map(lambda x, y: (boundary.unflatten(x), y))

    return FineTuneCache(
        model=boundary.fine_tune_model(head),
        train=batches(features_dataset(train, split.train.labels, batch_size=batch_size, shuffle=True, seed=seed)),
        val=batches(features_dataset(val, split.val.labels, batch_size=batch_size)),
        boundary=boundary, views=k)
