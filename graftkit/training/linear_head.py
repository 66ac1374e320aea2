"""A linear head fitted to convergence on cached features: logistic (or ridge) regression by L-BFGS.

A head that is one Dense layer (after dropout, which is the identity at inference) on frozen
features is a linear model, and a linear model on a few thousand cached feature vectors has
an exact optimum that L-BFGS reaches in a second or two. Adam at a fixed learning rate for
ten epochs often stops short of it on a small set with many classes (the best epoch is the
last, still improving), so the head ends below a logistic regression on the very same features.
Here scikit-learn fits that regression on the centred features, divided by one number (their
root-mean-square spread) so that the grid of L2 strengths :data:`C_GRID` means the same for
every base; the strength with the lowest validation loss is kept, and its coefficients, with the
centring and scaling folded in, become the Dense layer's kernel and bias: the model is unchanged
in shape, and the saved file needs nothing but Keras. The features are not standardized
dimension by dimension: dimensions a base barely varies would be blown up to the scale of its
strong ones (on flowers128 the best standardized fit scored 0.726, the best centred one 0.734).
Features from several stages of a base (``--head-input stages``) are the exception: their stages' scales differ
by far more than their dimensions do, and one number for all let the largest stage drown the others
(hymenoptera 0.908 against 0.941 standardized); there each dimension is divided by its own spread, floored at
:data:`FLOOR` times the overall one so that a dimension the base barely varies is not blown up.
"""

from __future__ import annotations

import time

import numpy as np

from graftkit import log

FLOOR = 0.1  # --head-input stages: the least spread a dimension is divided by, as a share of the overall one
C_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
"""Inverse L2 strengths tried, from strong (few images, many features) to light; each fit starts from the last."""


