"""load_base: named bases and personal files loaded and cut, and files that are not usable models."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from graftkit.bases.loader import load_base
from graftkit.errors import GraftError
from tests.badfiles import one_line, write_bytes
from tests.helpers import tiny_cnn


def test_files_that_are_not_usable_models(tmp_path, keras2_files):
    cases = {}
    png = tmp_path / "photo.keras"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    cases[png] = "not a Keras .keras file"
    good = tmp_path / "good.keras"
    tiny_cnn(good, size=32)
    cut_keras = write_bytes(tmp_path / "cut.keras", good.read_bytes()[: good.stat().st_size // 2])
    cases[cut_keras] = "cut.keras"
    cut_h5 = write_bytes(tmp_path / "cut.h5", (keras2_files / "cnn.h5").read_bytes()[:3000])
    cases[cut_h5] = "cut.h5"
    zipped = tmp_path / "notes.keras"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("notes.txt", "hello")
    cases[zipped] = "not a Keras model"
    for path, needle in cases.items():
        with pytest.raises(GraftError) as e:
            load_base(path)
        one_line(e, path, needle)


@pytest.mark.parametrize("kind, needle", [
    ("no learned layers", "no learned layer before its classifier"),
    ("flatten only", "no learned layer before its classifier"),
    ("four channels", "expects 4-channel images"),
    ("not square", "takes 16x24 images"),
    ("channels first", "channels-first"),
    ("not images", "not images"),
    ("two inputs", "2 inputs"),
])
def test_models_graftkit_cannot_use(tmp_path, kind, needle):
    L = keras.layers
    if kind == "no learned layers":
        model = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.GlobalAveragePooling2D(),
                                  L.Dense(2)])
    elif kind == "flatten only":
        model = keras.Sequential([keras.Input((16, 16, 3)), L.Flatten(), L.Dense(2)])
    elif kind == "four channels":
        model = keras.Sequential([keras.Input((16, 16, 4)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    elif kind == "not square":
        model = keras.Sequential([keras.Input((16, 24, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    elif kind == "channels first":
        model = keras.Sequential([keras.Input((3, 16, 16)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    elif kind == "not images":
        model = keras.Sequential([keras.Input((20,)), L.Dense(8), L.Dense(2)])
    else:
        a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
        x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(L.Add()([a, b])))
        model = keras.Model([a, b], L.Dense(2)(x))
    path = tmp_path / f"{kind.replace(' ', '_')}.keras"
    model.save(path)
    with pytest.raises(GraftError) as e:
        load_base(path)
    one_line(e, needle)


def test_named_base_with_random_weights_at_a_small_size():
    base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
    assert (base.source, base.preprocessing, base.image_size, base.weights) == ("mobilenet_v2_0.35", "tf", 96,
                                                                                  "random")
    assert base.model.name == "base" and base.cut == base.model.layers[-1].name and not base.inference_only
    assert base.feature_shape == (3, 3, 1280)  # 96 / 32, MobileNetV2's last 1x1 convolution
    features = base.model.predict(np.zeros((2, 96, 96, 3), "float32"), verbose=0)
    assert features.shape == (2, *base.feature_shape)


def test_named_base_cut_at_a_layer_ends_there():
    whole = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
    cut = load_base("mobilenet_v2_0.35", image_size=96, weights=None, cut="block_6_expand_relu")
    assert cut.cut == "block_6_expand_relu" and cut.model.layers[-1].name == "block_6_expand_relu"
    assert cut.feature_shape == tuple(whole.model.get_layer("block_6_expand_relu").output.shape[1:]) == (12, 12, 96)
    with pytest.raises(GraftError) as e:
        load_base("mobilenet_v2_0.35", image_size=96, weights=None, cut="block_99")
    one_line(e, "--cut", "'block_99'")


def test_named_base_too_small_for_its_size(tmp_path):
    with pytest.raises(GraftError) as e:
        load_base("xception", image_size=64, weights=None)
    one_line(e, "--image-size 64", "xception", "71")


def test_personal_file_is_cut_where_its_features_end(tmp_path):
    path = tiny_cnn(tmp_path / "personal.keras", size=24, classes=4)
    base = load_base(path)
    assert (base.source, base.weights, base.image_size, base.cut) == (str(path), str(path), 24, "c2")
    assert base.preprocessing == "none"  # the model rescales its own input
    assert base.feature_shape == (24, 24, 8)
    original = keras.saving.load_model(path)
    up_to_c2 = keras.Model(original.inputs, original.get_layer("c2").output)
    x = np.random.default_rng(0).uniform(0, 255, (2, 24, 24, 3)).astype("float32")
    np.testing.assert_allclose(base.model.predict(x, verbose=0), up_to_c2.predict(x, verbose=0), atol=1e-5)
    assert load_base(path, preprocess="tf").preprocessing == "tf"
    assert load_base(path, cut="r1").feature_shape == (24, 24, 8) and load_base(path, cut="r1").cut == "r1"
    with pytest.raises(GraftError) as e:
        load_base(path, image_size=32)
    one_line(e, path, "takes 24x24 images")
