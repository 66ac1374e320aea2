"""Tests of graftkit.data: finding, checking, splitting, decoding and streaming images."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from graftkit.data import (
    IMAGE_EXTENSIONS,
    ImageSet,
    augmentation,
    class_weights,
    labelled_images,
    list_images,
    load_split,
    make_dataset,
    read_image,
)
from graftkit.errors import GraftError
from tests.helpers import write_images

RED, BLUE = (255, 0, 0), (0, 0, 255)


def write(path, color=RED, size=(16, 12), mode="RGB", **save):
    """Write a solid-colour image; the format follows the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path, **save)
    return path


def noise_jpeg(path, side=96):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path


def one_line_error(excinfo, *names):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, message
    return message


# --- discovery and splitting ---------------------------------------------------------------

def test_unsplit_layout_ignores_hidden_and_top_level_files(tmp_path):
    write_images(tmp_path, {"cat": 5, "dog": 5})
    (tmp_path / "PROVENANCE.txt").write_text("where these came from")
    (tmp_path / "SHA256SUMS.txt").write_text("abc  cat/00.png")
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "dog" / "Thumbs.db").write_bytes(b"\0\1")
    write_images(tmp_path / ".cache", {"x": 1})
    write_images(tmp_path, {".hidden_class": 3})

    split = load_split(tmp_path)

    assert split.class_names == ["cat", "dog"]
    assert split.how == "split 0.2, seed 0"
    assert split.train.counts() == {"cat": 4, "dog": 4}
    assert split.val.counts() == {"cat": 1, "dog": 1}
    assert split.train.labels.dtype == np.int32
    assert all(".cache" not in p and ".hidden" not in p for p in split.train.paths + split.val.paths)


@pytest.mark.parametrize("val_name", ["val", "validation"])
def test_pre_split_layout(tmp_path, val_name):
    write_images(tmp_path / "train", {"ants": 3, "bees": 2})
    write_images(tmp_path / val_name, {"ants": 1, "bees": 2})
    (tmp_path / "train" / "README").write_text("ignored: a plain file beside the classes")

    split = load_split(tmp_path, val_split=0.5, seed=7)

    assert split.how == "folders"
    assert split.class_names == split.train.class_names == split.val.class_names == ["ants", "bees"]
    assert split.train.counts() == {"ants": 3, "bees": 2}
    assert split.val.counts() == {"ants": 1, "bees": 2}
    assert list(split.train.labels) == [0, 0, 0, 1, 1]
    assert all(f"/train/{['ants', 'bees'][y]}/" in p for p, y in zip(split.train.paths, split.train.labels))


def test_nested_folders_count_for_their_class(tmp_path):
    write_images(tmp_path, {"a": 2, "b": 2})
    write(tmp_path / "a" / "deeper" / "still" / "x.jpg")
    assert load_split(tmp_path).train.counts()["a"] + load_split(tmp_path).val.counts()["a"] == 3


def test_split_is_stratified_seeded_and_complete(tmp_path):
    write_images(tmp_path, {"big": 20, "mid": 6, "tiny": 2})
    first, again = load_split(tmp_path, 0.25, seed=3), load_split(tmp_path, 0.25, seed=3)
    other = load_split(tmp_path, 0.25, seed=4)

    assert first.train.paths == again.train.paths and first.val.paths == again.val.paths
    assert first.val.paths != other.val.paths
    assert first.val.counts() == {"big": 5, "mid": 2, "tiny": 1}
    assert first.train.counts() == {"big": 15, "mid": 4, "tiny": 1}
    assert not set(first.train.paths) & set(first.val.paths)
    assert len(set(first.train.paths) | set(first.val.paths)) == 28
    assert first.how == "split 0.25, seed 3"


def test_image_set_len_and_counts():
    s = ImageSet(["a", "b", "c"], np.array([1, 1, 0], np.int32), ["x", "y", "z"])
    assert len(s) == 3
    assert s.counts() == {"x": 1, "y": 2, "z": 0}


