"""End to end on tiny data: a personal model grafted, trained in two stages, written to a run folder."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from graftkit import api
from graftkit.api import Run
from graftkit.cli import main
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.results.trained import load_trained
from graftkit.training.pipeline import write_run
from tests.badfiles import MESSY_BAD, messy_folder, one_line
from tests.helpers import tiny_cnn


@pytest.fixture()
def personal(tmp_path):
    return tiny_cnn(tmp_path / "personal.keras")


def test_two_stage_run_writes_a_complete_run_folder(tiny_images, personal, tmp_path):
    run = api.train(tiny_images, base=str(personal), epochs=4, fine_tune_epochs=2, lr=0.05,
                    batch_size=8, freeze="last:2", out=str(tmp_path / "run"))
    folder = tmp_path / "run"
    for name in ["model.keras", "classes.json", "config.json", "split.json", "inputs.json", "history.json",
                 "metrics.json", "curves.png", "confusion.png"]:
        assert (folder / name).is_file(), name
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6  # colour classes: far above chance (1/3)
    assert set(metrics["stages"]) == {"head", "fine_tune"}
    assert json.loads((folder / "classes.json").read_text()) == ["blue", "green", "red"]
    config = TrainConfig.from_file(folder / "config.json")
    assert config.image_size is None and config.freeze == "last:2"  # the options as given
    inputs = json.loads((folder / "inputs.json").read_text())
    assert inputs["shape"] == [24, 24, 3] and inputs["value_range"] == [0, 255]  # the size the model took
    split = json.loads((folder / "split.json").read_text())
    pairs = split["train"] + split["val"]
    assert len(pairs) == 36 and len({path for path, _ in pairs}) == 36 and len(split["val"]) == metrics["val_images"]
    assert all(Path(path).parent.name == split["class_names"][label] for path, label in pairs)
    assert run.metrics["confusion_matrix"] == metrics["confusion_matrix"]

    model, names = load_trained(folder)
    x = np.random.default_rng(0).uniform(0, 255, (3, 24, 24, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(x, verbose=0), run.model.predict(x, verbose=0), atol=1e-5)
    assert names == ["blue", "green", "red"]


def test_cut_removes_the_old_top_and_pooling(tiny_images, personal, tmp_path):
    run = api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=0, out=str(tmp_path / "r"))
    base = run.model.get_layer("base")
    assert base.layers[-1].name == "c2"
    assert "old_top" not in [layer.name for layer in base.layers]


def test_head_stage_leaves_base_untouched(tiny_images, personal, tmp_path):
    original = keras.saving.load_model(personal)
    run = api.train(tiny_images, base=str(personal), epochs=3, fine_tune_epochs=0, lr=0.05,
                    out=str(tmp_path / "r"))
    base = run.model.get_layer("base")
    for name in ["c1", "bn1", "c2"]:
        for before, after in zip(original.get_layer(name).get_weights(), base.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after)


def test_fine_tune_moves_unfrozen_and_keeps_batchnorm_statistics(tiny_images, personal, tmp_path):
    original = keras.saving.load_model(personal)
    run = api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=3, lr=0.05,
                    fine_tune_lr=0.05, freeze="from:bn1", patience=5, out=str(tmp_path / "r"))
    if not run.stages[-1].kept:
        pytest.skip("fine-tuning was rolled back on this seed")
    base = run.model.get_layer("base")
    np.testing.assert_array_equal(original.get_layer("c1").get_weights()[0], base.get_layer("c1").get_weights()[0])
    assert not np.allclose(original.get_layer("c2").get_weights()[0], base.get_layer("c2").get_weights()[0])
    for before, after in zip(original.get_layer("bn1").get_weights(), base.get_layer("bn1").get_weights()):
        np.testing.assert_array_equal(before, after)  # gamma, beta, moving mean, moving variance


def test_existing_run_folder_is_not_overwritten(tiny_images, personal, tmp_path):
    folder = tmp_path / "r"
    api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=0, out=str(folder))
    stamp = (folder / "model.keras").stat().st_mtime_ns
    with pytest.raises(GraftError, match="already holds a trained model"):
        api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=0, out=str(folder))
    assert (folder / "model.keras").stat().st_mtime_ns == stamp


def test_package_train_stays_the_function_after_a_run(tiny_images, personal, tmp_path):
    import graftkit

    api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=1, out=str(tmp_path / "r"))
    assert graftkit.train is api.train


def test_same_seed_same_run(tiny_images, personal, tmp_path):
    runs = [api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=1, lr=0.05, batch_size=8,
                      out=str(tmp_path / f"r{i}")) for i in range(2)]
    np.testing.assert_allclose(runs[0].stages[0].history["loss"], runs[1].stages[0].history["loss"], rtol=1e-5)


def test_messy_folder_trains_skipping_and_counting(messy_run):
    run, mess, err = messy_run
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    skipped = metrics["skipped_images"]
    assert skipped["count"] == len(MESSY_BAD) == 8
    assert sorted(f["path"] for f in skipped["files"]) == mess["bad"]
    assert all(f["reason"] for f in skipped["files"])
    for path in mess["bad"]:
        assert f"graft: warning: skipped '{path}'" in err
    assert metrics["duplicate_images"] == {"count": 1, "pairs": [
        {"train": str(Path(mess["copy"]).parents[2] / "train" / "red" / "red_0.png"), "val": mess["copy"]}]}
    assert metrics["train_images"] == 12 + 5  # 6 + 6 generated, tiny, 16-bit, CMYK, rotated, non-UTF-8 name
    assert metrics["val_images"] == 5
    assert f"could not read '{mess['vanish']}' any more" in err  # vanished mid-run: a warning, not a crash
    assert "could not read" not in err.replace(f"could not read '{mess['vanish']}'", "")
    assert (run.run_dir / "model.keras").is_file()


def test_strict_run_fails_before_any_work(tmp_path, capsys, deny_unreadable):
    mess = messy_folder(tmp_path / "data")
    model = tiny_cnn(tmp_path / "personal.keras", size=24, classes=3)
    code = main(["train", str(tmp_path / "data"), "--base", str(model), "--strict", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("graft: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert mess["bad"][0] in errors[0] and f"({len(MESSY_BAD) - 1} more bad files after it)" in errors[0]
    assert not (tmp_path / "run").exists()


class _FullDisk:
    """A file whose writes fail as on a full disk; everything else goes to the real file."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False


def _fill_disk_under(monkeypatch, folder: Path, only: str = ""):
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
        if any(c in mode for c in "wax+") and name.startswith(str(folder)) and only in os.path.basename(name):
            return _FullDisk(handle)
        return handle

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


@pytest.mark.parametrize("only", ["", ".model.keras"])
def test_disk_full_is_one_line_and_keeps_earlier_runs(messy_run, tmp_path, monkeypatch, only):
    run, _, _ = messy_run
    before = {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()}
    assert "model.keras" in before and "metrics.json" in before
    target = tmp_path / "second_run"
    target.mkdir()
    second = Run(model=run.model, class_names=run.class_names, metrics=run.metrics, stages=run.stages,
                 config=run.config, run_dir=target)
    _fill_disk_under(monkeypatch, target, only)

    with pytest.raises(GraftError) as e:
        write_run(second)

    monkeypatch.undo()
    one_line(e, "No space left on device", target)
    assert {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()} == before
    left = sorted(p.name for p in target.iterdir())
    assert not [name for name in left if name.startswith(".")], left  # no temporary files left behind
    assert "model.keras" not in left  # a folder without model.keras is never taken for a finished run
    if only:
        assert "metrics.json" in left  # the JSON files went through; only the model failed
