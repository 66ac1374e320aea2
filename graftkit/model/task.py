"""What the head predicts: one class (softmax), any number of labels (sigmoids), or a number (linear).

The task decides the head's output layer, the loss, the metric shown while training and the dtype of
the labels; everything else (stages, cache, checkpoint, report, export) is one piece of code for all.
A regression target is standardized for training (the loss sees ``(y - mean) / scale``), and the
saved model's last layer undoes it, so the model outputs the target in its own units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

TASKS = ("single", "multilabel", "regression")


@dataclass(frozen=True)
class Task:
    """A head's task and, for regression, the target's standardization; ``label_smoothing`` softens the
    classification targets of the loss (``y (1 - a) + a / K`` over K classes, ``y (1 - a) + a / 2`` per label).

    Example:
        >>> Task("multilabel").metric, Task("regression", mean=2.0, scale=0.5).metric
        ('accuracy', 'mae')
    """

    kind: str = "single"
    mean: float = 0.0
    scale: float = 1.0
    label_smoothing: float = 0.0

    @classmethod
    def for_labels(cls, kind: str, labels, label_smoothing: float = 0.0) -> "Task":
        """The task for training labels: a regression's mean and scale come from them.

        Example:
            >>> Task.for_labels("regression", [1.0, 3.0])
            Task(kind='regression', mean=2.0, scale=1.0, label_smoothing=0.0)
        """
        import numpy as np

        if kind != "regression":
            return cls(kind, label_smoothing=label_smoothing)
        values = np.asarray(labels, np.float64)
        scale = float(values.std())
        return cls(kind, float(values.mean()), scale if scale > 0 else 1.0)

    @property
    def metric(self) -> str:
        """The metric logged beside the loss: ``accuracy`` (per label for multi-label) or ``mae``."""
        return "mae" if self.kind == "regression" else "accuracy"

    @property
    def label_dtype(self) -> str:
        return "int32" if self.kind == "single" else "float32"

    def to_dict(self) -> dict:
        return asdict(self)

    def output(self, x, units: int, *, seed: int = 0):
        """The head's last layers on ``x``: Dense + softmax / sigmoid, or Dense + the inverse standardization."""
        import keras

        init = keras.initializers.GlorotUniform(seed=seed)
        if self.kind == "regression":
            x = keras.layers.Dense(1, name="standardized", kernel_initializer=init)(x)
            return keras.layers.Rescaling(self.scale, offset=self.mean, name="predictions")(x)
        activation = "softmax" if self.kind == "single" else "sigmoid"
        return keras.layers.Dense(units, activation=activation, name="predictions", kernel_initializer=init)(x)

    def per_example_loss(self, y, p):
        """The loss of each example (a vector): cross-entropy (label-smoothed when asked), or Huber on the
        standardized target.

        Example:
            >>> import numpy as np
            >>> p = np.array([[0.7, 0.2, 0.1]], "float32")
            >>> round(float(Task().per_example_loss(np.array([0]), p)[0]), 4)  # -log 0.7
            0.3567
            >>> round(float(Task(label_smoothing=0.3).per_example_loss(np.array([0]), p)[0]), 4)  # targets .8 .1 .1
            0.6765
        """
        import keras
        from keras import ops

        if self.kind == "single" and self.label_smoothing:
            target = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), ops.shape(p)[-1], dtype=p.dtype)
            return keras.losses.categorical_crossentropy(target, p, label_smoothing=self.label_smoothing)
        if self.kind == "single":
            return keras.losses.sparse_categorical_crossentropy(y, p)
        if self.kind == "multilabel":
            return keras.losses.binary_crossentropy(y, p, label_smoothing=self.label_smoothing)
        y = (ops.reshape(ops.cast(y, p.dtype), (-1,)) - self.mean) / self.scale
        p = (ops.reshape(p, (-1,)) - self.mean) / self.scale
        error = ops.abs(y - p)
        return ops.where(error <= 1.0, 0.5 * error ** 2, error - 0.5)  # Huber, delta 1 standard deviation

    def per_example_metric(self, y, p):
        """Each example's share of the logged metric: a hit (1/0), the share of labels right, or |error|."""
        from keras import ops

        if self.kind == "single":
            return ops.cast(ops.equal(ops.cast(ops.argmax(p, -1), "int32"), ops.cast(y, "int32")), "float32")
        if self.kind == "multilabel":
            return ops.mean(ops.cast(ops.equal(ops.cast(p > 0.5, "float32"), ops.cast(y, "float32")), "float32"),
                            axis=-1)
        return ops.abs(ops.reshape(ops.cast(y, p.dtype), (-1,)) - ops.reshape(p, (-1,)))

    def compile(self, model, learning_rate: float, optimizer=None) -> None:
        """(Re)compile ``model`` with Adam (or ``optimizer``), this task's loss and metric; needed after any change of
        ``trainable``."""
        import keras

        metric = {"single": keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                  "multilabel": keras.metrics.BinaryAccuracy(name="accuracy"),
                  "regression": keras.metrics.MeanAbsoluteError(name="mae")}[self.kind]
        model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate), loss=self.per_example_loss,
                      metrics=[metric])
