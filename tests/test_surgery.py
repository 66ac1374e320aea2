"""Cutting, freezing and describing models (small Keras 3 models built in the test)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.surgery import (FreezeSpec, apply_freeze, cut_at, describe_layers, flatten_layers,
                              parse_freeze)

NAMES = ["c1", "b1", "r1", "c2", "b2", "r2", "c3"]


def _base(end_with_conv=True):
    layers = [keras.layers.Conv2D(4, 3, padding="same", name="c1"),
              keras.layers.BatchNormalization(name="b1"), keras.layers.ReLU(name="r1"),
              keras.layers.Conv2D(4, 3, padding="same", name="c2"),
              keras.layers.BatchNormalization(name="b2"), keras.layers.ReLU(name="r2")]
    if end_with_conv:
        layers.append(keras.layers.Conv2D(4, 3, padding="same", name="c3"))
    return keras.Sequential([keras.Input((16, 16, 3)), *layers], name="base")


def _trainable(model):
    return {layer.name: layer.trainable for layer in flatten_layers(model)}


# ---------------------------------------------------------------- parse_freeze
@pytest.mark.parametrize("text, spec", [
    ("all", FreezeSpec("all")),
    (" NONE ", FreezeSpec("none")),
    ("last:20", FreezeSpec("last", count=20)),
    ("last:30%", FreezeSpec("last", percent=30.0)),
    ("last:12.5%", FreezeSpec("last", percent=12.5)),
    ("from:block_13_expand", FreezeSpec("from", layer="block_13_expand")),
])
def test_parse_freeze(text, spec):
    assert parse_freeze(text) == spec


@pytest.mark.parametrize("text", ["", "some", "last:", "last:0", "last:-3", "last:150%", "last:0%",
                                  "last:abc", "from:", "all:3", "first:3"])
def test_parse_freeze_rejects(text):
    with pytest.raises(GraftError) as caught:
        parse_freeze(text)
    message = str(caught.value)
    assert "--freeze" in message and "last:N" in message and "from:LAYER" in message
    assert "\n" not in message


# ---------------------------------------------------------------- apply_freeze
def test_last_n_trains_the_last_layers_but_not_batchnorm():
    base = _base()
    assert apply_freeze(base, parse_freeze("last:3")) == 2  # c3 kernel + bias
    assert _trainable(base) == dict(zip(NAMES, [False, False, False, False, False, True, True]))
    assert apply_freeze(base, parse_freeze("last:3"), train_bn=True) == 4  # + b2 gamma, beta
    assert _trainable(base)["b2"]


def test_last_percent_reaches_a_layer_with_weights():
    base = _base(end_with_conv=False)  # 6 layers; 10% -> 1 layer (r2): no weights
    assert apply_freeze(base, parse_freeze("last:10%")) == 2
    assert _trainable(base) == dict(zip(NAMES, [False, False, False, True, False, True]))
    assert apply_freeze(_base(), parse_freeze("last:30%")) == 2  # ceil(2.1) = 3 layers


def test_from_layer():
    base = _base()
    assert apply_freeze(base, parse_freeze("from:c2")) == 4
    assert _trainable(base) == dict(zip(NAMES, [False, False, False, True, False, True, True]))
    with pytest.raises(GraftError, match=r"from:c22.*'c22'.*c2"):
        apply_freeze(base, parse_freeze("from:c22"))


def test_all_and_none():
    base = _base()
    assert apply_freeze(base, parse_freeze("all")) == 0
    assert not base.trainable
    assert apply_freeze(base, parse_freeze("none")) == 6
    assert apply_freeze(base, parse_freeze("none"), train_bn=True) == 10


def test_nested_container_does_not_mask_its_layers():
    inner = _base()
    inner.trainable = False  # as a Keras 2 personal model may have saved it
    inputs = keras.Input((16, 16, 3))
    outer = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="top")(inner(inputs)))
    assert [layer.name for layer in flatten_layers(outer)] == NAMES + ["top"]
    assert apply_freeze(outer, parse_freeze("from:c3")) == 4  # c3 + top
    assert apply_freeze(outer, parse_freeze("from:base")) == 8  # a container: from its first layer


def _fit_a_little(base):
    inputs = keras.Input((16, 16, 3))
    x = base(inputs)  # called normally: no training=False
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 16, 16, 3)).astype("float32")  # far from the BN statistics
    model.fit(x, rng.integers(0, 2, 32), batch_size=8, epochs=1, verbose=0)


def _values(layer):
    return [w.numpy() for w in layer.weights]


@pytest.mark.parametrize("train_bn", [False, True])
def test_frozen_weights_and_batchnorm_statistics_survive_training(train_bn):
    base = _base()
    apply_freeze(base, parse_freeze("from:c2"), train_bn=train_bn)
    before = {name: _values(base.get_layer(name)) for name in NAMES}
    _fit_a_little(base)
    after = {name: _values(base.get_layer(name)) for name in NAMES}

    def same(name):
        return all(np.array_equal(a, b) for a, b in zip(before[name], after[name]))

    assert same("c1") and same("b1")  # frozen part, BN statistics included
    assert not same("c2") and not same("c3")
    assert same("b2") != train_bn  # BN in the trained part: only moves when asked to


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


def test_describe_layers():
    inputs = keras.Input((16, 16, 3))
    outer = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(_base()(inputs)))
    rows = describe_layers(outer, cut="base")
    assert [r["name"] for r in rows] == ["base", *NAMES, "gap"]
    assert [r["depth"] for r in rows] == [0] + [1] * 7 + [0]
    assert [r["name"] for r in rows if r["is_cut"]] == ["base"]
    assert rows[0]["type"] == "Sequential" and rows[0]["output_shape"] == (None, 16, 16, 4)
    assert rows[1] == {"name": "c1", "type": "Conv2D", "output_shape": (None, 16, 16, 4),
                       "params": 112, "trainable": True, "is_cut": False, "depth": 1}
    assert rows[0]["params"] == sum(r["params"] for r in rows[1:8])
