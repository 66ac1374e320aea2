"""Image folders in, checked train/val splits and streamed ``tf.data`` pipelines out.

A data folder holds one subfolder per class, either already split into ``train/`` and
``val/`` (or ``validation/``) or split here, stratified and seeded. Every file is checked
once up front, before any training: a bad one (truncated, corrupt, empty, not an image,
a decompression bomb, unreadable) is left out with a warning naming it, or, with
``strict``, fails in seconds with its name. The same image in training and validation is
reported the same way. A file that goes bad after the check is left out of the stream
with a warning rather than stopping an epoch.
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from graftkit import log
from graftkit.errors import GraftError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp")
_EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)
# Windows marks these hidden by attribute, not by name, so their owners never see them to move them.
_OS_FILES = {"thumbs.db", "desktop.ini"}
_FIX_LAYOUT = "pass a folder with one subfolder of images per class"
# Pillow's own default limit (about 9459 x 9459 pixels). A header claiming more is refused before any
# pixel is decoded, so a decompression bomb (a small file claiming 30000 x 30000) never allocates.
MAX_PIXELS = 89_478_485
_LISTED = 20  # problems named one per line in the warnings; the rest are counted
_STRICT_HINT = "without --strict, bad files are skipped with a warning"


@dataclass
class ImageSet:
    """A list of labelled image files.

    ``skipped`` lists the files left out as bad, as ``(path, reason)`` pairs
    (filled by :func:`labelled_images`).

    Example:
        >>> import numpy as np
        >>> s = ImageSet(["a.jpg", "b.jpg", "c.jpg"], np.array([0, 1, 1], "int32"), ["ant", "bee"])
        >>> len(s), s.counts()
        (3, {'ant': 1, 'bee': 2})
    """

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        """Images per class name, every class listed (0 when it has none)."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}


@dataclass
class DataSplit:
    """Train and validation sets over the same classes.

    ``how`` is ``"folders"`` when the data came split into folders, else e.g. ``"split 0.2, seed 0"``.
    ``skipped`` lists the bad files left out, as ``(path, reason)``; ``duplicates`` the
    ``(training path, validation path)`` pairs with the same content.
    """

    train: ImageSet
    val: ImageSet
    class_names: list[str]
    how: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)


def load_split(root, val_split: float = 0.2, seed: int = 0, *, strict: bool = False) -> DataSplit:
    """Find the classes and images under ``root``, check every image and split them.

    ``root`` holds either ``train/`` and ``val/`` (or ``validation/``) with the same class
    subfolders, or the class subfolders themselves, which are then split per class: a
    ``val_split`` share of each class (at least one image, never all) goes to validation.
    Images in nested folders count for their class; hidden entries (``.DS_Store``) and
    plain files at the top are ignored; symlinked folders are followed, each folder once.

    Bad files (not an image, empty, truncated, corrupt, over :data:`MAX_PIXELS`,
    unreadable) are left out with a warning naming each, and listed in ``skipped``; a
    class left with no images is still an error. Validation images whose content is also
    in training are warned about and listed in ``duplicates``, not dropped.

    Args:
        root: the data folder.
        val_split: share of each class held out for validation when ``root`` is not split.
        seed: seed of that split.
        strict: make any bad file or train/validation duplicate an error instead.

    Returns:
        The split, class names sorted, paths sorted within each class.

    Raises:
        GraftError: one line naming the folder or file at fault and the fix.

    Example:
        >>> split = load_split("data/hymenoptera")  # doctest: +SKIP
        >>> split.class_names, len(split.train), len(split.val), split.how  # doctest: +SKIP
        (['ants', 'bees'], 245, 153, 'folders')
    """
    root, train_dir, val_dir = _open_root(root)
    if train_dir:
        train, val = _classes(train_dir), _classes(val_dir)
        unmatched = sorted(set(train) ^ set(val))
        if unmatched:
            name = unmatched[0]
            have, lack = (train_dir, val_dir) if name in train else (val_dir, train_dir)
            raise GraftError(f"class '{name}' is in '{have}' but not in '{lack}': "
                             f"add '{lack / name}' with images or remove '{have / name}'")
        names = sorted(train)
        checked = _scan([p for files in (*train.values(), *val.values()) for p in files], strict=strict)
        train, val = _usable(train, checked, train_dir), _usable(val, checked, val_dir)
        split = DataSplit(_image_set(train, names), _image_set(val, names), names, "folders")
    else:
        if not 0 < val_split < 1:
            raise GraftError(f"--val-split {val_split} is out of range: use a fraction such as 0.2")
        classes = _classes(root)
        names = sorted(classes)
        checked = _scan([p for name in names for p in classes[name]], strict=strict)
        usable = _usable(classes, checked, root)
        rng = np.random.default_rng(seed)
        train, val = {}, {}
        for name in names:
            files = usable[name]
            if len(files) < 2:
                dropped = len(classes[name]) - len(files)
                after = f" after skipping {dropped} bad file{'s' * (dropped > 1)}" if dropped else ""
                raise GraftError(f"class '{name}' has only 1 image ('{root / name}'){after}: a class needs at "
                                 "least 2 to split into train and val; add images or remove the folder")
            n_val = min(max(round(len(files) * val_split), 1), len(files) - 1)
            order = rng.permutation(len(files))
            val[name] = sorted(files[i] for i in order[:n_val])
            train[name] = sorted(files[i] for i in order[n_val:])
        split = DataSplit(_image_set(train, names), _image_set(val, names), names,
                          f"split {val_split:g}, seed {seed}")
    split.skipped = checked.skipped
    split.duplicates = _duplicates(split.train.paths, split.val.paths, checked.digests, strict)
    return split


