"""What graftkit knows about one named base (a spec as data, in the spirit of timm's pretrained configs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"
TFIDF = "tfidf"  # the base name of the character n-gram TF-IDF model for texts (graftkit.bases.tfidf)


@dataclass(frozen=True)
class WeightFile:
    """One file of ImageNet weights, by the name Keras itself downloads it under.

    ``size`` is the input size the file was made for (None when any size fits);
    ``with_top`` says whether it holds the 1000-class classifier too.
    """

    name: str
    origin: str | None = None
    size: int | None = None
    with_top: bool = False


@dataclass(frozen=True)
class BaseSpec:
    """Everything graftkit knows about one named base.

    Attributes:
        name: lowercase name, variant after the family (``mobilenet_v2_0.5``).
        family: the architecture family (``mobilenet_v2``).
        build: ``build(include_top, input_shape) -> keras.Model`` with random weights.
        preprocessing: mode of :class:`graftkit.bases.preprocess.Preprocess` that maps RGB 0..255
            to what the base expects (``caffe``, ``tf``, ``torch``, ``lite`` or ``none`` when the
            base rescales inside).
        default_size: the input size the ImageNet weights were trained at.
        weight_files: candidate files, most preferred first.
        fetch: optional offline source of weights (returns a local file), tried before a download.
        fetch_ready: tells without side effects whether ``fetch`` would work offline.
        layer_groups: regexes over layer names, stem first, for grouped freezing / learning rates.
        min_size: smallest input size the architecture accepts.
    """

    name: str
    family: str
    build: Callable[..., object]
    preprocessing: str
    default_size: int
    weight_files: tuple[WeightFile, ...] = ()
    fetch: Callable[[], Path] | None = None
    fetch_ready: Callable[[], bool] | None = None
    layer_groups: tuple[str, ...] = field(default_factory=tuple)
    min_size: int = 32
    description: str = ""
