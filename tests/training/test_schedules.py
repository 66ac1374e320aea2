"""Fine-tuning a transformer: AdamW's learning rate warms up then decays, and norms and biases are not decayed."""

import keras
import numpy as np

from graftkit.training.schedules import warmup_cosine_adamw


def test_warm_up_then_cosine_to_zero():
    schedule = warmup_cosine_adamw(2e-4, 200).learning_rate_schedule
    rates = np.array([float(schedule(step)) for step in range(0, 201, 10)])
    assert rates[0] == 0 and abs(rates[2] - 2e-4) < 1e-9  # warm-up over the first 10% (20 steps)
    assert np.all(np.diff(rates[:3]) > 0) and np.all(np.diff(rates[2:]) <= 0) and rates[-1] < 1e-9


def test_weight_decay_spares_layer_norms_and_biases():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, bias_initializer="ones", name="dense"),
                              keras.layers.LayerNormalization(name="block_0_ffn_norm")], name="sequential")
    optimizer = warmup_cosine_adamw(0.1, 10, warmup_share=0.0)
    before = [w.numpy().copy() for w in model.trainable_weights]
    for _ in range(3):  # step 0 is the warm-up's first, at rate 0
        optimizer.apply_gradients([(keras.ops.zeros_like(w), w) for w in model.trainable_weights])
    after = [w.numpy() for w in model.trainable_weights]
    names = [w.path for w in model.trainable_weights]
    decayed = {name: not np.allclose(a, b) for name, a, b in zip(names, before, after)}
    assert decayed == {"sequential/dense/kernel": True, "sequential/dense/bias": False,
                       "sequential/block_0_ffn_norm/gamma": False, "sequential/block_0_ffn_norm/beta": False}, decayed
