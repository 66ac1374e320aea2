"""The compiled forward pass: traced once per model, never keeping a model alive longer than its users."""

import gc
import weakref

import keras
import numpy as np

from graftkit.model.infer import compiled_forward


def dense_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_forward_keeps_working_when_only_it_holds_the_model():
    """A caller that keeps the forward pass and drops the model (graftkit.runtimes does) must still run it."""
    forward = compiled_forward(dense_model())
    gc.collect()
    assert tuple(forward(np.zeros((4, 3), np.float32)).shape) == (4, 2)


def test_one_trace_per_model_and_the_model_is_freed_after_use():
    model = dense_model()
    first, second = compiled_forward(model), compiled_forward(model)
    assert first.traced is second.traced
    np.testing.assert_allclose(first(np.ones((2, 3), np.float32)), model(np.ones((2, 3), np.float32)), rtol=1e-6)
    alive = weakref.ref(model)
    del model, first, second
    gc.collect()
    assert alive() is None
