"""model.stages: the head takes every coarse stage's pooled features (--head-input stages), as plain Keras."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from graftkit import log
from graftkit.bases.loader import Base
from graftkit.errors import GraftError
from graftkit.features import boundary as bd
from graftkit.model.freeze import apply_freeze, parse_freeze
from graftkit.model.stages import check_stages, head_input_base, stage_taps, with_stage_features
from tests.helpers import write_images


def pyramid(size=64):
    """Five stride-2 convolutions (maps 32, 16, 8, 4, 2 px a side) and a 1x1 convolution at the top (seeded)."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((size, size, 3))
    for i, filters in enumerate((4, 6, 8, 10, 12)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"down{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    x = keras.layers.Conv2D(16, 1, name="top")(x)
    return keras.Model(inputs, x, name="base")


def base_of(model):
    return Base(model=model, source="pyramid.keras", preprocessing="raw", image_size=int(model.inputs[0].shape[1]),
                cut=model.layers[-1].name, weights="pyramid.keras")


def test_taps_are_the_coarse_stage_ends_and_the_output():
    # Stages start at each stride; 1/8 of the side (8 px of 64) or coarser: the stages of down2, down3, down4.
    assert [layer.name for layer in stage_taps(pyramid())] == ["relu2", "relu3", "top"]


def test_stage_features_are_each_tap_pooled_side_by_side():
    model = pyramid()
    images = np.random.default_rng(0).random((3, 64, 64, 3)).astype("float32")
    ends = keras.Model(model.inputs, [model.get_layer(name).output for name in ("relu2", "relu3", "top")])
    expected = np.concatenate([np.asarray(t).mean(axis=(1, 2)) for t in ends(images)], axis=1)
    tapped = with_stage_features(base_of(model), pooling="avg")
    assert tapped.feature_shape == (8 + 10 + 16,)
    np.testing.assert_allclose(np.asarray(tapped.model(images)), expected, rtol=1e-5, atol=1e-6)
    maxed = with_stage_features(base_of(model), pooling="max").model(images)
    np.testing.assert_allclose(np.asarray(maxed)[:, -16:], np.asarray(ends(images)[2]).max(axis=(1, 2)), rtol=1e-5)
    both = with_stage_features(base_of(model))  # the default: avgmax, as --pooling auto takes for stages
    assert both.feature_shape == (2 * (8 + 10 + 16),)  # each tap's average, then its maximum
    top = np.asarray(both.model(images))[:, -32:]
    np.testing.assert_allclose(top[:, :16], expected[:, -16:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(top[:, 16:], np.asarray(maxed)[:, -16:], rtol=1e-5, atol=1e-6)


def test_a_base_that_cannot_be_tapped_is_refused_with_the_fix():
    flat = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.Conv2D(4, 3)])
    assert "no coarse stages" in check_stages(flat, "flat.keras")
    nested = keras.Sequential([keras.Input((64, 64, 3)), pyramid()])
    assert "nests models" in check_stages(nested, "nested.keras")
    refusal = r"--head-input stages: 'pyramid.keras' has no coarse stages.*--head-input top"
    with pytest.raises(GraftError, match=refusal):
        head_input_base(base_of(flat), "stages")
    base = base_of(flat)
    assert head_input_base(base, "top") is base
    assert head_input_base(base, "auto") is base  # the default falls back to the output alone


def test_the_default_taps_a_base_that_can_be_tapped_and_an_older_run_resumes_with_its_top(tmp_path):
    from graftkit.config import TrainConfig

    assert TrainConfig(data="d").head_input == "auto"
    assert head_input_base(base_of(pyramid()), "auto").feature_shape == (68,)
    older = TrainConfig(data="d").to_json().replace('"head_input": "auto",', "")
    (tmp_path / "config.json").write_text(older)
    assert "head_input" not in older and TrainConfig.from_file(tmp_path / "config.json").head_input == "top"


def test_the_linear_head_standardizes_stage_features_per_dimension():
    from graftkit.model.task import Task
    from graftkit.training.linear_head import fit_coefficients

    # Dimension 0 carries the classes at a small scale (above the floor); five more are noise ten times larger
    # (a loud stage): one spread for all shrinks the informative dimension under the noise.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    x = np.concatenate([(y + rng.normal(0, 0.3, 80))[:, None], rng.normal(0, 5, (80, 5))], axis=1)
    scores = {}
    for per_dimension in (False, True):
        kernel, bias = fit_coefficients(x, y, task=Task(), units=2, c=0.01, per_dimension=per_dimension)
        scores[per_dimension] = float(((x @ kernel + bias).argmax(1) == y).mean())
    assert scores[True] > 0.95 and scores[False] < 0.7


def test_freeze_counts_the_bases_own_layers_with_or_without_stages():
    plain, tapped = pyramid(), with_stage_features(base_of(pyramid())).model
    for model in (plain, tapped):
        apply_freeze(model, parse_freeze("last:3"))
    flags = [(layer.name, layer.trainable) for layer in plain.layers[1:]]
    assert [(layer.name, layer.trainable) for layer in tapped.layers if layer.name in dict(flags)] == flags
    assert [layer.name for layer in tapped.layers[1:] if layer.trainable and not layer.weights] == ["relu4"]


def test_the_boundary_caches_the_low_stages_pooled_not_their_maps():
    tapped = with_stage_features(base_of(pyramid())).model
    apply_freeze(tapped, parse_freeze("last:3"))  # trains down4 and top; relu3 and below stay frozen
    boundary, why = bd.find_boundary(tapped)
    assert why == ""
    assert sorted(boundary.shapes) == sorted([(4, 4, 10), (16,), (20,)])  # relu3's map; relu2's, relu3's pooled
    images = np.random.default_rng(1).random((2, 64, 64, 3)).astype("float32")
    cached = boundary.bottom(images)
    np.testing.assert_allclose(np.asarray(boundary.top(cached)), np.asarray(tapped(images)), rtol=1e-5, atol=1e-6)


def test_a_stages_run_saves_a_model_that_plain_keras_loads_and_predicts(tmp_path):
    from graftkit.api import train

    images = write_images(tmp_path / "images", {"red": 10, "green": 10, "blue": 10}, size=64)
    pyramid().save(tmp_path / "pyramid.keras")
    log.set_quiet(True)
    run = train(images, base=str(tmp_path / "pyramid.keras"), epochs=5, fine_tune_epochs=1, batch_size=8,
                freeze="last:3", head_input="stages", out=str(tmp_path / "run"))
    assert run.metrics["accuracy"] > 0.9  # colour classes: the pooled features separate them
    script = (
        "import sys, keras, numpy as np\n"
        "sys.modules['graftkit'] = None\n"
        f"m = keras.saving.load_model({str(run.run_dir / 'model.keras')!r})\n"
        "assert m.get_layer('base').get_layer('stage_features').output.shape[-1] == 68\n"
        "p = m.predict(np.zeros((2, 64, 64, 3), 'float32'), verbose=0)\n"
        "print(p.shape, round(float(p.sum(axis=1).mean()), 3))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "(2, 3) 1.0"
