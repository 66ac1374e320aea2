"""Every registered base: a consistent spec, and (one per family) a model that builds, cuts and preprocesses."""

import re

import numpy as np
import pytest

from graftkit.bases.preprocess import MODES, preprocessing_layer
from graftkit.bases.registry import get_spec, list_bases
from graftkit.errors import GraftError

ONE_PER_FAMILY = ["resnet50", "vgg16", "mobilenet_0.25", "mobilenet_v2_0.35", "mobilenet_v3_small",
                  "efficientnet_b0", "efficientnet_lite0"]


@pytest.mark.parametrize("spec", list_bases(), ids=lambda s: s.name)
def test_spec_is_consistent(spec):
    assert spec.name == spec.name.lower() and " " not in spec.name
    assert spec.preprocessing in MODES
    assert spec.default_size >= spec.min_size >= 32
    names = [wf.name for wf in spec.weight_files]
    assert names and len(names) == len(set(names))
    assert any(not wf.with_top for wf in spec.weight_files) or spec.fetch is not None


def test_preprocessing_matches_keras_functions():
    import keras

    assert get_spec("resnet50").preprocessing == "caffe"
    assert get_spec("vgg16").preprocessing == "caffe"
    assert get_spec("mobilenet_v2").preprocessing == "tf"
    assert get_spec("efficientnet_b0").preprocessing == "none"
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for mode, reference in [("caffe", keras.applications.resnet50.preprocess_input),
                            ("tf", keras.applications.mobilenet_v2.preprocess_input),
                            ("torch", keras.applications.densenet.preprocess_input)]:
        np.testing.assert_allclose(preprocessing_layer(mode)(x).numpy(), reference(x.copy()), atol=1e-4)


def test_unknown_base_lists_known_names():
    with pytest.raises(GraftError, match="unknown base 'resnet5o'.*resnet50"):
        get_spec("resnet5o")


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_family_builds_cuts_and_groups(name):
    spec = get_spec(name)
    size = max(32, spec.min_size)
    model = spec.build(include_top=False, input_shape=(size, size, 3))
    assert len(model.output.shape) == 4
    layer_names = [layer.name for layer in model.layers]
    for pattern in spec.layer_groups:
        assert any(re.search(pattern, n) for n in layer_names), f"group {pattern} matches no layer of {name}"
