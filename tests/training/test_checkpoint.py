"""Issue 6: interrupted runs. ``kill -9`` or Ctrl-C during training, then ``graft train --resume``.

A run writes ``checkpoint.npz`` after every epoch (atomically) and holds an ``UNFINISHED``
marker until its model is written. Killed runs here are real processes: one killed from
outside with SIGKILL while it trains, one that SIGKILLs itself at a chosen point (right
before a checkpoint write, or half-way through one), one sent SIGINT (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from graftkit import log
from graftkit.cli import main
from graftkit.errors import GraftError
from graftkit.training import checkpoint
from tests.helpers import tiny_cnn, write_images

EPOCHS = {"head": 6, "fine_tune": 6}


def train_args(root: Path, out: str, fine_tune_epochs: int = EPOCHS["fine_tune"], patience: int = 50,
               relative: bool = False, fine_tune_lr: float = 0.005) -> list[str]:
    where = Path(".") if relative else root
    return ["train", str(where / "images"), "--base", str(where / "personal.keras"), "--epochs", str(EPOCHS["head"]),
            "--fine-tune-epochs", str(fine_tune_epochs), "--patience", str(patience), "--lr", "0.05", "--head-solver", "adam",
            "--fine-tune-lr", str(fine_tune_lr), "--batch-size", "8", "--freeze", "last:2", "--out", str(where / out)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Images, a personal model, and the uninterrupted run every resumed run is compared with."""
    root = tmp_path_factory.mktemp("resume")
    write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    tiny_cnn(root / "personal.keras", classes=3)
    log.set_quiet(True)
    try:
        assert main(train_args(root, "full")) == 0
    finally:
        log.set_quiet(False)
    return root


def graft_process(args: list[str], die_at: tuple[str, int, str] | None = None, cwd=None) -> subprocess.Popen:
    """``graft ARGS`` in a child process; ``die_at=(stage, epoch, when)`` makes it SIGKILL itself at the
    checkpoint of that epoch: ``before`` it is written, ``during`` the write (half a file on disk) or
    ``after`` it."""
    hook = ""
    if die_at:
        stage, epoch, when = die_at
        hook = textwrap.dedent(f"""
            import os, signal
            import numpy as np
            from graftkit.training import checkpoint
            epoch_done, savez = checkpoint.Checkpointer.epoch_done, np.savez
            def half_then_die(file, **arrays):
                file.write(b"PK\\x03\\x04" + bytes(1000)); file.flush(); os.kill(os.getpid(), signal.SIGKILL)
            def dying(self, stage, epoch, *args, **kwargs):
                if (stage, epoch) == ({stage!r}, {epoch}):
                    if {when!r} == "before":
                        os.kill(os.getpid(), signal.SIGKILL)
                    if {when!r} == "during":
                        np.savez = half_then_die
                epoch_done(self, stage, epoch, *args, **kwargs)
                if (stage, epoch) == ({stage!r}, {epoch}):
                    os.kill(os.getpid(), signal.SIGKILL)
            checkpoint.Checkpointer.epoch_done = dying
        """)
    code = hook + f"\nimport sys\nfrom graftkit.cli import main\nsys.exit(main({args!r}))\n"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                            "PYTHONPATH": str(Path(__file__).resolve().parents[2])}, cwd=cwd)


def saved_state(run: Path):
    state = checkpoint.load(run)
    return state.current if state else None


def histories(run: Path) -> dict:
    return json.loads((run / "history.json").read_text())


def resume(run: Path, capsys=None) -> int:
    log.set_quiet(True)
    try:
        return main(["train", "--resume", str(run)])
    finally:
        log.set_quiet(False)


def assert_finished_like(run: Path, full: Path) -> None:
    """A resumed run ends as the uninterrupted one: every file, every epoch, no marker or checkpoint left."""
    names = {p.name for p in run.iterdir()}
    assert {"model.keras", "metrics.json", "history.json", "report.html", "curves.png"} <= names
    assert not names & {checkpoint.UNFINISHED_FILE, checkpoint.CHECKPOINT_FILE}
    assert not [n for n in names if n.startswith(".")], names  # no temporary file left behind
    for stage, values in histories(full).items():
        assert len(histories(run)[stage]["val_loss"]) == len(values["val_loss"]), stage
    assert json.loads((run / "metrics.json").read_text())["accuracy"] >= 0.9


