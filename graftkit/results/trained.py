"""A trained run: its model, classes and scores, loaded back from a run folder, with the CLI's verbs as methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from graftkit.errors import GraftError
from graftkit.results.modelfile import (
    holds_python_code,
    load_trained,
    read_json,
    split_files,
)
from graftkit.runfolder import CONFIG_FILE, INPUTS_FILE, THRESHOLDS_FILE

__all__ = ["Run", "holds_python_code", "load", "load_trained", "split_files"]  # the last three from modelfile


@dataclass
class Run:
    """A trained classifier and what its run left: what ``graftkit.train`` returns and ``graftkit.load`` reads back.

    Attributes:
        model: the Keras model (RGB pixels 0..255 in, class probabilities out; see ``input_contract``).
        class_names: class names in output order.
        metrics: validation scores (see :func:`graftkit.results.evaluate.score`) plus timings.
        stages: what each training stage did (empty for a loaded run; see ``metrics["stages"]``).
        config: the options the run ran with (a dict, as in ``config.json``).
        run_dir: the run folder, or None for a bare model file.
        mistakes: the validation images the model was surest of and wrong about.
        thresholds: a multi-label model's per-label decision thresholds (``{label: t}``, chosen on
            validation; ``thresholds.json`` beside the model), else None.

    Example:
        >>> run = graftkit.load("runs/ants")  # doctest: +SKIP
        >>> run.predict(["bee.jpg"])[0]["label"]  # doctest: +SKIP
        'bees'
    """

    model: object
    class_names: list[str]
    metrics: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    run_dir: Path | None = None
    mistakes: list = field(default_factory=list)
    thresholds: dict | None = None

    def __post_init__(self):
        if self.thresholds is None and self.task == "multilabel":
            self.thresholds = self.metrics.get("thresholds")

    @property
    def task(self) -> str:
        """What the model predicts: ``single`` (one class), ``multilabel`` or ``regression`` (a number);
        from ``metrics.json``, ``single`` for a run from before tasks or a bare model file.

        Example:
            >>> Run(model=None, class_names=["size"], metrics={"task": {"kind": "regression"}}).task
            'regression'
        """
        from graftkit.results.evaluate import task_kind

        return task_kind(self.metrics.get("task"))

    @property
    def image_size(self) -> int:
        """The side of the square RGB images the model takes."""
        from graftkit.model.infer import input_size

        return input_size(self.model)

    @property
    def input_contract(self) -> dict:
        """What to feed the model in your own code: shape, channel order, value range, resize filter, and
        how to load it (the run folder's ``inputs.json``).

        Example:
            >>> graftkit.load("runs/ants").input_contract["shape"]  # doctest: +SKIP
            [160, 160, 3]
        """
        from graftkit.runfolder import input_contract

        if self.run_dir is not None and (self.run_dir / INPUTS_FILE).is_file():
            contract = read_json(self.run_dir / INPUTS_FILE)
            if contract is not None:
                return contract
        return input_contract(self.image_size, self.metrics.get("base", {}).get("preprocessing", "inside the model"),
                              python_code=holds_python_code(self.model))

    def predict(self, inputs, *, top_k: int = 3, batch_size: int = 32, strict: bool = False,
                tta: bool = False) -> list[dict]:
        """Classify image files, folders of them, or pixel arrays (``H x W x 3``, or a batch of them).

        Files are decoded and resized exactly as in training (see ``input_contract``: JPEG draft
        decoding, EXIF rotation, RGB, bilinear to the input size). Arrays (RGB, 0..255) of another
        size are resized with the same bilinear filter; they are already decoded, so a JPEG's
        reduced-scale decoding cannot be redone: for training's exact pixels pass the file.
        Returns one dict per image: ``path`` (or the array's index), ``label``, ``probability``
        and ``top_k``; for a multi-label model ``label`` (every label over its threshold,
        ``;``-joined), ``labels`` and ``top_k``; for a regression model ``value`` (see
        :func:`graftkit.results.predict.predict_files`). ``tta`` averages each image's outputs with its
        mirror image's (test-time augmentation; images only).

        Example:
            >>> import numpy as np
            >>> run = graftkit.load("runs/ants")  # doctest: +SKIP
            >>> run.predict(np.zeros((480, 640, 3), "uint8"))[0]["label"]  # doctest: +SKIP
            'ants'
        """
        from graftkit.model.infer import check_tta
        from graftkit.results.predict import predict_arrays, predict_files

        check_tta(tta, self.modality)
        if self.modality == "text":
            return self._predict_texts(inputs, top_k=top_k, batch_size=batch_size)
        if _is_pixels(inputs):
            return list(predict_arrays(self.model, inputs, self.class_names, top_k=top_k, batch_size=batch_size,
                                       task=self.task, thresholds=self.thresholds, tta=tta))
        from graftkit.data.check import check_images
        from graftkit.data.layout import list_images

        items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
        paths, _ = check_images(list_images([str(p) for p in items]), strict=strict)
        return list(predict_files(self.model, paths, self.class_names, top_k=top_k, batch_size=batch_size,
                                  task=self.task, thresholds=self.thresholds, tta=tta))

    def evaluate(self, data, *, batch_size: int = 32, strict: bool = False, labels=None, path_column=None,
                 label_column=None, tta: bool = False) -> dict:
        """Score the model on a labelled folder (its ``val/`` part when it is split) or a label table (its
        ``test`` rows when it has any); returns the scores of the model's task (see
        :func:`graftkit.results.evaluate.score`), a multi-label model's at its thresholds. ``tta`` as for
        :meth:`predict` (the scores then hold ``"tta": True``).

        Example:
            >>> run.evaluate("labelled/", tta=True)["tta"]  # doctest: +SKIP
            True
        """
        scores, _, _ = self.evaluate_outputs(data, batch_size=batch_size, strict=strict, labels=labels,
                                             path_column=path_column, label_column=label_column, tta=tta)
        return scores

    def evaluate_outputs(self, data, *, batch_size: int = 32, strict: bool = False, labels=None, path_column=None,
                         label_column=None, tta: bool = False):
        """``(scores, the labelled examples, the model's outputs on them)`` of :meth:`evaluate`."""
        from graftkit.data.layout import labelled_images
        from graftkit.model.infer import check_tta
        from graftkit.results.evaluate import evaluate_images, score

        check_tta(tta, self.modality)
        examples = labelled_images(data, self.class_names, strict=strict, task=self.task, labels=labels,
                                   path_column=path_column, label_column=label_column)
        if self.modality == "text":
            from graftkit.results.texts import text_outputs

            outputs = text_outputs(self.model, examples.paths, self.run_dir)
            scores = score(examples.labels, outputs, examples.class_names, task=self.task, thresholds=self.thresholds)
            return scores, examples, outputs
        scores, outputs = evaluate_images(self.model, examples, batch_size=batch_size, task=self.task,
                                          thresholds=self.thresholds, tta=tta)
        return scores, examples, outputs

    @property
    def modality(self) -> str:
        """``image``, or ``text`` for a model that takes texts (token ids or strings).

        Example:
            >>> Run(model=None, class_names=["ham"], metrics={"base": {"modality": "text"}}).modality
            'text'
        """
        from graftkit.results.texts import is_text_model

        known = (self.metrics.get("base") or {}).get("modality")
        if known:
            return known
        return "text" if self.model is not None and is_text_model(self.model) else "image"

    def _predict_texts(self, inputs, *, top_k: int, batch_size: int) -> list[dict]:
        from graftkit.data.text import list_texts
        from graftkit.results.texts import predict_texts

        texts = list_texts([inputs] if isinstance(inputs, (str, Path)) else list(inputs))
        return predict_texts(self.model, texts, self.run_dir, self.class_names, task=self.task, top_k=top_k,
                             thresholds=self.thresholds, batch_size=max(batch_size, 64))

    def export(self, format: str = "tflite", **options):
        """Export the model (``keras``, ``savedmodel``, ``tflite``, ``onnx``), checked against it;
        options as for :func:`graftkit.results.export.export_run`."""
        from graftkit.results.export import export_run

        if self.run_dir is None:
            raise GraftError("this run has no run folder to export from: train with an --out folder, or load one")
        # The model's code already runs in this process: trained here, or loaded with trust_model=True.
        return export_run(self.run_dir, format, **{"trust_model": holds_python_code(self.model), **options})


def _is_pixels(inputs) -> bool:
    import numpy as np

    return isinstance(inputs, np.ndarray) or (
        isinstance(inputs, (list, tuple)) and bool(inputs) and isinstance(inputs[0], np.ndarray))


def load(path: str | Path, *, trust_model: bool = False) -> Run:
    """A finished run (a run folder, or a ``model.keras`` file) as a :class:`Run`.

    Args:
        path: the run folder or its ``model.keras``.
        trust_model: allow a model holding Python code (a Lambda layer of a personal base
            trained with ``--trust-model``); only for runs you trust.

    Example:
        >>> run = load("runs/ants")  # doctest: +SKIP
        >>> run.class_names  # doctest: +SKIP
        ['ants', 'bees']
    """
    model, class_names = load_trained(path, trust_model=trust_model)
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    run_dir = folder if (folder / CONFIG_FILE).is_file() else None
    return Run(model=model, class_names=class_names, metrics=read_json(folder / "metrics.json") or {},
               config=read_json(folder / CONFIG_FILE) or {}, run_dir=run_dir,
               thresholds=read_json(folder / THRESHOLDS_FILE))