def labelled_images(root, class_names: list[str], *, strict: bool = False) -> ImageSet:
    """The checked images of a labelled folder, labelled with a trained model's classes, for evaluation.

    ``root`` holds class subfolders, or ``train/`` and ``val/`` (or ``validation/``), in which
    case its validation part is used. A class of the model may be absent; a folder the model
    has no class for is an error. Bad files are left out with a warning (listed in the
    result's ``skipped``), or are an error with ``strict``.

    Args:
        root: the labelled folder.
        class_names: the model's class names, in the order of its outputs.
        strict: make any bad file an error.

    Returns:
        The images, labels indexing ``class_names``.

    Raises:
        GraftError: one line naming the folder or file at fault and the fix.

    Example:
        >>> labelled_images("data/hymenoptera", ["ants", "bees"]).counts()  # doctest: +SKIP
        {'ants': 70, 'bees': 83}
    """
    root, _, val_dir = _open_root(root)
    folder = val_dir or root
    classes = _classes(folder, min_classes=1)
    unknown = sorted(set(classes) - set(class_names))
    if unknown:
        raise GraftError(f"class folder '{folder / unknown[0]}' is not a class of the model "
                         f"({', '.join(class_names)}): move it out or use a model trained on that class")
    checked = _scan([p for files in classes.values() for p in files], strict=strict, digests=False)
    images = _image_set(_usable(classes, checked, folder), list(class_names))
    images.skipped = checked.skipped
    return images


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
    checked = _scan(paths, strict=strict, digests=False, any_name=True)
    if paths and not checked.good:
        raise GraftError(f"none of the {len(paths)} files is a readable image (first: '{paths[0]}', "
                         f"{checked.skipped[0][1]}): pass image files")
    return checked.good, checked.skipped


def _open_root(root) -> tuple[Path, Path | None, Path | None]:
    """``root`` as a Path, with its train and validation folders when it comes split."""
    root = Path(root)
    if not root.exists():
        raise GraftError(f"data folder '{root}' does not exist: {_FIX_LAYOUT}")
    if not root.is_dir():
        raise GraftError(f"data folder '{root}' is a file, not a folder: {_FIX_LAYOUT}")
    folders = _subfolders(root)
    val_names = [name for name in ("val", "validation") if name in folders]
    if len(val_names) == 2:
        raise GraftError(f"data folder '{root}' has both val/ and validation/: keep one of them")
    if "train" not in folders:
        return root, None, None
    if not val_names:
        raise GraftError(f"data folder '{root}' has train/ but no val/ or validation/: "
                         "add a val/ folder with the same classes, or put the class folders directly in it")
    return root, root / "train", root / val_names[0]


def _visible(name: str) -> bool:
    return not name.startswith(".") and name.lower() not in _OS_FILES


def _subfolders(folder: Path) -> dict[str, Path]:
    try:
        with os.scandir(folder) as entries:
            return {e.name: Path(e.path) for e in entries if _visible(e.name) and e.is_dir()}
    except OSError as error:
        raise GraftError(f"cannot read folder '{folder}' ({_reason(error)}): check its permissions") from None


