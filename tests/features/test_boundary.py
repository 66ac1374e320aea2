"""features.boundary: fine-tuning on the tensors crossing the freeze boundary trains the same model, faster."""

import keras
import numpy as np
import pytest

from graftkit.bases.loader import load_base
from graftkit.data.layout import load_split
from graftkit.data.pipeline import make_dataset
from graftkit.errors import GraftError
from graftkit.features import boundary as bd
from graftkit.features import extract
from graftkit.model.freeze import apply_freeze, parse_freeze
from graftkit.model.head import assemble, build_head
from graftkit.training.checkpoint import Checkpointer, filled, load
from graftkit.training.stages import fine_tune_stage
from tests.helpers import write_images


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_CACHE_DIR", str(tmp_path / "cache"))


def residual_cnn(path, size=24):
    """A personal model whose block ``c2 -> c3 (+ r1)`` is residual, ending in a Dense softmax (seeded)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    r = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(r)
    x = keras.layers.ReLU(name="r2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c3")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.Add(name="add")([x, r])
    x = keras.layers.Conv2D(8, 3, padding="same", name="c4")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="old_top")(x)
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.fixture()
def base(tmp_path):
    return load_base(residual_cnn(tmp_path / "residual.keras"), cut="c4")


@pytest.fixture()
def split(tmp_path):
    return load_split(write_images(tmp_path / "images", {"red": 10, "green": 10, "blue": 10}), seed=0)


def frozen(base, spec, **kwargs):
    apply_freeze(base.model, parse_freeze(spec), **kwargs)
    return bd.find_boundary(base.model, **kwargs)


def test_a_boundary_through_a_residual_block_caches_every_crossing_tensor_or_moves_down(base):
    images = np.random.default_rng(0).uniform(-1, 1, (4, 24, 24, 3)).astype("float32")
    expected = base.model(images, training=False)
    apply_freeze(base.model, parse_freeze("from:c3"))  # c2 -> r2 are frozen; r2 and r1 (the skip) cross
    every, _ = bd.find_boundary(base.model)  # the default: 24*24*16 values, not over 2 x r1's 24*24*8
    assert every.names == ("r1", "r2") and every.shapes == ((24, 24, 8), (24, 24, 8))
    assert every.recomputed == 0 and "cached all 2 tensors" in every.how
    moved, _ = bd.find_boundary(base.model, move_down_above=1.5)
    assert moved.names == ("r1",) and moved.recomputed == 2 and "recomputed every step" in moved.how
    for boundary in (every, moved):
        crossing = boundary.bottom(images, training=False)
        np.testing.assert_allclose(boundary.top(crossing, training=False), expected, atol=1e-5)
    rows = every.flat_model()(images)
    assert rows.shape == (4, every.values)
    np.testing.assert_allclose(every.top(list(every.unflatten(rows)), training=False), expected, atol=1e-5)


@pytest.mark.parametrize("spec, options, why", [
    ("none", {}, "trains the base's first layer ('c1')"),
    ("last:2", {"train_bn": True}, "--train-bn"),
])
def test_where_it_cannot_apply_it_says_why(base, spec, options, why):
    boundary, reason = frozen(base, spec, **options)
    assert boundary is None and why in reason


def test_a_savedmodel_or_a_nested_base_is_refused(base):
    apply_freeze(base.model, parse_freeze("last:2"))
    base.model._graft_inference_only = True
    assert "inference-only SavedModel" in bd.find_boundary(base.model)[1]
    inputs = keras.Input((24, 24, 3))
    nested = keras.Model(inputs, keras.layers.Conv2D(2, 1)(base.model(inputs)))
    assert "nests models" in bd.find_boundary(nested)[1]


def fine_tune(model, base, split, cache=None, epochs=1, checkpoint=None):
    data = make_dataset(split.train.paths, split.train.labels, image_size=24, batch_size=8, shuffle=True, seed=0)
    val = make_dataset(split.val.paths, split.val.labels, image_size=24, batch_size=8)
    return fine_tune_stage(model, base.model, data, val, freeze=parse_freeze("from:c3"), train_bn=False,
                           epochs=epochs, learning_rate=0.01, patience=3, class_weight={0: 1.0, 1: 2.0, 2: 1.0},
                           baseline_val_loss=float("inf"), samples=len(split.train), cache=cache,
                           checkpoint=checkpoint)


def test_cached_fine_tuning_gives_the_weights_of_fine_tuning_the_whole_model(base, split, tmp_path):
    head = build_head(base.feature_shape, 3, dropout=0.0)
    model = assemble(base, head)
    start = model.get_weights()
    whole = fine_tune(model, base, split)
    expected = model.get_weights()
    model.set_weights(start)
    calls = []

    def cache():
        calls.append(1)
        return bd.boundary_cache(base, head, split, augment=False, batch_size=8, dtype="float32")

    (tmp_path / "run").mkdir()
    saver = Checkpointer(tmp_path / "run")
    cached = fine_tune(model, base, split, cache=cache, checkpoint=saver)
    assert calls == [1] and cached.trainable_params == whole.trainable_params
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cached.history["val_loss"], whole.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(cached.history["loss"], whole.history["loss"], rtol=1e-4)
    assert not base.model.trainable  # frozen again afterwards, as without the cache
    # The checkpoint holds the whole model's trained weights, so a run resumes whichever way it fine-tunes;
    # the frozen ones it leaves out (None) are the base's, as a resumed run rebuilds them.
    state = load(tmp_path / "run").current
    assert len(state.weights) == len(model.weights) and any(w is None for w in state.weights)
    assert [w.shape for w in state.weights if w is not None] == [
        w.shape for w, s in zip(model.get_weights(), state.weights) if s is not None]
    for got, want in zip(filled(model, state.weights), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_cached_stage_resumes_from_the_whole_models_checkpoint_as_the_uncached_one_does(base, split, tmp_path):
    head = build_head(base.feature_shape, 3, dropout=0.0)
    model = assemble(base, head)
    (tmp_path / "run").mkdir()
    fine_tune(model, base, split, epochs=1, checkpoint=Checkpointer(tmp_path / "run"))  # uncached, interrupted
    state = load(tmp_path / "run").current
    data = make_dataset(split.train.paths, split.train.labels, image_size=24, batch_size=8, shuffle=True, seed=0)
    val = make_dataset(split.val.paths, split.val.labels, image_size=24, batch_size=8)
    options = dict(freeze=parse_freeze("from:c3"), train_bn=False, epochs=2, learning_rate=0.01, patience=3,
                   class_weight=None, baseline_val_loss=float("inf"), samples=len(split.train), resume=state)
    whole = fine_tune_stage(model, base.model, data, val, **options)
    expected = model.get_weights()
    # What training changed is overwritten by the checkpoint (the frozen weights are the base's, as rebuilt).
    model.set_weights([w if kept is None else w * 0 for w, kept in zip(expected, state.weights)])

    def cache():
        return bd.boundary_cache(base, head, split, augment=False, batch_size=8, dtype="float32")

    resumed = fine_tune_stage(model, base.model, None, None, cache=cache, **options)
    assert len(resumed.history["loss"]) == 2
    np.testing.assert_allclose(resumed.history["val_loss"], whole.history["val_loss"], rtol=1e-4)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_the_cache_is_filled_once_and_keyed_on_the_boundary_and_the_views(base, split, monkeypatch):
    calls = []
    original = extract._compute

    def counting(cut, paths, rows, out, *args):
        calls.append(len(list(rows)))
        return original(cut, paths, rows, out, *args)

    monkeypatch.setattr(extract, "_compute", counting)
    head = build_head(base.feature_shape, 3)
    apply_freeze(base.model, parse_freeze("from:c3"))
    first = bd.boundary_cache(base, head, split, augment=True, views=2, batch_size=8)
    train, val = len(split.train), len(split.val)
    assert calls == [train, train, val] and first.views == 2
    x, y = next(iter(first.train))
    assert [tuple(t.shape) for t in x] == [(8, 24, 24, 8), (8, 24, 24, 8)] and x[0].dtype == "float32"
    bd.boundary_cache(base, head, split, augment=True, views=2, batch_size=8)
    assert calls[3:] == [0, 0, 0]  # all from the cache
    apply_freeze(base.model, parse_freeze("from:c4"))  # another boundary: other tensors
    bd.boundary_cache(base, head, split, augment=True, views=2, batch_size=8)
    assert calls[6:] == [train, train, val]
    bd.boundary_cache(base, head, split, augment=False, batch_size=8)  # exact tensors: another view
    assert calls[9:] == [train, 0]  # the validation images' exact tensors were cached already


def test_k_views_are_k_distinct_tensors_per_image_and_an_epoch_draws_one_of_them_per_image(base, split,
                                                                                          monkeypatch):
    filled = []
    original = extract.extract_features

    def keeping(*args, **kwargs):
        filled.append(np.asarray(original(*args, **kwargs), np.float32))
        return filled[-1]

    monkeypatch.setattr(extract, "extract_features", keeping)
    apply_freeze(base.model, parse_freeze("from:c4"))  # one tensor crosses: the output of 'add'
    cache = bd.boundary_cache(base, build_head(base.feature_shape, 3), split, augment=True, views=3, batch_size=8,
                              feature_cache="memory")
    count = len(split.train)
    assert cache.views == 3 and len(filled) == 4  # three training views, then the validation images
    views = np.stack(filled[:3], axis=1).reshape(count, 3, -1)  # image -> its 3 views
    assert all(not np.allclose(views[:, a], views[:, b]) for a, b in [(0, 1), (0, 2), (1, 2)])
    drawn = []
    for _ in range(3):  # epochs
        rows = np.concatenate([x.numpy().reshape(len(x), -1) for x, _ in cache.train])
        assert len(rows) == count
        match = [np.argwhere(np.all(np.isclose(views, row, atol=1e-6), axis=-1)) for row in rows]
        assert all(len(m) == 1 for m in match)  # every row is one view of one image
        images, picks = zip(*(m[0] for m in match))
        assert sorted(images) == list(range(count))  # each image once an epoch
        drawn.extend(picks)
    assert set(drawn) == {0, 1, 2}  # and the view drawn changes
    with pytest.raises(GraftError, match="views 0"):
        bd.boundary_cache(base, build_head(base.feature_shape, 3), split, views=0)


def test_augmented_views_differ_and_the_float16_choice_keeps_the_outputs(base, split):
    apply_freeze(base.model, parse_freeze("from:c3"))
    boundary, _ = bd.find_boundary(base.model)
    dtype, why = bd.choose_dtype(base, boundary, split.train.paths)
    assert dtype == "float16" and "within" in why
    cut = bd.boundary_base(base, boundary)
    a = extract.extract_features(cut, split.train.paths, view=0, feature_cache="memory")
    b = extract.extract_features(cut, split.train.paths, view=1, feature_cache="memory")
    exact = extract.extract_features(cut, split.train.paths, feature_cache="memory")
    assert not np.allclose(a, b) and not np.allclose(a, exact)


def test_storage_drops_views_to_fit_the_disk_and_refuses_what_fits_nowhere():
    row = 10000 * 2  # float16: 6.4 MB for 3 views of 100 images and 20 validation images
    assert bd.plan_storage(10000, "float16", 100, 20, views=3, memory_mb=1, free_bytes=10 ** 9)[:2] == (3, "disk")
    assert bd.plan_storage(10000, "float16", 100, 20, views=3, memory_mb=100, free_bytes=10 ** 9)[:2] == (3, "auto")
    small_disk = 2 * row * (100 * 2 + 20)  # room for two views on half of it
    assert bd.plan_storage(10000, "float16", 100, 20, views=3, memory_mb=0, free_bytes=small_disk)[:2] == (2, "disk")
    assert bd.plan_storage(10000, "float16", 100, 20, views=3, memory_mb=100, free_bytes=10 ** 9,
                           feature_cache="memory")[:2] == (3, "memory")
    views, mode, why = bd.plan_storage(10000, "float16", 100, 20, views=3, memory_mb=0, free_bytes=0)
    assert (views, mode) == (0, None) and "memory budget" in why


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_a_full_run_fine_tunes_on_the_cache_for_every_task(tmp_path, capsys, task):
    from graftkit import log
    from graftkit.api import train

    images = write_images(tmp_path / "images", {"red": 8, "green": 8, "blue": 8})
    table = tmp_path / "labels.csv"
    rows = sorted(images.rglob("*.png"))
    if task == "multilabel":
        table.write_text("path,label\n" + "".join(f"{p},{p.parent.name};x{i % 2}\n" for i, p in enumerate(rows)))
    else:
        table.write_text("path,label\n" + "".join(f"{p},{len(p.parent.name) + 0.1 * i}\n" for i, p in enumerate(rows)))
    personal = residual_cnn(tmp_path / "residual.keras")
    run = train(str(table), base=str(personal), cut="c4", task=task, epochs=2, fine_tune_epochs=2, batch_size=8,
                freeze="from:c3", fine_tune_views=3, out=str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert "fine-tuning on the boundary cache: the freeze boundary below 'c3'" in err
    assert "; 3 views, " in err  # --fine-tune-views reaches the cache
    assert run.metrics["stages"]["fine_tune"]["trainable_params"] > 0
    loaded = keras.saving.load_model(run.run_dir / "model.keras", compile=False)  # the whole model, plain Keras
    assert loaded.input.shape == (None, 24, 24, 3) and len(loaded.weights) == len(run.model.weights)
    log.set_quiet(False)


def test_fine_tune_cache_off_runs_the_whole_base(tmp_path, capsys):
    from graftkit.api import train

    images = write_images(tmp_path / "images", {"red": 6, "green": 6})
    personal = residual_cnn(tmp_path / "residual.keras")
    train(str(images), base=str(personal), cut="c4", epochs=1, fine_tune_epochs=1, batch_size=8,
          freeze="from:c3", fine_tune_cache="off", out=str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert "--fine-tune-cache off" in err and "boundary cache" not in err
