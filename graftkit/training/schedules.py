"""Learning-rate schedules and the optimizers that follow them.

Fine-tuning a transformer is the one place graftkit leaves plain Adam: BERT-style encoders are
trained with AdamW (decoupled weight decay), a linear warm-up that keeps the first updates from
tearing the pre-trained weights, and a decay to zero (Devlin et al. 2019; Mosbach et al. 2021).
"""

from __future__ import annotations

WARMUP_SHARE = 0.1
WEIGHT_DECAY = 0.01


def warmup_cosine_adamw(learning_rate: float, steps: int, *, warmup_share: float = WARMUP_SHARE,
                        weight_decay: float = WEIGHT_DECAY):
    """AdamW whose learning rate rises linearly to ``learning_rate`` over the first ``warmup_share`` of
    ``steps``, then follows a cosine to 0 at ``steps``.

    LayerNorm scales and biases are not decayed (as in BERT).

    Example:
        >>> opt = warmup_cosine_adamw(1e-4, 100)
        >>> [round(float(opt.learning_rate_schedule(s)), 7) for s in (0, 10, 100)]
        [0.0, 0.0001, 0.0]
    """
    import keras

    warmup = max(1, int(round(steps * warmup_share)))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, steps - warmup), alpha=0.0,
        warmup_target=learning_rate, warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["layer_norm", "layernorm", "bias", "gamma", "beta"])
    optimizer.learning_rate_schedule = schedule
    return optimizer
