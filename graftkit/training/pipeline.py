"""A training run from start to end: data, base, head stage, fine-tuning, scores, run folder."""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from pathlib import Path

from graftkit import log, runfolder
from graftkit.config import TrainConfig, rate_range
from graftkit.errors import GraftError
from graftkit.files import atomic_save_model, atomic_write_json, atomic_write_text
from graftkit.results.trained import Run


def train_config(config: TrainConfig, resume=None) -> Run:
    """Run the training described by a validated :class:`TrainConfig`: data, base, head stage,
    fine-tuning, scores, run folder.

    ``resume`` (a :class:`graftkit.training.checkpoint.Resume`) continues an interrupted run in its own
    folder, ``config.out``; see :func:`graftkit.api.resume`.
    """
    import keras

    from graftkit.model.precision import policy_for, using
    from graftkit.results.evaluate import format_scores

    from graftkit.bases.spec import TFIDF
    from graftkit.training import distribute

    distribute.check(config.distribute, tensorboard=config.tensorboard)
    strategy = distribute.start(config.distribute)  # before TensorFlow computes anything
    policy = policy_for(config.precision)
    if policy != "float32":
        log.info(f"precision: {policy} (variables and the head's output in float32)")
    keras.utils.set_random_seed(config.seed)  # the same seed gives the same run
    started = time.perf_counter()
    with using(policy), distribute.session(strategy) as session:
        prepared = _prepare(config, resume, session)
        with log.counting(examples(prepared.split)):
            if config.base == TFIDF:
                stages, scores, probabilities = _fit_tfidf(config, prepared)
            else:
                stages, cached = _train_stages(config, prepared)
                scores, probabilities = _final_scores(config, prepared, stages, cached)
    run = _finished_run(config, prepared, stages, scores, probabilities, time.perf_counter() - started)
    if session.writes:  # the chief of a multi-worker run, or the one process
        write_run(run, labels=prepared.split.val.labels, outputs=probabilities)
    log.info(format_scores(scores, unit=examples(prepared.split)))
    log.info(f"run folder: {run.run_dir}")
    return run


@dataclasses.dataclass
class _Prepared:
    """What a run trains on and writes to, made ready before its first epoch."""

    split: object
    base: object
    task: object
    head: object
    model: object
    run_dir: Path
    saver: object
    resume: object
    class_weight: dict | None
    warnings: list
    tokens: dict | None = None  # a text split's token ids, "train" and "val", tokenized once (see _tokens)
    strategy: object = None  # the tf.distribute strategy of --distribute, or None
    rates: object = None  # --lr auto / --fine-tune-lr auto: graftkit.training.lr_find.AutoRates


@dataclasses.dataclass
class _Fitted:
    """The TF-IDF "base": no pre-trained part, its vocabulary and weights fitted on the training texts."""

    source: str
    model: object = None
    cut: str = "none (fitted on the training texts)"
    preprocessing: str = "lowercase, character n-grams"
    weights: str = "fitted on the training texts"
    feature_shape: tuple = ()
    kind: str = "text"
    tokenizer: object = None