def test_kill_9_from_outside_during_fine_tuning_then_resume(setup, tmp_path):
    args = train_args(setup, "killed", fine_tune_epochs=40)
    process = graft_process(args)
    run = setup / "killed"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        state = saved_state(run) if (run / checkpoint.CHECKPOINT_FILE).exists() else None
        if state is not None and state.stage == "fine_tune" and state.epoch >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed:\n" + process.communicate()[1][-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = saved_state(run).epoch
    assert 2 <= done < 40
    assert checkpoint.is_unfinished(run) and not (run / "model.keras").exists()
    # Nothing else may take the folder or treat it as a model meanwhile.
    with pytest.raises(GraftError, match="has not finished: continue it with graft train --resume"):
        from graftkit.results.trained import load_trained
        load_trained(run)
    assert main(args) == 2  # a new run into it is refused, naming --resume

    assert resume(run) == 0
    history = histories(run)
    assert len(history["fine_tune"]["val_loss"]) == 40  # every epoch, the first `done` of them from before
    for key, values in histories(setup / "full")["head"].items():  # the finished stage is kept as it was
        np.testing.assert_allclose(history["head"][key], values, rtol=1e-5)
    assert not checkpoint.is_unfinished(run) and (run / "model.keras").is_file()
    assert main(["evaluate", str(run), str(setup / "images"), "--no-report"]) == 0


