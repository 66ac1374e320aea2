"""The head stage on cached features: the frozen base runs once per image, the head trains many epochs.

Training the head of ``preprocess -> frozen base -> head`` end to end recomputes the same
base outputs every epoch. Here the base's outputs are extracted once through the feature
cache (:mod:`graftkit.features`), already globally pooled when the head starts with that
pooling, and the separate ``head`` model is fitted on them with the same optimizer, loss,
batch size and early stopping as :func:`graftkit.training.stages.fit_stage`: in one compiled loop per
epoch when the features are in memory (:func:`fit_on_features`), by ``fit_stage`` itself
when they stream from disk. The full model shares the head's layers, so it is complete
afterwards and fine-tuning continues from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graftkit import log


@dataclass
class CachedFeatures:
    """The features a cached head stage trained on.

    Attributes:
        train: one array per view of the training images (one view when exact).
        val: exact features of the validation images.
        views: 0 for exact features, else the number of augmented views.
        model: what maps these features to probabilities: the head, or the head after its
            global pooling when the features were cached pooled.
        pool: ``avg`` or ``max`` when the features were cached pooled, else None.
    """

    train: list
    val: np.ndarray
    views: int
    model: object = None
    pool: str | None = None


def choose_views(aug_views: int | None, augment: bool) -> tuple[int, str]:
    """How many augmented views to cache for the head stage (0 = exact features), and why.

    The default is the exact cache: a head on frozen features gains little from augmentation,
    while each augmented view costs one more pass of the base over the training images;
    fine-tuning, which trains through the base, still augments every batch on the fly.

    Example:
        >>> choose_views(None, True)[0], choose_views(4, True)[0], choose_views(None, False)[0]
        (0, 4, 0)
    """
    if not augment:
        return 0, "exact features (augmentation is off)"
    if aug_views is None:
        return 0, ("exact features, no augmentation (the default: each augmented view would cost another "
                   "pass of the base for little gain on a frozen base; --aug-views K caches K augmented views, "
                   "and fine-tuning still augments)")
    if aug_views == 0:
        return 0, "exact features (--aug-views 0)"
    return aug_views, f"{aug_views} cached augmented views per image (--aug-views {aug_views}), one drawn per epoch"


def cached_head_stage(base, head, split, *, views: int, batch_size: int, epochs: int, learning_rate: float,
                      patience: int, class_weight: dict | None = None, feature_cache: str = "auto",
                      feature_memory_mb: int | None = None, seed: int = 0, callbacks: list | None = None,
                      checkpoint=None, resume=None, task=None, strategy=None, solver: str = "auto"):
    """Extract (or reuse) the base's features of a split and fit ``head`` on them.

    Args:
        base: a :class:`graftkit.bases.loader.Base`, frozen.
        head: the head model from :func:`graftkit.model.head.build_head` (shared with the full model).
        split: a :class:`graftkit.data.layout.DataSplit`.
        views: 0 for exact features, else the number of augmented views (see :func:`choose_views`).
        batch_size, epochs, learning_rate, patience, class_weight: as for :func:`graftkit.training.stages.fit_stage`.
        feature_cache, feature_memory_mb: as for :func:`graftkit.features.extract.extract_features`.
        task: the :class:`graftkit.model.task.Task`; single-label by default.
        seed: seed of the shuffle and of the augmented views.
        callbacks: more Keras callbacks for the head's ``fit`` (e.g. TensorBoard).
        checkpoint, resume: as for :func:`graftkit.training.stages.fit_stage` (a resume replays the
            shuffles of the epochs done, so it goes on exactly as the interrupted run would have).
        strategy: a ``tf.distribute`` strategy whose scope made ``head``: the head trains on its
            replicas, each global batch split between them, in the same order of examples as
            without one; on several workers each computes its share of the features into the
            shared cache, then all read them whole (:func:`graftkit.training.distribute.split_pass`).
        solver: ``lbfgs`` fits a linear head to convergence
            (:func:`graftkit.training.linear_head.fit_linear_head`); ``adam`` trains it by epochs;
            ``auto`` (see :func:`choose_solver`) picks L-BFGS for a linear head on features in memory.

    Returns:
        ``(StageResult, CachedFeatures)``.

    Example:
        >>> result, cached = cached_head_stage(base, head, split, views=0, batch_size=32, epochs=10,
        ...                                    learning_rate=1e-3, patience=3)  # doctest: +SKIP
        >>> result.best_val_loss  # doctest: +SKIP
        0.21
    """

    from graftkit.features.extract import extract_features, features_dataset
    from graftkit.training.stages import fit_stage

    start = time.perf_counter()
    pool, trained = after_pooling(head)
    options = {"batch_size": batch_size, "feature_cache": feature_cache, "feature_memory_mb": feature_memory_mb, "pool": pool}
    counts = {"computed": 0, "cached": 0}

    def extract_here(paths, view=None):
        stats = {}
        array = extract_features(base, paths, view=view, seed=seed, stats=stats, **options)
        return array, stats["computed"]

    def extract(paths, view=None):
        if strategy is None or feature_cache == "memory":  # nothing on disk to share: each worker computes all
            array, computed = extract_here(paths, view)
        else:
            from graftkit.training.distribute import split_pass

            array, computed = split_pass(strategy, lambda items: extract_here(items, view), list(paths))
        counts["computed"] += computed
        counts["cached"] += len(paths) - computed
        return array

    if views:
        train = [extract(split.train.paths, view) for view in range(views)]
        val = extract(split.val.paths)
    else:  # one pass over both sets: one pipeline to fill and drain, one progress bar
        both = extract(list(split.train.paths) + list(split.val.paths))
        train, val = [both[:len(split.train)]], both[len(split.train):]
    in_memory = not any(isinstance(array, np.memmap) for array in (*train, val))
    log.info(f"features: {counts['computed']} computed, {counts['cached']} from the cache, "
             f"{time.perf_counter() - start:.1f} s; training the head on them "
             f"({'pooled, ' if pool else ''}{'in memory' if in_memory else 'streamed from disk'})")
    if choose_solver(solver, trained, in_memory) == "lbfgs":
        from graftkit.training.linear_head import fit_linear_head

        from graftkit.model.stages import has_stage_features

        result = fit_linear_head(trained, train, split.train.labels, val, split.val.labels, task=task,
                                 class_weight=class_weight, per_dimension=has_stage_features(base.model))
        _summaries(callbacks, result.history)
    elif in_memory and not callbacks and strategy is not None:
        result = _fit_on_replicas(strategy, trained, train, split.train.labels, val, split.val.labels,
                                  batch_size=batch_size, epochs=epochs, learning_rate=learning_rate,
                                  patience=patience, class_weight=class_weight, seed=seed,
                                  checkpoint=checkpoint, resume=resume, task=task)
    elif in_memory and not callbacks:
        result = fit_on_features("head", trained, train, split.train.labels, val, split.val.labels,
                                 batch_size=batch_size, epochs=epochs, learning_rate=learning_rate,
                                 patience=patience, class_weight=class_weight, seed=seed,
                                 checkpoint=checkpoint, resume=resume, task=task)
    else:  # streamed from disk, or Keras callbacks to serve: Keras' own fit (or the strategy's loop)
        train_data = features_dataset(train, split.train.labels, batch_size=batch_size, shuffle=True, seed=seed)
        val_data = features_dataset(val, split.val.labels, batch_size=batch_size)
        result = fit_stage("head", trained, train_data, val_data, epochs=epochs, learning_rate=learning_rate,
                           patience=patience, class_weight=class_weight, callbacks=callbacks,
                           checkpoint=checkpoint, resume=resume, samples=len(split.train), task=task,
                           strategy=strategy)
    result.seconds = time.perf_counter() - start
    return result, CachedFeatures(train=train, val=val, views=views, model=trained, pool=pool)


def _summaries(callbacks, history: dict) -> None:
    """Write a fit without epochs into the TensorBoard callbacks' folders as Keras would write one epoch
    (``train/`` and ``validation/``, ``epoch_<metric>`` at step 0), so the head stage shows in TensorBoard."""
    import tensorflow as tf

    for callback in callbacks or []:
        folder = getattr(callback, "log_dir", None)
        if folder is None:
            continue
        for part, prefix in (("train", ""), ("validation", "val_")):
            with tf.summary.create_file_writer(f"{folder}/{part}").as_default():
                for key, values in history.items():
                    if key.startswith(prefix) and (prefix or not key.startswith("val_")):
                        tf.summary.scalar(f"epoch_{key.removeprefix(prefix)}", values[0], step=0)


def choose_solver(solver: str, head, in_memory: bool = True) -> str:
    """How the head stage fits ``head``: ``lbfgs`` or ``adam`` (``--head-solver``).

    ``auto`` is L-BFGS when the head is one Dense layer on feature vectors held in memory: it then
    reaches the optimum a logistic regression reaches, in seconds, where 10 Adam epochs end still
    improving; for other heads (hidden layers, features streamed from disk) it is Adam by epochs.
    Whether fine-tuning follows does not change it: before fine-tuning, L-BFGS wins together with
    the cosine schedule (``bench/recipe_study.py``: +1.7 points on the mean of four sets, at most
    0.3 lost on one; without it 1.2 were lost on flowers128; docs/benchmarks.md section 12).

    Example:
        >>> from graftkit.model.head import build_head
        >>> choose_solver("auto", build_head((8,), 3)), choose_solver("auto", build_head((8,), 3, hidden=[4]))
        ('lbfgs', 'adam')
        >>> choose_solver("auto", build_head((8,), 3), in_memory=False), choose_solver("adam", build_head((8,), 3))
        ('adam', 'adam')
    """
    from graftkit.training.linear_head import linear_layer

    if solver != "auto":
        return solver
    return "lbfgs" if in_memory and linear_layer(head) is not None else "adam"


class _FusedAdam:
    """``keras.optimizers.Adam`` (beta 0.9 / 0.999, epsilon 1e-7) as TensorFlow's fused ``ResourceApplyAdam``.

    Both compute ``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)`` and
    ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)``; Keras does it in about ten
    elementwise passes over each weight, which on a head of a million weights cost more
    than its forward and backward passes together.
    """

    def __init__(self, variables, learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7):
        import tensorflow as tf

        self.variables = list(variables)
        self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables]
        self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in self.variables]
        self.step = tf.Variable(0.0, trainable=False)
        self.hyper = (learning_rate, beta_1, beta_2, epsilon)

    def apply(self, gradients) -> None:
        import tensorflow as tf

        learning_rate, beta_1, beta_2, epsilon = self.hyper
        self.step.assign_add(1.0)
        for variable, gradient, m, v in zip(self.variables, gradients, self.m, self.v):
            if gradient is None:
                continue
            dtype = variable.dtype
            tf.raw_ops.ResourceApplyAdam(
                var=variable.handle, m=m.handle, v=v.handle,
                beta1_power=tf.pow(tf.constant(beta_1, dtype), tf.cast(self.step, dtype)),
                beta2_power=tf.pow(tf.constant(beta_2, dtype), tf.cast(self.step, dtype)),
                lr=tf.constant(learning_rate, dtype), beta1=tf.constant(beta_1, dtype),
                beta2=tf.constant(beta_2, dtype), epsilon=tf.constant(epsilon, dtype),
                grad=tf.convert_to_tensor(gradient, dtype))

    @property
    def slots(self) -> tuple:
        """The optimizer's own variables, the moments and the step count (what a checkpoint keeps)."""
        return (*self.m, *self.v, self.step)