def _prepare(config: TrainConfig, resume, session) -> _Prepared:
    from graftkit.bases.loader import load_base
    from graftkit.bases.spec import TFIDF
    from graftkit.data.labels import upscale_warning
    from graftkit.data.layout import load_split
    from graftkit.data.pipeline import class_weights
    from graftkit.model.head import assemble, build_head
    from graftkit.model.pooling import pooling_for
    from graftkit.model.stages import head_input_base
    from graftkit.model.task import Task
    from graftkit.training import checkpoint

    split = load_split(config.data, val_split=config.val_split, seed=config.seed, strict=config.strict,
                       task=config.task, labels=config.labels, path_column=config.path_column,
                       label_column=config.label_column)
    what = "target" if split.task == "regression" else f"{len(split.class_names)} " + (
        "labels" if split.task == "multilabel" else "classes")
    log.info(f"data: {len(split.train)} training and {len(split.val)} validation {examples(split)}, {what} "
             f"({split.how}; task {split.task})")
    warnings = list(split.warnings)
    by_epochs = bool(config.hidden) or config.head_solver == "adam"
    pooling = pooling_for(config.pooling, by_epochs)
    if config.head_input == "stages" and (config.base == TFIDF or split.modality == "text"):
        raise GraftError("--head-input stages pools an image base's stages, and this base reads texts: leave "
                         "--head-input out (or use top)")
    if config.base == TFIDF:
        base = _Fitted(source=TFIDF)
    elif split.modality == "text":
        base = _text_base(config, split)
    else:
        head_input = config.head_input
        if config.pooling == "auto":
            log.info(f"pooling: {pooling} (--pooling auto: " + ("avg for a head that trains by epochs)" if by_epochs
                     else "each map's average and maximum for the linear head fitted by L-BFGS)"))
        if head_input == "auto" and by_epochs:
            log.info("head input: the base's output only (the stages' features are standardized by the L-BFGS "
                     "head, and this head trains by epochs)")
            head_input = "top"
        base = head_input_base(load_base(config.base, image_size=config.image_size, weights=config.weights,
                                         cut=config.cut, preprocess=config.preprocess,
                                         trust_model=config.trust_model),
                               head_input, pooling=pooling)
        upscaled = upscale_warning(split.sizes, split.train.paths + split.val.paths, base.image_size)
        warnings += [upscaled] if upscaled else []
    if config.precision != "float32" and base.model is not None:
        from graftkit.model.precision import follow_policy

        base.model = follow_policy(base.model)  # a model file pins its layers to the precision it was saved in
    if not isinstance(base, _Fitted):  # the TF-IDF model says what it is once fitted
        log.info(f"base: {base.source} cut at '{base.cut}' -> features {base.feature_shape}, "
                 f"preprocessing '{base.preprocessing}', weights {base.weights}")
    if resume is None and not session.writes:
        run_dir = session.chief_folder(None)  # a multi-worker run's folder, which the chief alone writes
    elif resume is None:
        run_dir = session.chief_folder(runfolder.new_run_dir(config.out, Path(config.base).name))
        _start_run(run_dir, config, split, base)
        log.info(f"run folder: {run_dir} (if the run is interrupted: graft train --resume {run_dir})")
    else:
        run_dir = Path(config.out)
        _same_classes(run_dir, split.class_names)
    session.run_dir = run_dir
    digest = checkpoint.data_digest(split, config.data)
    if resume is not None and resume.data not in (None, digest):
        raise GraftError(f"the images in '{config.data}' are not those the run in '{run_dir}' started with (some "
                         "were added, removed or renamed): put them back as they were, or start a new run")
    task = Task.for_labels(split.task, split.train.labels, label_smoothing=config.label_smoothing)
    weights = None
    if config.class_weights == "auto" and task.kind == "single":
        weights = class_weights(split.train.labels, len(split.class_names))
        if weights:
            log.info("classes are imbalanced: weighting the loss by " +
                     ", ".join(f"{split.class_names[i]} {w:.2f}" for i, w in weights.items()))
    if isinstance(base, _Fitted):
        return _Prepared(split, base, task, None, None, run_dir, None, resume, weights, warnings)
    from graftkit.model.precision import using

    with using("float32"):  # the head computes in float32 under any precision: its output feeds the loss
        head = build_head(base.feature_shape, len(split.class_names), pooling=pooling,
                          hidden=config.hidden, dropout=config.dropout, seed=config.seed, task=task)
    return _Prepared(split, base, task, head, assemble(base, head, train_bn=config.train_bn), run_dir,
                     checkpoint.Checkpointer(session.scratch or run_dir, resume, data=digest),
                     resume or checkpoint.Resume(), weights, warnings, strategy=session.strategy)


def examples(split) -> str:
    """What a split's examples are called in messages: ``images`` or ``texts``."""
    return "texts" if split.modality == "text" else "images"


def _text_base(config: TrainConfig, split):
    """The text encoder for a text split, its longest token sequence chosen from the training texts."""
    import numpy as np

    from graftkit.bases.text import load_text_base
    from graftkit.data.tokens import choose_max_length

    weights = None if config.weights in (None, "imagenet") else config.weights
    base = load_text_base(config.base, weights=weights)
    lengths = np.asarray(base.tokenizer.lengths(split.train.paths))
    wanted = config.max_length or choose_max_length(lengths, base.max_positions)
    base.tokenizer.max_length = base.tokenizer.check_length(wanted)
    why = "--max-length" if config.max_length else "the 99th percentile of the training texts"
    log.info(f"texts: median {int(np.median(lengths))} tokens, longest {int(lengths.max())}; max length "
             f"{base.max_length} ({why}, the encoder takes {base.max_positions}): "
             f"{int((lengths > base.max_length).sum())} training texts cut")
    return base