def test_labelled_images_uses_the_model_classes_and_the_val_part(tmp_path):
    write_images(tmp_path / "flat", {"b": 2})
    images = labelled_images(tmp_path / "flat", ["a", "b", "c"])
    assert list(images.labels) == [1, 1] and images.class_names == ["a", "b", "c"]

    write_images(tmp_path / "split" / "train", {"a": 3, "b": 3})
    write_images(tmp_path / "split" / "validation", {"a": 1, "b": 2})
    assert labelled_images(tmp_path / "split", ["b", "a"]).counts() == {"b": 2, "a": 1}

    with pytest.raises(GraftError, match="not a class of the model") as e:
        labelled_images(tmp_path / "split", ["a"])
    one_line_error(e, tmp_path / "split" / "validation" / "b")


# --- bad input: one line, naming what is at fault -------------------------------------------

def test_missing_root(tmp_path):
    with pytest.raises(GraftError, match="does not exist") as e:
        load_split(tmp_path / "nope")
    one_line_error(e, tmp_path / "nope")


def test_root_is_a_file(tmp_path):
    write(tmp_path / "x.png")
    with pytest.raises(GraftError, match="is a file") as e:
        load_split(tmp_path / "x.png")
    one_line_error(e, tmp_path / "x.png")


def test_no_class_folders(tmp_path):
    write(tmp_path / "loose.png")
    with pytest.raises(GraftError, match="no class subfolders") as e:
        load_split(tmp_path)
    one_line_error(e, tmp_path)


def test_one_class(tmp_path):
    write_images(tmp_path, {"only": 4})
    with pytest.raises(GraftError, match="at least two classes") as e:
        load_split(tmp_path)
    one_line_error(e, "only")


def test_empty_class(tmp_path):
    write_images(tmp_path, {"a": 3})
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(GraftError, match="has no images") as e:
        load_split(tmp_path)
    one_line_error(e, tmp_path / "empty")


def test_non_image_file_among_images(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "b" / "notes.txt").write_text("hello")
    split = load_split(tmp_path)  # skipped by default, named in skipped
    assert split.skipped == [(str(tmp_path / "b" / "notes.txt"), split.skipped[0][1])]
    assert len(split.train) + len(split.val) == 6
    with pytest.raises(GraftError) as e:
        load_split(tmp_path, strict=True)
    message = one_line_error(e, tmp_path / "b" / "notes.txt", "move it out", "--strict")
    assert all(ext in message for ext in IMAGE_EXTENSIONS)


def test_non_image_with_image_extension(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "fake.jpg").write_text("<html>not found</html>")
    assert [p for p, _ in load_split(tmp_path).skipped] == [str(tmp_path / "a" / "fake.jpg")]
    with pytest.raises(GraftError, match="not a readable image") as e:
        load_split(tmp_path, strict=True)
    one_line_error(e, tmp_path / "a" / "fake.jpg")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".gif", ".bmp"])
def test_truncated_image(tmp_path, ext):
    write_images(tmp_path, {"a": 3, "b": 3})
    bad = tmp_path / "b" / f"cut{ext}"
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(bad)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) * 6 // 10])
    assert [p for p, _ in load_split(tmp_path).skipped] == [str(bad)]
    with pytest.raises(GraftError, match="not a readable image") as e:
        load_split(tmp_path, strict=True)
    one_line_error(e, bad)