def _walk(folder: Path) -> list[str]:
    """Every visible file under ``folder``, recursively, sorted.

    Symlinked folders are followed, but each real folder is read once, so a link back up
    the tree (a loop) neither hangs nor lists files twice. A folder that cannot be read is
    named in a warning and left out.
    """
    found, seen = [], set()

    def unreadable(error: OSError) -> None:
        log.warn(f"skipped folder '{error.filename or folder}': not readable ({_reason(error)})")

    for here, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        try:
            info = os.stat(here)
        except OSError as error:
            unreadable(error)
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = [d for d in dirs if _visible(d)]
        found += [os.path.join(here, f) for f in files if _visible(f)]
    return sorted(found)


def _is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _classes(folder: Path, min_classes: int = 2) -> dict[str, list[str]]:
    """Class name -> every visible file in its folder; checks the layout, not the files."""
    folders = _subfolders(folder)
    if not folders:
        raise GraftError(f"data folder '{folder}' has no class subfolders: {_FIX_LAYOUT}")
    if len(folders) < min_classes:
        raise GraftError(f"data folder '{folder}' has only the class '{next(iter(folders))}': "
                         "a classifier needs at least two classes; add a subfolder per class")
    classes = {}
    for name, path in sorted(folders.items()):
        files = _walk(path)
        if not files:
            raise GraftError(f"class folder '{path}' has no images: add {_EXTENSIONS_TEXT} files or remove it")
        classes[name] = files
    return classes


class _BadFile(Exception):
    """Why a file is left out; the message reads after "is", e.g. "not a readable image (...)"."""


@dataclass
class _Checked:
    good: list[str]
    skipped: list[tuple[str, str]]
    digests: dict[str, str]


def _scan(paths: list[str], *, strict: bool, digests: bool = True, any_name: bool = False) -> _Checked:
    """Check every file; warn about (or, ``strict``, fail on) the bad ones."""
    good, skipped, hashes = [], [], {}
    with warnings.catch_warnings():  # Pillow only warns between 1x and 2x its pixel limit: refuse those too
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")  # damaged metadata: checked here
        deep = []  # the brightest value of each 16-bit image
        for path in paths:
            try:
                hashes[path], top = _check_file(path, digest=digests, any_name=any_name)
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
    return _Checked(good, skipped, hashes)


def _warn_all(lines: list[str], summary: str) -> None:
    """One warning per problem (the first ``_LISTED``), then a summary with the count."""
    if not lines:
        return
    for line in lines[:_LISTED]:
        log.warn(line)
    if len(lines) > _LISTED:
        log.warn(f"... and {len(lines) - _LISTED} more")
    n = len(lines)
    log.warn(summary.format(n=n, s="s" * (n > 1), them="them" if n > 1 else "it"))


def _usable(classes: dict[str, list[str]], checked: _Checked, folder: Path) -> dict[str, list[str]]:
    """``classes`` without the files the scan skipped; a class left without images is an error."""
    good = set(checked.good)
    kept = {}
    for name, files in classes.items():
        kept[name] = [f for f in files if f in good]
        if not kept[name]:
            n = len(files)
            raise GraftError(f"class folder '{folder / name}' has no usable images (its {n} file{'s' * (n > 1)} "
                             f"{'were' if n > 1 else 'was'} skipped as bad, see the warnings): "
                             f"add {_EXTENSIONS_TEXT} files or remove the folder")
    return kept


def _duplicates(train: list[str], val: list[str], digests: dict[str, str], strict: bool) -> list[tuple[str, str]]:
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


def _check_file(path: str, *, digest: bool = True, any_name: bool = False) -> tuple[str | None, int | None]:
    """Raise :class:`_BadFile` unless ``path`` is a readable image.

    Returns its content digest (None unless ``digest``) and, for a 16-bit image, its brightest value.
    """
    if not any_name and not _is_image_name(path):
        raise _BadFile(f"not an image (graftkit reads {_EXTENSIONS_TEXT})")
    try:
        info = os.stat(path)
    except OSError as error:  # vanished, a symlink loop, a dangling link, no permission on the folder
        raise _BadFile(f"not readable ({_reason(error)})") from None
    if not stat.S_ISREG(info.st_mode):  # a named pipe would block the open forever
        raise _BadFile("not a regular file")
    if info.st_size == 0:
        raise _BadFile("an empty file (0 bytes)")
    try:
        with open(path, "rb") as file:
            hashed = _digest(file) if digest else None
            file.seek(0)
            top = _check_image(file)
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ...
        raise _BadFile(f"not a readable image ({_reason(error)})") from None
    return hashed, top