def _datasets(config: TrainConfig, run: _Prepared):
    """The training (shuffled, augmented images) and validation batches that go through the whole model."""
    split, base = run.split, run.base
    if split.modality == "text":
        from graftkit.data.tokens import token_dataset

        tokens = _tokens(run)
        return (token_dataset(tokens["train"], split.train.labels, batch_size=config.batch_size, shuffle=True,
                              seed=config.seed),
                token_dataset(tokens["val"], split.val.labels, batch_size=config.batch_size))
    from graftkit.data.pipeline import make_dataset

    return (make_dataset(split.train.paths, split.train.labels, image_size=base.image_size, channels=base.channels,
                         batch_size=config.batch_size, shuffle=True, seed=config.seed, augment=config.augment),
            make_dataset(split.val.paths, split.val.labels, image_size=base.image_size, channels=base.channels,
                         batch_size=config.batch_size))


def _tokens(run: _Prepared) -> dict:
    """The text split's token ids, tokenized once for every stage that feeds the whole model."""
    if run.tokens is None:
        run.tokens = {part: run.base.tokenizer.encode(getattr(run.split, part).paths, run.base.max_length)
                      for part in ("train", "val")}
    return run.tokens


def _train_stages(config: TrainConfig, run: _Prepared):
    """The head stage (on cached features unless ``--feature-cache off``), then fine-tuning; their results."""
    from graftkit.model.freeze import for_base, parse_freeze
    from graftkit.training import checkpoint
    from graftkit.training.stages import fine_tune_stage

    split, resume, saver = run.split, run.resume, run.saver
    train_data, val_data = _datasets(config, run)
    common = {"patience": config.patience, "class_weight": run.class_weight, "checkpoint": saver, "task": run.task,
              "strategy": run.strategy}
    stages, cached = [], None
    from graftkit.training.lr_find import AutoRates

    rates = run.rates = AutoRates(config, run, lambda: _datasets(config, run))  # "auto": a sweep as its stage starts
    logs = _tensorboard(config, run.run_dir)
    run.base.model.trainable = False
    head_done = resume.finished("head")
    if head_done:
        stages.append(_stage_result(head_done))
        checkpoint.put_back(run.head, resume.head_weights)
    elif config.epochs:
        result, cached = head_stage(config, run, lambda views: rates.head(views=views), lambda: (train_data, val_data),
                                    callbacks=logs("head"), resume=resume.state_of("head"), checkpoint=saver)
        stages.append(result)
    if config.epochs and not head_done:
        saver.stage_done(stages[-1], head_weights=run.head.get_weights())
    freeze = for_base(parse_freeze(config.freeze), run.base)
    fine_tune_done = resume.finished("fine_tune")
    if fine_tune_done:
        stages.append(_stage_result(fine_tune_done))
        checkpoint.put_back(run.model, resume.final_weights)
    elif config.fine_tune_epochs and freeze.kind != "all":
        baseline = stages[-1].best_val_loss if stages else float("inf")
        rates.fine_tune()  # sets config.fine_tune_lr where it is "auto", or a tenth of a found --lr auto
        unfreezing = _unfreezing(config)
        stages.append(fine_tune_stage(run.model, run.base.model, train_data, val_data, freeze=freeze,
                                      train_bn=config.train_bn, epochs=config.fine_tune_epochs,
                                      learning_rate=_top_rate(config), baseline_val_loss=baseline,
                                      callbacks=logs("fine_tune"), resume=resume.state_of("fine_tune"),
                                      samples=len(split.train), cache=_boundary_cache(config, run),
                                      optimizer=_fine_tune_optimizer(config, run, unfreezing),
                                      on_epoch=None if unfreezing is None else unfreezing.on_epoch_begin, **common))
        saver.stage_done(stages[-1], final_weights=run.model.get_weights())
    elif config.fine_tune_epochs:
        log.info("--freeze all: no fine-tuning stage" + (", nothing to open one at a time for --unfreeze-every"
                                                          if config.unfreeze_every else ""))
    return stages, cached


