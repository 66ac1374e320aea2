"""Where the images are and which class each belongs to: class folders, ``train/``/``val/`` splits, seeded stratified splitting."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graftkit import log
from graftkit.data.check import (
    EXTENSIONS_TEXT,
    Checked,
    find_duplicates,
    is_image_name,
    reason_of,
    scan,
)
from graftkit.errors import GraftError

# Windows marks these hidden by attribute, not by name, so their owners never see them to move them.
_OS_FILES = {"thumbs.db", "desktop.ini"}


_FIX_LAYOUT = "pass a folder with one subfolder of images per class"


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
        checked = scan([p for files in (*train.values(), *val.values()) for p in files], strict=strict)
        train, val = _usable(train, checked, train_dir), _usable(val, checked, val_dir)
        split = DataSplit(_image_set(train, names), _image_set(val, names), names, "folders")
    else:
        if not 0 < val_split < 1:
            raise GraftError(f"--val-split {val_split} is out of range: use a fraction such as 0.2")
        classes = _classes(root)
        names = sorted(classes)
        checked = scan([p for name in names for p in classes[name]], strict=strict)
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
    split.duplicates = find_duplicates(split.train.paths, split.val.paths, checked.digests, strict)
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
    checked = scan([p for files in classes.values() for p in files], strict=strict, digests=False)
    images = _image_set(_usable(classes, checked, folder), list(class_names))
    images.skipped = checked.skipped
    return images


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
        raise GraftError(f"cannot read folder '{folder}' ({reason_of(error)}): check its permissions") from None


def _walk(folder: Path) -> list[str]:
    """Every visible file under ``folder``, recursively, sorted.

    Symlinked folders are followed, but each real folder is read once, so a link back up
    the tree (a loop) neither hangs nor lists files twice. A folder that cannot be read is
    named in a warning and left out.
    """
    found, seen = [], set()

    def unreadable(error: OSError) -> None:
        log.warn(f"skipped folder '{error.filename or folder}': not readable ({reason_of(error)})")

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
            raise GraftError(f"class folder '{path}' has no images: add {EXTENSIONS_TEXT} files or remove it")
        classes[name] = files
    return classes


def _usable(classes: dict[str, list[str]], checked: Checked, folder: Path) -> dict[str, list[str]]:
    """``classes`` without the files the scan skipped; a class left without images is an error."""
    good = set(checked.good)
    kept = {}
    for name, files in classes.items():
        kept[name] = [f for f in files if f in good]
        if not kept[name]:
            n = len(files)
            raise GraftError(f"class folder '{folder / name}' has no usable images (its {n} file{'s' * (n > 1)} "
                             f"{'were' if n > 1 else 'was'} skipped as bad, see the warnings): "
                             f"add {EXTENSIONS_TEXT} files or remove the folder")
    return kept


def _image_set(classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [p for name in names for p in classes.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in classes.get(name, [])], dtype=np.int32)
    return ImageSet(paths, labels, list(names))


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
            found.update(p for p in _walk(path) if is_image_name(p))
        elif path.exists():
            found.add(str(path))
        else:
            raise GraftError(f"'{item}' does not exist: pass image files or folders of images")
    if not found:
        listed = ", ".join(f"'{item}'" for item in inputs)
        raise GraftError(f"no images found in {listed or 'the input'}: graftkit reads {EXTENSIONS_TEXT}")
    return sorted(found)
