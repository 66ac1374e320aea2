"""The head: pooling only on spatial features, the classifier sized from the classes, the assembled model."""

import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.model.head import build_head


def test_spatial_features_are_pooled():
    head = build_head((5, 5, 8), 3, hidden=[16])
    types = [type(layer).__name__ for layer in head.layers]
    assert types[1] == "GlobalAveragePooling2D"
    assert "Dense" in types and head.output.shape == (None, 3)


def test_vector_features_are_not_pooled_again():
    head = build_head((32,), 4)
    assert not any("Pooling" in type(layer).__name__ for layer in head.layers)
    out = head(np.zeros((2, 32), "float32")).numpy()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_avgmax_pooling_puts_the_average_then_the_maximum_side_by_side():
    from graftkit.training.head_stage import after_pooling

    head = build_head((3, 3, 4), 2, pooling="avgmax", dropout=0)
    maps = np.random.default_rng(0).random((5, 3, 3, 4)).astype("float32")
    pool, rest = after_pooling(head)
    pooled = np.concatenate([maps.mean(axis=(1, 2)), maps.max(axis=(1, 2))], axis=1)
    assert pool == "avgmax" and rest.input.shape == (None, 8)
    np.testing.assert_allclose(rest(pooled).numpy(), head(maps).numpy(), rtol=1e-5, atol=1e-6)
    sequences = build_head((6, 4), 2, pooling="avgmax")  # a text encoder's token states pool the same way
    assert after_pooling(sequences)[1].input.shape == (None, 8)


def test_max_pooling_and_errors():
    assert type(build_head((4, 4, 2), 2, pooling="max").layers[1]).__name__ == "GlobalMaxPooling2D"
    with pytest.raises(GraftError, match="at least 2 classes"):
        build_head((4,), 1)
    with pytest.raises(GraftError, match="--pooling 'mean': use avg, max, avgmax"):
        build_head((4, 4, 2), 2, pooling="mean")