def _unfreezing(config: TrainConfig):
    """Gradual unfreezing's plan and log for ``--unfreeze-every E`` (E above 0), else None."""
    if not config.unfreeze_every:
        return None
    from graftkit.training.unfreeze import GradualUnfreezing

    return GradualUnfreezing(config.unfreeze_every)


def head_stage(config: TrainConfig, run: _Prepared, rate, datasets, *, callbacks=None, resume=None, checkpoint=None):
    """The head stage as ``graft train`` runs it: on the base's cached features unless ``--feature-cache off``,
    else through the frozen base on the run's datasets.

    Args:
        config, run: the run's validated config and prepared state (:func:`_prepare`).
        rate: a function of the stage's augmented views (0: exact features) giving its learning rate.
        datasets: a function giving the run's ``(train, val)`` datasets (:func:`_datasets`), called only with
            ``--feature-cache off``.
        callbacks, resume, checkpoint: as for :func:`graftkit.training.stages.fit_stage`.

    Returns:
        ``(result, cached)``: the :class:`graftkit.training.stages.StageResult` and the cached features
        (None with ``--feature-cache off``).
    """
    from graftkit.training.stages import fit_stage

    common = {"patience": config.patience, "class_weight": run.class_weight, "checkpoint": checkpoint,
              "task": run.task, "strategy": run.strategy, "callbacks": callbacks, "resume": resume}
    if config.feature_cache == "off":
        return fit_stage("head", run.model, *datasets(), epochs=config.epochs, learning_rate=rate(0),
                         samples=len(run.split.train), **common), None
    from graftkit.training.head_stage import cached_head_stage, choose_views

    views, why = choose_views(config.aug_views, config.augment and run.split.modality == "image")
    if run.split.modality == "text":
        why = "each text's embedding computed once"
    log.info(f"head stage on cached base features: {why}")
    return cached_head_stage(run.base, run.head, run.split, views=views, batch_size=config.batch_size,
                             epochs=config.epochs, learning_rate=rate(views), feature_cache=config.feature_cache,
                             feature_memory_mb=config.feature_memory_mb, seed=config.seed,
                             solver=config.head_solver, **common)


def _fine_tune_optimizer(config: TrainConfig, run: _Prepared, unfreezing=None):
    """Adam at a constant rate (None) or, with ``--schedule cosine`` (the default, auto), AdamW
    with warm-up and cosine decay; with layer-wise rates (``--lr-decay D`` below 1, ``--fine-tune-lr LOW:HIGH``)
    or gradual unfreezing (``unfreezing``: :func:`_unfreezing`), their grouped forms (see :func:`_layer_groups`)."""
    import math

    schedule = "cosine" if config.schedule == "auto" else config.schedule
    steps_per_epoch = math.ceil(len(run.split.train) / config.batch_size)
    groups = _layer_groups(config, run, steps_per_epoch, unfreezing)
    if schedule == "constant":
        if groups is None:
            return None
        from graftkit.training.schedules import fine_tune_optimizer

        return lambda: fine_tune_optimizer(_top_rate(config), **groups())

    from graftkit.training.schedules import WARMUP_SHARE, WEIGHT_DECAY, warmup_cosine_adamw

    steps = config.fine_tune_epochs * steps_per_epoch
    log.info(f"fine-tuning with AdamW (weight decay {WEIGHT_DECAY:g}), {_top_rate(config):g} after a "
             f"linear warm-up over the first {WARMUP_SHARE:.0%} of {steps} steps, cosine decay to 0")
    if groups is None:
        return lambda: warmup_cosine_adamw(_top_rate(config), steps)
    return lambda: warmup_cosine_adamw(_top_rate(config), steps, **groups())


def _top_rate(config: TrainConfig) -> float:
    """Fine-tuning's rate at the head: ``--fine-tune-lr``, or HIGH of a ``LOW:HIGH`` range."""
    bounds = rate_range(config.fine_tune_lr)
    return bounds[1] if bounds else config.fine_tune_lr


