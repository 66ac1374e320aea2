"""A learning-rate finder, as fastai's ``lr_find``: a short sweep of exponentially growing rates, the loss recorded.

Leslie Smith's "LR range test" (2015), as fastai runs it: train from the current weights for up to 100 steps
while the learning rate grows exponentially from 1e-7 to 10, record the exponentially smoothed training loss at
every step, and stop early once it exceeds 4 times its minimum (the rate is then far too high). The rate
suggested is fastai's default, **valley**: on the curve trimmed of its first tenth and last 5 points (as fastai
trims it), the longest stretch over which the smoothed loss keeps falling (its longest decreasing run), and the
rate halfway along it, where the loss falls steeply and is still far from the blow-up. When the sweep is too
short for a valley, the suggestion is the rate of least loss divided by 10. Fine-tuning's sweep starts from a
trained head, near its least loss: its curve is flat and noisy until the loss climbs, and the longest decreasing
run of noise is no valley. Its suggestion is a tenth of the rate from which the loss rises for good (the rule of
thumb fastai teaches for the unfrozen stage: an order of magnitude before the loss climbs), the valley when it
never climbs. Either way it is clamped to
``[1e-6, 0.1]`` (and to the swept range) and rounded to 3 significant digits, so the rate printed is the rate used.

The sweep leaves nothing behind: the model's variables (weights, BatchNorm statistics, dropout seed states),
its compiled optimizer's state, the layers' ``trainable`` flags and Python's and NumPy's global random states
are put back bit for bit, so a run at the found rate is the run you get by passing that rate
(fastai/fastai#2892 was a finder that changed later training). It trains with its own Adam, as the stages do.

Two sweeps, each a function the training pipeline calls only where its stage trains by a learning rate:

- :func:`head_sweep`: the head on the base's cached features (:func:`graftkit.features.extract.extract_features`,
  the same call as the head stage's, so those features are then read from the cache); 100 steps in seconds.
  A head fitted by L-BFGS (``--head-solver``) takes no rate: there is no sweep.
- :func:`fine_tune_sweep`: the whole model with the ``--freeze`` spec applied, on augmented training batches,
  one pass or 100 steps, whichever is fewer (at least 30, cycling through the data), then the base frozen again.

``graft lr-find DATA`` (:func:`graftkit.training.find_rates.lr_find_config`) runs both and draws the curves;
``--lr auto`` and ``--fine-tune-lr auto`` on ``graft train`` (:class:`AutoRates`) run each at the start of its
stage.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graftkit import log
from graftkit.config import AUTO, FIELDS
from graftkit.errors import GraftError

START, END, STEPS = 1e-7, 10.0, 100
MIN_STEPS = 30  # a fine-tuning sweep on fewer batches than this cycles through them again
SMOOTHING = 0.98  # fastai's beta for 100 steps; a shorter sweep smooths over the same share of its range
DIVERGE = 4.0  # stop once the smoothed loss exceeds this many times its minimum
DIVERGE_FLOOR = 0.1  # ... or this loss, whichever is more: from a near-perfect fit, 4x a tiny loss is noise
SUGGEST_RANGE = (1e-6, 0.1)
RISEN = 1.25  # the loss has risen for good once it stays above this many times its flat level
DEFAULT_LR = FIELDS["lr"].default  # the head's rate where none is found
LR_FIND_FILE = "lr_find.json"
LR_FIND_PLOT = "lr_find.png"
STAGE_NAMES = {"head": "head", "fine_tune": "fine-tuning"}


@dataclass
class LRFind:
    """One learning-rate sweep: the rates tried, the losses, and the suggested rate.

    Attributes:
        lrs: the learning rate of each step.
        losses: the exponentially smoothed (debiased) training loss after each step.
        raw: each step's own training loss.
        suggestion: the suggested rate (see the module's docstring).
        rule: how it was chosen: ``valley``, ``min/10`` when the sweep was too short for one, or ``rise/10``
            (fine-tuning's sweep; see :func:`suggest`).
        min_loss_lr: the rate at the least smoothed loss.
        stopped: ``diverged`` (the loss passed 4x its minimum, or was not finite) or ``end`` (all steps ran).
        name: what was swept: ``head``, ``fine_tune``, or any name.
    """

    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    raw: list = field(default_factory=list)
    suggestion: float = DEFAULT_LR
    rule: str = "valley"
    min_loss_lr: float | None = None
    stopped: str = "end"
    name: str = ""

    @property
    def steps(self) -> int:
        return len(self.lrs)

    def summary(self) -> dict:
        """What ``metrics.json`` keeps of the sweep (the curves are in ``lr_find.json``)."""
        return {"lr": self.suggestion, "rule": self.rule, "min_loss_lr": self.min_loss_lr, "steps": self.steps,
                "range": [self.lrs[0], self.lrs[-1]] if self.lrs else [], "stopped": self.stopped}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "LRFind":
        return cls(**{key: value for key, value in values.items() if key in cls.__dataclass_fields__})


def sweep_rates(start: float = START, end: float = END, steps: int = STEPS) -> np.ndarray:
    """The exponentially spaced rates of a sweep, ``start`` to ``end`` inclusive.

    Example:
        >>> [float(f"{r:.3g}") for r in sweep_rates(1e-4, 1.0, 5)]
        [0.0001, 0.001, 0.01, 0.1, 1.0]
    """
    if not 0 < start < end or steps < 2:
        raise ValueError(f"a sweep needs 0 < start < end and 2 or more steps, not {start}, {end}, {steps}")
    return start * (end / start) ** (np.arange(steps) / (steps - 1))


def smoothed(raw, beta: float = SMOOTHING) -> list:
    """fastai's exponentially smoothed, debiased loss of each step: ``avg = beta avg + (1 - beta) loss``, over
    ``1 - beta^n``.

    Example:
        >>> [round(v, 3) for v in smoothed([1.0, 0.0, 0.0], beta=0.5)]
        [1.0, 0.333, 0.143]
    """
    average, out = 0.0, []
    for n, loss in enumerate(raw, 1):
        average = beta * average + (1 - beta) * float(loss)
        out.append(average / (1 - beta ** n))
    return out


def valley(lrs, losses) -> float | None:
    """fastai's ``valley`` suggestion: the longest decreasing run of ``losses`` (a subsequence: a noisy step up
    does not end it), and the rate halfway along it (at ``first + len/3 + len/6``); None when the losses never
    fall.

    Example:
        >>> valley([1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 1e2, 1e3],
        ...        [3.0, 2.9, 2.5, 1.6, 0.9, 0.5, 0.4, 0.6, 5.0])
        0.01
    """
    n = len(losses)
    runs = [1] * n  # the longest decreasing run ending at each point
    first, last = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and runs[i] < runs[j] + 1:
                runs[i] = runs[j] + 1
            if runs[last] < runs[i]:
                last = i
                first = last - runs[last] + 1  # fastai leaves out the + 1, starting one point early
    if last == 0:
        return None
    sections = (last - first) / 3
    return float(lrs[first + int(sections) + int(sections / 2)])


def rises_from(lrs, losses) -> float | None:
    """The rate from which the loss rises for good: the first point after which every loss stays above
    :data:`RISEN` times the curve's flat level (the median loss of its first half); None when it never does.

    Example:
        >>> rises_from([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1], [1.0, 1.3, 0.95, 1.0, 1.5, 3.0])  # 1e-5's bump falls back
        0.01
    """
    level = float(np.median(losses[:max(1, len(losses) // 2)])) if len(losses) else math.inf
    start = None
    for index, loss in enumerate(losses):
        if loss <= RISEN * level:
            start = None
        elif start is None:
            start = index
    return None if start is None else float(lrs[start])


def suggest(lrs, losses, *, bounds: tuple = SUGGEST_RANGE, rule: str = "valley") -> tuple[float, str]:
    """The suggested rate of a sweep and the rule that chose it.

    ``valley`` (the default): the valley of the curve trimmed of its first tenth and its last 5 points
    (fastai's trim), or ``min/10`` (the rate of least loss over 10) when too few points remain. ``rise/10``
    (for a sweep that starts near its least loss, as fine-tuning's does): a tenth of :func:`rises_from`, or
    the valley when the loss never climbs. Clamped to ``bounds`` and the swept range, rounded to 3
    significant digits.

    Example:
        >>> lrs = list(sweep_rates(1e-7, 10.0, 100))
        >>> losses = [1.0 + (math.log10(r) + 2) ** 2 / 10 for r in lrs]  # least loss at 1e-2
        >>> rate, rule = suggest(lrs, losses); rule, 1e-7 < rate < 1e-2  # on the way down, before the least loss
        ('valley', True)
        >>> suggest([1e-3, 1e-2, 1e-1], [1.0, 0.5, 9.0])
        (0.001, 'min/10')
        >>> flat = [0.1 + 0.01 * (i % 3) for i in range(80)] + [0.1 * 2 ** i for i in range(1, 21)]  # noise, then up
        >>> suggest(lrs, flat, rule="rise/10")  # a tenth of where it climbs (0.29), not the noise's own "valley"
        (0.0292, 'rise/10')
    """
    if rule not in ("valley", "rise/10"):
        raise ValueError(f"rule {rule!r} is not valley or rise/10")
    points = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    rate = None
    if rule == "rise/10":
        climb = rises_from([lr for lr, _ in points], [loss for _, loss in points])
        rate = None if climb is None else climb / 10
    if rate is None:
        rule = "valley"
        trimmed = points[len(lrs) // 10:]
        trimmed = trimmed[:-5] if len(trimmed) > 10 else trimmed
        if len(trimmed) >= 5:
            rate = valley([lr for lr, _ in trimmed], [loss for _, loss in trimmed])
    if rate is None:
        rule = "min/10"
        rate = (min(points, key=lambda p: p[1])[0] if points else DEFAULT_LR * 10) / 10
    low = max(bounds[0], min(lrs)) if len(lrs) else bounds[0]
    high = min(bounds[1], max(lrs)) if len(lrs) else bounds[1]
    return float(f"{min(max(rate, low), high):.3g}"), rule


@contextlib.contextmanager
def left_as_it_was(model):
    """Put back, on the way out, everything training ``model`` may change: its variables (weights, BatchNorm
    statistics, dropout seed states), its compiled optimizer's variables, its layers' ``trainable`` flags, and
    Python's and NumPy's global random states (layers made meanwhile draw their seeds from them).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> before = m.get_weights()[0].copy()
        >>> with left_as_it_was(m):
        ...     _ = m.layers[0].kernel.assign(before + 1); m.trainable = False
        >>> bool((m.get_weights()[0] == before).all()), m.layers[0].trainable
        (True, True)
    """
    variables = list(model.variables)
    values = [np.array(v.numpy(), copy=True) for v in variables]
    optimizer = getattr(model, "optimizer", None)
    slots = list(optimizer.variables) if optimizer is not None else []
    slot_values = [np.array(v.numpy(), copy=True) for v in slots]
    layers = list(model._flatten_layers(include_self=True, recursive=True))  # containers before their layers
    flags = [layer.trainable for layer in layers]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        for layer, flag in zip(layers, flags):
            layer.trainable = flag
        for variable, value in zip(variables + slots, values + slot_values):
            variable.assign(value)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def find_lr(model, batches, *, task=None, start: float = START, end: float = END, steps: int = STEPS,
            smoothing: float | None = None, diverge: float = DIVERGE, class_weight: dict | None = None,
            name: str = "", rule: str = "valley") -> LRFind:
    """Sweep the learning rate of ``model`` from ``start`` to ``end`` over ``steps`` training steps; suggest one.

    Each step trains one batch with Adam at the step's rate (the rate times ``(end / start)^(1 / (steps - 1))``
    each step) and the task's loss, class-weighted as Keras' ``fit`` weighs it; the sweep stops early once
    the smoothed loss exceeds ``diverge`` times its minimum, or a loss is not finite. The model and
    everything else training changes is put back afterwards (:func:`left_as_it_was`).

    Args:
        model: a Keras model, its ``trainable`` flags set as the stage trains it.
        batches: ``(inputs, labels)`` batches: a ``tf.data.Dataset``, a list, or any iterable that can be
            iterated again (it is cycled when it has fewer than ``steps`` batches).
        task: the :class:`graftkit.model.task.Task` (its loss); single-label by default.
        start, end, steps: the swept range and the most steps.
        smoothing: the smoothing factor beta; default fastai's 0.98 for 100 steps, ``0.98^(100 / steps)`` for
            fewer, so the smoothing spans the same share of the swept range.
        diverge: stop when the smoothed loss exceeds this many times its minimum (a minimum under
            :data:`DIVERGE_FLOOR` counts as that floor: a head already fitting its batches nearly perfectly
            would otherwise stop the sweep at its first noisy step).
        class_weight: per-class loss weights (single-label), or None.
        name: what is swept, for the result and the log.
        rule: how the rate is suggested from the curve (:func:`suggest`): ``valley`` or ``rise/10``.

    Returns:
        An :class:`LRFind`.

    Example:
        >>> import keras
        >>> keras.utils.set_random_seed(0)
        >>> x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32"); y = (x[:, 0] > 0).astype("int32")
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
        >>> before = m.get_weights()
        >>> sweep = find_lr(m, [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)], steps=60)
        >>> START <= sweep.suggestion <= END, all((a == b).all() for a, b in zip(before, m.get_weights()))
        (True, True)
    """
    import tensorflow as tf

    from graftkit.model.task import Task

    task = task or Task()
    rates = sweep_rates(start, end, steps)
    beta = SMOOTHING ** (STEPS / steps) if smoothing is None else smoothing
    with left_as_it_was(model):
        import keras

        variables = list(model.trainable_variables)
        if not variables:
            raise GraftError(f"nothing to sweep the learning rate of: {name or model.name} has no trainable weights")
        optimizer = keras.optimizers.Adam(learning_rate=float(rates[0]))
        if keras.config.dtype_policy().name == "mixed_float16":  # as compile wraps it: float16 gradients scaled
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
        step = _train_step(model, task, optimizer, variables, class_weight)
        raw, losses, lrs, stopped = [], [], [], "end"
        best, average = math.inf, 0.0
        for rate, (x, y) in zip(rates, _cycle(batches)):
            optimizer.learning_rate = float(rate)
            loss = float(step(tf.convert_to_tensor(x), tf.convert_to_tensor(y)))
            lrs.append(float(rate))
            raw.append(loss)
            if not math.isfinite(loss):
                losses.append(math.inf)
                stopped = "diverged"
                break
            average = beta * average + (1 - beta) * loss  # as smoothed(raw, beta), a step at a time
            losses.append(average / (1 - beta ** len(raw)))
            best = min(best, losses[-1])
            if losses[-1] > diverge * max(best, DIVERGE_FLOOR):
                stopped = "diverged"
                break
    if not lrs:
        raise GraftError(f"no training batches to sweep the learning rate of {name or model.name} on")
    suggestion, rule = suggest(lrs, losses, bounds=(max(SUGGEST_RANGE[0], start), min(SUGGEST_RANGE[1], end)),
                               rule=rule)
    finite = [(loss, lr) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    return LRFind(lrs=lrs, losses=[loss if math.isfinite(loss) else None for loss in losses], raw=raw,
                  suggestion=suggestion, rule=rule, min_loss_lr=min(finite)[1] if finite else None,
                  stopped=stopped, name=name)


def _cycle(batches):
    """The batches again and again (a new pass, hence a new shuffle, each time round)."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            return


def _train_step(model, task, optimizer, variables, class_weight):
    """One compiled training step: forward in training mode, the task's mean (class-weighted) loss, Adam."""
    import tensorflow as tf

    from graftkit.data.pipeline import weight_table

    weights = None
    if class_weight and task.kind == "single":
        weights = tf.constant(weight_table(class_weight, int(model.output.shape[-1])))

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            outputs = tf.cast(model(x, training=True), tf.float32)
            losses = task.per_example_loss(y, outputs)
            if weights is not None:
                losses = losses * tf.gather(weights, tf.cast(tf.reshape(y, (-1,)), tf.int32))
            loss = tf.reduce_mean(losses)  # Keras' "sum over batch size"
            scaled = optimizer.scale_loss(loss)  # scaled only by a LossScaleOptimizer
        gradients = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        optimizer.apply_gradients(pairs)
        return loss

    return step


class FeatureBatches:
    """Shuffled ``(features, labels)`` batches of cached features, a new order each pass (from ``seed``).

    Example:
        >>> batches = FeatureBatches(np.arange(10, dtype="float32")[:, None], np.arange(10) % 2, batch_size=4)
        >>> [len(x) for x, _ in batches]
        [4, 4, 2]
    """

    def __init__(self, features, labels, *, batch_size: int, seed: int = 0, label_dtype: str | None = None):
        from graftkit.data.pipeline import label_array

        self.features, self.batch_size = features, batch_size
        self.labels = label_array(labels) if label_dtype is None else np.asarray(labels, label_dtype)
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        order = self.rng.permutation(len(self.labels))
        for at in range(0, len(order), self.batch_size):
            rows = np.sort(order[at:at + self.batch_size])  # sorted: a memmap reads them in one sweep
            yield np.asarray(self.features[rows], np.float32), self.labels[rows]


LBFGS_NOTE = ("the head is fitted by L-BFGS (--head-solver), which takes no learning rate: --lr auto applies "
              "when the head trains by epochs (--head-solver adam, or a head with --hidden)")


def head_sweep(config, run, datasets, *, views: int = 0, force: bool = False) -> LRFind | None:
    """The head stage's sweep: the head on the base's cached features (or, with ``--feature-cache off``, the
    model with its base frozen, on training batches); None when the head is fitted by L-BFGS.

    The features come from the call the head stage makes itself (train and validation together, or the first
    augmented view with ``views``), so the stage then reads them from the feature cache.

    Args:
        config: the run's validated :class:`graftkit.config.TrainConfig`.
        run: the prepared run (``graftkit.training.pipeline._prepare``): split, base, head, model, task.
        datasets: a function making fresh ``(train, val)`` datasets of the run (the pipeline's own), for a sweep
            through the model.
        views: the head stage's augmented views (0: exact features).
        force: sweep even when the head would be fitted by L-BFGS (``graft lr-find`` shows the curve anyway).

    Example:
        >>> sweep = head_sweep(config, prepared, datasets)  # doctest: +SKIP
        >>> sweep.suggestion  # doctest: +SKIP
        0.0112
    """
    from graftkit.features.extract import extract_features
    from graftkit.training.head_stage import after_pooling

    split = run.split
    if config.feature_cache == "off":
        run.base.model.trainable = False
        return _model_sweep(config, run, "head", datasets)
    pool, trained = after_pooling(run.head)
    known = {"memory": True, "disk": False}.get(config.feature_cache)
    if not force and known is not None and solver_of(config, trained, known) == "lbfgs":
        log.info(f"--lr auto: {LBFGS_NOTE}")
        return None
    stats = {}
    options = {"seed": config.seed, "batch_size": config.batch_size, "feature_cache": config.feature_cache,
               "feature_memory_mb": config.feature_memory_mb, "pool": pool, "stats": stats}
    # The head stage's own call (its randomness is not put back: the stage then reads these from the cache).
    if views:
        features = extract_features(run.base, split.train.paths, view=0, **options)
    else:  # as the head stage asks for them: one pass over both sets
        features = extract_features(run.base, list(split.train.paths) + list(split.val.paths), **options)
        features = features[:len(split.train)]
    if not force and solver_of(config, trained, stats["in_memory"]) == "lbfgs":
        log.info(f"--lr auto: {LBFGS_NOTE}")
        return None
    log.info(f"lr-find: sweeping the head's learning rate from {START:g} to {END:g} on the cached features of "
             f"{len(split.train)} training {log.examples()} (up to {STEPS} steps)")
    batches = FeatureBatches(features, split.train.labels, batch_size=config.batch_size, seed=config.seed,
                             label_dtype=run.task.label_dtype)
    sweep = find_lr(trained, batches, task=run.task, class_weight=run.class_weight, name="head")
    _say(sweep)
    return sweep


def solver_of(config, trained, in_memory: bool) -> str:
    """How the head stage will fit the head: ``lbfgs`` or ``adam`` (its own choice, from the same facts)."""
    from graftkit.training.head_stage import choose_solver

    return choose_solver(config.head_solver, trained, in_memory)


def fine_tune_sweep(config, run, datasets) -> LRFind:
    """Fine-tuning's sweep: the whole model with the ``--freeze`` spec applied (BatchNorm as ``--train-bn``
    says), on shuffled, augmented training batches, one pass or 100 steps, whichever is fewer (at least 30,
    cycling through the batches, made by ``datasets()`` as for :func:`head_sweep`); the ``trainable`` flags are
    put back afterwards.

    Example:
        >>> fine_tune_sweep(config, prepared, datasets).suggestion  # doctest: +SKIP
        0.000316
    """
    from graftkit.model.freeze import apply_freeze, for_base, parse_freeze

    with left_as_it_was(run.model):
        apply_freeze(run.base.model, for_base(parse_freeze(config.freeze), run.base), train_bn=config.train_bn)
        return _model_sweep(config, run, "fine_tune", datasets)


def _model_sweep(config, run, name: str, datasets) -> LRFind:
    """A sweep through the whole model, its flags as they are, on freshly made training batches."""
    with left_as_it_was(run.model):  # the batches' augmentation layers draw seeds from the global state
        train_data, _ = datasets()  # new datasets: the stage's own shuffles stay as they would be
        per_pass = math.ceil(len(run.split.train) / config.batch_size)
        steps = min(STEPS, max(MIN_STEPS, per_pass))
        cycling = f", cycling through its {per_pass} batches" if per_pass < steps else ""
        log.info(f"lr-find: sweeping the {STAGE_NAMES.get(name, name)} learning rate from {START:g} to {END:g} "
                 f"through the model on training batches (up to {steps} steps{cycling})")
        sweep = find_lr(run.model, train_data, task=run.task, steps=steps, class_weight=run.class_weight, name=name,
                        rule="rise/10" if name == "fine_tune" else "valley")
    _say(sweep)
    return sweep


def _say(sweep: LRFind) -> None:
    stop = "the loss diverged" if sweep.stopped == "diverged" else "all steps ran"
    least = f", least loss at {sweep.min_loss_lr:.3g}" if sweep.min_loss_lr else ""
    log.info(f"lr-find: {STAGE_NAMES.get(sweep.name, sweep.name)}: suggested {sweep.suggestion:g} ({sweep.rule}; "
             f"{sweep.steps} steps, {stop}{least})")


def write_sweeps(folder: Path, sweeps: dict, rates: dict | None = None) -> Path | None:
    """``lr_find.json`` (the curves, and ``rates`` when given) and, when there are sweeps, ``lr_find.png``
    (:func:`graftkit.results.plots.plot_lr_find`) in ``folder``; returns the PNG's path, or None."""
    from graftkit.files import atomic_write_json
    from graftkit.results.plots import plot_lr_find

    folder = Path(folder)
    atomic_write_json(folder / LR_FIND_FILE, {"sweeps": {name: sweep.to_dict() for name, sweep in sweeps.items()},
                                              **({"learning_rates": rates} if rates else {})})
    if not sweeps:
        return None
    titles = {STAGE_NAMES.get(name, name): sweep.to_dict() for name, sweep in sweeps.items()}
    return plot_lr_find(titles, folder / LR_FIND_PLOT)


class AutoRates:
    """``--lr auto`` and ``--fine-tune-lr auto`` in a training run: each sweep at the start of its stage.

    The found rates are logged, drawn into the run folder's ``lr_find.png`` (shown in ``report.html``), kept
    with their curves in ``lr_find.json`` (a resumed run uses them instead of sweeping again) and summed up
    in ``metrics.json`` under ``learning_rates`` and ``lr_find``. ``config.json`` keeps ``"auto"``, as asked.

    The head stage's sweep runs only when the head trains by epochs (not when L-BFGS fits it). Without
    ``--fine-tune-lr``, fine-tuning's rate stays a tenth of the head's: of the found rate with ``--lr auto``,
    or of the default 0.001 when none was found (L-BFGS, ``--epochs 0``).

    Example:
        >>> rates = AutoRates(config, prepared, datasets)  # doctest: +SKIP
        >>> learning_rate = rates.head(views=0)  # doctest: +SKIP
    """

    def __init__(self, config, run, datasets):
        self.config, self.run, self.datasets = config, run, datasets
        self.asked = {"lr": config.lr, "fine_tune_lr": config.fine_tune_lr}
        self.sweeps: dict[str, LRFind] = {}
        self.rates: dict[str, dict] = {}
        resumed = bool(run.resume.done or run.resume.current)
        path = Path(run.run_dir) / LR_FIND_FILE
        if self.active and resumed and path.is_file():
            saved = json.loads(path.read_text())
            self.sweeps = {name: LRFind.from_dict(values) for name, values in saved.get("sweeps", {}).items()}
            self.rates = saved.get("learning_rates", {})
            if "head" in self.rates:
                config.lr = self.rates["head"]["lr"] or DEFAULT_LR

    @property
    def active(self) -> bool:
        return AUTO in self.asked.values()

    def head(self, *, views: int = 0) -> float:
        """The head stage's learning rate: ``--lr``, or with ``--lr auto`` the head sweep's suggestion (the
        default 0.001 where L-BFGS fits the head and uses none)."""
        if self.asked["lr"] != AUTO:
            return self.config.lr
        if "head" not in self.rates:
            sweep = head_sweep(self.config, self.run, self.datasets, views=views)
            if sweep is None:
                self.rates["head"] = {"lr": None, "how": "none: the head is fitted by L-BFGS"}
            else:
                self.sweeps["head"] = sweep
                self.rates["head"] = {"lr": sweep.suggestion, "how": f"found by lr-find ({sweep.rule})"}
                log.info(f"--lr auto: the head trains at {sweep.suggestion:g} (curve in "
                         f"{Path(self.run.run_dir) / LR_FIND_PLOT})")
            self._write()
        found = self.rates["head"]["lr"]
        self.config.lr = DEFAULT_LR if found is None else found
        return self.config.lr

    def fine_tune(self) -> float:
        """Fine-tuning's learning rate, set into ``config.fine_tune_lr``: ``--fine-tune-lr``, its sweep's
        suggestion with ``auto``, or a tenth of the head's rate (found or default) with ``--lr auto``."""
        asked = self.asked["fine_tune_lr"]
        if asked == AUTO and "fine_tune" not in self.rates:
            sweep = fine_tune_sweep(self.config, self.run, self.datasets)
            self.sweeps["fine_tune"] = sweep
            self.rates["fine_tune"] = {"lr": sweep.suggestion, "how": f"found by lr-find ({sweep.rule})"}
            log.info(f"--fine-tune-lr auto: fine-tuning at {sweep.suggestion:g} (curve in "
                     f"{Path(self.run.run_dir) / LR_FIND_PLOT})")
            self._write()
        elif asked is None and self.asked["lr"] == AUTO and "fine_tune" not in self.rates:
            head = (self.rates.get("head") or {}).get("lr")
            rate = float(f"{(head or DEFAULT_LR) / 10:.3g}")
            how = "a tenth of the head's found rate" if head else \
                f"a tenth of {DEFAULT_LR:g} (no head rate was found)"
            self.rates["fine_tune"] = {"lr": rate, "how": how}
            log.info(f"--lr auto: fine-tuning at {rate:g}, {how} (--fine-tune-lr auto sweeps it too)")
            self._write()
        if "fine_tune" in self.rates:
            self.config.fine_tune_lr = self.rates["fine_tune"]["lr"]
        return self.config.fine_tune_lr

    def _write(self) -> None:
        write_sweeps(self.run.run_dir, self.sweeps, self.rates)

    def metrics(self) -> dict:
        """What ``metrics.json`` says of the rates (nothing without ``auto``)."""
        if not self.active:
            return {}
        found = {name: sweep.summary() for name, sweep in self.sweeps.items()}
        return {"learning_rates": self.rates,
                **({"lr_find": {**found, "plot": LR_FIND_PLOT}} if found else {})}