def after_pooling(head) -> tuple[str | None, object]:
    """When ``head`` starts with global pooling, the pooling mode and the rest of the head.

    The rest shares the head's layers, so training it trains the head. Caching features
    already pooled, exactly as that first layer pools them, makes them far smaller (49
    times for a 7x7 map) and an epoch on them cheaper, with the same results.

    Returns:
        ``("avg", "max" or "avgmax", the model from pooled features to probabilities)``, or ``(None, head)``.

    Example:
        >>> from graftkit.model.head import build_head
        >>> pool, rest = after_pooling(build_head((7, 7, 32), 3))
        >>> pool, rest.input.shape
        ('avg', (None, 32))
        >>> pool, rest = after_pooling(build_head((7, 7, 32), 3, pooling="avgmax"))
        >>> pool, rest.input.shape
        ('avgmax', (None, 64))
    """
    import keras

    from graftkit.model.pooling import pooling_mode

    layers = getattr(head, "layers", [])
    if len(layers) < 3 or len(head.inputs) != 1:
        return None, head
    features = head.inputs[0]
    readers = [layer for layer in layers[1:] if any(tensor is features for tensor in _inputs_of(layer))]
    modes = [pooling_mode(layer) for layer in readers]
    if modes in (["avg"], ["max"]):
        mode, pooled = modes[0], readers[0].output
    elif modes == ["avg", "max"]:  # pooler's avgmax: both poolings, then one Concatenate of them in that order
        joins = [layer for layer in layers if isinstance(layer, keras.layers.Concatenate)
                 and [id(t) for t in _inputs_of(layer)] == [id(readers[0].output), id(readers[1].output)]]
        if len(joins) != 1:
            return None, head
        mode, pooled = "avgmax", joins[0].output
    else:
        return None, head  # no pooling first, or something else reads the unpooled features too
    return mode, keras.Model(pooled, head.output, name=f"{head.name}_after_pool")


