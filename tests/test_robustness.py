"""Issue 6: messy image folders, untrusted model files, bad options and failed writes.

Every bad input is generated here. By default a bad image is skipped, named in a warning
and counted in the run's metrics; ``strict`` makes each one a one-line error. Model files
that would run their author's code are refused unless trusted.
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from graftkit import api
from graftkit import data as data_module
from graftkit.api import Run, write_run
from graftkit.bases.loader import load_base
from graftkit.bases.personal import load_personal
from graftkit.cli import main
from graftkit.config import TrainConfig
from graftkit.data import check_images, labelled_images, load_split, make_dataset, read_image
from graftkit.errors import GraftError
from tests.helpers import tiny_cnn, write_images

RED, BLUE = (255, 0, 0), (0, 0, 255)
NON_UTF8 = b"caf\xe9.png"  # a Latin-1 name: not valid UTF-8, but any byte string is a Linux file name


# ---------------------------------------------------------------- builders
def png_bytes(width, height, bit_depth=8, colour_type=2, rows: bytes | None = None) -> bytes:
    """A PNG with valid CRCs: any header, and ``rows`` (filter byte + pixels per row) as its data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows or b""))
            + chunk(b"IEND", b""))


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of ``pixels`` (H, W) grey or (H, W, 3) RGB uint16."""
    colour_type = 0 if pixels.ndim == 2 else 2
    big = pixels.astype(">u2")
    rows = b"".join(b"\x00" + big[i].tobytes() for i in range(big.shape[0]))
    return png_bytes(pixels.shape[1], pixels.shape[0], 16, colour_type, rows)


def noise(path, side=32, seed=0, **save):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, **save)
    return path


def truncated(path, fmt_ext):
    data = noise(path.with_suffix(fmt_ext), side=64).read_bytes()
    path.with_suffix(fmt_ext).write_bytes(data[: len(data) * 6 // 10])
    return path.with_suffix(fmt_ext)


def exif_rotated(path, orientation):
    stored = np.zeros((20, 40, 3), np.uint8)  # height 20, width 40: red on top, blue below
    stored[:10], stored[10:] = RED, BLUE
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return path


# Each bad file: name -> a function writing it into a folder. Every one must be skipped and named.
def _unreadable(folder):
    path = noise(folder / "unreadable.png")
    path.chmod(0)  # enough as a normal user; as root, `open` is made to refuse it (see deny_unreadable)
    return path


BAD_FILES = {
    "truncated jpeg": lambda f: truncated(f / "truncated", ".jpg"),
    "truncated png": lambda f: truncated(f / "truncated", ".png"),
    "truncated gif": lambda f: truncated(f / "truncated", ".gif"),
    "truncated bmp": lambda f: truncated(f / "truncated", ".bmp"),
    "corrupt jpeg": lambda f: _write(f / "corrupt.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4),
    "corrupt png crc": lambda f: _write(f / "corrupt.png", _flip(noise(f / "tmp_ok.png").read_bytes(), 60)),
    "zero bytes": lambda f: _write(f / "empty.jpg", b""),
    "html named jpg": lambda f: _write(f / "page.jpg", b"<html><body>404 not found</body></html>"),
    "text file": lambda f: _write(f / "notes.txt", b"where these came from"),
    "bomb 30000x30000": lambda f: _write(f / "bomb.png", png_bytes(30000, 30000)),
    "bomb 10000x10000": lambda f: _write(f / "bomb10k.png", png_bytes(10000, 10000)),
    "unreadable": _unreadable,
    "symlink loop file": lambda f: _symlink(f / "loop.jpg", "loop.jpg"),
    "dangling symlink": lambda f: _symlink(f / "gone.jpg", "nowhere.jpg"),
    "named pipe": lambda f: (os.mkfifo(f / "pipe.jpg"), f / "pipe.jpg")[1],
}


def _write(path, data):
    path.write_bytes(data)
    return path


def _flip(data, at):
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _symlink(path, target):
    os.symlink(target, path)
    return path


def _refusing_open(real_open):
    """``open`` that refuses to read files named unreadable.*, as for a chmod 000 file (root reads those)."""
    def guarded(file, mode="r", *args, **kwargs):
        if ("r" in mode and isinstance(file, (str, bytes, os.PathLike))
                and os.path.basename(os.fsdecode(file)).startswith("unreadable.")):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
        return real_open(file, mode, *args, **kwargs)

    return guarded


@pytest.fixture
def deny_unreadable(monkeypatch):
    """Make files named unreadable.* unreadable even to root (tests run as root in CI)."""
    monkeypatch.setattr(builtins, "open", _refusing_open(builtins.open))


def one_line(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert str(needle) in message, (needle, message)
    return message


# ---------------------------------------------------------------- each bad image, alone
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

    bomb = _write(tmp_path / "bomb.png", png_bytes(9000, 9999))  # under Pillow's error limit, over graftkit's
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
    _write(root / "b" / "empty.jpg", b"")
    _write(root / "b" / "page.png", b"<html>")
    with pytest.raises(GraftError) as e:
        load_split(root)
    one_line(e, root / "b", "no usable images", "2 files")
    write_images(root, {"c": 1}, size=16)
    _write(root / "c" / "empty.png", b"")
    shutil.rmtree(root / "b")
    with pytest.raises(GraftError) as e:
        load_split(root)
    one_line(e, "'c'", "only 1 image", "after skipping 1 bad file")


def test_hundreds_of_bad_files_are_capped_in_the_warnings(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 3, "b": 3}, size=16)
    for i in range(150):
        _write(root / "a" / f"bad{i:03}.jpg", b"nope")
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


# ---------------------------------------------------------------- odd but good images
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_odd_images_are_read_right(tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), RED).save(one)
    assert (read_image(one, 32) == RED).all()

    grey16 = _write(tmp_path / "grey16.png", png16(np.full((6, 5), 65535, np.uint16)))
    half16 = _write(tmp_path / "half16.png", png16(np.full((6, 5), 32896, np.uint16)))
    rgb16 = _write(tmp_path / "rgb16.png", png16(np.stack([np.full((4, 4), v, np.uint16)
                                                           for v in (65535, 32896, 0)], -1)))
    assert (read_image(grey16, 4) == 255).all()  # scaled: white stays white, not clipped from 65535
    assert np.abs(read_image(half16, 4).astype(int) - 128).max() <= 1
    assert np.abs(read_image(rgb16, 4).astype(int) - (255, 128, 0)).max() <= 1

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("RGB", (16, 16), RED).convert("CMYK").save(cmyk)
    assert np.abs(read_image(cmyk, 8).astype(int) - RED).max() <= 3

    bad_exif = tmp_path / "bad_exif.jpg"
    Image.new("RGB", (40, 20), RED).save(bad_exif, exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12")
    assert np.abs(read_image(bad_exif, 8).astype(int) - RED).max() <= 3  # a damaged EXIF block is ignored

    assert check_images([one, grey16, half16, rgb16, cmyk, bad_exif])[1] == []


@pytest.mark.parametrize("orientation, red_side", [(3, "bottom"), (6, "right"), (8, "left")])
def test_exif_rotation(tmp_path, orientation, red_side):
    pixels = read_image(exif_rotated(tmp_path / "phone.jpg", orientation), 16).astype(int)
    sides = {"bottom": pixels[-4:], "right": pixels[:, -4:], "left": pixels[:, :4]}
    assert np.abs(sides[red_side] - RED).max() < 40


def test_hidden_files_and_folder_loops_are_ignored(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 3, "b": 3}, size=16)
    _write(root / "a" / ".DS_Store", b"\0\0\0\1Bud1")
    _write(root / "a" / "._photo.jpg", b"\0\5\26\7AppleDouble")
    _write(root / "b" / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    (root / "a" / "nested").mkdir()
    os.symlink("..", root / "a" / "nested" / "up")  # a loop back to the class folder
    os.symlink(root / "a" / "nested", root / "a" / "again")  # a second way into the same folder
    noise(root / "a" / "nested" / "deep.png", side=16)
    (root / "b" / "folder.jpg").mkdir()  # a folder named like an image

    split = load_split(root)

    assert split.skipped == [] and "warning" not in capsys.readouterr().err
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


def test_evaluation_skips_bad_files(tmp_path, capsys):
    root = write_images(tmp_path, {"a": 2, "b": 2}, size=16)
    _write(root / "a" / "bad.png", b"\x89PNG broken")
    images = labelled_images(root, ["a", "b"])
    assert len(images) == 4 and images.skipped[0][0] == str(root / "a" / "bad.png")
    with pytest.raises(GraftError) as e:
        labelled_images(root, ["a", "b"], strict=True)
    one_line(e, root / "a" / "bad.png")


# ---------------------------------------------------------------- a messy folder, end to end
MESSY_BAD = ["truncated jpeg", "zero bytes", "html named jpg", "text file", "bomb 30000x30000", "unreadable",
             "symlink loop file", "named pipe"]


def _messy_folder(root: Path) -> dict:
    write_images(root / "train", {"red": 6, "blue": 6}, size=24)
    write_images(root / "val", {"red": 2, "blue": 2}, size=24, seed=5)
    bad = [str(BAD_FILES[kind](root / "train" / ("red" if i % 2 else "blue"))) for i, kind in enumerate(MESSY_BAD)]
    odd = root / "train" / "red"
    Image.new("RGB", (1, 1), (200, 0, 0)).save(odd / "tiny.png")
    _write(odd / "deep16.png", png16(np.full((24, 24, 3), 200 * 257, np.uint16) * np.array([1, 0, 0], np.uint16)))
    Image.new("RGB", (24, 24), (200, 0, 0)).convert("CMYK").save(odd / "cmyk.jpg")
    exif_rotated(odd / "rotated.jpg", 6)
    name = os.path.join(os.fsencode(odd), NON_UTF8)
    with open(name, "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")
    _write(odd / ".DS_Store", b"\0\0\0\1Bud1")
    copy = root / "val" / "red" / "copy_of_red_0.png"
    shutil.copy(odd / "red_0.png", copy)
    return {"bad": sorted(bad), "non_utf8": os.fsdecode(name), "copy": str(copy),
            "vanish": str(root / "train" / "blue" / "blue_1.png")}


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    """One tiny end-to-end training run on a folder of every kind of mess; its files and stderr."""
    root = tmp_path_factory.mktemp("messy")
    mess = _messy_folder(root / "data")
    model = tiny_cnn(root / "personal.keras", size=24, classes=3)
    real_load_split, real_open = data_module.load_split, builtins.open
    stderr = io.StringIO()

    def load_split_then_vanish(*args, **kwargs):  # a file deleted after the check, before the epochs
        split = real_load_split(*args, **kwargs)
        os.unlink(mess["vanish"])
        return split

    saved = sys.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_module, "load_split", load_split_then_vanish)
        patch.setattr(builtins, "open", _refusing_open(real_open))
        sys.stderr = stderr
        try:
            run = api.train(root / "data", base=str(model), epochs=1, fine_tune_epochs=0, batch_size=8,
                                 augment=False, lr=0.01, out=str(root / "run"), feature_cache="off")
        finally:
            sys.stderr = saved
    return run, mess, stderr.getvalue()


def test_messy_folder_trains_skipping_and_counting(messy_run):
    run, mess, err = messy_run
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    skipped = metrics["skipped_images"]
    assert skipped["count"] == len(MESSY_BAD) == 8
    assert sorted(f["path"] for f in skipped["files"]) == mess["bad"]
    assert all(f["reason"] for f in skipped["files"])
    for path in mess["bad"]:
        assert f"graft: warning: skipped '{path}'" in err
    assert metrics["duplicate_images"] == {"count": 1, "pairs": [
        {"train": str(Path(mess["copy"]).parents[2] / "train" / "red" / "red_0.png"), "val": mess["copy"]}]}
    assert metrics["train_images"] == 12 + 5  # 6 + 6 generated, tiny, 16-bit, CMYK, rotated, non-UTF-8 name
    assert metrics["val_images"] == 5
    assert f"could not read '{mess['vanish']}' any more" in err  # vanished mid-run: a warning, not a crash
    assert "could not read" not in err.replace(f"could not read '{mess['vanish']}'", "")
    assert (run.run_dir / "model.keras").is_file()


def test_strict_run_fails_before_any_work(tmp_path, capsys, deny_unreadable):
    mess = _messy_folder(tmp_path / "data")
    model = tiny_cnn(tmp_path / "personal.keras", size=24, classes=3)
    code = main(["train", str(tmp_path / "data"), "--base", str(model), "--strict", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("graft: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert mess["bad"][0] in errors[0] and f"({len(MESSY_BAD) - 1} more bad files after it)" in errors[0]
    assert not (tmp_path / "run").exists()


def test_predict_and_evaluate_skip_bad_files(messy_run, tmp_path, capsys):
    run, _, _ = messy_run
    folder = tmp_path / "new"
    for i in range(3):
        noise(folder / f"ok{i}.png", side=24, seed=i)
    _write(folder / "broken.jpg", b"\xff\xd8\xff garbage")
    _write(folder / "bomb.png", png_bytes(30000, 30000))
    os.mkfifo(folder / "pipe.png")
    with open(os.path.join(os.fsencode(folder), NON_UTF8), "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")

    code = main(["predict", str(run.run_dir), str(folder), "--format", "json", "--quiet"])
    out, err = capsys.readouterr()
    names = sorted(os.fsencode(Path(r["path"]).name) for r in json.loads(out))
    assert code == 0 and names == [b"caf\xe9.png", b"ok0.png", b"ok1.png", b"ok2.png"]
    for name in ("broken.jpg", "bomb.png", "pipe.png"):
        assert f"skipped '{folder / name}'" in err

    code = main(["predict", str(run.run_dir), str(folder), "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("graft: error:")][0].count("'") >= 2

    labelled = write_images(tmp_path / "labelled", {"red": 2, "blue": 2}, size=24)
    _write(labelled / "red" / "cut.jpg", b"\xff\xd8\xff\xe0")
    code = main(["evaluate", str(run.run_dir), str(labelled), "--json", "--no-report"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["count"] == 4 and f"skipped '{labelled / 'red' / 'cut.jpg'}'" in err
    code = main(["evaluate", str(run.run_dir), str(labelled), "--strict", "--no-report"])
    assert code == 2 and "cut.jpg" in capsys.readouterr().err


def test_predict_prints_a_non_utf8_name_as_its_bytes(messy_run, tmp_path, capsysbinary):
    run, _, _ = messy_run
    with open(os.path.join(os.fsencode(tmp_path), NON_UTF8), "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")
    code = main(["predict", str(run.run_dir), str(tmp_path), "--format", "csv", "--quiet"])  # strict stdout
    out = capsysbinary.readouterr().out
    assert code == 0 and os.path.join(os.fsencode(tmp_path), NON_UTF8) in out


# ---------------------------------------------------------------- untrusted and unusable model files
def _h5_config(path):
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def _rewrite_h5_config(src, dst, edit):
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["model_config"] = json.dumps(edit(json.loads(f.attrs["model_config"])))
    return dst


def test_h5_with_marshalled_bytecode_is_refused(keras2_files, tmp_path):
    path = keras2_files / "lambda.h5"
    lam = next(layer for layer in _h5_config(path)["config"]["layers"] if layer["class_name"] == "Lambda")
    assert lam["config"]["function_type"] == "lambda"  # a genuine tf-keras file: Python bytecode, marshalled
    with pytest.raises(GraftError) as e:
        load_personal(path)
    one_line(e, path, "custom Python code", "--trust-model")
    # The same bytecode under another class name is still found.
    disguised = _rewrite_h5_config(path, tmp_path / "disguised.h5", lambda c: json.loads(
        json.dumps(c).replace('"class_name": "Lambda"', '"class_name": "Scale"')))
    with pytest.raises(GraftError) as e:
        load_personal(disguised)
    one_line(e, disguised, "--trust-model")
    assert load_personal(path, trust=True).name == "with_lambda"


def test_h5_with_an_unknown_custom_class(keras2_files, tmp_path):
    custom = _rewrite_h5_config(keras2_files / "cnn.h5", tmp_path / "custom.h5", lambda c: json.loads(
        json.dumps(c).replace('"class_name": "ReLU"', '"class_name": "StrangersActivation"')))
    for trust in (False, True):
        with pytest.raises(GraftError) as e:
            load_personal(custom, trust=trust)
        one_line(e, custom, "custom class", "StrangersActivation")


def test_keras_file_with_custom_object_class(tmp_path):
    @keras.saving.register_keras_serializable(package="robustness_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = keras.Sequential([keras.Input((16, 16, 3)), Doubler(name="double"), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    saved = tmp_path / "saved.keras"
    model.save(saved)
    # On a machine without that code: the class is not registered.
    stranger = tmp_path / "stranger.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(stranger, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "config.json":
                body = body.replace(b"robustness_test>Doubler", b"someone_else>Doubler")
            dst.writestr(item, body)
    with pytest.raises(GraftError) as e:
        load_personal(stranger)
    one_line(e, stranger, "custom class", "Doubler")


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_keras_file_with_python_lambda_in_a_config_is_refused(tmp_path):
    path = tmp_path / "act.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, activation=lambda t: t * 0.5),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]).save(path)
    with pytest.raises(GraftError) as e:
        load_personal(path)
    one_line(e, path, "--trust-model")


def test_savedmodel_needs_trust_through_the_cli(keras2_files, tmp_path, capsys):
    root = write_images(tmp_path / "data", {"a": 3, "b": 3}, size=32)
    code = main(["train", str(root), "--base", str(keras2_files / "savedmodel"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model" in err and "SavedModel" in err and "Traceback" not in err
    code = main(["inspect", str(keras2_files / "savedmodel"), "--trust-model"])
    assert code == 0 and "=>" in capsys.readouterr().out


def test_files_that_are_not_usable_models(tmp_path, keras2_files):
    cases = {}
    png = tmp_path / "photo.keras"
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    cases[png] = "not a Keras .keras file"
    good = tmp_path / "good.keras"
    tiny_cnn(good, size=32)
    cut_keras = _write(tmp_path / "cut.keras", good.read_bytes()[: good.stat().st_size // 2])
    cases[cut_keras] = "cut.keras"
    cut_h5 = _write(tmp_path / "cut.h5", (keras2_files / "cnn.h5").read_bytes()[:3000])
    cases[cut_h5] = "cut.h5"
    zipped = tmp_path / "notes.keras"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("notes.txt", "hello")
    cases[zipped] = "not a Keras model"
    for path, needle in cases.items():
        with pytest.raises(GraftError) as e:
            load_base(path)
        one_line(e, path, needle)


@pytest.mark.parametrize("kind, needle", [
    ("no learned layers", "no learned layer before its classifier"),
    ("flatten only", "no learned layer before its classifier"),
    ("one channel", "expects 1-channel images"),
    ("channels first", "channels-first"),
    ("not images", "not images"),
    ("two inputs", "2 inputs"),
])
def test_models_graftkit_cannot_use(tmp_path, kind, needle):
    L = keras.layers
    if kind == "no learned layers":
        model = keras.Sequential([keras.Input((16, 16, 3)), L.Rescaling(1 / 255), L.GlobalAveragePooling2D(),
                                  L.Dense(2)])
    elif kind == "flatten only":
        model = keras.Sequential([keras.Input((16, 16, 3)), L.Flatten(), L.Dense(2)])
    elif kind == "one channel":
        model = keras.Sequential([keras.Input((16, 16, 1)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    elif kind == "channels first":
        model = keras.Sequential([keras.Input((3, 16, 16)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    elif kind == "not images":
        model = keras.Sequential([keras.Input((20,)), L.Dense(8), L.Dense(2)])
    else:
        a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
        x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3)(L.Add()([a, b])))
        model = keras.Model([a, b], L.Dense(2)(x))
    path = tmp_path / f"{kind.replace(' ', '_')}.keras"
    model.save(path)
    with pytest.raises(GraftError) as e:
        load_base(path)
    one_line(e, needle)


# ---------------------------------------------------------------- options, before any work
@pytest.mark.parametrize("options, needle", [
    ({"lr": 0}, "--lr"), ({"lr": -0.1}, "--lr"), ({"lr": float("inf")}, "--lr"), ({"lr": float("nan")}, "--lr"),
    ({"fine_tune_lr": 0.0}, "--fine-tune-lr"), ({"epochs": -1}, "--epochs"),
    ({"fine_tune_epochs": -2}, "--fine-tune-epochs"), ({"epochs": 0, "fine_tune_epochs": 0}, "both 0"),
    ({"image_size": 31}, "--image-size"), ({"image_size": 0}, "--image-size"), ({"batch_size": 0}, "--batch-size"),
    ({"val_split": 1.0}, "--val-split"), ({"dropout": 1.0}, "--dropout"), ({"patience": 0}, "--patience"),
    ({"seed": -1}, "--seed"), ({"hidden": [0]}, "--hidden"), ({"freeze": "sometimes"}, "--freeze"),
    ({"feature_cache": "maybe"}, "--feature-cache"), ({"epoch": 3}, "did you mean 'epochs'"),
    ({"epochs": 0, "freeze": "all"}, "nothing would train"),
    ({"epochs": 0, "feature_cache": "memory"}, "--feature-cache memory"),
    ({"learning_rate": 0.1}, "unknown option 'learning_rate'"),
])
def test_bad_options_fail_before_any_work(tmp_path, options, needle):
    with pytest.raises(GraftError) as e:
        api.train(tmp_path / "does_not_exist", base="mobilenet_v2_0.35", out=str(tmp_path / "run"), **options)
    one_line(e, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, needle", [
    (["predict", "run", "x.png", "--top-k", "0"], "--top-k"),
    (["predict", "run", "x.png", "--batch-size", "-1"], "--batch-size"),
    (["evaluate", "run", "data", "--batch-size", "0"], "--batch-size"),
    (["train", "data", "--lr", "-1"], "--lr"),
    (["train", "data", "--image-size", "16"], "--image-size"),
])
def test_cli_numeric_options(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("graft: error:")][0].count(needle) == 1


def test_cli_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "data", "--learning-rate", "0.1"])
    assert e.value.code == 2 and "--learning-rate" in capsys.readouterr().err


def test_config_from_an_older_run_gets_the_new_defaults(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": "photos", "epochs": 3}))
    assert TrainConfig.from_file(path).strict is False


# ---------------------------------------------------------------- a failed write (disk full)
class _FullDisk:
    """A file whose writes fail as on a full disk; everything else goes to the real file."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()
        return False