def test_class_missing_on_one_side(tmp_path):
    write_images(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    write_images(tmp_path / "val", {"a": 1, "b": 1})
    with pytest.raises(GraftError) as e:
        load_split(tmp_path)
    one_line_error(e, "'c'", tmp_path / "val")


def test_train_without_val(tmp_path):
    write_images(tmp_path / "train", {"a": 2, "b": 2})
    write(tmp_path / "test" / "a" / "x.png")
    with pytest.raises(GraftError, match="no val/") as e:
        load_split(tmp_path)
    one_line_error(e, tmp_path)


def test_class_too_small_to_split(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 1})
    with pytest.raises(GraftError, match="only 1 image") as e:
        load_split(tmp_path)
    one_line_error(e, "'b'")


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_val_split_out_of_range(tmp_path, fraction):
    write_images(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(GraftError, match="--val-split") as e:
        load_split(tmp_path, val_split=fraction)
    one_line_error(e, str(fraction))


# --- decoding -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, mode, color, expected", [
    ("rgb.jpg", "RGB", RED, RED),
    ("gray.png", "L", RED, (76, 76, 76)),
    ("palette.png", "P", RED, RED),
    ("palette.gif", "P", RED, RED),
    ("rgba.png", "RGBA", RED, RED),
    ("la.png", "LA", RED, (76, 76, 76)),
    ("cmyk.jpg", "CMYK", RED, RED),
    ("bilevel.bmp", "1", (255, 255, 255), (255, 255, 255)),
    ("rgb.bmp", "RGB", RED, RED),
])
def test_read_image_converts_every_mode_to_rgb(tmp_path, name, mode, color, expected):
    path = write(tmp_path / name, color=color, mode=mode)
    with Image.open(path) as img:
        assert img.mode == mode
    pixels = read_image(path, 8)
    assert pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
    assert np.abs(pixels.astype(int) - expected).max() <= 3


def test_read_image_lays_transparency_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (10, 10), (255, 0, 0, 0)).save(path)
    assert (read_image(path, 4) == 255).all()
    gif = tmp_path / "clear.gif"
    Image.new("P", (10, 10), 0).save(gif, transparency=0)
    assert (read_image(gif, 4) == 255).all()


