"""Keras 2 model configs translated for Keras 3 (keras2_config_for_keras3)."""

from __future__ import annotations

from graftkit.bases.keras2 import keras2_config_for_keras3


def test_keras2_config_translation():
    nested = {"class_name": "Functional", "name": "base/net", "config": {
        "name": "base/net", "layers": [{"class_name": "InputLayer", "name": "in",
                                        "config": {"name": "in"}}],
        "input_layers": [["in", 0, 0]], "output_layers": [["in", 0, 0]]}}
    config = {"class_name": "Functional", "config": {
        "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [["head", 0, 0]],
        "layers": [
            {"class_name": "InputLayer", "name": "x", "config": {"name": "x"}, "inbound_nodes": []},
            nested | {"inbound_nodes": [[["x", 0, 0, {}]]]},
            {"class_name": "DepthwiseConv2D", "name": "dw",
             "config": {"name": "dw", "groups": 1, "kernel_size": [3, 3]},
             "inbound_nodes": [[["base/net", 1, 0, {}]]]},
            {"class_name": "BatchNormalization", "name": "head", "config": {"name": "head", "axis": [3]},
             "inbound_nodes": [[["dw", 0, 0, {}]]]}]}}
    fixed = keras2_config_for_keras3(config)
    layers = fixed["config"]["layers"]
    assert layers[1]["name"] == layers[1]["config"]["name"] == "base_net"
    assert layers[2]["config"] == {"name": "dw", "kernel_size": [3, 3]}
    assert layers[2]["inbound_nodes"] == [[["base_net", 0, 0, {}]]]
    assert layers[3]["config"]["axis"] == 3
    assert fixed["config"]["output_layers"] == ["head", 0, 0]
    assert config["config"]["layers"][2]["config"]["groups"] == 1  # the input is not changed


def test_keras22_sequential_gets_its_input_layer():
    conv = {"class_name": "Conv2D", "config": {"name": "conv2d_1", "filters": 4, "kernel_size": [3, 3],
                                               "batch_input_shape": [None, 30, 30, 3], "dtype": "float32"}}
    config = {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": [
        conv, {"class_name": "Flatten", "config": {"name": "flatten_1"}}]}}
    layers = keras2_config_for_keras3(config)["config"]["layers"]
    assert layers[0] == {"class_name": "InputLayer", "config": {"batch_shape": [None, 30, 30, 3], "dtype": "float32",
                                                                "sparse": False, "name": "conv2d_1_input"}}
    assert "batch_input_shape" not in layers[1]["config"] and layers[1]["config"]["name"] == "conv2d_1"
    # A Sequential that has its InputLayer (tf-keras 2.4+) is left as it is.
    fixed = keras2_config_for_keras3({"class_name": "Sequential", "config": {"name": "s", "layers": layers}})
    assert fixed["config"]["layers"] == layers
