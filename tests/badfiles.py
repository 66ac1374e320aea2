"""Bad and odd inputs, generated: broken images of every kind, PNG builders and a messy image folder."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers import write_images

RED, BLUE = (255, 0, 0), (0, 0, 255)
NON_UTF8 = b"caf\xe9.png"  # a Latin-1 name: not valid UTF-8, but any byte string is a Linux file name


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
def unreadable(folder):
    path = noise(folder / "unreadable.png")
    path.chmod(0)  # enough as a normal user; as root, `open` is made to refuse it (see denyunreadable)
    return path


BAD_FILES = {
    "truncated jpeg": lambda f: truncated(f / "truncated", ".jpg"),
    "truncated png": lambda f: truncated(f / "truncated", ".png"),
    "truncated gif": lambda f: truncated(f / "truncated", ".gif"),
    "truncated bmp": lambda f: truncated(f / "truncated", ".bmp"),
    "corrupt jpeg": lambda f: write_bytes(f / "corrupt.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4),
    "corrupt png crc": lambda f: write_bytes(f / "corrupt.png", flip(noise(f / "tmp_ok.png").read_bytes(), 60)),
    "zero bytes": lambda f: write_bytes(f / "empty.jpg", b""),
    "html named jpg": lambda f: write_bytes(f / "page.jpg", b"<html><body>404 not found</body></html>"),
    "text file": lambda f: write_bytes(f / "notes.txt", b"where these came from"),
    "bomb 30000x30000": lambda f: write_bytes(f / "bomb.png", png_bytes(30000, 30000)),
    "bomb 10000x10000": lambda f: write_bytes(f / "bomb10k.png", png_bytes(10000, 10000)),
    "unreadable": unreadable,
    "symlink loop file": lambda f: symlink(f / "loop.jpg", "loop.jpg"),
    "dangling symlink": lambda f: symlink(f / "gone.jpg", "nowhere.jpg"),
    "named pipe": lambda f: (os.mkfifo(f / "pipe.jpg"), f / "pipe.jpg")[1],
}


def write_bytes(path, data):
    path.write_bytes(data)
    return path


def flip(data, at):
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def symlink(path, target):
    os.symlink(target, path)
    return path


def refusing_open(real_open):
    """``open`` that refuses to read files named unreadable.*, as for a chmod 000 file (root reads those)."""
    def guarded(file, mode="r", *args, **kwargs):
        if ("r" in mode and isinstance(file, (str, bytes, os.PathLike))
                and os.path.basename(os.fsdecode(file)).startswith("unreadable.")):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
        return real_open(file, mode, *args, **kwargs)

    return guarded


def one_line(excinfo, *needles):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for needle in needles:
        assert str(needle) in message, (needle, message)
    return message


MESSY_BAD = ["truncated jpeg", "zero bytes", "html named jpg", "text file", "bomb 30000x30000", "unreadable",
             "symlink loop file", "named pipe"]


def messy_folder(root: Path) -> dict:
    write_images(root / "train", {"red": 6, "blue": 6}, size=24)
    write_images(root / "val", {"red": 2, "blue": 2}, size=24, seed=5)
    bad = [str(BAD_FILES[kind](root / "train" / ("red" if i % 2 else "blue"))) for i, kind in enumerate(MESSY_BAD)]
    odd = root / "train" / "red"
    Image.new("RGB", (1, 1), (200, 0, 0)).save(odd / "tiny.png")
    write_bytes(odd / "deep16.png", png16(np.full((24, 24, 3), 200 * 257, np.uint16) * np.array([1, 0, 0], np.uint16)))
    Image.new("RGB", (24, 24), (200, 0, 0)).convert("CMYK").save(odd / "cmyk.jpg")
    exif_rotated(odd / "rotated.jpg", 6)
    name = os.path.join(os.fsencode(odd), NON_UTF8)
    with open(name, "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")
    write_bytes(odd / ".DS_Store", b"\0\0\0\1Bud1")
    copy = root / "val" / "red" / "copy_of_red_0.png"
    shutil.copy(odd / "red_0.png", copy)
    return {"bad": sorted(bad), "non_utf8": os.fsdecode(name), "copy": str(copy),
            "vanish": str(root / "train" / "blue" / "blue_1.png")}