def _inputs_of(layer) -> list:
    tensors = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
    return list(tensors)


def fit_on_features(name: str, head, train_views, train_labels, val_features, val_labels, *, batch_size: int,
                    epochs: int, learning_rate: float, patience: int = 3, class_weight: dict | None = None,
                    seed: int = 0, checkpoint=None, resume=None, task=None):
    """Fit ``head`` on in-memory features as :func:`graftkit.training.stages.fit_stage` would, with an epoch per call.

    The same training as there: Adam at ``learning_rate`` with Keras' defaults, the task's
    loss (sparse cross-entropy for single-label classes), the batch size, a reshuffle every epoch, class weights, and Keras
    ``EarlyStopping`` on the validation loss with the best weights restored. But each epoch
    and its validation run as one compiled TensorFlow loop, and Adam's update runs as
    TensorFlow's fused kernel (the same arithmetic as ``keras.optimizers.Adam``, in one
    pass over each weight instead of about ten). On features a step is so cheap that
    ``model.fit``'s per-step overhead and Keras' unfused update would be most of the time.

    Args:
        name: stage name for messages and the result.
        head: the head model.
        train_views: one array of training features, or a list of augmented views of them
            (each epoch draws one view per image).
        train_labels, val_features, val_labels: the rest of the data.
        batch_size, epochs, learning_rate, patience, class_weight: as for ``fit_stage``.
        seed: seed of the shuffle and of the choice of view.
        checkpoint, resume: as for :func:`graftkit.training.stages.fit_stage`; the shuffles of the
            epochs done are drawn again, so a resumed stage ends as an uninterrupted one.
        task: the :class:`graftkit.model.task.Task`; single-label by default.

    Returns:
        A :class:`graftkit.training.stages.StageResult`; ``head`` holds the best epoch's weights.

    Example:
        >>> import numpy as np
        >>> from graftkit.model.head import build_head
        >>> x, y = np.random.default_rng(0).normal(size=(40, 4)).astype("float32"), np.arange(40) % 2
        >>> fit_on_features("head", build_head((4,), 2), x, y, x, y, batch_size=8, epochs=2,
        ...                 learning_rate=1e-2).history["val_loss"].__len__()
        2
    """
    import keras
    import tensorflow as tf

    from graftkit.data.pipeline import weight_table
    from graftkit.features.extract import as_views
    from graftkit.training.checkpoint import restore_training
    from graftkit.training.stages import StageRun, Stopper, compile_for

    from graftkit.model.task import Task

    task = task or Task()
    compile_for(head, learning_rate, task)  # as fit_stage leaves it; the update below is the same Adam, fused
    adam = _FusedAdam(head.trainable_variables, learning_rate)
    first = resume.epoch if resume else 0
    if resume:
        restore_training(resume, head, adam.slots)
    views = as_views(train_views)
    count, n_views = len(train_labels), len(views)
    table = tf.constant(np.concatenate(views) if n_views > 1 else views[0])
    labels = tf.constant(np.asarray(train_labels, task.label_dtype))
    weights = tf.constant(weight_table(class_weight, int(head.output.shape[-1])))
    val_x, val_y = tf.constant(val_features), tf.constant(np.asarray(val_labels, task.label_dtype))

    def scores(y, p):
        return task.per_example_loss(y, p), task.per_example_metric(y, p)

    def weighted(losses, y):  # class weights index single-label classes; other tasks train unweighted
        return losses * tf.gather(weights, y) if task.kind == "single" else losses

    def loop(step, n):
        zero = tf.constant(0.0)
        _, total, correct = tf.while_loop(lambda start, *_: start < n, step, (tf.constant(0), zero, zero))
        return total / tf.cast(n, tf.float32), correct / tf.cast(n, tf.float32)

    def val_step(start, total, correct):  # inference mode: chunks give the same result
        losses, hits = scores(val_y[start:start + 1024], head(tf.cast(val_x[start:start + 1024], tf.float32),
                                                               training=False))
        return start + 1024, total + tf.reduce_sum(losses), correct + tf.reduce_sum(hits)

    # Explicit loops, without autograph: converting this code (and Keras') took most of a
    # second, a fifth of a whole cold head stage.
    @tf.function(autograph=False)
    def run_epoch(rows):  # rows index ``table`` (image + view * count) in this epoch's order; then validation
        def train_step(start, total, correct):
            batch = rows[start:start + batch_size]
            y = tf.gather(labels, batch % count)
            x = tf.cast(tf.gather(table, batch), tf.float32)
            with tf.GradientTape() as tape:
                losses, hits = scores(y, head(x, training=True))
                losses = weighted(losses, y)
                loss = tf.reduce_mean(losses)  # Keras' "sum over batch size"
            adam.apply(tape.gradient(loss, head.trainable_variables))
            return start + batch_size, total + tf.reduce_sum(losses), correct + tf.reduce_sum(hits)

        return (*loop(train_step, tf.shape(rows)[0]), *loop(val_step, tf.shape(val_y)[0]))

    stopper = Stopper(patience, resume)
    stopper.set_model(head)
    head.stop_training = False
    stopper.on_train_begin()
    stage = StageRun(name, head, epochs=epochs, learning_rate=learning_rate, samples=count, checkpoint=checkpoint,
                     stopper=stopper, slots=adam.slots, resume=resume)
    start = time.perf_counter()
    for epoch, rows in enumerate(_epoch_rows(count, n_views, epochs, seed)):
        if epoch < first or stopper.stopped:
            continue  # done before the interruption: only its draws, so later epochs draw as they did
        stage.begin_epoch(epoch)  # no bar: an epoch is one compiled call of milliseconds
        loss, metric, val_loss, val_metric = (float(v) for v in run_epoch(tf.constant(rows, tf.int32)))
        logs = {task.metric: metric, "loss": loss, f"val_{task.metric}": val_metric, "val_loss": val_loss}
        stopper.on_epoch_end(epoch, logs)
        stage.end_epoch(epoch, logs)
        if head.stop_training:
            break
    stopper.on_train_end()
    return stage.result(stopper, time.perf_counter() - start)