@pytest.mark.parametrize("when", ["before", "during"])
def test_killed_in_the_head_stage_resumes_exactly(setup, when):
    """Killed as epoch 4's checkpoint is written: epoch 4 is lost (one epoch) and done again; the head
    stage on cached features replays its shuffles, so the resumed run is the uninterrupted one."""
    run = setup / f"head-{when}"
    process = graft_process(train_args(setup, run.name), die_at=("head", 4, when))
    process.wait(timeout=240)
    assert process.returncode == -signal.SIGKILL
    assert saved_state(run).stage == "head" and saved_state(run).epoch == 3  # the epoch before is whole
    if when == "during":
        assert [p for p in run.iterdir() if p.name.startswith(".checkpoint.npz.")]  # the half-written file
    assert resume(run) == 0
    assert_finished_like(run, setup / "full")
    full, resumed = histories(setup / "full"), histories(run)
    np.testing.assert_allclose(resumed["head"]["val_loss"], full["head"]["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["head"]["loss"], full["head"]["loss"], rtol=1e-5)


def test_killed_between_stages_and_after_the_last_epoch(setup):
    """Killed right before the fine-tuning stage's first and last checkpoints: both resume to the end."""
    for stage, epoch in (("fine_tune", 1), ("fine_tune", EPOCHS["fine_tune"])):
        run = setup / f"{stage}-{epoch}"
        process = graft_process(train_args(setup, run.name), die_at=(stage, epoch, "before"))
        process.wait(timeout=240)
        assert process.returncode == -signal.SIGKILL
        state = checkpoint.load(run)
        assert [r["name"] for r in state.done] == ["head"]
        assert (state.current.epoch if state.current else 0) == epoch - 1
        assert resume(run) == 0
        assert_finished_like(run, setup / "full")


def test_ctrl_c_says_how_to_resume(setup):
    run = setup / "interrupted"
    process = graft_process(train_args(setup, run.name, fine_tune_epochs=40))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (run / checkpoint.CHECKPOINT_FILE).exists() and saved_state(run) is not None:
            break
        time.sleep(0.02)
    for _ in range(5):  # as a user would press Ctrl-C again: one that lands in a finalizer is ignored by Python
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            pass
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert f"graft: interrupted: continue with graft train --resume {run}" in stderr
    assert "KeyboardInterrupt" not in stderr
    assert checkpoint.is_unfinished(run)


def test_resume_refuses_what_it_cannot_continue(setup, tmp_path, capsys):
    assert main(["train", "--resume", str(setup / "full")]) == 2
    assert "has finished already: nothing to resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a graftkit run folder" in capsys.readouterr().err
    assert main(["train", str(setup / "images"), "--resume", str(setup / "full")]) == 2
    assert "drop the data folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(setup / "full"), "--epochs", "3"]) == 2
    assert "drop --epochs" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "needs a data folder" in capsys.readouterr().err


def test_damaged_checkpoint_or_changed_classes_are_clear_errors(setup, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "classes.json"):
        (run / name).write_text((setup / "full" / name).read_text())
    checkpoint.mark_unfinished(run)
    (run / checkpoint.CHECKPOINT_FILE).write_bytes(b"not a zip file")
    assert main(["train", "--resume", str(run)]) == 2
    assert f"cannot read the checkpoint '{run / checkpoint.CHECKPOINT_FILE}'" in capsys.readouterr().err

    (run / checkpoint.CHECKPOINT_FILE).unlink()
    (run / "classes.json").write_text(json.dumps(["blue", "green", "yellow"]))
    assert main(["train", "--resume", str(run)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1 and "the data's classes are now ['blue', 'green', 'red']" in errors[0]


def test_checkpoint_round_trip(tmp_path):
    saver = checkpoint.Checkpointer(tmp_path)
    saver.epoch_done("head", 2, {"loss": [0.9, 0.8]}, [np.arange(3.0)], [np.ones(2), np.array(5.0)],
                     {"wait": 1, "best": 0.7, "best_epoch": 0, "stopped_epoch": 0}, [np.zeros(3)])
    state = checkpoint.load(tmp_path)
    assert state.current.epoch == 2 and state.current.history == {"loss": [0.9, 0.8]}
    np.testing.assert_array_equal(state.current.weights[0], np.arange(3.0))
    assert float(state.current.optimizer[1]) == 5.0 and state.current.stopper["best"] == 0.7
    assert state.describe() == "head stage after epoch 2"


def test_early_stopping_state_survives_a_kill(setup):
    """Patience 1: early stopping ends fine-tuning; killed right after a checkpoint, the resumed run stops
    where the uninterrupted one did, keeping the same best epoch."""
    args = lambda out: train_args(setup, out, fine_tune_epochs=12, patience=1, fine_tune_lr=0.5)  # noqa: E731
    log.set_quiet(True)
    try:
        assert main(args("stops")) == 0
    finally:
        log.set_quiet(False)
    full = json.loads((setup / "stops" / "metrics.json").read_text())["stages"]
    ran = len(histories(setup / "stops")["fine_tune"]["val_loss"])
    assert ran < 12, "early stopping never fired: the test proves nothing"
    for epoch in sorted({1, ran - 1, ran}):  # after the first, the one before the stop, and the stop itself
        run = setup / f"stops-{epoch}"
        process = graft_process(args(run.name), die_at=("fine_tune", epoch, "after"))
        process.wait(timeout=240)
        assert process.returncode == -signal.SIGKILL
        assert saved_state(run).epoch == epoch
        assert resume(run) == 0
        resumed = json.loads((run / "metrics.json").read_text())["stages"]
        assert len(histories(run)["fine_tune"]["val_loss"]) == ran, epoch
        assert resumed["fine_tune"]["best_epoch"] == full["fine_tune"]["best_epoch"], epoch
        assert resumed["fine_tune"]["kept"] == full["fine_tune"]["kept"], epoch


def test_resume_from_another_folder_and_refusals(setup, tmp_path, capsys, monkeypatch):
    """A run started with relative paths resumes from anywhere; a changed data set or a run still
    going on in another process is refused."""
    process = graft_process(train_args(setup, "relative", relative=True), die_at=("head", 2, "after"),
                            cwd=setup)
    process.wait(timeout=240)
    run = setup / "relative"
    assert checkpoint.is_unfinished(run)
    monkeypatch.chdir(tmp_path)

    locker = subprocess.Popen([sys.executable, "-c", "import sys, time; from graftkit.training import checkpoint; "
                               f"checkpoint.mark_unfinished({str(run)!r}); print('locked', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert locker.stdout.readline().strip() == "locked"
        assert main(["train", "--resume", str(run)]) == 2
        assert "is still being trained by another process" in capsys.readouterr().err
    finally:
        locker.kill()
        locker.wait()

    extra = setup / "images" / "red" / "red_0.png"
    moved = extra.with_name("red_0.moved")
    extra.rename(moved)
    try:
        assert main(["train", "--resume", str(run)]) == 2
        assert "are not those the run" in capsys.readouterr().err
    finally:
        moved.rename(extra)
    assert resume(run) == 0
    assert_finished_like(run, setup / "full")
