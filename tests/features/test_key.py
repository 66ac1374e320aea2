"""features.key: the cache key changes with everything that changes the features."""


import keras
import pytest

from graftkit.bases.loader import load_base
from graftkit.features.key import feature_key
from tests.helpers import tiny_cnn

pytestmark = pytest.mark.usefixtures("empty_feature_cache")


def test_the_key_changes_with_everything_that_changes_the_features(personal, tmp_path):
    base = load_base(personal)
    key = feature_key(base)[0]
    assert feature_key(load_base(personal))[0] == key  # stable across loads
    base.model.trainable = False
    assert feature_key(base)[0] == key  # freezing changes no feature
    keys = {
        "cut": feature_key(load_base(personal, cut="r1"))[0],
        "preprocessing": feature_key(load_base(personal, preprocess="tf"))[0],
        "view 0": feature_key(base, view=0)[0],
        "view 1": feature_key(base, view=1)[0],
        "view seed": feature_key(base, view=0, seed=1)[0],
        "dtype": feature_key(base, dtype="float16")[0],
    }
    model = keras.saving.load_model(personal)
    bigger = tiny_cnn(tmp_path / "bigger.keras", size=32)  # same weights' shapes, another input size
    resized = keras.saving.load_model(bigger)
    resized.set_weights(model.get_weights())
    resized.save(bigger)
    keys["input size"] = feature_key(load_base(bigger))[0]
    model.get_layer("c1").kernel.assign(model.get_layer("c1").kernel + 0.01)
    model.save(tmp_path / "retrained.keras")
    keys["weights"] = feature_key(load_base(tmp_path / "retrained.keras"))[0]
    assert key not in keys.values()
    assert len(set(keys.values())) == len(keys), keys