def _layer_groups(config: TrainConfig, run: _Prepared, steps_per_epoch: int, unfreezing=None):
    """None for one learning rate from the first step (``--lr-decay 1``, no ``LOW:HIGH`` range, no
    ``--unfreeze-every``); else what the optimizer's factory calls once the base is frozen by spec: it logs each
    trained layer group's rate (and when it opens) and returns the grouped optimizer's options:

    - ``factor``: each variable's rate factor, ``D**depth`` (the head's depth is 0, the base's top group's 1...:
      :func:`graftkit.model.groups.variable_depths`). A ``--fine-tune-lr LOW:HIGH`` range sets ``D`` so that the
      lowest trained group's rate is LOW: ``D = (LOW / HIGH) ** (1 / depth)``;
    - ``depth`` and ``steps_per_group``, with ``unfreezing`` (``--unfreeze-every E``): the ``k``-th trained group
      from the top opens after ``(k - 1) * E`` epochs (:meth:`graftkit.training.unfreeze.GradualUnfreezing.options`).

    The options go by the variables themselves, which the boundary cache's model shares with the whole model.
    """
    bounds = rate_range(config.fine_tune_lr)
    if config.lr_decay == 1 and bounds is None and unfreezing is None:
        return None

    def options():
        from graftkit.model.groups import group_rule, layer_groups, variable_depths

        base = run.base.model
        depths = {id(variable): depth for variable, depth in variable_depths(base, run.head)}
        groups = layer_groups(base)
        trained = sorted({depth for depth in depths.values() if depth})
        made = {}
        if config.lr_decay != 1 or bounds is not None:
            top, decay, how = _top_rate(config), config.lr_decay, f"--lr-decay {config.lr_decay:g}"
            if bounds is not None:
                decay = (bounds[0] / bounds[1]) ** (1 / max(trained)) if trained else 1.0
                how = f"--fine-tune-lr {config.fine_tune_lr}: {decay:.3g} a group"
            rates = ", ".join(f"group {depth} from the top ('{groups[-depth][0].name}'...) "
                              f"{top * decay ** depth:.3g}" for depth in trained)
            log.info(f"layer-wise learning rates ({how}; the base in {len(groups)} groups, "
                     f"{group_rule(base)}): head {top:.3g}" + (f", {rates}" if rates else ""))
            made["factor"] = lambda variable: decay ** depths.get(id(variable), 0)
        if unfreezing is not None:
            made.update(unfreezing.options(depths, groups, steps_per_epoch=steps_per_epoch,
                                           epochs=config.fine_tune_epochs, rule=group_rule(base),
                                           freeze=config.freeze))
        return made

    return options


def _boundary_cache(config: TrainConfig, run: _Prepared):
    """What fine-tuning calls, once the base is frozen by spec, to train on the boundary cache; None when off."""
    if run.split.modality == "text":
        log.info("fine-tuning runs the encoder's blocks from the embeddings every step (no boundary cache for "
                 "texts: their lengths vary)")
        return None
    if config.fine_tune_cache == "off":
        log.info("fine-tuning runs the whole base every step (--fine-tune-cache off)")
        return None
    from graftkit.features.boundary import boundary_cache

    return lambda: boundary_cache(run.base, run.head, run.split, train_bn=config.train_bn, augment=config.augment,
                                  batch_size=config.batch_size, seed=config.seed, views=config.fine_tune_views,
                                  feature_cache=config.feature_cache, feature_memory_mb=config.feature_memory_mb)


