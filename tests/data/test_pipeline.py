"""data.pipeline: the tf.data stream of images: shapes, order, shuffling, augmentation, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from graftkit.data.pipeline import augmentation, class_weights, make_dataset
from tests.badfiles import noise
from tests.helpers import solid_image


@pytest.fixture
def shaded(tmp_path):
    """Seven images of mixed formats whose grey level encodes their index."""
    paths = []
    for i, ext in enumerate([".png", ".bmp", ".gif", ".png", ".png", ".bmp", ".png"]):
        paths.append(str(solid_image(tmp_path / f"{i}{ext}", color=(30 * i,) * 3, size=(20, 10))))
    return paths


def test_make_dataset_shapes_types_and_order(shaded):
    labels = np.arange(7) % 3
    batches = list(make_dataset(shaded, labels, image_size=12, batch_size=3))

    assert [tuple(x.shape) for x, _ in batches] == [(3, 12, 12, 3), (3, 12, 12, 3), (1, 12, 12, 3)]
    images = np.concatenate([x.numpy() for x, _ in batches])
    got_labels = np.concatenate([y.numpy() for _, y in batches])
    assert batches[0][0].dtype.name == "float32" and batches[0][1].dtype.name == "int32"
    assert list(got_labels) == list(labels)
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 30 * np.arange(7), atol=1)


def test_make_dataset_runs_without_autotuning(shaded):
    """tf.data's autotuning sometimes left one of two cores idle for a whole pass (docs/benchmarks.md)."""
    options = make_dataset(shaded, image_size=8, batch_size=4, augment=True).options()
    assert options.autotune.enabled is False


def test_make_dataset_without_labels_yields_images(shaded):
    batches = list(make_dataset(shaded, image_size=8, batch_size=4))
    assert [tuple(b.shape) for b in batches] == [(4, 8, 8, 3), (3, 8, 8, 3)]


def test_make_dataset_shuffle_is_seeded_and_reshuffles(shaded):
    def order(ds):
        return [int(v) for _, y in ds for v in y.numpy()]

    ds = make_dataset(shaded, np.arange(7), image_size=8, batch_size=7, shuffle=True, seed=1)
    epochs = [order(ds) for _ in range(4)]
    again = order(make_dataset(shaded, np.arange(7), image_size=8, batch_size=7, shuffle=True, seed=1))

    assert all(sorted(e) == list(range(7)) for e in epochs)
    assert again == epochs[0]
    assert len({tuple(e) for e in epochs}) > 1


def test_make_dataset_augment_keeps_shape_and_range(shaded):
    x, y = next(iter(make_dataset(shaded, np.zeros(7), image_size=16, batch_size=7, augment=True)))
    assert tuple(x.shape) == (7, 16, 16, 3) and x.dtype.name == "float32"
    assert float(np.min(x)) >= 0 and float(np.max(x)) <= 255


def test_augmentation_changes_images_and_keeps_range():
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (4, 24, 24, 3)).astype("float32")
    out = np.asarray(augmentation()(batch, training=True))
    assert out.shape == batch.shape
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, batch)
    assert [type(layer).__name__ for layer in augmentation().layers] == ["RandomFlip", "RandomRotation", "RandomZoom"]


def test_class_weights():
    assert class_weights([0, 0, 1, 1, 2, 2], 3) is None
    assert class_weights([0] * 14 + [1] * 10, 2) is None  # 1.4x: close enough to balanced
    weights = class_weights([0] * 30 + [1] * 10 + [2] * 20, 3)
    assert weights == pytest.approx({0: 60 / 90, 1: 60 / 30, 2: 60 / 60})
    assert all(type(k) is int and type(v) is float for k, v in weights.items())
    assert class_weights(np.array([0, 0, 0, 2]), 3) == pytest.approx({0: 4 / 6, 1: 1.0, 2: 2.0})


def test_file_that_vanishes_after_the_check_does_not_stop_the_stream(tmp_path, capsys):
    good = noise(tmp_path / "good.png")
    gone = noise(tmp_path / "gone.png", seed=1)
    broken = noise(tmp_path / "broken.jpg", seed=2)
    ds = make_dataset([str(good), str(gone), str(broken)], [0, 1, 1], image_size=8, batch_size=2)
    gone.unlink()
    broken.write_bytes(b"not any more")
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    assert [len(y) for _, y in batches] == [2, 1]
    assert batches[0][0][1].max() == 0 and batches[1][0][0].max() == 0  # blank in their places
    err = capsys.readouterr().err
    assert f"could not read '{gone}' any more" in err and f"could not read '{broken}' any more" in err
