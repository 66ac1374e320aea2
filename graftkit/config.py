"""The configuration of a training run: defaults, validation, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from graftkit.errors import GraftError

DEFAULT_BASE = "mobilenet_v2"


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
    base: str = DEFAULT_BASE
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

    def validated(self) -> "TrainConfig":
        """Check every option before any work starts; returns self with derived defaults filled in."""
        from graftkit.bases.preprocess import MODES
        from graftkit.surgery import parse_freeze

        _check(self.epochs >= 0, "--epochs", self.epochs, "use 0 or more")
        _check(self.fine_tune_epochs >= 0, "--fine-tune-epochs", self.fine_tune_epochs, "use 0 or more")
        if self.epochs == 0 and self.fine_tune_epochs == 0:
            raise GraftError("--epochs and --fine-tune-epochs are both 0: nothing to train; set one above 0")
        _check(self.lr > 0, "--lr", self.lr, "use a positive learning rate such as 0.001")
        if self.fine_tune_lr is None:
            self.fine_tune_lr = self.lr / 10
        _check(self.fine_tune_lr > 0, "--fine-tune-lr", self.fine_tune_lr, "use a positive learning rate")
        _check(self.batch_size >= 1, "--batch-size", self.batch_size, "use 1 or more")
        _check(self.image_size is None or self.image_size >= 32, "--image-size", self.image_size,
               "use 32 or more")
        _check(0 < self.val_split < 1, "--val-split", self.val_split, "use a fraction such as 0.2")
        _check(0 <= self.dropout < 1, "--dropout", self.dropout, "use a rate in [0, 1)")
        _check(self.patience >= 1, "--patience", self.patience, "use 1 or more")
        _check(all(units >= 1 for units in self.hidden), "--hidden", self.hidden, "use positive layer sizes")
        _check(self.pooling in ("avg", "max"), "--pooling", self.pooling, "use avg or max")
        _check(self.class_weights in ("auto", "none"), "--class-weights", self.class_weights, "use auto or none")
        _check(self.preprocessing is None or self.preprocessing in MODES, "--preprocess", self.preprocessing,
               f"use one of {', '.join(MODES)}")
        parse_freeze(self.freeze)
        return self

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
