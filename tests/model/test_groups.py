"""model.groups: a base's layer groups (spec blocks, resolution stages, equal chunks) and each variable's depth."""

from __future__ import annotations

import keras
import pytest

from graftkit.model.freeze import apply_freeze, parse_freeze
from graftkit.model.groups import CHUNKS, group_rule, layer_groups, variable_depths


def _names(groups):
    return [[layer.name for layer in group] for group in groups]


def personal_resnet():
    """A personal-like functional model: a strided stem, a residual block, a strided residual block with a
    projection shortcut, then a concatenation of two branches at the last resolution."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    h = keras.layers.Conv2D(8, 3, padding="same", name="a_conv1")(x)
    h = keras.layers.Conv2D(8, 3, padding="same", name="a_conv2")(h)
    x = keras.layers.Add(name="a_add")([x, h])
    h = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="b_conv1")(x)
    h = keras.layers.Conv2D(16, 3, padding="same", name="b_conv2")(h)
    shortcut = keras.layers.Conv2D(16, 1, strides=2, name="b_shortcut")(x)
    x = keras.layers.Add(name="b_add")([shortcut, h])
    left = keras.layers.Conv2D(8, 1, name="c_left")(x)
    right = keras.layers.Conv2D(8, 3, padding="same", name="c_right")(x)
    x = keras.layers.Concatenate(name="c_concat")([left, right])
    return keras.Model(inputs, keras.layers.ReLU(name="out_relu")(x), name="base")


def test_a_personal_model_is_grouped_by_resolution_stages():
    base = personal_resnet()
    assert _names(layer_groups(base)) == [
        ["scale", "stem_conv", "stem_bn", "stem_relu", "a_conv1", "a_conv2", "a_add"],  # 16 x 16
        ["b_conv1", "b_shortcut", "b_conv2", "b_add", "c_left", "c_right", "c_concat", "out_relu"],  # 8 x 8
    ]
    assert group_rule(base).startswith("resolution stages")


def test_depths_count_groups_from_the_head_and_do_not_change_with_freeze():
    base = personal_resnet()
    head = keras.Sequential([keras.Input((8, 8, 16)), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(3, name="classifier")], name="head")
    depths = {v.path: d for v, d in variable_depths(base, head)}
    assert depths["head/classifier/kernel"] == 0
    assert depths["b_conv1/kernel"] == depths["c_right/bias"] == 1
    assert depths["stem_conv/kernel"] == depths["stem_bn/gamma"] == depths["a_conv2/kernel"] == 2
    apply_freeze(base, parse_freeze("last:4"))  # c_left, c_right, c_concat, out_relu: only trainable variables count
    frozen = {v.path: d for v, d in variable_depths(base, head)}
    assert set(frozen) == {"head/classifier/kernel", "head/classifier/bias", "c_left/kernel", "c_left/bias",
                           "c_right/kernel", "c_right/bias"}
    assert all(frozen[name] == depths[name] for name in frozen)


def test_spec_groups_read_as_blocks_freeze_reads_them():
    x = inputs = keras.Input((16, 16, 3))
    for name in ("stem_conv", "block1_conv", "block1_bn", "block2_conv", "top_conv"):
        x = keras.layers.Conv2D(4, 3, padding="same", name=name)(x)  # one size: the stage rule would not split
    base = keras.Model(inputs, x, name="base")
    base._graft_layer_groups = (r"^stem_", r"^block1_", r"^block2_")
    assert _names(layer_groups(base)) == [["stem_conv"], ["block1_conv", "block1_bn"], ["block2_conv", "top_conv"]]
    assert group_rule(base) == "the blocks it names"
    for count in (1, 2):  # --freeze blocks:N trains exactly the top N groups
        apply_freeze(base, parse_freeze(f"blocks:{count}"))
        trained = [layer.name for layer in base.layers[1:] if layer.trainable]
        assert trained == [layer.name for group in layer_groups(base)[-count:] for layer in group]


def test_a_model_of_one_size_falls_back_to_equal_chunks_with_each_norm_beside_its_layer():
    layers = [keras.Input((8, 8, 3))]
    for i in range(8):
        layers += [keras.layers.Conv2D(4, 3, padding="same", name=f"conv{i}"),
                   keras.layers.BatchNormalization(name=f"bn{i}"), keras.layers.ReLU(name=f"relu{i}")]
    base = keras.Sequential(layers, name="base")
    groups = _names(layer_groups(base))
    assert len(groups) == CHUNKS == 4
    assert groups[0] == ["conv0", "bn0", "relu0", "conv1", "bn1", "relu1"]
    assert all(len(group) == 6 for group in groups)
    assert group_rule(base).startswith("equal chunks")
    few = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d0"), keras.layers.Dense(2, name="d1")])
    assert _names(layer_groups(few)) == [["d0"], ["d1"]]  # fewer layers with weights than chunks
    assert group_rule(few).startswith("equal chunks")  # vectors throughout: one size


def test_a_vector_output_is_its_own_stage_and_weightless_groups_merge():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)  # a new stage with no weights: merged into the next
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)  # a vector: smaller than any map
    x = keras.layers.Dense(5, name="fc")(x)
    base = keras.Model(inputs, x)
    assert _names(layer_groups(base)) == [["conv"], ["pool", "conv2"], ["gap", "fc"]]


def test_a_layer_reused_by_the_boundary_caches_top_keeps_its_group():
    from graftkit.features.boundary import find_boundary

    base = personal_resnet()
    before = _names(layer_groups(base))
    apply_freeze(base, parse_freeze("last:4"))
    boundary, why = find_boundary(base)
    assert boundary is not None, why
    boundary.fine_tune_model(keras.Sequential([keras.Input((8, 8, 16)), keras.layers.Flatten(),
                                               keras.layers.Dense(2)]))
    assert _names(layer_groups(base)) == before


def test_nested_models_are_grouped_through():
    inner = personal_resnet()
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, inner(inputs), name="outer")
    assert _names(layer_groups(outer)) == _names(layer_groups(inner))


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_a_text_encoders_groups_are_its_embeddings_then_each_block(tmp_path, model_type):
    from graftkit.bases.text import load_text_base
    from tests.helpers import write_tiny_encoder

    base = load_text_base(str(write_tiny_encoder(tmp_path / model_type, model_type)))
    groups = layer_groups(base.model)
    assert len(groups) == base.blocks + 1 == 3
    assert all(layer.name.startswith("embeddings") for layer in groups[0])
    assert all(layer.name.startswith("block_0_") for layer in groups[1])
    depths = {v.path: d for v, d in variable_depths(base.model)}
    assert depths["embeddings_token/embeddings"] == 3
    assert {d for name, d in depths.items() if name.startswith("block_1_")} == {1}
    if model_type == "gpt2":  # the final norm, after the last block, is in the last block's group
        assert depths["final_norm/gamma"] == 1


def test_the_stage_rule_finds_a_named_resnets_own_blocks():
    """Without its spec's regexes, ResNet50 is grouped as its spec groups it: stem, conv2_ ... conv5_."""
    from graftkit.bases.loader import load_base

    model = load_base("resnet50", image_size=64, weights=None).model
    spec = [[layer.name for layer in group if layer.weights] for group in layer_groups(model)]
    model._graft_layer_groups = ()
    assert group_rule(model).startswith("resolution stages")
    assert [[layer.name for layer in group if layer.weights] for group in layer_groups(model)] == spec
    assert len(spec) == 5 and spec[1][0] == "conv2_block1_1_conv"
