"""`graft export`: every format and quantization agrees with the Keras model, is checked, and is written atomically."""

import json
from pathlib import Path

import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.results.export import MIN_AGREEMENT, export_model, export_run
from graftkit.results.runtimes import guess_format, load_runner
from tests.helpers import train_tiny_run

CASES = [("keras", "none"), ("savedmodel", "none"), ("onnx", "none"), ("tflite", "none"),
         ("tflite", "float16"), ("tflite", "dynamic"), ("tflite", "int8")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("export"))


@pytest.mark.parametrize("format, quantize", CASES)
def test_each_format_agrees_with_keras(run_dir, format, quantize):
    export = export_run(run_dir, format, quantize=quantize, check_count=12, calibration_count=16)
    assert export.path.exists() and export.bytes > 0
    assert export.path.parent == run_dir / "exports"
    assert export.check.images == 6  # the run's validation images (fewer than 12)
    assert export.check.agreement >= MIN_AGREEMENT[quantize]
    if quantize == "none":
        assert export.check.max_difference < 1e-4
    assert json.loads((export.path.parent / "classes.json").read_text()) == ["blue", "green", "red"]
    # the exported file runs on its own, with any batch size, and takes raw 0..255 pixels
    run = load_runner(export.path)
    assert guess_format(export.path) == format
    out = run(np.full((3, 24, 24, 3), 200.0, np.float32))
    assert out.shape == (3, 3) and np.allclose(out.sum(axis=1), 1, atol=0.02)
    assert not [p for p in export.path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_failed_check_writes_nothing_and_keeps_the_old_file(run_dir, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"previous export")
    with pytest.raises(GraftError, match="export check failed.*nothing written"):
        export_run(run_dir, "tflite", quantize="int8", out=target, max_difference=0.0, calibration_count=8)
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.tflite"]


def test_savedmodel_folder_is_replaced_whole(run_dir, tmp_path):
    target = tmp_path / "served"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    export_run(run_dir, "savedmodel", out=target)
    assert (target / "saved_model.pb").is_file() and not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.json", "served"]


def test_check_fails_loudly_when_the_export_disagrees(run_dir, tmp_path, monkeypatch):
    """An export that runs but answers differently (a broken converter, say) is refused, not shipped."""
    from graftkit.results import runtimes

    def swapped(path, format=None, **options):  # a runtime whose classes come out in the wrong order
        real = load_runner(path, format, **options)
        return lambda batch: real(batch)[:, ::-1]

    monkeypatch.setattr(runtimes, "load_runner", swapped)
    with pytest.raises(GraftError, match=r"export check failed for onnx: top-1 agreement 0\.\d+ on 6 images"):
        export_run(run_dir, "onnx", out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, needle", [
    ({"format": "tflite", "quantize": "int4"}, "int4"),
    ({"format": "coreml"}, "coreml"),
    ({"format": "onnx", "quantize": "int8"}, "tflite only"),
    ({"format": "tflite", "min_agreement": 1.5}, "--min-agreement"),
])
def test_bad_options_are_graft_errors(run_dir, kwargs, needle):
    with pytest.raises(GraftError, match=needle):
        export_run(run_dir, **kwargs)


def test_export_needs_images_when_the_data_is_gone(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "moved"
    shutil.copytree(run_dir, copy)
    split = json.loads((copy / "split.json").read_text())  # the images the run was trained and checked on
    moved = {part: [[str(tmp_path / "gone" / Path(path).name), label] for path, label in split[part]]
             for part in ("train", "val")}
    (copy / "split.json").write_text(json.dumps({**split, **moved}))
    with pytest.raises(GraftError, match=r"the run's image '.*gone.*' is gone: pass --data"):
        export_run(copy, "tflite")
    (copy / "split.json").unlink()
    with pytest.raises(GraftError, match="has no split.json.*pass --data"):
        export_run(copy, "tflite")
    export = export_run(copy, "tflite", data=run_dir.parent / "images" / "red", check_count=4)
    assert export.check.images == 4


def test_export_model_example_without_a_run(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    batch = np.random.default_rng(1).uniform(0, 255, (4, 8, 8, 3)).astype("float32")
    export = export_model(model, tmp_path / "sub" / "m.onnx", "onnx", check_images=[batch])
    assert export.check.agreement == 1.0 and (tmp_path / "sub" / "m.onnx").is_file()


def test_cli_export_prints_sizes_and_agreement(run_dir, capsys):
    from graftkit.cli import main

    code = main(["export", str(run_dir), "--format", "tflite", "--quantize", "float16", "--quiet"])
    out, _ = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert result["format"] == "tflite" and result["quantize"] == "float16"
    assert result["bytes"] > 0 and result["agreement"] >= 0.99 and result["path"].endswith("model-float16.tflite")

    code = main(["export", str(run_dir), "--format", "onnx", "--quantize", "dynamic"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("graft: error:") == 1 and "tflite only" in err and "Traceback" not in err


@pytest.mark.integration
def test_hymenoptera_exports_agree(shared, imagenet_weights, tmp_path):
    """A real MobileNetV2 (ReLU6, depthwise convolutions, BatchNorm) through ONNX and full-integer TFLite."""
    from graftkit import log
    from graftkit.api import train

    log.set_quiet(True)
    try:
        run = train(shared / "data" / "hymenoptera", base="mobilenet_v2_0.35", image_size=128, epochs=10,
                             fine_tune_epochs=0, out=str(tmp_path / "run"))
    finally:
        log.set_quiet(False)
    assert run.metrics["accuracy"] > 0.7 and (run.run_dir / "report.html").is_file()
    for format, quantize in [("onnx", "none"), ("tflite", "int8")]:
        export = export_run(run.run_dir, format, quantize=quantize, check_count=48, calibration_count=48)
        assert export.check.images == 48
        assert export.check.agreement >= MIN_AGREEMENT[quantize], export.check.describe()
