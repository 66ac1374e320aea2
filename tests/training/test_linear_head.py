"""The linear head fitted by L-BFGS: the Dense layer equals scikit-learn's model, C is chosen on validation loss."""

import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.model.head import build_head
from graftkit.model.task import Task
from graftkit.model.infer import predict_features
from graftkit.training.head_stage import choose_solver
from graftkit.training.linear_head import fit_coefficients, fit_linear_head, linear_layer


def _blobs(n=90, classes=3, dims=6, seed=0, spread=1.5):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(0, spread, (classes, dims))
    return (centres[y] + rng.normal(size=(n, dims)) + 5.0).astype("float32"), y  # offset: centring matters


@pytest.mark.parametrize("classes", [2, 4])
def test_dense_layer_gives_sklearns_probabilities(classes):
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(classes=classes)
    kernel, bias = fit_coefficients(x.astype(float), y, task=Task(), units=classes, c=0.1)
    head = build_head((6,), classes)
    linear_layer(head).set_weights([kernel.astype("float32"), bias.astype("float32")])
    scaled = (x - x.mean(0)) / np.sqrt(np.mean((x - x.mean(0)) ** 2))
    reference = LogisticRegression(C=0.1, max_iter=3000).fit(scaled, y).predict_proba(scaled)
    np.testing.assert_allclose(predict_features(head, x), reference, atol=1e-4)


def test_class_missing_from_training_is_never_predicted():
    x, y = _blobs(classes=3)
    kernel, bias = fit_coefficients(x.astype(float), y, task=Task(), units=4, c=1.0)
    assert ((x @ kernel + bias).argmax(1) != 3).all()
    assert bias[3] < bias[:3].min() - 10


def test_multilabel_columns_and_a_constant_one():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    labels = np.stack([(y == 0), (y != 2)], 1).astype("float32")
    kernel, bias = fit_coefficients(x.astype(float), labels, task=Task("multilabel"), units=2, c=0.1)
    logits = x @ kernel + bias
    scaled = (x - x.mean(0)) / np.sqrt(np.mean((x - x.mean(0)) ** 2))
    reference = LogisticRegression(C=0.1, max_iter=3000).fit(scaled, labels[:, 0].astype(int))
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 0])), reference.predict_proba(scaled)[:, 1], atol=1e-4)
    constant = np.zeros(len(y), "float32")
    kernel, bias = fit_coefficients(x.astype(float), np.stack([labels[:, 0], constant], 1), task=Task("multilabel"),
                                    units=2, c=0.1)
    assert np.all(kernel[:, 1] == 0) and bias[1] == pytest.approx(np.log(1e-3 / (1 - 1e-3)))


def test_regression_outputs_the_target_in_its_own_units():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 5)).astype("float32")
    target = 100 + 20 * (x @ np.array([1, -2, 0, 0.5, 0])) + rng.normal(size=80)
    task = Task.for_labels("regression", target)
    head = build_head((5,), 1, task=task)
    result = fit_linear_head(head, x, target, x, target, task=task, grid=(10.0,))
    scaled = (x - x.mean(0)) / np.sqrt(np.mean((x - x.mean(0)) ** 2))
    reference = Ridge(alpha=0.1).fit(scaled, (target - task.mean) / task.scale)
    expected = reference.predict(scaled) * task.scale + task.mean
    np.testing.assert_allclose(predict_features(head, x)[:, 0], expected, rtol=1e-4)
    assert result.history["val_mae"][0] < 2.0


def test_the_kept_c_has_the_lowest_validation_loss_and_matches_the_best_fit():
    x, y = _blobs(n=120, dims=40, spread=0.6)
    xv, yv = _blobs(n=120, dims=40, spread=0.6, seed=0)[0] + np.random.default_rng(5).normal(size=(120, 40)), y
    head = build_head((40,), 3)
    grid = (0.001, 0.1, 10.0)
    result = fit_linear_head(head, x, y, xv.astype("float32"), yv, grid=grid)
    losses = []
    for c in grid:
        kernel, bias = fit_coefficients(x.astype(float), y, task=Task(), units=3, c=c)
        probabilities = np.exp(xv @ kernel + bias)
        probabilities /= probabilities.sum(1, keepdims=True)
        losses.append(-np.mean(np.log(probabilities[np.arange(len(yv)), yv])))
    best = int(np.argmin(losses))
    assert result.best_val_loss == pytest.approx(losses[best], rel=0.05)  # warm starts end within lbfgs' tolerance
    assert all(result.best_val_loss < loss * 0.9 for i, loss in enumerate(losses) if i != best)
    assert result.best_epoch == 1 and len(result.history["val_loss"]) == 1
    assert result.trainable_params == 40 * 3 + 3


def test_class_weights_move_the_boundary_toward_the_rare_class():
    x, y = _blobs(n=100, classes=2, spread=0.4)
    keep = (y == 0) | (np.arange(len(y)) < 30)
    x, y = x[keep], y[keep]
    plain, weighted = build_head((6,), 2), build_head((6,), 2)
    fit_linear_head(plain, x, y, x, y, grid=(1.0,))
    fit_linear_head(weighted, x, y, x, y, grid=(1.0,), class_weight={0: 0.5, 1: 5.0})
    assert predict_features(weighted, x)[:, 1].mean() > predict_features(plain, x)[:, 1].mean() + 0.02


def test_augmented_views_are_all_fitted_on():
    x, y = _blobs()
    head, reference = build_head((6,), 3), build_head((6,), 3)
    shifted = x + 3.0
    fit_linear_head(head, [x, shifted], y, x, y, grid=(0.1,))
    fit_linear_head(reference, np.concatenate([x, shifted]), np.concatenate([y, y]), x, y, grid=(0.1,))
    np.testing.assert_allclose(linear_layer(head).get_weights()[0], linear_layer(reference).get_weights()[0], atol=1e-4)


def test_solver_choice_and_a_head_that_is_not_linear():
    linear, deep = build_head((8,), 3), build_head((8,), 3, hidden=[4])
    assert choose_solver("auto", linear) == "lbfgs"
    assert choose_solver("auto", linear, in_memory=False) == "adam"
    assert choose_solver("auto", deep) == "adam" and choose_solver("adam", linear) == "adam"
    x, y = _blobs(dims=8)
    with pytest.raises(GraftError, match="--head-solver adam"):
        fit_linear_head(deep, x, y, x, y)


def test_config_refuses_lbfgs_with_hidden_layers_or_without_the_cache(tmp_path):
    from graftkit.config import TrainConfig

    with pytest.raises(GraftError, match="--hidden"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", head_solver="lbfgs", hidden=[64]).validated()
    with pytest.raises(GraftError, match="--feature-cache off"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", head_solver="lbfgs", feature_cache="off").validated()
    with pytest.raises(GraftError, match="--head-solver 'sgd' is not one of"):
        TrainConfig(data=str(tmp_path), base="mobilenet_v2", head_solver="sgd").validated()
