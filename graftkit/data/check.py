"""Every image file checked once, up front: a bad file is named and left out (or, with ``strict``, an error).

Truncated, corrupt, empty, not an image, a decompression bomb or unreadable: each is found
before any training, from the file's header and a full decode. The same image in training and
validation is reported the same way.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from graftkit import log
from graftkit.errors import GraftError

# Pillow's own default limit (about 9459 x 9459 pixels). A header claiming more is refused before any
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)
# pixel is decoded, so a decompression bomb (a small file claiming 30000 x 30000) never allocates.
MAX_PIXELS = 89_478_485


_LISTED = 20  # problems named one per line in the warnings; the rest are counted


_STRICT_HINT = "without --strict, bad files are skipped with a warning"


def check_images(paths, *, strict: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """Split image files into the readable ones and the bad ones, for prediction.

    Files are kept whatever their extension (Pillow decides what is an image). Bad ones
    are named in a warning each, or, with ``strict``, the first is an error.

    Args:
        paths: image files.
        strict: make any bad file an error.

    Returns:
        ``(readable paths in their order, [(bad path, reason), ...])``.

    Raises:
        GraftError: ``strict`` and a file is bad, or no file is readable at all.

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (8, 8)).save("/tmp/graftkit_ok.png")
        >>> open("/tmp/graftkit_bad.png", "w").write("hello")
        5
        >>> check_images(["/tmp/graftkit_ok.png", "/tmp/graftkit_bad.png"])  # doctest: +ELLIPSIS
        (['/tmp/graftkit_ok.png'], [('/tmp/graftkit_bad.png', 'not a readable image (...)')])
    """
    paths = [str(p) for p in paths]
    checked = scan(paths, strict=strict, digests=False, any_name=True)
    if paths and not checked.good:
        raise GraftError(f"none of the {len(paths)} files is a readable image (first: '{paths[0]}', "
                         f"{checked.skipped[0][1]}): pass image files")
    return checked.good, checked.skipped


class _BadFile(Exception):
    """Why a file is left out; the message reads after "is", e.g. "not a readable image (...)"."""


@dataclass
class Checked:
    """The outcome of :func:`scan`: the good files, the skipped ones with their reasons, each good file's
    content digest (when asked for) and its size in pixels ``(width, height)``."""

    good: list[str]
    skipped: list[tuple[str, str]]
    digests: dict[str, str]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)


def scan(paths: list[str], *, strict: bool, digests: bool = True, any_name: bool = False) -> Checked:
    """Check every file; warn about (or, ``strict``, fail on) the bad ones."""
    good, skipped, hashes, sizes = [], [], {}, {}
    with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its pixel limit: refuse those too
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # damaged metadata: checked here
        deep = []  # the brightest value of each 16-bit image
        for path in paths:
            try:
                hashes[path], top, sizes[path] = _check_file(path, digest=digests, any_name=any_name)
                good.append(path)
            except _BadFile as bad:
                skipped.append((path, str(bad)))
                continue
            if top is not None:
                deep.append(top)
    if skipped and strict:
        path, reason = skipped[0]
        more = f" ({len(skipped) - 1} more bad files after it)" if len(skipped) > 1 else ""
        fix = ("move it out of the data folder" if reason.startswith("not an image ")
               else "replace it or move it out of the data folder")
        raise GraftError(f"'{path}' is {reason}{more}: {fix} ({_STRICT_HINT})")
    _warn_all([f"skipped '{path}': {reason}" for path, reason in skipped],
              f"{{n}} bad file{{s}} skipped; replace or remove {{them}}, or pass --strict to make bad files an error")
    if deep and max(deep) < 4096:
        log.warn(f"{len(deep)} 16-bit image{'s' * (len(deep) > 1)} use{'s' * (len(deep) == 1)} values up to "
                 f"{max(deep)} of 65535 (a 10- or 12-bit camera?): graftkit scales 16-bit images by 1/257, so to the "
                 f"base they are nearly black (0..{max(deep) // 257}); stretch them to the full range first")
    return Checked(good, skipped, hashes, sizes)


def warn_listed(lines: list[str], more: str = "... and {n} more") -> None:
    """One warning per problem, the first :data:`_LISTED` of them, then ``more`` with the count of the rest (``{n}``).

    Example:
        >>> warn_listed([f"file {i} is bad" for i in range(3)])  # three warning lines on stderr
    """
    for line in lines[:_LISTED]:
        log.warn(line)
    if len(lines) > _LISTED:
        log.warn(more.format(n=len(lines) - _LISTED))


def _warn_all(lines: list[str], summary: str) -> None:
    """One warning per problem (the first ``_LISTED``), then a summary with the count."""
    if not lines:
        return
    warn_listed(lines)
    n = len(lines)
    log.warn(summary.format(n=n, s="s" * (n > 1), them="them" if n > 1 else "it"))


def find_duplicates(train: list[str], val: list[str], digests: dict[str, str], strict: bool) -> list[tuple[str, str]]:
    """(training path, validation path) pairs of identical files; warned about, or an error when ``strict``."""
    first = {}
    for path in train:
        first.setdefault(digests[path], path)
    pairs = [(first[digests[path]], path) for path in val if digests[path] in first]
    if pairs and strict:
        seen, copy = pairs[0]
        more = f" ({len(pairs) - 1} more such pairs)" if len(pairs) > 1 else ""
        raise GraftError(f"validation image '{copy}' is the same image as training image '{seen}'{more}: "
                         "remove one copy so validation measures unseen images (without --strict this "
                         "is a warning)")
    _warn_all([f"validation image '{copy}' is the same image as training image '{seen}'" for seen, copy in pairs],
              "{n} validation image{s} also in training: validation scores will be optimistic; "
              "remove the copies, or pass --strict to make this an error")
    return pairs


def _check_file(path: str, *, digest: bool = True, any_name: bool = False):
    """Raise :class:`_BadFile` unless ``path`` is a readable image.

    Returns its content digest (None unless ``digest``), for a 16-bit image its brightest value (else
    None), and its size in pixels.
    """
    if not any_name and not is_image_name(path):
        raise _BadFile(f"not an image (graftkit reads {EXTENSIONS_TEXT})")
    try:
        info = os.stat(path)
    except OSError as error:  # vanished, a symlink loop, a dangling link, no permission on the folder
        raise _BadFile(f"not readable ({reason_of(error)})") from None
    if not stat.S_ISREG(info.st_mode):  # a named pipe would block the open forever
        raise _BadFile("not a regular file")
    if info.st_size == 0:
        raise _BadFile("an empty file (0 bytes)")
    try:
        with open(path, "rb") as file:
            hashed = _digest(file) if digest else None
            file.seek(0)
            top, size = _check_image(file)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ...
        raise _BadFile(f"not a readable image ({reason_of(error)})") from None
    return hashed, top, size


def _digest(file) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        hasher.update(chunk)
    return hasher.hexdigest()


def _check_image(source) -> tuple[int | None, tuple[int, int]]:
    """Check that ``source`` decodes; returns the brightest value of a 16-bit image (else None) and its size."""
    with Image.open(source) as img:
        check_pixels(img)
        size = img.size
        deep = img.mode.startswith("I;16")
        if img.format == "PNG":
            img.verify()  # walks every chunk and its CRC: catches truncation without decompressing
            if not deep:
                return None, size
            source.seek(0)
            with Image.open(source) as again:  # a verified image cannot be loaded: open it again
                return int(again.getextrema()[1]), size
        # verify() passes a truncated JPEG, GIF or BMP; a load does not. For JPEG, the
        # 1/8-scale draft still reads every byte of entropy-coded data but skips most of the IDCT.
        img.draft("RGB", (1, 1))
        img.load()
        return (int(img.getextrema()[1]) if deep else None), size


def check_pixels(img: Image.Image) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} pixels is over graftkit's limit of {MAX_PIXELS:,}: "
                         "a possible decompression bomb")


def reason_of(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "unknown or damaged image format"
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"its header claims more than graftkit's limit of {MAX_PIXELS:,} pixels: a possible decompression bomb"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the file name, which the message gives already
    return " ".join(str(error).split()) or type(error).__name__


def is_image_name(path: str) -> bool:
    """Whether a file name has one of the image extensions graftkit reads."""
    return path.lower().endswith(IMAGE_EXTENSIONS)
