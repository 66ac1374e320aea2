"""data.check: bad, odd and duplicate image files skipped with a reason and named, or refused with strict."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from graftkit.data.check import IMAGE_EXTENSIONS, check_images
from graftkit.data.decode import read_image
from graftkit.data.layout import (
    labelled_images,
    load_split,
)
from graftkit.errors import GraftError
from tests.badfiles import BAD_FILES, noise, one_line, png_bytes, write_bytes
from tests.helpers import write_images


def test_non_image_file_among_images(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "b" / "notes.txt").write_text("hello")
    split = load_split(tmp_path)  # skipped by default, named in skipped
    assert split.skipped == [(str(tmp_path / "b" / "notes.txt"), split.skipped[0][1])]
    assert len(split.train) + len(split.val) == 6
    with pytest.raises(GraftError) as e:
        load_split(tmp_path, strict=True)
    message = one_line(e, tmp_path / "b" / "notes.txt", "move it out", "--strict")
    assert all(ext in message for ext in IMAGE_EXTENSIONS)


def test_non_image_with_image_extension(tmp_path):
    write_images(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "fake.jpg").write_text("<html>not found</html>")
    assert [p for p, _ in load_split(tmp_path).skipped] == [str(tmp_path / "a" / "fake.jpg")]
    with pytest.raises(GraftError, match="not a readable image") as e:
        load_split(tmp_path, strict=True)
    one_line(e, tmp_path / "a" / "fake.jpg")


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
    one_line(e, bad)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_is_skipped_named_and_strict_refuses(tmp_path, kind, capsys, deny_unreadable):
    root = write_images(tmp_path / "data", {"a": 3, "b": 3}, size=16)
    bad = BAD_FILES[kind](root / "b")
    (root / "b" / "tmp_ok.png").unlink(missing_ok=True)

    split = load_split(root)

    assert [p for p, _ in split.skipped] == [str(bad)], split.skipped
    assert len(split.train) + len(split.val) == 6 and str(bad) not in split.train.paths + split.val.paths
    err = capsys.readouterr().err
    assert f"graft: warning: skipped '{bad}'" in err and "1 bad file skipped" in err
    with pytest.raises(GraftError) as e:
        load_split(root, strict=True)
    one_line(e, bad, "--strict")


def test_reasons_say_what_is_wrong(tmp_path, deny_unreadable):
    folder = tmp_path / "b"
    folder.mkdir()
    paths = {kind: str(make(folder)) for kind, make in BAD_FILES.items()}
    (folder / "tmp_ok.png").unlink(missing_ok=True)
    good, skipped = check_images(list(paths.values()) + [str(noise(folder / "fine.png"))])
    assert good == [str(folder / "fine.png")]
    reasons = {kind: dict(skipped)[path] for kind, path in paths.items()}
    assert reasons["zero bytes"] == "an empty file (0 bytes)"
    assert reasons["named pipe"] == "not a regular file"
    assert "decompression bomb" in reasons["bomb 10000x10000"] and "89,478,485" in reasons["bomb 10000x10000"]
    assert "decompression bomb" in reasons["bomb 30000x30000"]
    assert "symbolic links" in reasons["symlink loop file"]
    assert "Permission denied" in reasons["unreadable"]
    assert reasons["html named jpg"] == "not a readable image (unknown or damaged image format)"


def test_bomb_header_never_allocates(tmp_path):
    import warnings

    bomb = write_bytes(tmp_path / "bomb.png", png_bytes(9000, 9999))  # under Pillow's error limit, over graftkit's
    made = Image.core.get_stats()["new_count"]  # images Pillow has allocated pixels for
    with warnings.catch_warnings(), pytest.raises(GraftError, match="decompression bomb"):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # Pillow's own note, before ours
        read_image(bomb, 32)
    with pytest.raises(GraftError, match="none of the 1 files is a readable image"):
        check_images([bomb])
    assert Image.core.get_stats()["new_count"] == made  # refused from the header alone


def test_class_left_empty_after_skipping_is_an_error(tmp_path):
    root = write_images(tmp_path, {"a": 3}, size=16)
    (root / "b").mkdir()
    write_bytes(root / "b" / "empty.jpg", b"")
    write_bytes(root / "b" / "page.png", b"<html>")
    with pytest.raises(GraftError) as e:
        load_split(root)
    one_line(e, root / "b", "no usable images", "2 files")
    write_images(root, {"c": 1}, size=16)
    write_bytes(root / "c" / "empty.png", b"")
    shutil.rmtree(root / "b")
    with pytest.raises(GraftError) as e:
        load_split(root)
    one_line(e, "'c'", "only 1 image", "after skipping 1 bad file")


def test_hundreds_of_bad_files_are_capped_in_the_warnings(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 3, "b": 3}, size=16)
    for i in range(150):
        write_bytes(root / "a" / f"bad{i:03}.jpg", b"nope")
    split = load_split(root)
    err = capsys.readouterr().err.splitlines()
    assert len(split.skipped) == 150
    assert sum(line.startswith("graft: warning: skipped '") for line in err) == 20
    assert "graft: warning: ... and 130 more" in err
    assert "graft: warning: 150 bad files skipped; replace or remove them, or pass --strict to make bad files " \
           "an error" in err
    with pytest.raises(GraftError) as e:
        load_split(root, strict=True)
    one_line(e, root / "a" / "bad000.jpg", "149 more bad files")


def test_hidden_files_and_folder_loops_are_ignored(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 3, "b": 3}, size=16)
    write_bytes(root / "a" / ".DS_Store", b"\0\0\0\1Bud1")
    write_bytes(root / "a" / "._photo.jpg", b"\0\5\26\7AppleDouble")
    write_bytes(root / "b" / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    (root / "a" / "nested").mkdir()
    os.symlink("..", root / "a" / "nested" / "up")  # a loop back to the class folder
    os.symlink(root / "a" / "nested", root / "a" / "again")  # a second way into the same folder
    noise(root / "a" / "nested" / "deep.png", side=16)
    (root / "b" / "folder.jpg").mkdir()  # a folder named like an image

    split = load_split(root)

    assert split.skipped == [] and "skipped" not in capsys.readouterr().err
    counts = {"a": split.train.counts()["a"] + split.val.counts()["a"],
              "b": split.train.counts()["b"] + split.val.counts()["b"]}
    assert counts == {"a": 4, "b": 3}  # each real folder read once: no hang, no file twice


def test_duplicates_across_train_and_val(tmp_path, capsys):
    write_images(tmp_path / "train", {"a": 3, "b": 3}, size=16)
    write_images(tmp_path / "val", {"a": 1, "b": 1}, size=16, seed=1)
    copy = tmp_path / "val" / "b" / "copy.png"
    shutil.copy(tmp_path / "train" / "a" / "a_2.png", copy)  # same picture, even under another class

    split = load_split(tmp_path)

    assert split.duplicates == [(str(tmp_path / "train" / "a" / "a_2.png"), str(copy))]
    assert str(copy) in split.val.paths  # warned about, not dropped
    err = capsys.readouterr().err
    assert f"validation image '{copy}' is the same image as training image" in err
    assert "1 validation image also in training" in err
    with pytest.raises(GraftError) as e:
        load_split(tmp_path, strict=True)
    one_line(e, copy, "a_2.png", "--strict")


def test_evaluation_skips_bad_files(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 2, "b": 2}, size=16)
    write_bytes(root / "a" / "bad.png", b"\x89PNG broken")
    images = labelled_images(root, ["a", "b"])
    assert len(images) == 4 and images.skipped[0][0] == str(root / "a" / "bad.png")
    with pytest.raises(GraftError) as e:
        labelled_images(root, ["a", "b"], strict=True)
    one_line(e, root / "a" / "bad.png")
