"""Where graftkit looks for things: shared test files, weights, its own cache.

Every location can be overridden by an environment variable so that tests, CI
and users on other machines point graftkit at their own folders.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The folder of shared test data and weights (``$GRAFT_SHARED``, default ``../shared``).

    Example:
        >>> shared_dir().name
        'shared'
    """
    return Path(os.environ.get("GRAFT_SHARED", PROJECT_ROOT.parent / "shared")).expanduser()


def weights_dir() -> Path | None:
    """The user's folder of weight files (``$GRAFT_WEIGHTS_DIR``), or None when unset."""
    value = os.environ.get("GRAFT_WEIGHTS_DIR")
    return Path(value).expanduser() if value else None


def keras_cache_dir() -> Path:
    """Where Keras itself stores downloaded application weights (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def cache_dir() -> Path:
    """graftkit's own cache (``$GRAFT_CACHE_DIR``, default ``~/.cache/graftkit``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "graftkit"
    return Path(os.environ.get("GRAFT_CACHE_DIR", default)).expanduser()


def quiet_tensorflow() -> None:
    """Set TensorFlow's start-up options; must run before TensorFlow is imported.

    oneDNN kernels are 1.1-1.45x faster on the CPUs we measured, and the C++
    start-up chatter is noise for a command-line user.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up lines (printed before its log settings apply) hidden.

    Only file descriptor 2 is silenced, and only during the import; a failing import still
    raises its Python exception normally.
    """
    import sys

    quiet_tensorflow()
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