def _epoch_rows(count: int, n_views: int, epochs: int, seed: int):
    """Each epoch's order of training rows (image + view * count: one view drawn per image), from ``seed``.

    Example:
        >>> [rows.tolist() for rows in _epoch_rows(3, 1, 2, seed=0)]
        [[2, 0, 1], [2, 1, 0]]
    """
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(count)
        yield order + count * rng.integers(n_views, size=count) if n_views > 1 else order


def _fit_on_replicas(strategy, head, train_views, train_labels, val_features, val_labels, *, batch_size: int,
                     epochs: int, learning_rate: float, patience: int, class_weight: dict | None, seed: int,
                     checkpoint, resume, task):
    """:func:`fit_on_features` on a strategy's replicas: the same rows in the same order each epoch, each
    global batch split between the replicas, which gather their features from the table in memory.

    The datasets carry row numbers only, so a table of any size stays out of their graphs.
    """
    import tensorflow as tf

    from graftkit.features.extract import as_views
    from graftkit.model.task import Task
    from graftkit.training.stages import fit_stage

    task = task or Task()
    views = as_views(train_views)
    count = len(train_labels)
    table = tf.constant(np.concatenate(views) if len(views) > 1 else views[0])
    labels = tf.constant(np.asarray(train_labels, task.label_dtype))
    val_x, val_y = tf.constant(val_features), tf.constant(np.asarray(val_labels, task.label_dtype))
    orders = list(_epoch_rows(count, len(views), epochs, seed))

    def train_rows(epoch):
        return tf.data.Dataset.from_tensor_slices(orders[epoch].astype(np.int32)).batch(batch_size)

    def train_inputs(rows):
        return tf.cast(tf.gather(table, rows), tf.float32), tf.gather(labels, rows % count)

    def val_inputs(rows):
        return tf.cast(tf.gather(val_x, rows), tf.float32), tf.gather(val_y, rows)

    val_rows = tf.data.Dataset.range(len(val_labels)).map(lambda row: tf.cast(row, tf.int32)).batch(batch_size)
    return fit_stage("head", head, train_rows, val_rows, epochs=epochs, learning_rate=learning_rate,
                     patience=patience, class_weight=class_weight, checkpoint=checkpoint, resume=resume,
                     samples=count, task=task, strategy=strategy, inputs=(train_inputs, val_inputs))
