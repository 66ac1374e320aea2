"""training.head_stage: the head trained on cached features, fine-tuning from it, and the cache options."""

import json

import keras
import numpy as np
import pytest

from graftkit import api
from graftkit.bases.loader import load_base
from graftkit.config import TrainConfig
from graftkit.errors import GraftError
from graftkit.features import extract
from graftkit.results.trained import load_trained
from graftkit.model.infer import predict_features
from graftkit.training.head_stage import after_pooling, choose_views, fit_on_features

pytestmark = pytest.mark.usefixtures("empty_feature_cache")


def test_features_dataset_draws_one_view_per_image_per_epoch(tmp_path):
    views = [np.full((6, 2), v, np.float32) + np.arange(6)[:, None] * 10 for v in range(3)]
    labels = np.arange(6) % 2
    ds = features_dataset_all(views, labels)
    x, y = ds
    assert sorted(x[:, 0] // 10) == list(range(6))  # every image once
    assert set(x[:, 0] % 10) <= {0, 1, 2} and len(set(x[:, 0] % 10)) > 1
    np.testing.assert_array_equal(y, (x[:, 0] // 10).astype(int) % 2)
    mapped = []
    for v, array in enumerate(views):
        m = np.lib.format.open_memmap(tmp_path / f"{v}.npy", mode="w+", dtype="float32", shape=array.shape)
        m[:] = array
        mapped.append(np.load(tmp_path / f"{v}.npy", mmap_mode="r"))
    x2, y2 = features_dataset_all(mapped, labels)
    np.testing.assert_array_equal(y2, (x2[:, 0] // 10).astype(int) % 2)


def features_dataset_all(views, labels):
    batches = list(extract.features_dataset(views, labels, batch_size=4, shuffle=True, seed=3))
    return (np.concatenate([x.numpy() for x, _ in batches]), np.concatenate([y.numpy() for _, y in batches]))


@pytest.mark.parametrize("pooling, pooled_as", [("avg", "avg"), ("auto", "avgmax")])
def test_saved_model_equals_the_head_on_cached_features(tiny_images, personal, tmp_path, capfd, pooling, pooled_as):
    run = api.train(tiny_images, base=str(personal), epochs=3, fine_tune_epochs=0, lr=0.05, batch_size=8,
                    pooling=pooling, out=str(tmp_path / "run"))
    err = capfd.readouterr().err
    assert "exact features" in err  # the log says which augmentation mode was picked
    assert (f"pooling: {pooled_as} (--pooling auto" in err) == (pooling == "auto")  # and what auto chose
    from graftkit.data.layout import load_split
    from graftkit.data.pipeline import make_dataset

    split = load_split(tiny_images, seed=0)
    stats = {}
    base = load_base(personal)
    pooled = extract.extract_features(base, split.val.paths, pool=pooled_as, stats=stats)
    assert stats["computed"] == 0  # the run filled the cache (pooled, as its head starts with that pooling)
    model, _ = load_trained(tmp_path / "run")
    images = np.concatenate([x.numpy() for x in make_dataset(split.val.paths, image_size=24, batch_size=4)])
    expected = model.predict(images, verbose=0)
    head = model.get_layer("head")
    np.testing.assert_allclose(expected, predict_features(after_pooling(head)[1], pooled), atol=1e-5)
    raw = extract.extract_features(base, split.val.paths, feature_cache="memory")
    np.testing.assert_allclose(expected, predict_features(head, raw), atol=1e-5)
    np.testing.assert_allclose(run.metrics["accuracy"], np.mean(expected.argmax(1) == split.val.labels), atol=1e-4)


def test_after_pooling_shares_the_head_layers():
    from graftkit.model.head import build_head

    head = build_head((5, 5, 6), 3, hidden=[4], pooling="avg")
    pool, rest = after_pooling(head)
    assert pool == "avg"
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 6)).astype("float32")
    np.testing.assert_allclose(head.predict(x, verbose=0), rest.predict(x.mean(axis=(1, 2)), verbose=0), atol=1e-6)
    rest.get_layer("predictions").kernel.assign(np.zeros((4, 3), "float32"))
    np.testing.assert_allclose(head.predict(x, verbose=0), 1 / 3, atol=1e-6)  # one set of weights
    assert after_pooling(build_head((6,), 3))[0] is None  # nothing to pool


def test_fit_on_features_keeps_the_best_epoch(monkeypatch):
    from graftkit.model.head import build_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    head = build_head((6,), 2, dropout=0)
    result = fit_on_features("head", head, [x, x + 0.01], y, x[:16], y[:16], batch_size=8, epochs=6,
                             learning_rate=0.05, patience=2, class_weight={0: 1.0, 1: 2.0})
    assert set(result.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert 1 <= result.best_epoch <= len(result.history["val_loss"]) <= 6
    assert result.best_val_loss == pytest.approx(min(result.history["val_loss"]), rel=1e-6)
    loss = keras.losses.SparseCategoricalCrossentropy()(y[:16], head.predict(x[:16], verbose=0))
    assert float(loss) == pytest.approx(result.best_val_loss, rel=1e-4)  # the best weights were put back


def test_fused_adam_is_keras_adam():
    import tensorflow as tf

    from graftkit.model.head import build_head
    from graftkit.training.head_stage import _FusedAdam

    rng = np.random.default_rng(0)
    heads = [build_head((6,), 3, hidden=[5], dropout=0, seed=1) for _ in range(2)]
    keras_adam, fused = keras.optimizers.Adam(0.01), _FusedAdam(heads[1].trainable_variables, 0.01)
    for _ in range(5):
        x, y = rng.normal(size=(8, 6)).astype("float32"), rng.integers(0, 3, 8)
        grads = []
        for head in heads:
            with tf.GradientTape() as tape:
                loss = keras.losses.sparse_categorical_crossentropy(y, head(x, training=True))
            grads.append(tape.gradient(loss, head.trainable_variables))
        keras_adam.apply(grads[0], heads[0].trainable_variables)
        fused.apply(grads[1])
    for a, b in zip(heads[0].get_weights(), heads[1].get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_disk_mode_trains_from_the_memmap(tiny_images, personal, tmp_path, capfd):
    run = api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=0, lr=0.05, batch_size=8,
                    feature_cache="disk", out=str(tmp_path / "run"))
    assert "streamed from disk" in capfd.readouterr().err
    assert len(run.stages[0].history["loss"]) >= 1


def test_fine_tuning_starts_from_the_cache_trained_head(tiny_images, personal, tmp_path, monkeypatch):
    from graftkit.training import head_stage as head_stage_module
    from graftkit.training import stages

    seen = {}
    head_stage, fine_tune = head_stage_module.cached_head_stage, stages.fine_tune_stage

    def after_head_stage(base, head, *args, **kwargs):
        result = head_stage(base, head, *args, **kwargs)
        seen["after head stage"] = head.get_weights()
        return result

    def at_fine_tune(model, *args, **kwargs):
        seen["at fine-tuning"] = model.get_layer("head").get_weights()
        return fine_tune(model, *args, **kwargs)

    monkeypatch.setattr(head_stage_module, "cached_head_stage", after_head_stage)
    monkeypatch.setattr(stages, "fine_tune_stage", at_fine_tune)
    run = api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=2, lr=0.05, batch_size=8,
                    freeze="last:2", out=str(tmp_path / "run"))
    for a, b in zip(seen["after head stage"], seen["at fine-tuning"]):
        np.testing.assert_array_equal(a, b)
    assert [s.name for s in run.stages] == ["head", "fine_tune"]
    assert len(run.stages[1].history["loss"]) >= 1


def test_feature_cache_off_trains_end_to_end(tiny_images, personal, tmp_path):
    run = api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=0, lr=0.05, batch_size=8,
                    feature_cache="off", out=str(tmp_path / "run"))
    assert run.stages[0].name == "head" and len(run.stages[0].history["loss"]) >= 1


def test_augmented_views_train_the_head(tiny_images, personal, tmp_path, capfd):
    run = api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=0, lr=0.05, batch_size=8,
                    aug_views=2, out=str(tmp_path / "run"))
    assert "2 cached augmented views" in capfd.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["aug_views"] == 2
    assert run.stages[0].history["loss"]


def test_default_view_choice_says_why():
    assert choose_views(None, True)[0] == 0 and "default" in choose_views(None, True)[1]
    assert choose_views(3, True) == (3, choose_views(3, True)[1])


@pytest.mark.parametrize("options, option", [
    ({"feature_cache": "disk", "epochs": 0}, "--feature-cache"),
    ({"feature_cache": "memory", "epochs": 0, "freeze": "none"}, "--feature-cache"),
    ({"aug_views": 2, "augment": False}, "--aug-views"),
    ({"aug_views": 2, "feature_cache": "off"}, "--aug-views"),
    ({"aug_views": 2, "epochs": 0}, "--aug-views"),
    ({"aug_views": -1}, "--aug-views"),
    ({"feature_cache": "fast"}, "--feature-cache"),
    ({"feature_memory_mb": 0}, "--feature-memory-mb"),
])
def test_contradictory_cache_options_fail_before_any_work(options, option):
    with pytest.raises(GraftError, match=option) as error:
        TrainConfig(data="does-not-matter", **options).validated()
    assert "\n" not in str(error.value)


def test_cli_reports_a_contradiction_in_one_line(capsys):
    from graftkit.cli import main

    code = main(["train", "nowhere", "--epochs", "0", "--feature-cache", "disk"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("graft: error:") == 1 and "--feature-cache disk" in err