def _fill_disk_under(monkeypatch, folder: Path, only: str = ""):
    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        name = os.fspath(file) if isinstance(file, (str, os.PathLike)) else ""
        if any(c in mode for c in "wax+") and name.startswith(str(folder)) and only in os.path.basename(name):
            return _FullDisk(handle)
        return handle

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


@pytest.mark.parametrize("only", ["", ".model.keras"])
def test_disk_full_is_one_line_and_keeps_earlier_runs(messy_run, tmp_path, monkeypatch, only):
    run, _, _ = messy_run
    before = {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()}
    assert "model.keras" in before and "metrics.json" in before
    target = tmp_path / "second_run"
    target.mkdir()
    second = Run(model=run.model, class_names=run.class_names, metrics=run.metrics, stages=run.stages,
                 config=run.config, run_dir=target)
    _fill_disk_under(monkeypatch, target, only)

    with pytest.raises(GraftError) as e:
        write_run(second)

    monkeypatch.undo()
    one_line(e, "No space left on device", target)
    assert {p.name: p.read_bytes() for p in run.run_dir.iterdir() if p.is_file()} == before
    left = sorted(p.name for p in target.iterdir())
    assert not [name for name in left if name.startswith(".")], left  # no temporary files left behind
    assert "model.keras" not in left  # a folder without model.keras is never taken for a finished run
    if only:
        assert "metrics.json" in left  # the JSON files went through; only the model failed