def _fit_tfidf(config: TrainConfig, run: _Prepared):
    """The TF-IDF model fitted on the training texts in one go: its one "stage", validation scores and outputs."""
    import numpy as np

    from graftkit.bases.tfidf import fit_tfidf
    from graftkit.results.evaluate import choose_thresholds, score
    from graftkit.training.stages import StageResult

    split, task = run.split, run.task
    fit = fit_tfidf(split.train.paths, split.train.labels, task=task.kind, num_classes=len(split.class_names),
                    class_weight=run.class_weight, seed=config.seed)
    log.info(f"base: {fit.description}, fitted in {fit.seconds:.1f} s")
    run.model, run.base.model = fit.model, fit.model
    run.base.feature_shape = (fit.vocabulary_size,)
    outputs = {part: fit.predict(getattr(split, part).paths) for part in ("train", "val")}
    history = {}
    for prefix, part in (("", "train"), ("val_", "val")):
        labels = np.asarray(getattr(split, part).labels, task.label_dtype)
        history[prefix + "loss"] = [float(np.mean(task.per_example_loss(labels, outputs[part])))]
        history[prefix + task.metric] = [float(np.mean(task.per_example_metric(labels, outputs[part])))]
    stage = StageResult("tfidf", history, best_epoch=1, best_val_loss=history["val_loss"][0], seconds=fit.seconds,
                        trainable_params=int(sum(np.prod(w.shape) for w in fit.model.trainable_weights)))
    thresholds = choose_thresholds(split.val.labels, outputs["val"]) if task.kind == "multilabel" else None
    scores = score(split.val.labels, outputs["val"], split.class_names, task=task.kind, thresholds=thresholds)
    return [stage], scores, outputs["val"]


def _final_scores(config: TrainConfig, run: _Prepared, stages, cached):
    """Validation scores of the trained model and its outputs (multi-label thresholds chosen on them)."""
    from graftkit.results.evaluate import choose_thresholds, model_outputs, score

    if cached is not None and not any(s.name == "fine_tune" and s.kept for s in stages):
        from graftkit.model.infer import predict_features

        # The base is as it was when the features were cached: the head on them is the full model.
        outputs = predict_features(cached.model, cached.val)
    elif run.split.modality == "text":
        from graftkit.data.tokens import token_outputs

        outputs = token_outputs(run.model, _tokens(run)["val"])
    else:
        outputs = model_outputs(run.model, run.split.val.paths, batch_size=config.batch_size)
    labels = run.split.val.labels
    thresholds = choose_thresholds(labels, outputs) if run.task.kind == "multilabel" else None
    return score(labels, outputs, run.split.class_names, task=run.task.kind, thresholds=thresholds), outputs


def _finished_run(config: TrainConfig, run: _Prepared, stages, scores: dict, outputs, seconds: float) -> Run:
    from graftkit.results.report import confident_mistakes

    split, base = run.split, run.base
    metric = f"val_{run.task.metric}"
    metrics = {
        **scores,
        "task": run.task.to_dict(),
        "stages": {s.name: {"best_epoch": s.best_epoch, "best_val_loss": s.best_val_loss,
                            metric: s.history.get(metric, [None])[s.best_epoch - 1],
                            "seconds": round(s.seconds, 2), "trainable_params": s.trainable_params,
                            "kept": s.kept} for s in stages},
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "train_images": len(split.train),
        "val_images": len(split.val),
        "skipped_images": {"count": len(split.skipped),
                           "files": [{"path": path, "reason": reason} for path, reason in split.skipped]},
        "duplicate_images": {"count": len(split.duplicates),
                             "pairs": [{"train": seen, "val": copy} for seen, copy in split.duplicates]},
        "data_warnings": {"count": len(run.warnings), "warnings": run.warnings},
        **(run.rates.metrics() if run.rates else {}),  # the rates used, with --lr auto / --fine-tune-lr auto
        "base": {"source": base.source, "cut": base.cut, "feature_shape": list(base.feature_shape),
                 "preprocessing": base.preprocessing, "weights": str(base.weights),
                 "image_size": getattr(base, "image_size", None), "modality": split.modality,
                 **({"max_length": base.max_length} if getattr(base, "max_length", None) else {})},
    }
    mistakes = confident_mistakes(split.val.paths, split.val.labels, outputs, split.class_names,
                                  task=run.task.kind, thresholds=scores.get("thresholds"))
    return Run(model=run.model, class_names=split.class_names, metrics=metrics, stages=stages,
               config={**dataclasses.asdict(config), **(run.rates.asked if run.rates else {})}, run_dir=run.run_dir,
               mistakes=mistakes)