def linear_estimator(kind: str, c: float):
    """The scikit-learn model of a linear head for a task: logistic regression (one per label for
    ``multilabel``) or, for ``regression``, ridge regression with penalty ``1 / c``.

    Example:
        >>> type(linear_estimator("single", 0.01)).__name__, linear_estimator("regression", 0.5).alpha
        ('LogisticRegression', 2.0)
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier

    if kind == "single":
        return LogisticRegression(C=c, max_iter=3000)
    if kind == "multilabel":
        return OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000))
    return Ridge(alpha=1 / c)


def linear_layer(model):
    """The Dense layer of ``model`` when the model is linear in its input (only dropout before the Dense,
    at most the regression's rescaling after it), else None.

    Example:
        >>> from graftkit.model.head import build_head
        >>> linear_layer(build_head((8,), 3)).name, linear_layer(build_head((8,), 3, hidden=[4]))
        ('predictions', None)
    """
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout))]
    dense = [layer for layer in layers if isinstance(layer, keras.layers.Dense)]
    rest = [layer for layer in layers if not isinstance(layer, (keras.layers.Dense, keras.layers.Rescaling))]
    if len(dense) != 1 or rest or len(model.inputs) != 1 or len(model.inputs[0].shape) != 2:
        return None
    return dense[0]


def fit_coefficients(features: np.ndarray, labels: np.ndarray, *, task, units: int, c: float,
                     sample_weight: np.ndarray | None = None, start: dict | None = None,
                     per_dimension: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The kernel ``(features, units)`` and bias of a Dense layer equal to the linear model fitted on
    ``features`` centred and divided by their root-mean-square spread (``per_dimension``: each dimension by
    its own, at least :data:`FLOOR` times that): ``softmax(x @ kernel + bias)`` gives its class probabilities.

    ``start``, a dict kept between calls on the same data, lets each fit begin where the last
    ended (scikit-learn's ``warm_start``): a path over increasing ``c`` then costs little more
    than its last fit.

    Classes missing from the labels get a bias far below the others; a multi-label column that is
    constant gets its frequency as a bias alone; a regression is fitted to the target standardized
    by ``task`` (the head's last layer undoes it).

    Example:
        >>> from graftkit.model.task import Task
        >>> x = np.concatenate([np.zeros((20, 2)), np.ones((20, 2))]) + np.random.default_rng(0).normal(0, .1, (40, 2))
        >>> kernel, bias = fit_coefficients(x, np.repeat([0, 1], 20), task=Task(), units=2, c=1.0)
        >>> kernel.shape, bool(((x @ kernel + bias).argmax(1) == np.repeat([0, 1], 20)).all())
        ((2, 2), True)
    """
    mean = features.mean(axis=0)
    spread = float(np.sqrt(np.mean((features - mean) ** 2))) or 1.0
    if per_dimension:
        spread = np.maximum(features.std(axis=0), FLOOR * spread)
    scaled = (features - mean) / spread
    start = {} if start is None else start

    def fitted_for(key, y):
        estimator = start.get(key) or linear_estimator("single" if task.kind != "regression" else "regression", c)
        if task.kind != "regression":
            estimator.set_params(C=c, warm_start=True)
        else:
            estimator.set_params(alpha=1 / c)
        start[key] = estimator
        return estimator.fit(scaled, y, sample_weight=sample_weight)

    weights = np.zeros((units, features.shape[1]))
    bias = np.zeros(units)
    if task.kind == "single":
        fitted = fitted_for("single", labels)
        classes = fitted.classes_.astype(int)
        if len(classes) == 2:  # one logit w.x + b: softmax over (-z/2, z/2) is its sigmoid
            weights[classes[1]], weights[classes[0]] = fitted.coef_[0] / 2, -fitted.coef_[0] / 2
            bias[classes[1]], bias[classes[0]] = fitted.intercept_[0] / 2, -fitted.intercept_[0] / 2
        else:
            weights[classes], bias[classes] = fitted.coef_, fitted.intercept_
        missing = np.setdiff1d(np.arange(units), classes)
        bias[missing] = bias[classes].min() - 20.0
    elif task.kind == "multilabel":
        for column in range(units):
            y = np.asarray(labels)[:, column]
            if y.min() == y.max():
                rate = np.clip(y.mean(), 1e-3, 1 - 1e-3)
                bias[column] = np.log(rate / (1 - rate))
                continue
            fitted = fitted_for(column, y.astype(int))
            weights[column], bias[column] = fitted.coef_[0], fitted.intercept_[0]
    else:
        target = (np.asarray(labels, np.float64).reshape(-1) - task.mean) / task.scale
        fitted = fitted_for("regression", target)
        weights[0], bias[0] = fitted.coef_, fitted.intercept_
    return (weights / spread).T, bias - weights @ (mean / spread)


def fit_linear_head(model, train_views, train_labels, val_features, val_labels, *, task=None,
                    class_weight: dict | None = None, grid=C_GRID, per_dimension: bool = False):
    """Fit the Dense layer of a linear ``model`` (see :func:`linear_layer`) by L-BFGS on cached features,
    its L2 strength chosen on the validation loss.

    The strengths are tried from the strongest, each fit starting from the last, and the path stops
    once the validation loss has risen twice in a row (the light penalties' fits are the slowest).

    Args:
        model: the head (or its part after global pooling) on pooled feature vectors.
        train_views: training features, or a list of augmented views of them (all are fitted on).
        train_labels, val_features, val_labels: the rest of the data.
        task: the :class:`graftkit.model.task.Task`; single-label by default.
        class_weight: class index -> weight, as for the epochs' loss (single-label only).
        grid: the inverse L2 strengths tried.
        per_dimension: scale each feature dimension by its own spread (see :func:`fit_coefficients`).

    Returns:
        A :class:`graftkit.training.stages.StageResult` named ``head`` with one entry of history
        (the fit kept); ``model`` holds its weights.

    Example:
        >>> from graftkit.model.head import build_head
        >>> rng = np.random.default_rng(0)
        >>> y = np.arange(60) % 3
        >>> x = (np.eye(3)[y] * 3 + rng.normal(size=(60, 3))).astype("float32")
        >>> result = fit_linear_head(build_head((3,), 3), x, y, x, y)
        >>> result.best_epoch, result.history["val_accuracy"][0] > 0.8
        (1, True)
    """
    from graftkit.data.pipeline import weight_table
    from graftkit.features.extract import as_views
    from graftkit.model.infer import predict_features
    from graftkit.model.task import Task
    from graftkit.training.stages import StageResult

    task = task or Task()
    start = time.perf_counter()
    views = as_views(train_views)
    x = np.concatenate([np.asarray(view, np.float64) for view in views])
    y = np.concatenate([np.asarray(train_labels)] * len(views))
    train_x = np.asarray(views[0], np.float32)
    sample_weight = None
    if class_weight and task.kind == "single":
        sample_weight = weight_table(class_weight, int(model.output.shape[-1]))[y.astype(int)]
    dense = linear_layer(model)
    if dense is None:
        from graftkit.errors import GraftError

        raise GraftError("--head-solver lbfgs fits a head that is one Dense layer on feature vectors, and this head "
                         "has more: drop --hidden, or use --head-solver adam")
    units = int(dense.kernel.shape[-1])
    log.info(f"head stage: {_solver_name(task)} by L-BFGS on the cached features, to convergence; the L2 "
             f"strength chosen on the validation loss among C = {', '.join(f'{c:g}' for c in grid)}")

    def scores(features, labels) -> tuple[float, float]:
        outputs = predict_features(model, features)
        labels = np.asarray(labels, task.label_dtype)
        return (float(np.mean(task.per_example_loss(labels, outputs))),
                float(np.mean(task.per_example_metric(labels, outputs))))

    tried, warm = [], {}
    for c in sorted(grid):
        kernel, bias = fit_coefficients(x, y, task=task, units=units, c=c, sample_weight=sample_weight, start=warm,
                                        per_dimension=per_dimension)
        dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        tried.append((scores(val_features, val_labels), c, kernel, bias))
        if len(tried) >= 3 and tried[-1][0][0] > tried[-2][0][0] > tried[-3][0][0]:
            break  # the validation loss rose twice: lighter penalties overfit more, and take longest to fit
    (val_loss, val_metric), c, kernel, bias = min(tried, key=lambda entry: entry[0][0])
    dense.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    loss, metric = scores(train_x, train_labels)
    log.info("head stage: C " + ", ".join(f"{tc:g}: val loss {tv[0]:.4f}, val {task.metric} {tv[1]:.4f}"
                                         for tv, tc, *_ in tried) + f"; kept C = {c:g}")
    history = {"loss": [loss], task.metric: [metric], "val_loss": [val_loss], f"val_{task.metric}": [val_metric]}
    return StageResult("head", history, best_epoch=1, best_val_loss=val_loss, seconds=time.perf_counter() - start,
                       trainable_params=int(kernel.size + bias.size))


def _solver_name(task) -> str:
    return {"single": "logistic regression", "multilabel": "one logistic regression per label",
            "regression": "ridge regression"}[task.kind]
