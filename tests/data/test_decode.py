"""data.decode: every mode, bit depth, format and EXIF rotation read as RGB uint8 at the asked size."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from graftkit.data.check import check_images
from graftkit.data.decode import read_image
from graftkit.data.layout import (
    list_images,
    load_split,
)
from graftkit.errors import GraftError
from tests.badfiles import exif_rotated, one_line, png16, write_bytes
from tests.helpers import solid_image

RED, BLUE = (255, 0, 0), (0, 0, 255)



def noise_jpeg(path, side=96):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return path



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
    path = solid_image(tmp_path / name, color=color, mode=mode)
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
    one_line(e, bad)
    with pytest.raises(GraftError) as e:
        read_image(tmp_path / "gone.jpg", 8)
    one_line(e, tmp_path / "gone.jpg")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_odd_images_are_read_right(tmp_path):
    one = tmp_path / "one.png"
    Image.new("RGB", (1, 1), RED).save(one)
    assert (read_image(one, 32) == RED).all()

    grey16 = write_bytes(tmp_path / "grey16.png", png16(np.full((6, 5), 65535, np.uint16)))
    half16 = write_bytes(tmp_path / "half16.png", png16(np.full((6, 5), 32896, np.uint16)))
    rgb16 = write_bytes(tmp_path / "rgb16.png", png16(np.stack([np.full((4, 4), v, np.uint16)
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
