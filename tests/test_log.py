"""graftkit.log: progress lines in logs and pipes, a live bar on a terminal, quiet mode, stdout left alone."""

from __future__ import annotations

import io
import re
import sys

import pytest

from graftkit import log

CONTROL = re.compile(r"[\r\x1b]")


@pytest.fixture
def clock(monkeypatch):
    """A settable clock in place of ``time.perf_counter`` for the progress reporter."""
    now = [100.0]
    monkeypatch.setattr(log, "_now", lambda: now[0])
    return now


def test_log_lines_every_ten_seconds_then_a_summary(capsys, clock):
    bar = log.progress(100, "fine_tune epoch 1/3")
    for at, done in ((1, 10), (10.5, 40), (12, 50), (21, 80)):
        clock[0] = 100 + at
        bar.update(done, loss=0.51234)
    clock[0] = 125
    bar.close()
    bar.close()  # a second close (a ``finally``) adds nothing
    out, err = capsys.readouterr()
    assert out == ""
    assert not CONTROL.search(err)
    assert err.splitlines() == [
        "graft: fine_tune epoch 1/3: 40/100 images, 3.8 images/s, loss 0.5123, 10 s",
        "graft: fine_tune epoch 1/3: 80/100 images, 3.8 images/s, loss 0.5123, 21 s",
        "graft: fine_tune epoch 1/3: 80/100 images in 25.0 s (3.2 images/s)",
    ]


def test_close_with_a_message_and_an_unknown_total(capsys, clock):
    bar = log.progress(0, "predict", unit="batches")
    clock[0] = 111
    bar.update(7)
    bar.close("predict: done")
    assert capsys.readouterr().err.splitlines() == ["graft: predict: 7 batches, 0.6 batches/s, 11 s",
                                                    "graft: predict: done"]


def test_quiet_silences_progress_but_not_warnings(capsys, clock):
    log.set_quiet(True)
    try:
        bar = log.progress(5, "features")
        clock[0] = 200
        bar.update(5)
        bar.close()
        log.info("hidden")
        log.warn("an image was left out")
    finally:
        log.set_quiet(False)
    assert capsys.readouterr().err == "graft: warning: an image was left out\n"


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_a_live_bar_and_stdout_stays_clean(monkeypatch, capsys):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "xterm")
    bar = log.progress(10, "features")
    bar.update(3, loss=1.25)
    print("the result")  # stdout is not taken over while the bar is drawn
    bar.close()
    assert capsys.readouterr().out == "the result\n"
    drawn = terminal.getvalue()
    assert "\x1b[" in drawn and "3/10" in drawn and "loss 1.2500" in drawn  # the live bar, redrawn in place
    last = re.split(r"\x1b\[[0-9;?]*[A-Za-z]|\r", drawn.rstrip("\n"))[-1]  # what is left once the bar is erased
    assert re.fullmatch(r"graft: features: 3/10 images in \d+\.\d s \([\d.]+ images/s\)", last), repr(last)
    assert not log._live_bars  # nothing left for the exit hook to take down


def test_dumb_terminal_gets_plain_lines(monkeypatch, clock):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setenv("TERM", "dumb")
    bar = log.progress(4, "features")
    clock[0] = 150
    bar.update(2)
    bar.update(4)  # the last update prints nothing: the closing line says it
    bar.close()
    assert terminal.getvalue() == ("graft: features: 2/4 images, 0.0 images/s, 50 s\n"
                                   "graft: features: 4/4 images in 50.0 s (0.1 images/s)\n")
