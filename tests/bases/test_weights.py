"""Offline-first weight resolution, and loading real ImageNet files (no-top and with-top)."""

import numpy as np
import pytest

from graftkit.bases import weights
from graftkit.bases.loader import load_base
from graftkit.bases.registry import get_spec
from graftkit.errors import GraftError

NO_TOP = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setattr(weights, "_download", lambda spec, size: "no network in this test")


def test_search_order_weights_dir_before_keras_cache(tmp_path, monkeypatch, offline):
    spec = get_spec("mobilenet_v2_0.35")
    mine, keras_home = tmp_path / "mine", tmp_path / "keras"
    (keras_home / "models").mkdir(parents=True)
    mine.mkdir()
    (keras_home / "models" / NO_TOP).write_bytes(b"x")
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    assert weights.resolve(spec, 224)[0] == keras_home / "models" / NO_TOP
    (mine / NO_TOP).write_bytes(b"x")
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(mine))
    assert weights.resolve(spec, 224)[0] == mine / NO_TOP
    explicit = tmp_path / "explicit_no_top.h5"
    explicit.write_bytes(b"x")
    path, wf = weights.resolve(spec, 224, explicit)
    assert path == explicit and not wf.with_top


def test_size_specific_file_preferred():
    names = [wf.name for wf in weights.ordered_files(get_spec("mobilenet_0.25"), 128)]
    assert names[0] == "mobilenet_2_5_128_tf_no_top.h5"
    assert names[1] == "mobilenet_2_5_224_tf_no_top.h5"
    assert all(not wf.with_top for wf in weights.ordered_files(get_spec("mobilenet_0.25"), 128)[:4])


def test_missing_weights_is_one_line_naming_base_places_and_fix(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(GraftError) as caught:
        load_base("resnet50", image_size=32)
    message = str(caught.value)
    assert "\n" not in message
    assert "resnet50" in message and str(tmp_path) in message and "--weights" in message


def test_explicit_missing_file_names_option(tmp_path):
    with pytest.raises(GraftError, match="--weights"):
        load_base("mobilenet_v2_0.35", image_size=96, weights=tmp_path / "nope.h5")


def test_wrong_weights_file_is_clear_error(imagenet_weights):
    with pytest.raises(GraftError, match="does not fit base 'mobilenet_v2_0.5'"):
        load_base("mobilenet_v2_0.5", image_size=96, weights=imagenet_weights / NO_TOP)


@pytest.mark.integration
def test_with_top_file_is_cut_to_the_same_features(imagenet_weights, tmp_path, monkeypatch, offline):
    import keras

    only_top = tmp_path / "only_top"
    only_top.mkdir()
    (only_top / "mobilenet_2_5_128_tf.h5").symlink_to(imagenet_weights / "mobilenet_2_5_128_tf.h5")
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(only_top))
    base = load_base("mobilenet_0.25", image_size=128)
    assert base.weights.endswith("mobilenet_2_5_128_tf.h5")
    full = keras.applications.MobileNet(alpha=0.25, input_shape=(128, 128, 3), include_top=True,
                                        weights=str(imagenet_weights / "mobilenet_2_5_128_tf.h5"))
    reference = keras.Model(full.input, full.get_layer(base.cut).output)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype("float32")
    np.testing.assert_allclose(base.model(x).numpy(), reference(x).numpy(), atol=1e-5)
    assert base.cut == "conv_pw_13_relu"


def test_ready_offline_reflects_files(tmp_path, monkeypatch):
    spec = get_spec("mobilenet_v2_0.35")
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path))
    assert not weights.is_ready_offline(spec)
    (tmp_path / NO_TOP).write_bytes(b"x")
    assert weights.is_ready_offline(spec)
