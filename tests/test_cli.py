"""The `graft` command: a full train / predict / evaluate / inspect cycle, and one-line errors for bad input."""

import csv
import io
import json
import subprocess
import sys

import pytest

from graftkit.cli import main
from tests.helpers import tiny_cnn, write_images


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("graft: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_train_predict_evaluate_inspect(tiny_images, tmp_path, capsys):
    personal = tiny_cnn(tmp_path / "p.keras")
    run_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", tiny_images, "--base", personal, "--epochs", 3, "--fine-tune-epochs",
                           1, "--lr", 0.05, "--batch-size", 8, "--freeze", "last:2", "--out", run_dir, "--quiet")
    assert code == 0 and json.loads(out)["run_dir"] == str(run_dir)

    code, out, _ = run_cli(capsys, "predict", run_dir, tiny_images / "red", "--format", "csv", "--top-k", 2)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 12
    assert sum(r["label"] == "red" for r in rows) >= 9
    assert all(len(r["top_k"].split(";")) == 2 for r in rows)

    code, out, _ = run_cli(capsys, "predict", run_dir / "model.keras", tiny_images / "red" / "red_0.png",
                           "--format", "json")
    assert json.loads(out)[0]["path"].endswith("red_0.png")

    code, out, _ = run_cli(capsys, "evaluate", run_dir, tiny_images, "--json")
    scores = json.loads(out)
    assert code == 0 and scores["count"] == 36 and scores["accuracy"] > 0.6
    assert len(scores["confusion_matrix"]) == 3

    code, out, _ = run_cli(capsys, "inspect", personal)
    assert code == 0
    cut_line = [line for line in out.splitlines() if line.startswith("=>")]
    assert len(cut_line) == 1 and "c2" in cut_line[0]


def test_bases_lists_readiness(capsys, imagenet_weights):
    code, out, _ = run_cli(capsys, "bases")
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("mobilenet_v2_0.35 "))
    assert "ready" in line
    assert "ready" not in next(line for line in out.splitlines() if line.startswith("resnet152 "))


def make_bad(tmp_path, kind):
    root = write_images(tmp_path / "data", {"cats": 4, "dogs": 4}, size=16)
    if kind == "one class":
        import shutil

        shutil.rmtree(root / "dogs")
    elif kind == "empty class":
        (root / "birds").mkdir()
    elif kind == "not an image":
        (root / "cats" / "notes.txt").write_text("hello")
    elif kind == "corrupt jpeg":
        (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    return root


@pytest.mark.parametrize("kind, needle", [
    ("one class", "two classes"), ("empty class", "birds"), ("not an image", "notes.txt"),
    ("corrupt jpeg", "broken.jpg"),
])
def test_bad_data_is_one_line(tmp_path, capsys, kind, needle):
    root = make_bad(tmp_path, kind)  # bad files are skipped with a warning unless --strict
    code, _, err = run_cli(capsys, "train", root, "--base", "mobilenet_v2_0.35", "--weights", "none",
                           "--image-size", 32, "--out", tmp_path / "run", "--strict")
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_bad_base_model_and_cut_are_one_line(tmp_path, capsys):
    root = make_bad(tmp_path, "good")
    code, _, err = run_cli(capsys, "train", root, "--base", "resnet5", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "resnet5", "resnet50")
    fake = tmp_path / "model.h5"
    fake.write_text("not a model")
    code, _, err = run_cli(capsys, "train", root, "--base", fake, "--out", tmp_path / "r")
    assert_one_line_error(code, err, "model.h5")
    personal = tiny_cnn(tmp_path / "p.keras", size=16)
    code, _, err = run_cli(capsys, "train", root, "--base", personal, "--cut", "conv_99", "--out", tmp_path / "r")
    assert_one_line_error(code, err, "conv_99", "--cut")


def test_missing_folder_from_a_real_process(tmp_path):
    """The installed entry point: exit code 2, one line on stderr, no traceback."""
    result = subprocess.run([sys.executable, "-m", "graftkit.cli", "train", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1 and "nowhere" in errors[0]
