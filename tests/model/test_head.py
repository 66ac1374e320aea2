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


def test_max_pooling_and_errors():
    assert type(build_head((4, 4, 2), 2, pooling="max").layers[1]).__name__ == "GlobalMaxPooling2D"
    with pytest.raises(GraftError, match="at least 2 classes"):
        build_head((4,), 1)
