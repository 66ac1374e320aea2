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


def warn(message: str) -> None:
    """Print a warning line on stderr, even when quiet: something was left out or looks wrong."""
    print(f"graft: warning: {message}", file=sys.stderr, flush=True)


def keras_verbosity() -> int:
    """Keras' progress bar on a terminal, one line per epoch in logs, nothing when quiet."""
    if _quiet:
        return 0
    return 1 if sys.stderr.isatty() else 2


class progress:
    """A progress bar on stderr for long loops: redrawn in place on a terminal, a line every 10 s in logs.

    Silent when graftkit is quiet.

    Args:
        total: how many items the loop will do.
        label: what is being done, e.g. ``features``.

    Example:
        >>> bar = progress(3, "demo")
        >>> for done in (1, 2, 3):
        ...     bar.update(done)
        >>> bar.close()
    """

    def __init__(self, total: int, label: str):
        import time

        self.total, self.label, self._clock = max(int(total), 0), label, time.perf_counter
        self.start = self._last = self._clock()
        self.done = 0
        self._tty = sys.stderr.isatty()

    def update(self, done: int) -> None:
        """Record that ``done`` items (a running total) are finished."""
        self.done = done
        now = self._clock()
        if _quiet or (not self._tty and now - self._last < 10):
            return
        self._last = now
        self._draw(end="" if self._tty else "\n")

    def close(self) -> None:
        """Finish the bar with a last line giving the time taken."""
        if not _quiet and self.total:
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        elapsed = self._clock() - self.start
        share = self.done / self.total if self.total else 1.0
        bar = ("=" * int(share * 24)).ljust(24)
        rate = f", {self.done / elapsed:.0f}/s" if elapsed > 0 and self.done else ""
        prefix = "\r" if self._tty else ""
        print(f"{prefix}graft: {self.label} [{bar}] {self.done}/{self.total} {elapsed:.1f} s{rate}",
              file=sys.stderr, end=end, flush=True)
