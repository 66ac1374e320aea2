"""The run folder: which folders a new run may use, leftovers of a killed write, and the input contract."""

from __future__ import annotations

import re

import keras
import pytest

from graftkit.errors import GraftError
from graftkit.files import temporary_beside
from graftkit.runfolder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    INPUTS_FILE,
    MODEL_FILE,
    SPLIT_FILE,
    UNFINISHED_FILE,
    input_contract,
    new_run_dir,
    remove_leftovers,
)


def test_new_run_dir_creates_the_folder_and_its_parents(tmp_path):
    path = new_run_dir(tmp_path / "runs" / "ants", "ignored")
    assert path == tmp_path / "runs" / "ants" and path.is_dir()
    (path / "notes.txt").write_text("mine")
    assert new_run_dir(path, "again") == path  # a folder without a run in it may be reused
    assert (path / "notes.txt").read_text() == "mine"


def test_new_run_dir_names_a_default_folder_from_the_label(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = new_run_dir(None, "my photos/v2 (final).keras")
    assert path.parent.name == "runs" and path.is_dir()
    assert re.fullmatch(r"\d{8}-\d{6}-v2__final_", path.name), path.name  # the stem, made safe


@pytest.mark.parametrize("holds, needle", [
    (MODEL_FILE, "already holds a trained model"),
    (UNFINISHED_FILE, "holds an unfinished run: continue it with graft train --resume"),
])
def test_new_run_dir_refuses_a_folder_holding_a_run(tmp_path, holds, needle):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / holds).write_bytes(b"x")
    (folder / CONFIG_FILE).write_text("{}")
    with pytest.raises(GraftError) as e:
        new_run_dir(folder, "x")
    message = str(e.value)
    assert "\n" not in message and str(folder) in message and needle in message
    assert sorted(p.name for p in folder.iterdir()) == sorted([holds, CONFIG_FILE])  # nothing touched


def test_new_run_dir_refuses_a_file_and_an_uncreatable_folder(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(GraftError, match=r"--out '.*file' is a file: pass a folder"):
        new_run_dir(a_file, "x")
    with pytest.raises(GraftError, match=r"cannot create run folder '.*file/run'"):
        new_run_dir(a_file / "run", "x")


def test_remove_leftovers_deletes_only_graftkits_temporary_files(tmp_path):
    # A killed process leaves the temporary file of an atomic write behind: enter, never exit.
    leftovers = [temporary_beside(tmp_path / name, suffix=suffix).__enter__()
                 for name, suffix in [(MODEL_FILE, ".keras"), ("metrics.json", ".tmp"), (CONFIG_FILE, ".tmp"),
                                      (SPLIT_FILE, ".tmp"), (INPUTS_FILE, ".tmp"), (CHECKPOINT_FILE, ".npz")]]
    kept = [".notes.txt", ".model.keras", "model.keras.bak", ".mine.json.abcd1234.tmp", ".env.local"]
    for name in kept:
        (tmp_path / name).write_text("")
    (tmp_path / ".history.json.abcd1234.tmp").mkdir()  # a folder, even if its name fits
    assert all(path.exists() for path in leftovers)
    assert remove_leftovers(tmp_path) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, ".history.json.abcd1234.tmp"])
    assert remove_leftovers(tmp_path) == 0


def test_input_contract_states_what_the_model_takes():
    rgb = input_contract(96, "caffe")
    assert rgb["shape"] == [96, 96, 3] and rgb["channel_order"] == "RGB" and rgb["value_range"] == [0, 255]
    assert "'caffe', inside the model" in rgb["preprocessing"] and "BILINEAR" in rgb["resize"]
    grey = input_contract(64, "unit", channels=1)
    assert grey["shape"] == [64, 64, 1] and grey["channel_order"] == "grayscale"
    assert "safe_mode" not in rgb["load"] and "safe_mode=False" in input_contract(32, "tf", python_code=True)["load"]


def test_the_contracts_load_line_loads_a_saved_model(tmp_path, monkeypatch):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten()])
    model.save(tmp_path / MODEL_FILE)
    monkeypatch.chdir(tmp_path)
    loaded = eval(input_contract(8, "unit")["load"], {"keras": keras})  # exactly what a user would paste
    assert loaded.input_shape == (None, 8, 8, 3)
