"""The run folder: atomic writes, and finding the parts of a finished run."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from graftkit.errors import GraftError

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
UNFINISHED_FILE = "UNFINISHED"  # in a run folder from the start of a run until its model is written
CHECKPOINT_FILE = "checkpoint.npz"  # the state after a run's last completed epoch (graftkit.checkpoint)


def new_run_dir(out: str | Path | None, label: str) -> Path:
    """Create the run folder: ``out`` if given (must not hold a finished run), else ``runs/<time>-<label>``.

    Example:
        >>> import tempfile; d = new_run_dir(Path(tempfile.mkdtemp()) / "run", "demo")
        >>> d.is_dir()
        True
    """
    if out is None:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(label).stem)
        out = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}"
    path = Path(out)
    if (path / MODEL_FILE).exists():
        raise GraftError(f"run folder '{path}' already holds a trained model: pass another --out or remove it")
    if (path / UNFINISHED_FILE).exists():
        raise GraftError(f"run folder '{path}' holds an unfinished run: continue it with "
                         f"graft train --resume {path}, or pass another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GraftError(f"cannot create run folder '{path}': {error.strerror}") from None
    return path


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


RUN_FILES = (MODEL_FILE, CLASSES_FILE, UNFINISHED_FILE, CHECKPOINT_FILE, "config.json", "history.json",
             "metrics.json", "curves.png", "confusion.png", "report.html")


def remove_leftovers(folder: Path) -> int:
    """Delete the temporary files a killed process left in a run folder (see :class:`temporary_beside`).

    Only ``.NAME.XXXXXXXX.SUFFIX`` files of graftkit's own run files are touched.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> _ = (d / ".model.keras.x1y2z3w4.keras").write_text(""); _ = (d / ".env.local").write_text("")
        >>> remove_leftovers(d), sorted(p.name for p in d.iterdir())
        (1, ['.env.local'])
    """
    names = "|".join(re.escape(name) for name in RUN_FILES)
    pattern = re.compile(rf"\.({names})\.[a-z0-9_]{{8}}\.[a-z.]+")
    removed = 0
    for path in Path(folder).iterdir():
        if pattern.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


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


def load_trained(path: str | Path):
    """Load a model trained by graftkit and its class names from a run folder or a ``.keras`` file.

    Returns:
        ``(model, class_names)``; class names fall back to ``class_0 ...`` when no
        ``classes.json`` lies beside the model.
    """
    import keras

    from graftkit.bases import preprocess  # noqa: F401  registers the Preprocess layer

    path = Path(path)
    model_path = path / MODEL_FILE if path.is_dir() else path
    if not model_path.is_file() and (model_path.parent / UNFINISHED_FILE).is_file():
        raise GraftError(f"the run in '{model_path.parent}' has not finished: continue it with "
                         f"graft train --resume {model_path.parent}")
    if not model_path.is_file():
        raise GraftError(f"no trained model at '{path}': pass a run folder or its {MODEL_FILE}")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as error:  # Keras raises many types for a file that is not a model
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise GraftError(f"cannot load model '{model_path}' ({reason}): pass a model saved by graftkit") from None
    classes_path = model_path.parent / CLASSES_FILE
    if classes_path.is_file():
        class_names = json.loads(classes_path.read_text())
    else:
        class_names = [f"class_{i}" for i in range(model.output.shape[-1])]
    return model, class_names
