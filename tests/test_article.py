"""The article's three examples (shared/seed), through the Python API and the `graft` command, on real data
(hymenoptera: ants vs bees) and real ImageNet weights. Chance is 0.54 on its validation set."""

import json

import numpy as np
import pytest

import graftkit.api as api
from graftkit.bases.loader import load_base
from graftkit.cli import main
from tests.keras2_models import write_keras2

pytestmark = pytest.mark.integration
SIZE = 128
QUICK = dict(image_size=SIZE, batch_size=32, seed=0)


@pytest.fixture()
def ants_bees(shared, imagenet_weights):
    return shared / "data" / "hymenoptera"


def layer_weights(model, name):
    return [w.copy() for w in model.get_layer(name).get_weights()]


def test_example1_feature_extraction(ants_bees, tmp_path):
    run = api.train(ants_bees, base="mobilenet_v2_0.35", freeze="all", hidden=[1024], epochs=4,
                    out=str(tmp_path / "ex1"), **QUICK)
    assert run.metrics["accuracy"] >= 0.75
    assert [s.name for s in run.stages] == ["head"]
    fresh = load_base("mobilenet_v2_0.35", image_size=SIZE).model
    trained = run.model.get_layer("base")
    for name in ["Conv1", "bn_Conv1", "block_16_project", "Conv_1_bn"]:
        for before, after in zip(layer_weights(fresh, name), layer_weights(trained, name)):
            np.testing.assert_array_equal(before, after)


def test_example2_fine_tune_last_20_keeps_batchnorm(ants_bees, tmp_path):
    run = api.train(ants_bees, base="mobilenet_v2_0.5", freeze="last:20", hidden=[512], epochs=3,
                    fine_tune_epochs=2, patience=2, out=str(tmp_path / "ex2"), **QUICK)
    assert run.metrics["accuracy"] >= 0.75
    fresh = load_base("mobilenet_v2_0.5", image_size=SIZE).model
    trained = run.model.get_layer("base")
    last20 = {layer.name for layer in trained.layers[-20:]}
    bn_names = [layer.name for layer in trained.layers if type(layer).__name__ == "BatchNormalization"]
    for name in bn_names:  # BatchNorm kept its ImageNet statistics and parameters, also inside the last 20
        for before, after in zip(layer_weights(fresh, name), layer_weights(trained, name)):
            np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(layer_weights(fresh, "block_10_project")[0],
                                  layer_weights(trained, "block_10_project")[0])
    assert "block_16_project" in last20
    moved = not np.array_equal(layer_weights(fresh, "block_16_project")[0],
                               layer_weights(trained, "block_16_project")[0])
    assert moved == run.stages[-1].kept  # unfrozen weights moved, unless fine-tuning was rolled back as worse


def test_example3_personal_h5_ending_in_dense(ants_bees, imagenet_weights, tmp_path):
    personal = write_keras2("mobilenet", tmp_path / "personal_model.h5", size=SIZE, classes=5,
                            weights=imagenet_weights / "mobilenet_2_5_224_tf_no_top.h5")
    run = api.train(ants_bees, base=str(personal), freeze="last:10", hidden=[512], epochs=3,
                    fine_tune_epochs=1, out=str(tmp_path / "ex3"), **QUICK)
    base = run.model.get_layer("base")
    # Cut before the personal model's own pooling and Dense (a head with --hidden takes the top alone).
    assert len(base.output.shape) == 4
    assert run.metrics["accuracy"] >= 0.75


@pytest.mark.parametrize("example, args", [
    ("1", ["--base", "mobilenet_0.25", "--freeze", "all", "--hidden", "1024", "--epochs", "3"]),
    ("2", ["--base", "mobilenet_v2_0.35", "--freeze", "last:20", "--hidden", "512", "--epochs", "2",
           "--fine-tune-epochs", "1"]),
    ("3", ["--freeze", "last:10", "--hidden", "512", "--epochs", "2", "--fine-tune-epochs", "1"]),
])
def test_examples_as_one_command(ants_bees, imagenet_weights, tmp_path, capsys, example, args):
    if example == "3":
        personal = write_keras2("mobilenet", tmp_path / "personal_model.h5", size=SIZE, classes=5,
                                weights=imagenet_weights / "mobilenet_2_5_224_tf_no_top.h5")
        args = ["--base", str(personal)] + args
    out = tmp_path / f"cli{example}"
    code = main(["train", str(ants_bees), *args, "--image-size", str(SIZE), "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.7
    assert json.loads(capsys.readouterr().out)["accuracy"] == metrics["accuracy"]