def _start_run(run_dir: Path, config: TrainConfig, split, base) -> None:
    """What a run writes once, before training: its options, classes, files and input contract, then
    the unfinished marker. Paths are made absolute, so that ``--resume`` works from any folder.
    """
    from graftkit.bases.loader import is_model_file
    from graftkit.training.checkpoint import mark_unfinished

    config.data = str(Path(config.data).resolve())
    if config.labels:
        config.labels = str(Path(config.labels).resolve())
    if is_model_file(config.base):  # not a named base
        config.base = str(Path(config.base).resolve())
    if config.weights and Path(config.weights).is_file():  # not "imagenet" or "none"
        config.weights = str(Path(config.weights).resolve())
    config.out = str(run_dir.resolve())
    atomic_write_text(run_dir / runfolder.CONFIG_FILE, config.to_json() + "\n")
    atomic_write_json(run_dir / runfolder.CLASSES_FILE, split.class_names)
    def item(path):  # an image file, absolute; a text as it is
        return path if split.modality == "text" else str(Path(path).resolve())

    atomic_write_json(run_dir / runfolder.SPLIT_FILE, {
        "how": split.how, "class_names": split.class_names, "modality": split.modality,
        **{part: [[item(path), _jsonable_label(label)] for path, label in zip(images.paths, images.labels)]
           for part, images in (("train", split.train), ("val", split.val))}})
    from graftkit.results.trained import holds_python_code

    if split.modality == "text" and base.tokenizer is None:  # TF-IDF: the model takes the strings
        contract = runfolder.text_contract(None, None)
    elif split.modality == "text":
        base.tokenizer.save(run_dir)
        contract = runfolder.text_contract(base.max_length, base.preprocessing)
    else:
        contract = runfolder.input_contract(base.image_size, base.preprocessing, base.channels,
                                            python_code=holds_python_code(base.model))
    atomic_write_json(run_dir / runfolder.INPUTS_FILE, contract)
    mark_unfinished(run_dir)


def _jsonable_label(label):
    """A label as split.json keeps it: a class index, the indices of a multi-label row, or a number."""
    if getattr(label, "ndim", 0) == 1:
        return [int(i) for i in label.nonzero()[0]]
    return float(label) if label.dtype.kind == "f" else int(label)


def _same_classes(run_dir: Path, class_names: list[str]) -> None:
    """A resumed run must see the classes it started with."""
    try:
        before = json.loads((run_dir / runfolder.CLASSES_FILE).read_text())
    except (OSError, ValueError):
        return
    if before != class_names:
        raise GraftError(f"the data's classes are now {class_names}, the run in '{run_dir}' started with {before}: "
                         "put the data back as it was, or start a new run")


def _stage_result(values: dict):
    """A :class:`graftkit.stages.StageResult` from its checkpointed fields."""
    from graftkit.training.stages import StageResult

    return StageResult(**values)


def _tensorboard(config: TrainConfig, run_dir: Path):
    """``stage name -> callbacks``: a TensorBoard callback logging to ``run_dir/logs/<stage>`` with --tensorboard."""
    if not config.tensorboard:
        return lambda stage: []
    import keras

    log.info(f"TensorBoard logs in {run_dir / 'logs'} (view: tensorboard --logdir {run_dir / 'logs'})")
    return lambda stage: [keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs" / stage))]


def write_run(run: Run, *, labels=None, outputs=None) -> None:
    """Write a run's files; the model last, so a folder with ``model.keras`` is always complete.

    ``labels`` and ``outputs`` (the validation labels and the model's outputs) draw a multi-label run's
    precision-recall curves and a regression's predicted-against-true plot.
    """
    from graftkit.results.plots import plot_curves, plot_scores
    from graftkit.training.checkpoint import mark_finished

    folder = run.run_dir
    atomic_write_json(folder / "history.json", {s.name: s.history for s in run.stages})
    atomic_write_json(folder / "metrics.json", run.metrics)
    if run.metrics.get("thresholds") is not None:
        atomic_write_json(folder / runfolder.THRESHOLDS_FILE, run.metrics["thresholds"])
    plot_curves([{"name": s.name, "history": s.history} for s in run.stages], folder / "curves.png")
    if outputs is not None or run.metrics.get("task", {}).get("kind", "single") == "single":
        plot_scores(run.metrics, labels, outputs, folder)
    from graftkit.results.report import write_run_report

    write_run_report(folder, metrics=run.metrics, config=run.config, mistakes=run.mistakes)
    atomic_save_model(run.model, folder / runfolder.MODEL_FILE)
    mark_finished(folder)
