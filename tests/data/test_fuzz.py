"""Fuzzing the image decoding path: random bytes and mutated real files, under image extensions.

Whatever the bytes, reading an image either gives a (size, size, 3) uint8 array or raises
GraftError, and checking it either keeps it or skips it with a reason: no other exception,
no hang, and no pixels allocated for a header claiming 30000 x 30000 (refused from the header).
"""

from __future__ import annotations

import io
import itertools
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from graftkit.data.check import IMAGE_EXTENSIONS, check_images
from graftkit.data.decode import read_image
from graftkit.errors import GraftError
from graftkit.settings import shared_dir

SIZE = 32
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_counter = itertools.count()


def _encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def _seeds() -> list[tuple[str, bytes]]:
    """Small valid files of every format and mode graftkit reads, and a few real photos if shared/ is here."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    seeds = [
        (".png", _encoded(rgb, "PNG")),
        (".png", _encoded(rgb.convert("RGBA"), "PNG")),
        (".png", _encoded(rgb.convert("P"), "PNG", transparency=0)),
        (".png", _encoded(Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)), "PNG")),
        (".jpg", _encoded(rgb, "JPEG", quality=90)),
        (".jpg", _encoded(rgb, "JPEG", exif=exif, progressive=True)),
        (".jpeg", _encoded(rgb.convert("CMYK"), "JPEG")),
        (".gif", _encoded(rgb.convert("P"), "GIF")),
        (".bmp", _encoded(rgb, "BMP")),
        (".bmp", _encoded(rgb.convert("1"), "BMP")),
        (".tif", _encoded(rgb, "TIFF")),
        (".tif", _encoded(rgb, "TIFF", compression="tiff_lzw")),
        (".tiff", _encoded(Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)), "TIFF")),
        (".tiff", _encoded(Image.fromarray(rng.random((8, 8), dtype=np.float32)), "TIFF")),
        (".webp", _encoded(rgb, "WEBP", quality=80)),
        (".webp", _encoded(rgb.convert("RGBA"), "WEBP", lossless=True)),
    ]
    photos = sorted((shared_dir() / "data" / "hymenoptera" / "train" / "bees").glob("*.jpg"))[:2]
    seeds += [(".jpg", path.read_bytes()) for path in photos]
    return seeds


SEEDS = _seeds()


@st.composite
def mutated(draw):
    """A seed file with a few byte-level mutations, biased to the header where the sizes live."""
    ext, data = draw(st.sampled_from(SEEDS))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "dims"]))
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 64)
        if limit < 1:
            break
        at = draw(st.integers(0, limit))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del data[max(at, 1):]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 32))]
        else:  # a big number where a width or height may be
            form = draw(st.sampled_from([">I", "<I", ">H", "<H"]))
            value = draw(st.sampled_from([0, 1, 30000, 65535, 2**31 - 1, 2**32 - 1]))
            data[at:at + struct.calcsize(form)] = struct.pack(form, value % 2 ** (8 * struct.calcsize(form)))
    return draw(st.sampled_from(IMAGE_EXTENSIONS)) if draw(st.booleans()) else ext, bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, ext: str, data: bytes) -> Path:
    path = folder / f"case{next(_counter)}{ext}"
    path.write_bytes(data)
    return path


def _only_clear_outcomes(path: Path) -> None:
    try:
        pixels = read_image(path, SIZE)
    except GraftError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        pixels = None
    if pixels is not None:
        assert isinstance(pixels, np.ndarray) and pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8
    try:
        good, skipped = check_images([path])
    except GraftError as error:  # none of the files readable
        assert "\n" not in str(error) and str(path) in str(error)
        good, skipped = [], [(str(path), "?")]
    assert len(good) + len(skipped) == 1
    if good:  # what the check lets through, the training stream can read
        assert pixels is not None, f"{path} passed the check but cannot be read"
    path.unlink()


@FUZZ
@given(ext=st.sampled_from(IMAGE_EXTENSIONS), data=st.binary(max_size=4096))
def test_random_bytes(folder, ext, data):
    _only_clear_outcomes(_write(folder, ext, data))


@FUZZ
@given(case=mutated())
def test_mutated_real_files(folder, case):
    _only_clear_outcomes(_write(folder, *case))


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _bombs() -> dict[str, bytes]:
    """Small files whose headers claim 30000 x 30000 (or 10000 x 10000) pixels, in every format."""
    small = Image.new("RGB", (8, 8), "red")
    gif = bytearray(_encoded(small.convert("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 30000, 30000)  # logical screen
    bmp = bytearray(_encoded(small, "BMP"))
    bmp[18:26] = struct.pack("<ii", 30000, 30000)
    jpeg = bytearray(_encoded(small, "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 30000, 30000)
    return {"bomb.png": _png_header(30000, 30000), "bomb10k.png": _png_header(10000, 10000),
            "bomb.gif": bytes(gif), "bomb.bmp": bytes(bmp), "bomb.jpg": bytes(jpeg),
            "bomb.tif": _tiff_claiming(small, 30000, 30000)}


def _tiff_claiming(image, width: int, height: int) -> bytes:
    """``image`` as a little-endian TIFF whose ImageWidth and ImageLength tags say ``width`` x ``height``."""
    tiff = bytearray(_encoded(image, "TIFF"))
    assert tiff[:2] == b"II"
    (ifd,) = struct.unpack_from("<I", tiff, 4)
    (count,) = struct.unpack_from("<H", tiff, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag = struct.unpack_from("<H", tiff, entry)[0]
        if tag in (256, 257):  # as a LONG, so any size fits
            struct.pack_into("<HHII", tiff, entry, tag, 4, 1, width if tag == 256 else height)
    return bytes(tiff)


_BOMB_PROBE = """
import json, sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from PIL import Image
from graftkit.data.check import IMAGE_EXTENSIONS, check_images
from graftkit.data.decode import read_image
from graftkit.errors import GraftError
paths = sorted(Path(sys.argv[1]).iterdir())
read_image(sys.argv[2], 32)  # warm up: Pillow's plugins loaded before counting the images it makes
images_before = Image.core.get_stats()["new_count"]
outcomes = {}
for path in paths:
    try:
        read_image(path, 32)
        outcomes[path.name] = "read"
    except GraftError as error:
        outcomes[path.name] = str(error)
for path in paths:
    try:
        check_images([path])
        outcomes[path.name + " check"] = "kept"
    except GraftError as error:
        outcomes[path.name + " check"] = str(error)
print(json.dumps({"outcomes": outcomes,
                  "images_made": Image.core.get_stats()["new_count"] - images_before}))
"""


def test_decompression_bombs_never_allocate(tmp_path):
    """In a fresh process, so that Pillow's count of images made counts only the bombs: refused from the header."""
    bombs = tmp_path / "bombs"
    bombs.mkdir()
    for name, data in _bombs().items():
        (bombs / name).write_bytes(data)
    small = tmp_path / "small.png"
    Image.new("RGB", (40, 30), "red").save(small)
    done = subprocess.run([sys.executable, "-c", _BOMB_PROBE, str(bombs), str(small)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name in _bombs():
        assert report["outcomes"][name] != "read" and "\n" not in report["outcomes"][name]
        assert report["outcomes"][name + " check"] != "kept"
    assert "limit" in report["outcomes"]["bomb.tif"], report  # refused for its size, not for another fault
    assert report["images_made"] == 0, report  # refused from the header: Pillow never allocated pixels