def test_read_image_scales_16_bit_down(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    assert np.all(read_image(path, 4) == 40000 // 257)


def test_read_image_reads_microscope_tiffs(tmp_path):
    # 16-bit grey, a float image of 0..1, and an 8-bit RGB stack of two pages (the first is read).
    deep = tmp_path / "deep.tif"
    Image.fromarray(np.full((8, 8), 51400, np.uint16)).save(deep)
    floats = tmp_path / "floats.tiff"
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(floats)
    stack = tmp_path / "stack.tif"
    Image.new("RGB", (8, 8), RED).save(stack, save_all=True, append_images=[Image.new("RGB", (8, 8), BLUE)])
    with Image.open(deep) as a, Image.open(floats) as b, Image.open(stack) as c:
        assert (a.mode, b.mode, c.n_frames) == ("I;16", "F", 2)
    assert np.all(read_image(deep, 4) == 200)
    assert np.all(read_image(floats, 4) == 127)
    assert np.abs(read_image(stack, 4).astype(int) - RED).max() <= 3


def test_tiff_and_webp_folders_load_like_jpeg_ones(tmp_path):
    for name, color, grey in (("a", RED, 60000), ("b", BLUE, 3000)):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (12, 12), color).save(tmp_path / name / f"{i}.webp")
            Image.fromarray(np.full((12, 12), grey, np.uint16)).save(tmp_path / name / f"{i}.TIF")
    split = load_split(tmp_path)
    assert split.skipped == [] and len(split.train) + len(split.val) == 12
    assert {os.path.splitext(p)[1] for p in split.train.paths} == {".TIF", ".webp"}
    assert list_images([str(tmp_path)]) == sorted(str(p) for p in tmp_path.rglob("*.*"))


@pytest.mark.parametrize("top, warned", [(4095, True), (60000, False)])
def test_a_12_bit_camera_in_16_bit_files_is_warned_about(tmp_path, capsys, top, warned):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.linspace(0, top - i, 64).astype(np.uint16).reshape(8, 8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.{'tif' if i else 'png'}")
    load_split(tmp_path)
    lines = [line for line in capsys.readouterr().err.splitlines() if "16-bit" in line]
    assert lines == ([f"graft: warning: 6 16-bit images use values up to {top} of 65535 (a 10- or 12-bit camera?): "
                      "graftkit scales 16-bit images by 1/257, so to the base they are nearly black (0..15); "
                      "stretch them to the full range first"] if warned else [])


def test_read_image_applies_exif_rotation(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # height 20, width 40: red on top, blue below
    stored[:10] = RED
    stored[10:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed after turning 90 degrees clockwise: top goes right
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)

    pixels = read_image(path, 16).astype(int)

    assert np.abs(pixels[:, :4] - BLUE).max() < 40
    assert np.abs(pixels[:, -4:] - RED).max() < 40


def test_read_image_squashes_and_uses_jpeg_draft(tmp_path):
    path = noise_jpeg(tmp_path / "big.jpg", side=400)
    Image.open(path).resize((400, 100)).save(tmp_path / "wide.jpg")
    assert read_image(path, 37).shape == (37, 37, 3)
    assert read_image(tmp_path / "wide.jpg", 50).shape == (50, 50, 3)


def test_read_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(GraftError) as e:
        read_image(bad, 8)
    one_line_error(e, bad)
    with pytest.raises(GraftError) as e:
        read_image(tmp_path / "gone.jpg", 8)
    one_line_error(e, tmp_path / "gone.jpg")


# --- list_images ----------------------------------------------------------------------------

def test_list_images_expands_folders_and_keeps_files(tmp_path):
    write(tmp_path / "in" / "b.jpg")
    write(tmp_path / "in" / "sub" / "a.PNG")
    write(tmp_path / "in" / ".hidden" / "c.png")
    write(tmp_path / "in" / ".d.png")
    (tmp_path / "in" / "notes.txt").write_text("skipped")
    single = write(tmp_path / "one.bmp")

    found = list_images([str(tmp_path / "in"), str(single)])

    assert found == sorted([str(tmp_path / "in" / "b.jpg"), str(tmp_path / "in" / "sub" / "a.PNG"), str(single)])


def test_list_images_errors(tmp_path):
    with pytest.raises(GraftError, match="does not exist") as e:
        list_images([str(tmp_path / "missing.jpg")])
    one_line_error(e, tmp_path / "missing.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(GraftError, match="no images") as e:
        list_images([str(tmp_path / "empty")])
    one_line_error(e, tmp_path / "empty")


# --- make_dataset and augmentation ----------------------------------------------------------

@pytest.fixture
def shaded(tmp_path):
    """Seven images of mixed formats whose grey level encodes their index."""
    paths = []
    for i, ext in enumerate([".png", ".bmp", ".gif", ".png", ".png", ".bmp", ".png"]):
        paths.append(str(write(tmp_path / f"{i}{ext}", color=(30 * i,) * 3, size=(20, 10))))
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


# --- class weights --------------------------------------------------------------------------

def test_class_weights():
    assert class_weights([0, 0, 1, 1, 2, 2], 3) is None
    assert class_weights([0] * 14 + [1] * 10, 2) is None  # 1.4x: close enough to balanced
    weights = class_weights([0] * 30 + [1] * 10 + [2] * 20, 3)
    assert weights == pytest.approx({0: 60 / 90, 1: 60 / 30, 2: 60 / 60})
    assert all(type(k) is int and type(v) is float for k, v in weights.items())
    assert class_weights(np.array([0, 0, 0, 2]), 3) == pytest.approx({0: 4 / 6, 1: 1.0, 2: 2.0})


# --- the real hymenoptera set ---------------------------------------------------------------

@pytest.mark.integration
def test_hymenoptera(shared):
    root = shared / "data" / "hymenoptera"

    split = load_split(root)

    assert (len(split.train), len(split.val)) == (245, 153)
    assert split.class_names == ["ants", "bees"]
    assert split.train.counts() == {"ants": 124, "bees": 121}
    assert split.how == "folders"
    gif = root / "train" / "ants" / "imageNotFound.gif"
    assert str(gif) in split.train.paths
    palette = [p for p in split.train.paths + split.val.paths if Image.open(p).mode == "P"]
    assert palette
    for path in palette + [str(gif)]:
        pixels = read_image(path, 64)
        assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
