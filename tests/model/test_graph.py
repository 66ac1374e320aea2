"""model.graph: a model's layers described, nested ones included."""

from __future__ import annotations

import keras

from graftkit.model.graph import describe_layers

NAMES = ["c1", "b1", "r1", "c2", "b2", "r2", "c3"]


def _base(end_with_conv=True):
    layers = [keras.layers.Conv2D(4, 3, padding="same", name="c1"),
              keras.layers.BatchNormalization(name="b1"), keras.layers.ReLU(name="r1"),
              keras.layers.Conv2D(4, 3, padding="same", name="c2"),
              keras.layers.BatchNormalization(name="b2"), keras.layers.ReLU(name="r2")]
    if end_with_conv:
        layers.append(keras.layers.Conv2D(4, 3, padding="same", name="c3"))
    return keras.Sequential([keras.Input((16, 16, 3)), *layers], name="base")


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
