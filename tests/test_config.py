"""TrainConfig: options checked before any work, and config.json files read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from graftkit import api
from graftkit.config import DEFAULT_BASE, FALLBACK_BASE, TrainConfig
from graftkit.errors import GraftError
from graftkit.runfolder import MODEL_FILE, UNFINISHED_FILE
from tests.badfiles import one_line


@pytest.mark.parametrize("options, needle", [
    ({"lr": 0}, "--lr"), ({"lr": -0.1}, "--lr"), ({"lr": float("inf")}, "--lr"), ({"lr": float("nan")}, "--lr"),
    ({"fine_tune_lr": 0.0}, "--fine-tune-lr"), ({"epochs": -1}, "--epochs"),
    ({"fine_tune_epochs": -2}, "--fine-tune-epochs"), ({"epochs": 0, "fine_tune_epochs": 0}, "both 0"),
    ({"image_size": 31}, "--image-size"), ({"image_size": 0}, "--image-size"), ({"batch_size": 0}, "--batch-size"),
    ({"val_split": 1.0}, "--val-split"), ({"dropout": 1.0}, "--dropout"), ({"patience": 0}, "--patience"),
    ({"seed": -1}, "--seed"), ({"hidden": [0]}, "--hidden"), ({"freeze": "sometimes"}, "--freeze"),
    ({"feature_cache": "maybe"}, "--feature-cache"), ({"epoch": 3}, "did you mean 'epochs'"),
    ({"epochs": 0, "freeze": "all"}, "nothing would train"),
    ({"epochs": 0, "feature_cache": "memory"}, "--feature-cache memory"),
    ({"learning_rate": 0.1}, "unknown option 'learning_rate'"),
])
def test_bad_options_fail_before_any_work(tmp_path, options, needle):
    with pytest.raises(GraftError) as e:
        api.train(tmp_path / "does_not_exist", base="mobilenet_v2_0.35", out=str(tmp_path / "run"), **options)
    one_line(e, needle)
    assert not (tmp_path / "run").exists()


def test_config_from_an_older_run_gets_the_new_defaults(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "photos", "epochs": 3}))
    assert TrainConfig.from_file(path).strict is False
@pytest.mark.parametrize("options, option", [
    ({"epochs": -1}, "--epochs"), ({"epochs": 0, "fine_tune_epochs": 0}, "--epochs"), ({"lr": 0}, "--lr"),
    ({"image_size": 16}, "--image-size"), ({"val_split": 1.5}, "--val-split"), ({"freeze": "some"}, "--freeze"),
    ({"batch_size": 0}, "--batch-size"), ({"preprocess": "imagenet"}, "--preprocess"),
])
def test_validated_names_the_bad_option(options, option):
    with pytest.raises(GraftError, match=option):
        TrainConfig(data="does-not-matter", **options).validated()



def test_validated_fills_the_derived_defaults(tmp_path):
    config = TrainConfig(data=str(tmp_path), base="mobilenet_v2_0.35", lr=0.02)
    assert config.validated() is config
    assert config.fine_tune_lr == pytest.approx(0.002)  # a tenth of the head's learning rate
    assert TrainConfig(data=str(tmp_path), base="resnet50", fine_tune_lr=0.5).validated().fine_tune_lr == 0.5
    chosen = TrainConfig(data=str(tmp_path)).validated().base
    assert chosen in (DEFAULT_BASE, FALLBACK_BASE)


@pytest.mark.parametrize("change, needle", [
    ({"data": "missing"}, "data folder"),
    ({"base": "resnet5o"}, "did you mean resnet50"),
    ({"base": "missing.keras"}, "does not exist"),
    ({"weights": "missing.h5"}, "--weights"),
    ({"base": "xception", "image_size": 64}, "--image-size 64 is too small for base 'xception'"),
])
def test_validated_checks_paths_and_names_without_loading(tmp_path, monkeypatch, change, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    with pytest.raises(GraftError) as e:
        TrainConfig.from_options(**{"data": "photos", "base": "resnet50", **change}).validated()
    one_line(e, needle)


def test_validated_refuses_an_out_folder_holding_a_run(tmp_path):
    finished, unfinished, a_file = tmp_path / "finished", tmp_path / "unfinished", tmp_path / "file"
    finished.mkdir()
    (finished / MODEL_FILE).write_bytes(b"")
    unfinished.mkdir()
    (unfinished / UNFINISHED_FILE).write_text("")
    a_file.write_text("")
    for out, needle in [(finished, "already holds a trained model"), (unfinished, "--resume"), (a_file, "a file")]:
        with pytest.raises(GraftError) as e:
            TrainConfig(data=str(tmp_path), base="resnet50", out=str(out)).validated()
        one_line(e, out, needle)
    assert TrainConfig(data=str(tmp_path), base="resnet50", out=str(tmp_path / "new")).validated()
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_from_options_names_the_nearest_option():
    with pytest.raises(GraftError) as e:
        TrainConfig.from_options(data="photos", fine_tune_epoch=2)
    one_line(e, "unknown option 'fine_tune_epoch'", "did you mean 'fine_tune_epochs'")
    config = TrainConfig.from_options(data="photos", hidden=[64], freeze="none")
    assert (config.hidden, config.freeze, config.epochs) == ([64], "none", 10)


def test_config_json_round_trip(tmp_path):
    config = TrainConfig(data=str(tmp_path), base="resnet50", image_size=None, hidden=[128, 32], lr=0.003,
                         freeze="from:conv5_block1_out", train_bn=True, aug_views=2, strict=True).validated()
    path = tmp_path / "config.json"
    path.write_text(config.to_json())
    again = TrainConfig.from_file(path)
    assert again == config
    assert json.loads(path.read_text())["image_size"] is None  # as given: the base's own size is not filled in
    assert TrainConfig().hidden is not TrainConfig().hidden  # a list default is not shared between configs


@pytest.mark.parametrize("text, needle", [
    ("{not json", "cannot read run configuration"),
    ('{"data": "photos", "learning_rate": 1}', "unknown option 'learning_rate'"),
    ('["a list"]', "cannot read run configuration"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, text, needle):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(GraftError) as e:
        TrainConfig.from_file(path)
    one_line(e, path, needle)


def test_checking_options_imports_no_tensorflow(tmp_path):
    """A mistyped option fails in a moment: the checks never import TensorFlow or Keras."""
    code = ("import sys\nfrom graftkit.config import TrainConfig\nfrom graftkit.errors import GraftError\n"
            f"TrainConfig(data={str(tmp_path)!r}, base='mobilenet_v2_0.35', freeze='last:2').validated()\n"
            "try:\n    TrainConfig(data='x', lr=-1).validated()\nexcept GraftError as e:\n    print(e)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["--lr -1 is out of range: use a positive learning rate such as 0.001, or auto", "[]"]
