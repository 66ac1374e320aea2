"""Writing files so that no reader ever sees half of one: a temporary file beside the target, then a rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from graftkit.errors import GraftError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so no reader sees half a file."""
    path = Path(path)
    with temporary_beside(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | Path, value) -> None:
    """Write ``value`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, default=_jsonable) + "\n")


def atomic_save_model(model, path: str | Path) -> None:
    """Save a Keras model to ``path`` (``.keras``) atomically."""
    path = Path(path)
    with temporary_beside(path, suffix=path.suffix) as tmp:
        model.save(tmp)


class temporary_beside:
    """A temporary path in the target's folder, renamed onto the target on success, removed on failure."""

    def __init__(self, target: Path, suffix: str = ".tmp"):
        self.target = target
        self.suffix = suffix

    def __enter__(self) -> Path:
        handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=self.suffix,
                                        dir=self.target.parent)
        os.close(handle)
        os.chmod(name, 0o666 & ~_umask())  # mkstemp makes files private; a run's files are meant to be shared
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, kind, error, trace):
        if kind is None:
            try:
                os.replace(self.tmp, self.target)
                return False
            except OSError as failure:
                error = failure
        self.tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise GraftError(f"cannot write '{self.target}': {error.strerror or error}") from None
        return False


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
