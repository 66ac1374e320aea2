"""model.graph: a model's layers described, nested ones included."""

from __future__ import annotations

import keras

from graftkit.model.graph import describe_layers
from tests.helpers import LAYER_NAMES as NAMES
from tests.helpers import small_base as _base


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
