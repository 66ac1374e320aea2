"""model.cut: a model cut at a layer, inside a nested model too, sharing its layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.model.cut import cut_at
from tests.helpers import small_base as _base


# ---------------------------------------------------------------- cut_at / describe
def test_cut_at_shares_layers_and_defines_input():
    model = keras.Sequential([keras.Input((16, 16, 3)), *_base().layers,
                              keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(2)])
    cut = cut_at(model, "r2")
    assert cut.input.shape == (None, 16, 16, 3) and cut.output.shape == (None, 16, 16, 4)
    assert cut.get_layer("c2") is model.get_layer("c2")
    with pytest.raises(GraftError) as caught:
        cut_at(model, "relu2")
    message = str(caught.value)
    assert "--cut" in message and "'relu2'" in message and "r2" in message and "graft inspect" in message


def test_cut_inside_nested_model_matches_the_layers():
    inner = _base()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    outer = keras.Model(inputs, keras.layers.Flatten()(inner(x)))
    cut = cut_at(outer, "r1")
    assert cut.output.shape == (None, 16, 16, 4)
    images = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    expected = images / 255
    for name in ("c1", "b1", "r1"):
        expected = inner.get_layer(name)(expected)
    np.testing.assert_allclose(cut.predict(images, verbose=0), np.array(expected), atol=1e-5)


def test_find_cut_skips_dropout_and_notes_a_softmax_cut():
    from graftkit.model.cut import find_cut, probability_note

    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.MaxPooling2D(name="pool"), keras.layers.Dropout(0.25, name="drop"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax", name="top")])
    assert find_cut(model) == "pool"
    note = probability_note(model, cut_at(model, "top"), "top")
    assert "the cut 'top'" in note and "3 features" in note and "probabilities" in note and "--cut" in note
    assert probability_note(model, cut_at(model, "pool"), "pool") == ""
    logits = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3, name="z")])
    assert probability_note(logits, cut_at(logits, "z"), "z") == ""  # not probabilities: no note
