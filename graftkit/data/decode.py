"""Decoding one image file into RGB pixels 0..255 at the model's input size."""

from __future__ import annotations

import os
import stat

import numpy as np
from PIL import Image, ImageOps

from graftkit.data.check import check_pixels, reason_of
from graftkit.errors import GraftError


def read_image(path, size: int, channels: int = 3) -> np.ndarray:
    """Read one image file as RGB (or grayscale) pixels squashed to ``size`` x ``size``.

    EXIF rotation is applied (a damaged EXIF block is ignored), a GIF, WebP or TIFF with
    several frames gives its first, transparency is laid on white, 16-bit images (a
    microscope's TIFF) are scaled down to 8 bits, and a float image of 0..1 up to 0..255.
    Images over :data:`MAX_PIXELS` are refused before they are decoded.

    Args:
        path: an image file.
        size: side of the square the image is squashed to (bilinear, aspect ratio not kept).
        channels: 3 for RGB, 1 for grayscale (the RGB image converted to PIL's ``L``, ITU-R 601-2 luma;
            for a grayscale model: its input's channel count decides).

    Returns:
        uint8 array of shape (size, size, channels), values 0..255.

    Raises:
        GraftError: the file cannot be read as an image.

    Example:
        >>> from PIL import Image
        >>> Image.new("P", (300, 200)).save("/tmp/graftkit_example.gif")
        >>> read_image("/tmp/graftkit_example.gif", 224).shape
        (224, 224, 3)
        >>> read_image("/tmp/graftkit_example.gif", 28, channels=1).shape
        (28, 28, 1)
    """
    try:
        return decode_resized(path, size, channels)
    except Exception as error:
        raise GraftError(f"cannot read image '{path}' ({reason_of(error)}): replace the file or leave it out") from None


def decode_resized(path, size: int, channels: int = 3) -> np.ndarray:
    """:func:`read_image` without its error message: raises whatever decoding raises."""
    if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe would block the open forever
        raise ValueError("not a regular file")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    with Image.open(path) as img:
        check_pixels(img)
        img.draft("RGB", (size, size))  # JPEG only: decode at the smallest scale still >= size
        img = _to_rgb(_upright(img))
        if channels == 1:  # one way for every path (training, predict, evaluate, export): RGB, then luma
            img = img.convert("L")
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).reshape(size, size, channels)


def _upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says; unchanged when the EXIF block is damaged."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a bad EXIF block should not cost a good picture; a bad picture fails on load
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.nan_to_num(np.asarray(img, dtype=np.float32))
        top = pixels.max(initial=0)
        if img.mode.startswith("I;16") or top > 255:  # 32-bit "I" and "F" say nothing of range
            pixels = pixels / 257  # scaled, not clipped: 65535 -> 255
        elif img.mode == "F" and top <= 1:  # a float image of 0..1 (a microscope or scientific export)
            pixels = pixels * 255
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return img.convert("RGB")


def resize_pixels(pixels: np.ndarray, size: int) -> np.ndarray:
    """An ``H x W x 3`` array of RGB 0..255 resized to ``size`` x ``size`` with the filter training used.

    Example:
        >>> resize_pixels(np.zeros((30, 40, 3), "uint8"), 16).shape
        (16, 16, 3)
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise GraftError(f"an image array must be H x W x 3 (RGB), not {pixels.shape}")
    if pixels.shape[:2] == (size, size):
        return pixels.astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