def _digest(file) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for chunk in iter(lambda: file.read(1 << 20), b""):
        hasher.update(chunk)
    return hasher.hexdigest()


def _check_image(source) -> int | None:
    """Check that ``source`` decodes; returns the brightest value of a 16-bit image, else None."""
    with Image.open(source) as img:
        _check_pixels(img)
        deep = img.mode.startswith("I;16")
        if img.format == "PNG":
            img.verify()  # walks every chunk and its CRC: catches truncation without decompressing
            if not deep:
                return None
            source.seek(0)
            with Image.open(source) as again:  # a verified image cannot be loaded: open it again
                return int(again.getextrema()[1])
        # verify() passes a truncated JPEG, GIF or BMP; a load does not. For JPEG, the
        # 1/8-scale draft still reads every byte of entropy-coded data but skips most of the IDCT.
        img.draft("RGB", (1, 1))
        img.load()
        return int(img.getextrema()[1]) if deep else None


def _check_pixels(img: Image.Image) -> None:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} pixels is over graftkit's limit of {MAX_PIXELS:,}: "
                         "a possible decompression bomb")


def _reason(error: Exception) -> str:
    if isinstance(error, UnidentifiedImageError):
        return "unknown or damaged image format"
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"its header claims more than graftkit's limit of {MAX_PIXELS:,} pixels: a possible decompression bomb"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the file name, which the message gives already
    return " ".join(str(error).split()) or type(error).__name__


def _image_set(classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [p for name in names for p in classes.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in classes.get(name, [])], dtype=np.int32)
    return ImageSet(paths, labels, list(names))


def read_image(path, size: int) -> np.ndarray:
    """Read one image file as RGB pixels squashed to ``size`` x ``size``.

    EXIF rotation is applied (a damaged EXIF block is ignored), a GIF, WebP or TIFF with
    several frames gives its first, transparency is laid on white, 16-bit images (a
    microscope's TIFF) are scaled down to 8 bits, and a float image of 0..1 up to 0..255.
    Images over :data:`MAX_PIXELS` are refused before they are decoded.

    Args:
        path: an image file.
        size: side of the square the image is squashed to (bilinear, aspect ratio not kept).

    Returns:
        uint8 array of shape (size, size, 3), values 0..255.

    Raises:
        GraftError: the file cannot be read as an image.

    Example:
        >>> from PIL import Image
        >>> Image.new("P", (300, 200)).save("/tmp/graftkit_example.gif")
        >>> read_image("/tmp/graftkit_example.gif", 224).shape
        (224, 224, 3)
    """
    try:
        return _read(path, size)
    except Exception as error:
        raise GraftError(f"cannot read image '{path}' ({_reason(error)}): replace the file or leave it out") from None


def _read(path, size: int) -> np.ndarray:
    if not stat.S_ISREG(os.stat(path).st_mode):  # a named pipe would block the open forever
        raise ValueError("not a regular file")
    with Image.open(path) as img:
        _check_pixels(img)
        img.draft("RGB", (size, size))  # JPEG only: decode at the smallest scale still >= size
        img = _to_rgb(_upright(img))
        img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)


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


def list_images(inputs: list[str]) -> list[str]:
    """Expand files and folders into a sorted list of image files, for prediction.

    Folders are searched recursively for files ending in one of ``IMAGE_EXTENSIONS``
    (hidden entries skipped); files given by name are kept whatever their extension.
    The files are not opened: :func:`check_images` does that.

    Args:
        inputs: image files and/or folders.

    Returns:
        Unique paths, sorted.

    Raises:
        GraftError: a path does not exist, or no image was found at all.

    Example:
        >>> list_images(["holiday/", "cat.png"])  # doctest: +SKIP
        ['cat.png', 'holiday/beach.jpg', 'holiday/trip/dog.jpeg']
        >>> list_images(["/nonexistent"])
        Traceback (most recent call last):
        graftkit.errors.GraftError: '/nonexistent' does not exist: pass image files or folders of images
    """
    found = set()
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.update(p for p in _walk(path) if _is_image_name(p))
        elif path.exists():
            found.add(str(path))
        else:
            raise GraftError(f"'{item}' does not exist: pass image files or folders of images")
    if not found:
        listed = ", ".join(f"'{item}'" for item in inputs)
        raise GraftError(f"no images found in {listed or 'the input'}: graftkit reads {_EXTENSIONS_TEXT}")
    return sorted(found)


