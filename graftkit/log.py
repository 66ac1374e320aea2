"""One place for what graftkit tells the user while it works, all of it on stderr.

stdout carries a command's result only (``graft train``'s JSON line, predict's table), so
``graft train DATA | jq .`` works. Messages are lines starting ``graft:``; a long loop shows a
live bar on a terminal (drawn with ``rich``) and, in a log or a pipe, a plain line every
:data:`LINE_EVERY` seconds, with no control characters.
"""

import atexit
import os
import sys
import time

_quiet = False

LINE_EVERY = 10.0
"""Seconds between the progress lines of a loop when stderr is not a terminal."""

_now = time.perf_counter


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress messages and bars; warnings are still printed.

    Example:
        >>> set_quiet(True); info("not shown"); set_quiet(False)
    """
    global _quiet
    _quiet = quiet


_examples = "images"


class counting:
    """What training calls its examples in progress lines while the block runs: ``images`` or ``texts``.

    Example:
        >>> with counting("texts"):
        ...     examples()
        'texts'
    """

    def __init__(self, name: str):
        self.name, self.before = name, None

    def __enter__(self):
        global _examples
        self.before, _examples = _examples, self.name
        return self

    def __exit__(self, *exc):
        global _examples
        _examples = self.before


def examples() -> str:
    """The name of the examples being trained on (see :class:`counting`)."""
    return _examples


def info(message: str) -> None:
    """Print a progress line on stderr, so stdout stays clean for results.

    Example:
        >>> info("data: 30 training and 6 validation images")
    """
    if not _quiet:
        print(f"graft: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """Print a warning line on stderr, even when quiet: something was left out or looks wrong.

    Example:
        >>> warn("3 images could not be read: left out")
    """
    print(f"graft: warning: {message}", file=sys.stderr, flush=True)


def live_terminal() -> bool:
    """Whether stderr is a terminal that can redraw a bar in place (not a pipe, a file, or ``TERM=dumb``).

    Example:
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()):
        ...     live_terminal()
        False
    """
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM", "") not in ("dumb", "unknown")


def rate(count: float, seconds: float) -> str:
    """``count / seconds`` as a short number: no decimals from 10 up.

    Example:
        >>> rate(36, 0.9), rate(7, 2.0), rate(5, 0)
        ('40', '3.5', '-')
    """
    if seconds <= 0:
        return "-"
    value = count / seconds
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


class progress:
    """Progress of a long loop on stderr: a live bar on a terminal, a plain line every 10 s otherwise.

    Both end with one line: ``graft: LABEL: DONE/TOTAL UNIT in S s (R UNIT/s)``, or the
    ``message`` given to :meth:`close`. Silent when graftkit is quiet (:func:`set_quiet`).

    Args:
        total: how many items the loop will do (0 when not known).
        label: what is being done, e.g. ``features`` or ``fine_tune epoch 2/10``.
        unit: what an item is, e.g. ``images``.

    Example:
        >>> bar = progress(3, "demo")
        >>> for done in (1, 2, 3):
        ...     bar.update(done, loss=0.5)
        >>> bar.close()
    """

    def __init__(self, total: int, label: str, unit: str = "images"):
        self.total, self.label, self.unit = max(int(total or 0), 0), label, unit
        self.start = self._last = _now()
        self.done = 0
        self.values: dict = {}
        self._silent, self._closed = _quiet, False
        self._live = None
        if not self._silent and live_terminal():
            self._live, self._task = _start_bar(self.total, label, unit)

    def update(self, done: int, **values: float) -> None:
        """Record that ``done`` items (a running total) are finished; ``values`` (e.g. ``loss=0.41``) are shown."""
        self.done, self.values = int(done), values
        if self._silent:
            return
        now = _now()
        if self._live is not None:
            speed = f"{rate(self.done, now - self.start)} {self.unit}/s"
            self._live.update(self._task, completed=self.done, rate=speed, values=self._values_text())
        elif now - self._last >= LINE_EVERY and not (self.total and self.done >= self.total):  # close() says it
            self._last = now
            total = f"/{self.total}" if self.total else ""
            values = self._values_text()
            print(f"graft: {self.label}: {self.done}{total} {self.unit}, {rate(self.done, now - self.start)} "
                  f"{self.unit}/s{', ' + values if values else ''}, {now - self.start:.0f} s",
                  file=sys.stderr, flush=True)

    def close(self, message: str | None = None) -> None:
        """Remove the bar and print the last line: ``message``, or the items done, the time and the rate.

        A second call does nothing, so a ``finally`` may close a bar that was closed already.
        """
        if self._closed:
            return
        self._closed = True
        if self._live is not None:
            self._live.stop()
            _live_bars.discard(self._live)
            self._live = None
        if self._silent:
            return
        if message is None:
            if not self.total and not self.done:
                return
            elapsed = _now() - self.start
            total = f"/{self.total}" if self.total else ""
            message = (f"{self.label}: {self.done}{total} {self.unit} in {elapsed:.1f} s "
                       f"({rate(self.done, elapsed)} {self.unit}/s)")
        info(message)

    def _values_text(self) -> str:
        return ", ".join(f"{name} {value:.4f}" for name, value in self.values.items())


def _start_bar(total: int, label: str, unit: str):
    """A started ``rich`` progress display on stderr with one task, for :class:`progress`."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    display = Progress(
        TextColumn("graft: {task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit, markup=False), TextColumn("{task.fields[rate]}", markup=False),
        TextColumn("{task.fields[values]}", markup=False), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, redirect_stdout=False, refresh_per_second=5,
    )
    task = display.add_task(label, total=total or None, rate="", values="")
    _stop_live_bars()  # one bar at a time: one whose loop raised before closing it goes first
    _live_bars.add(display)
    display.start()
    return display, task


_live_bars: set = set()


@atexit.register
def _stop_live_bars() -> None:
    """Take down the bar of a loop that an exception ended before it closed it, and show the cursor again."""
    while _live_bars:
        _live_bars.pop().stop()
