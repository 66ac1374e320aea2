"""End to end on tiny data: a personal model grafted, trained in two stages, written to a run folder."""

import json

import keras
import numpy as np
import pytest

import graftkit.api as api
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.runfiles import load_trained
from tests.helpers import tiny_cnn


@pytest.fixture()
def personal(tmp_path):
    return tiny_cnn(tmp_path / "personal.keras")


def test_two_stage_run_writes_a_complete_run_folder(tiny_images, personal, tmp_path):
    run = api.train(tiny_images, base=str(personal), epochs=4, fine_tune_epochs=2, lr=0.05,
                    batch_size=8, freeze="last:2", out=str(tmp_path / "run"))
    folder = tmp_path / "run"
    for name in ["model.keras", "classes.json", "config.json", "history.json", "metrics.json",
                 "curves.png", "confusion.png"]:
        assert (folder / name).is_file(), name
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.6  # colour classes: far above chance (1/3)
    assert set(metrics["stages"]) == {"head", "fine_tune"}
    assert json.loads((folder / "classes.json").read_text()) == ["blue", "green", "red"]
    config = TrainConfig.from_file(folder / "config.json")
    assert config.image_size == 24 and config.freeze == "last:2"
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


@pytest.mark.parametrize("options, option", [
    ({"epochs": -1}, "--epochs"), ({"epochs": 0, "fine_tune_epochs": 0}, "--epochs"), ({"lr": 0}, "--lr"),
    ({"image_size": 16}, "--image-size"), ({"val_split": 1.5}, "--val-split"), ({"freeze": "some"}, "--freeze"),
    ({"batch_size": 0}, "--batch-size"), ({"preprocessing": "imagenet"}, "--preprocess"),
])
def test_bad_options_fail_before_any_work(options, option):
    with pytest.raises(GraftError, match=option):
        TrainConfig(data="does-not-matter", **options).validated()


def test_package_train_stays_the_function_after_a_run(tiny_images, personal, tmp_path):
    import graftkit

    api.train(tiny_images, base=str(personal), epochs=1, fine_tune_epochs=1, out=str(tmp_path / "r"))
    assert graftkit.train is api.train


def test_same_seed_same_run(tiny_images, personal, tmp_path):
    runs = [api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=1, lr=0.05, batch_size=8,
                      out=str(tmp_path / f"r{i}")) for i in range(2)]
    np.testing.assert_allclose(runs[0].stages[0].history["loss"], runs[1].stages[0].history["loss"], rtol=1e-5)
