"""The table of named bases: every spec of :mod:`graftkit.bases.keras_apps` and :mod:`graftkit.bases.lite`, by name.

Reading it imports no TensorFlow, so a base name is checked (and ``graft bases`` answers) in a moment.
"""

from __future__ import annotations

import difflib
from functools import cache

from graftkit.bases.spec import BaseSpec
from graftkit.errors import GraftError


@cache
def _table() -> dict[str, BaseSpec]:
    from graftkit.bases import keras_apps

    specs = list(keras_apps.SPECS)
    try:
        from graftkit.bases import lite
    except ImportError:  # numpy or the package's own imports missing: the other bases still work
        pass
    else:
        specs.append(lite.SPEC)
    return {spec.name: spec for spec in specs}


def list_bases() -> list[BaseSpec]:
    """All named bases, sorted by name.

    Example:
        >>> "resnet50" in [spec.name for spec in list_bases()]
        True
    """
    table = _table()
    return [table[name] for name in sorted(table)]


def get_spec(name: str) -> BaseSpec:
    """The spec of a named base; a one-line error with the closest names otherwise.

    Example:
        >>> get_spec("resnet50").preprocessing
        'caffe'
        >>> get_spec("mobilenetv2_0.5")
        Traceback (most recent call last):
        graftkit.errors.GraftError: unknown base 'mobilenetv2_0.5': did you mean mobilenet_v2_0.5? (graft bases lists all 31; or pass the path of a model file)
    """
    table = _table()
    key = name.strip().lower()
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.6)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise GraftError(f"unknown base '{name}': {hint}(graft bases lists all {len(table)}; "
                         "or pass the path of a model file)")
    return table[key]


def is_known(name: str) -> bool:
    """Whether ``name`` is a named base."""
    return name.strip().lower() in _table()
