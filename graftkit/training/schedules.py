"""Learning-rate schedules and the optimizers that follow them.

Fine-tuning a transformer is the one place graftkit leaves plain Adam: BERT-style encoders are
trained with AdamW (decoupled weight decay), a linear warm-up that keeps the first updates from
tearing the pre-trained weights, and a decay to zero (Devlin et al. 2019; Mosbach et al. 2021).
Image fine-tuning takes the same warm-up and cosine with ``--schedule cosine``.

``--lr-decay D`` gives each layer group its own learning rate (:mod:`graftkit.model.groups`):
:class:`GroupedAdam` and :class:`GroupedAdamW` scale each variable's step, not its gradient (Adam's
step does not depend on the gradient's scale, so scaling gradients would change nothing). The same
optimizers open the groups one at a time for ``--unfreeze-every E`` (gradual unfreezing).
"""

from __future__ import annotations

import keras

WARMUP_SHARE = 0.1
WEIGHT_DECAY = 0.01
SCHEDULES = ("constant", "cosine")


def warmup_cosine(learning_rate: float, steps: int, *, warmup_share: float = WARMUP_SHARE):
    """A rate that rises linearly from 0 to ``learning_rate`` over the first ``warmup_share`` of ``steps``
    (at least one step), then follows a cosine to 0 at ``steps``.

    Example:
        >>> schedule = warmup_cosine(1e-3, 20)
        >>> [round(float(schedule(s)), 6) for s in (0, 1, 2, 11, 20)]
        [0.0, 0.0005, 0.001, 0.0005, 0.0]
    """
    warmup = max(1, int(round(steps * warmup_share)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, decay_steps=max(1, steps - warmup), alpha=0.0,
        warmup_target=learning_rate, warmup_steps=warmup)


class _GroupRates:
    """An optimizer whose learning rate for each variable is the optimizer's times ``factor(variable)``, and,
    for gradual unfreezing, zero until the variable's layer group opens.

    The factor scales the step itself (and AdamW's decoupled weight decay, as PyTorch's parameter groups
    do). With ``steps_per_group``, a variable at ``depth(variable)`` (the head 0, the topmost trained group
    1...) moves only from step ``(depth - 1) * steps_per_group`` on: the top group and the head from the first
    step, the next group down ``steps_per_group`` steps later; until then its step and weight decay are times
    0, so it stays bit for bit. The gate follows the optimizer's own step count, so a resumed run (whose
    checkpoint puts the count back) opens what it had opened. Factors and depths are read once, when the optimizer
    is built on its variables; they are not part of its config (an optimizer made from its config steps
    every variable at the full rate).
    """

    def __init__(self, *args, factor=None, depth=None, steps_per_group=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._factor, self._depth, self._steps_per_group = factor, depth, steps_per_group
        self._rate_factors, self._depths = [], []

    def build(self, var_list):
        if self.built:
            return
        self._rate_factors = [1.0 if self._factor is None else float(self._factor(v)) for v in var_list]
        self._depths = [0 if self._depth is None else int(self._depth(v)) for v in var_list]
        super().build(var_list)

    def rate_factor(self, variable) -> float:
        """The factor of one of the variables the optimizer is built on."""
        return self._rate_factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        factor = self._rate_factors[index]
        if factor != 1.0:
            learning_rate = keras.ops.multiply(learning_rate, factor)
        if self._steps_per_group and self._depths[index] > 1:
            opened = keras.ops.floor_divide(self.iterations, self._steps_per_group) + 1  # groups open at this step
            gate = keras.ops.cast(keras.ops.less_equal(self._depths[index], opened), learning_rate.dtype)
            learning_rate = keras.ops.multiply(learning_rate, gate)
        if self.weight_decay is not None and self._use_weight_decay(variable):
            rate = keras.ops.cast(learning_rate, variable.dtype)
            decay = keras.ops.cast(self.weight_decay, variable.dtype)
            self.assign_sub(variable, keras.ops.multiply(variable, keras.ops.multiply(decay, rate)))
        super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        """Nothing: :meth:`update_step` decays each variable at its own rate."""


@keras.saving.register_keras_serializable(package="graftkit")
class GroupedAdam(_GroupRates, keras.optimizers.Adam):
    """Adam with a learning-rate factor per variable (``factor``: a function of a model variable).

    Example:
        >>> import numpy as np
        >>> w, v = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(2, "float32"))
        >>> opt = GroupedAdam(0.1, factor=lambda var: 0.5 if var is v else 1.0)
        >>> _ = opt.apply_gradients([(np.ones(2, "float32"), w), (np.ones(2, "float32"), v)])
        >>> round(float(w.numpy()[0]), 4), round(float(v.numpy()[0]), 4)  # Adam's first step: rate * sign(g)
        (-0.1, -0.05)
    """


@keras.saving.register_keras_serializable(package="graftkit")
class GroupedAdamW(_GroupRates, keras.optimizers.AdamW):
    """AdamW with a learning-rate factor per variable, its weight decay scaled by the same factor."""


def fine_tune_optimizer(learning_rate: float, *, steps: int | None = None, schedule: str = "constant",
                        weight_decay: float | None = None, factor=None, depth=None, steps_per_group=None,
                        warmup_share: float = WARMUP_SHARE):
    """The optimizer of a fine-tuning stage.

    Args:
        learning_rate: the top rate: the head's, and every variable's without ``factor``.
        steps: training steps of the whole stage (epochs times batches per epoch); needed for ``cosine``.
        schedule: ``constant``, or ``cosine``: :func:`warmup_cosine` over ``steps``.
        weight_decay: None for Adam; else AdamW with this decoupled weight decay, LayerNorm scales and
            biases not decayed (as in BERT).
        factor: a function of a model variable giving its learning-rate factor (``--lr-decay``: see
            :func:`graftkit.model.groups.variable_depths`); None: one rate for all (plain Adam / AdamW).
        depth, steps_per_group: gradual unfreezing (``--unfreeze-every``): ``depth`` a function of a model
            variable giving its group's depth from the top (the head 0), ``steps_per_group`` the steps after
            which the next group down opens (see :class:`_GroupRates`); None: every group from the start.
        warmup_share: the share of ``steps`` the warm-up takes.

    Returns:
        A Keras optimizer; with ``cosine`` its schedule is also its ``learning_rate_schedule``.

    Example:
        >>> opt = fine_tune_optimizer(1e-4, steps=100, schedule="cosine", factor=lambda v: 0.5)
        >>> type(opt).__name__, round(float(opt.learning_rate_schedule(10)), 7)
        ('GroupedAdam', 0.0001)
        >>> type(fine_tune_optimizer(1e-4)).__name__
        'Adam'
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    rate = warmup_cosine(learning_rate, steps, warmup_share=warmup_share) if schedule == "cosine" else learning_rate
    options = {key: value for key, value in (("factor", factor), ("depth", depth), ("steps_per_group", steps_per_group))
               if value is not None}
    grouped = bool(options)
    if weight_decay is None:
        optimizer = (GroupedAdam if grouped else keras.optimizers.Adam)(learning_rate=rate, **options)
    else:
        optimizer = (GroupedAdamW if grouped else keras.optimizers.AdamW)(
            learning_rate=rate, weight_decay=weight_decay, **options)
        optimizer.exclude_from_weight_decay(var_names=["layer_norm", "layernorm", "bias", "gamma", "beta"])
    if schedule == "cosine":
        optimizer.learning_rate_schedule = rate
    return optimizer


def warmup_cosine_adamw(learning_rate: float, steps: int, *, warmup_share: float = WARMUP_SHARE,
                        weight_decay: float = WEIGHT_DECAY, **groups):
    """AdamW whose learning rate rises linearly to ``learning_rate`` over the first ``warmup_share`` of
    ``steps``, then follows a cosine to 0 at ``steps`` (a text encoder's fine-tuning).

    LayerNorm scales and biases are not decayed (as in BERT). ``groups`` (``factor``, ``depth``,
    ``steps_per_group``) are as for :func:`fine_tune_optimizer`.

    Example:
        >>> opt = warmup_cosine_adamw(1e-4, 100)
        >>> [round(float(opt.learning_rate_schedule(s)), 7) for s in (0, 10, 100)]
        [0.0, 0.0001, 0.0]
    """
    return fine_tune_optimizer(learning_rate, steps=steps, schedule="cosine", weight_decay=weight_decay,
                               warmup_share=warmup_share, **groups)
