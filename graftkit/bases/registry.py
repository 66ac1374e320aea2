"""The table of named ImageNet bases: how to build each, its preprocessing, sizes and weight files.

One entry per base, in the spirit of timm's pretrained configs: everything that
automatic preprocessing, weight resolution and cutting need lives in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from graftkit.errors import GraftError

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/keras-applications/"


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


_REGISTRY: dict[str, BaseSpec] = {}


def register(spec: BaseSpec) -> BaseSpec:
    """Add a base to the registry (later registrations of a name replace earlier ones).

    Example:
        >>> from graftkit.bases.registry import get_spec
        >>> get_spec("resnet50").preprocessing
        'caffe'
    """
    _REGISTRY[spec.name] = spec
    return spec


def list_bases() -> list[BaseSpec]:
    """All registered bases, sorted by name."""
    _load_plugins()
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def get_spec(name: str) -> BaseSpec:
    """The spec of a named base; a one-line error listing the known names otherwise."""
    _load_plugins()
    key = name.strip().lower()
    if key not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise GraftError(f"unknown base '{name}': use one of {known}, or the path of a model file")
    return _REGISTRY[key]


def is_known(name: str) -> bool:
    """Whether ``name`` is a registered base name."""
    _load_plugins()
    return name.strip().lower() in _REGISTRY


def _load_plugins() -> None:
    # Bases defined in their own modules register themselves on import.
    from graftkit.bases import keras_apps  # noqa: F401

    try:
        from graftkit.bases import lite  # noqa: F401
    except ImportError:
        pass
