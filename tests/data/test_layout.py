"""data.layout: class folders found, split (stratified, seeded) and listed; layout errors in one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graftkit.data.decode import read_image
from graftkit.data.layout import (
    ImageSet,
    labelled_images,
    list_images,
    load_split,
)
from graftkit.errors import GraftError
from tests.badfiles import one_line
from tests.helpers import solid_image, write_images


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
    solid_image(tmp_path / "a" / "deeper" / "still" / "x.jpg")
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
    one_line(e, tmp_path / "split" / "validation" / "b")


def test_missing_root(tmp_path):
    with pytest.raises(GraftError, match="does not exist") as e:
        load_split(tmp_path / "nope")
    one_line(e, tmp_path / "nope")


def test_root_is_a_file(tmp_path):
    solid_image(tmp_path / "x.png")
    with pytest.raises(GraftError, match="is a file") as e:
        load_split(tmp_path / "x.png")
    one_line(e, tmp_path / "x.png")


def test_no_class_folders(tmp_path):
    solid_image(tmp_path / "loose.png")
    with pytest.raises(GraftError, match="no class subfolders") as e:
        load_split(tmp_path)
    one_line(e, tmp_path)


def test_one_class(tmp_path):
    write_images(tmp_path, {"only": 4})
    with pytest.raises(GraftError, match="at least two classes") as e:
        load_split(tmp_path)
    one_line(e, "only")


def test_empty_class(tmp_path):
    write_images(tmp_path, {"a": 3})
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(GraftError, match="has no images") as e:
        load_split(tmp_path)
    one_line(e, tmp_path / "empty")


def test_class_missing_on_one_side(tmp_path):
    write_images(tmp_path / "train", {"a": 2, "b": 2, "c": 2})
    write_images(tmp_path / "val", {"a": 1, "b": 1})
    with pytest.raises(GraftError) as e:
        load_split(tmp_path)
    one_line(e, "'c'", tmp_path / "val")


def test_train_without_val(tmp_path):
    write_images(tmp_path / "train", {"a": 2, "b": 2})
    solid_image(tmp_path / "test" / "a" / "x.png")
    with pytest.raises(GraftError, match="no val/") as e:
        load_split(tmp_path)
    one_line(e, tmp_path)


def test_class_too_small_to_split(tmp_path):
    write_images(tmp_path, {"a": 5, "b": 1})
    with pytest.raises(GraftError, match="only 1 image") as e:
        load_split(tmp_path)
    one_line(e, "'b'")


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1])
def test_val_split_out_of_range(tmp_path, fraction):
    write_images(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(GraftError, match="--val-split") as e:
        load_split(tmp_path, val_split=fraction)
    one_line(e, str(fraction))


def test_list_images_expands_folders_and_keeps_files(tmp_path):
    solid_image(tmp_path / "in" / "b.jpg")
    solid_image(tmp_path / "in" / "sub" / "a.PNG")
    solid_image(tmp_path / "in" / ".hidden" / "c.png")
    solid_image(tmp_path / "in" / ".d.png")
    (tmp_path / "in" / "notes.txt").write_text("skipped")
    single = solid_image(tmp_path / "one.bmp")

    found = list_images([str(tmp_path / "in"), str(single)])

    assert found == sorted([str(tmp_path / "in" / "b.jpg"), str(tmp_path / "in" / "sub" / "a.PNG"), str(single)])


def test_list_images_errors(tmp_path):
    with pytest.raises(GraftError, match="does not exist") as e:
        list_images([str(tmp_path / "missing.jpg")])
    one_line(e, tmp_path / "missing.jpg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(GraftError, match="no images") as e:
        list_images([str(tmp_path / "empty")])
    one_line(e, tmp_path / "empty")


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
