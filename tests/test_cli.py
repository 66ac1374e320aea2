"""The `graft` command: a full train / predict / evaluate / inspect cycle, and one-line errors for bad input."""

from __future__ import annotations

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


@pytest.mark.parametrize("argv, needle", [
    (["predict", "run", "x.png", "--top-k", "0"], "--top-k"),
    (["predict", "run", "x.png", "--batch-size", "-1"], "--batch-size"),
    (["evaluate", "run", "data", "--batch-size", "0"], "--batch-size"),
    (["train", "data", "--lr", "-1"], "--lr"),
    (["train", "data", "--image-size", "16"], "--image-size"),
])
def test_cli_numeric_options(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("graft: error:")][0].count(needle) == 1


def test_cli_unknown_option_is_a_usage_error(capsys):
    assert main(["train", "data", "--learning-rate", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == ["graft train: error: unknown option '--learning-rate' ('graft train --help' lists the "
                                "options)"]


def test_a_wrong_choice_is_one_line_naming_the_option_and_its_choices(capsys):
    assert main(["train", "data", "--pooling", "mean"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "--pooling" in lines[0] and "'avgmax'" in lines[0] and "'mean'" in lines[0]


@pytest.mark.parametrize("argv, usage, needle", [
    (["train", "data", "--epoch", "2"], "graft train", "did you mean --epochs?"),  # no prefix matching
    (["predict", "run", "x.png", "--top", "2"], "graft predict", "did you mean --top-k?"),
    (["trian", "data"], "graft", "did you mean train?"),
])
def test_typos_get_one_line_with_the_nearest_name_and_where_help_is(capsys, argv, usage, needle):
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{usage}: error:") and needle in lines[0]
    assert f"'{usage} --help'" in lines[0]


@pytest.mark.parametrize("argv, needle", [
    (["train", "{data}", "--base", "mobilenetv2_0.5"], "did you mean mobilenet_v2_0.5?"),
    (["train", "{data}", "--base", "efficentnet_lite0"], "did you mean efficientnet_lite0?"),
    (["train", "{data}", "--freeze", "last30%"], "did you mean last:30%?"),
    (["train", "{data}", "--base", "mobilenet_v2_0.35", "--freeze", "blocks:9"], "has 4 blocks"),
    (["train", "{data}", "--epochs", "-1"], "--epochs -1"),
    (["train", "{data}", "--image-size", "7"], "--image-size 7"),
    (["train", "{data}", "--out", "{run}"], "already holds a trained model"),
])
def test_option_errors_come_before_tensorflow_is_imported(tmp_path, argv, needle):
    """Each mistake is one line with exit code 2, found without importing TensorFlow (so in a moment)."""
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.keras").write_text("")
    argv = [a.format(data=tmp_path / "data", run=tmp_path / "run") for a in argv]
    code = ("import sys; from graftkit.cli import main; rc = main(%r); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; sys.exit(rc)" % argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr


def test_bases_and_help_import_no_tensorflow():
    code = ("import sys, contextlib, io; from graftkit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out: rc = main(['bases'])\n"
            "assert rc == 0 and 'efficientnet_lite0' in out.getvalue()\n"
            "assert 'tensorflow' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_train_option_has_help_with_its_default():
    from graftkit.cli import build_parser

    train = build_parser()._graft_commands["train"]
    for action in train._actions:
        if action.option_strings and action.dest not in ("help",):
            assert action.help, action.dest
    text = train.format_help()
    for shown in ("(default: 32)", "(default: last:30%)", "(default: 0.2)", "(default: lr / 10)"):
        assert shown in " ".join(text.split()), shown


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "advise", "inspect", "demo", "lr-find"])
def test_every_option_of_every_command_has_help(command):
    from graftkit.cli import build_parser

    parser = build_parser()._graft_commands[command]
    for action in parser._actions:
        assert action.help, f"graft {command} {action.option_strings or action.dest} has no help"
        if action.option_strings and isinstance(action.default, (int, float)) and not isinstance(action.default, bool):
            assert "(default" in parser._get_formatter()._get_help_string(action), action.option_strings
