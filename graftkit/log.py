"""One place for what graftkit tells the user while it works."""

import sys

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress messages."""
    global _quiet
    _quiet = quiet


def info(message: str) -> None:
    """Print a progress line on stderr, so stdout stays clean for tables and CSV."""
    if not _quiet:
        print(f"graft: {message}", file=sys.stderr, flush=True)


def keras_verbosity() -> int:
    """Keras' progress bar on a terminal, one line per epoch in logs, nothing when quiet."""
    if _quiet:
        return 0
    return 1 if sys.stderr.isatty() else 2