def make_dataset(paths, labels=None, *, image_size: int, batch_size: int, shuffle: bool = False,
                 seed: int = 0, augment: bool = False):
    """A streamed, batched ``tf.data.Dataset`` of images (float32, 0..255) and sparse int32 labels.

    Images are decoded in parallel as they are needed, never all held in memory. Without
    ``shuffle`` the order is exactly ``paths``; with it, the order is reshuffled every
    epoch from ``seed``. Pixels are not normalised: each base normalises inside its model.
    A file that cannot be read when its turn comes (it changed or vanished after the
    check) gives a blank image and a warning naming it: an epoch never stops for it.

    Args:
        paths: image files.
        labels: class indices, one per path, or None to yield images alone.
        image_size: side of the square the images are squashed to.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle the order every epoch.
        seed: seed of the shuffle.
        augment: apply :func:`augmentation` to every batch.

    Example:
        >>> from PIL import Image
        >>> Image.new("RGB", (64, 48), "white").save("/tmp/graftkit_example.png")
        >>> ds = make_dataset(["/tmp/graftkit_example.png"] * 3, [0, 1, 1], image_size=96, batch_size=2)
        >>> [(tuple(x.shape), float(x[0, 0, 0, 0]), y.numpy().tolist()) for x, y in ds]
        [((2, 96, 96, 3), 255.0, [0, 1]), ((1, 96, 96, 3), 255.0, [1])]
    """
    import tensorflow as tf

    paths = [os.fsencode(p) for p in paths]  # bytes survive any file name the OS allows
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"{len(labels)} labels for {len(paths)} paths")

    failed = set()

    def load(path):
        try:
            return _read(os.fsdecode(path), image_size)
        except Exception as error:  # it passed the check, then changed or vanished: never stop an epoch for it
            if path not in failed:  # a blank image keeps every batch and row where it was
                failed.add(path)
                log.warn(f"could not read '{os.fsdecode(path)}' any more ({_reason(error)}): "
                         "used a blank image in its place")
            return np.zeros((image_size, image_size, 3), np.uint8)

    def decode(path):
        image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
        image.set_shape((image_size, image_size, 3))
        return image

    def on_images(function):  # apply ``function`` to the images, pass labels through
        return function if labels is None else lambda x, y: (function(x), y)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    if labels is not None:
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int32)))
    if shuffle:
        ds = ds.shuffle(max(len(paths), 1), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(on_images(decode), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).map(on_images(lambda x: tf.cast(x, tf.float32)))
    if augment:
        layers = augmentation()
        ds = ds.map(on_images(lambda x: layers(x, training=True)), num_parallel_calls=tf.data.AUTOTUNE)
    # Without autotuning: with it, some passes ran at half speed, one core idle (docs/benchmarks.md,
    # section 4). The maps then use every core, and two batches wait ready.
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(2).with_options(options)


def augmentation(seed: int | None = None):
    """The default light augmentation: horizontal flip, rotation up to 18 degrees, zoom up to 10%.

    Reflection fills the borders, so pixels stay in the 0..255 range of the input.
    ``seed`` makes the random draws repeatable (the feature cache seeds each augmented view).

    Example:
        >>> import numpy as np
        >>> augmentation()(np.zeros((2, 32, 32, 3), "float32"), training=True).shape
        TensorShape([2, 32, 32, 3])
    """
    import keras

    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seeds[0]),
        keras.layers.RandomRotation(0.05, fill_mode="reflect", seed=seeds[1]),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seeds[2]),
    ], name="augmentation")


def class_weights(labels, num_classes: int) -> dict[int, float] | None:
    """Balanced class weights when the classes are imbalanced, else None.

    Imbalanced means the largest class has at least 1.5 times the images of the smallest.
    Weights are sklearn's "balanced" ones, ``n / (classes * count)``; a class with no
    images gets weight 1.

    Args:
        labels: class index of every training image.
        num_classes: how many classes the model has.

    Returns:
        ``{class index: weight}`` for Keras ``fit(class_weight=...)``, or None.

    Example:
        >>> class_weights([0, 0, 0, 1], 2)
        {0: 0.6666666666666666, 1: 2.0}
        >>> class_weights([0, 1], 2) is None
        True
    """
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    present = np.flatnonzero(counts)
    if len(present) == 0 or counts[present].max() < 1.5 * counts[present].min():
        return None
    weights = dict.fromkeys(range(num_classes), 1.0)
    balanced = compute_class_weight("balanced", classes=present, y=labels)
    weights.update({int(c): float(w) for c, w in zip(present, balanced)})
    return weights
