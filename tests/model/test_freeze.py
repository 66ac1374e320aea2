"""model.freeze: freeze specs parsed and applied; frozen weights and BatchNorm statistics survive training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.model.freeze import FreezeSpec, apply_freeze, parse_freeze
from graftkit.model.graph import flatten_layers
from tests.helpers import LAYER_NAMES as NAMES
from tests.helpers import small_base as _base


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


def test_blocks_spec_trains_the_last_blocks_of_a_named_base():
    """blocks:N follows the base's layer groups, so the cut falls on a block boundary, never inside one."""
    from graftkit.bases.loader import load_base
    from graftkit.model.graph import flatten_layers

    base = load_base("mobilenet_v2_0.35", image_size=96, weights=None)
    apply_freeze(base.model, parse_freeze("blocks:1"))
    layers = flatten_layers(base.model)
    first = next(i for i, layer in enumerate(layers) if layer.trainable)
    assert layers[first].name == "block_13_expand"  # MobileNetV2's last group starts at block 13
    assert not any(layer.trainable for layer in layers[:first])
    with pytest.raises(GraftError, match="has 4 blocks"):
        apply_freeze(base.model, parse_freeze("blocks:5"))
