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
from graftkit.data.labels import is_number
from graftkit.data.text import checked_texts, is_text_folder, read_text_files
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
        """Images per class name, every class listed (0 when it has none); multi-label: images carrying
        each label; regression: empty."""
        from graftkit.data.labels import counts

        task = "single" if self.labels.ndim == 1 and self.labels.dtype.kind in "iu" else (
            "multilabel" if self.labels.ndim == 2 else "regression")
        return counts(self.labels, task, self.class_names)


@dataclass
class DataSplit:
    """Train and validation sets over the same classes.

    ``modality`` is ``image``, or ``text`` when the examples are texts (their sets' ``paths`` then hold the
    texts themselves). ``how`` is ``"folders"`` when the data came split into folders, else e.g. ``"folders, split 0.2, seed 0"``
    or ``"table labels.csv"``. ``task`` is ``single``, ``multilabel`` or ``regression`` (the labels are then
    int indices, 0/1 rows, or numbers); ``test`` holds a table's ``test`` rows. ``skipped`` lists the bad
    files left out, as ``(path, reason)``; ``duplicates`` the ``(training path, validation path)`` pairs
    with the same content; ``sizes`` each image's ``(width, height)``; ``warnings`` what looks wrong.
    """

    train: ImageSet
    val: ImageSet
    class_names: list[str]
    how: str
    task: str = "single"
    test: ImageSet | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    warnings: list[dict] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)
    modality: str = "image"


def load_split(root, val_split: float = 0.2, seed: int = 0, *, strict: bool = False, task: str = "auto",
               labels: str | Path | None = None, path_column: str | None = None,
               label_column: str | None = None) -> DataSplit:
    """Find the examples under ``root`` and their labels, check every image and split them.

    ``root`` is a folder of class subfolders, a folder with ``train/`` and ``val/`` (or
    ``validation/``) holding the same class subfolders, or a label table (``.csv`` / ``.tsv``,
    see :mod:`graftkit.data.table`; ``labels`` names one beside an image folder). What is not
    split already is split here, seeded: stratified per class for a single-label task (a
    ``val_split`` share of each class, at least one image, never all), a random share otherwise.
    Images in nested folders count for their class; hidden entries (``.DS_Store``) and plain
    files at the top are ignored; symlinked folders are followed, each folder once.

    ``task`` is ``single``, ``multilabel`` (a table cell of ``;``-separated labels, or the same
    image in several class folders), ``regression`` (a numeric target column, or class folders named
    by numbers), or ``auto``: multilabel for a table with several labels in a cell, else single.

    Bad files (not an image, empty, truncated, corrupt, over :data:`MAX_PIXELS`, unreadable) are
    left out with a warning naming each, and listed in ``skipped``; a class left with no images is
    still an error. Validation images whose content is also in training are warned about and listed
    in ``duplicates``; what else looks wrong (:func:`graftkit.data.labels.data_warnings`) in ``warnings``.

    Args:
        root: the data folder or label table.
        val_split: share held out for validation where the data is not split.
        seed: seed of that split.
        strict: make any bad file, bad table row or train/validation duplicate an error instead.
        task: ``auto``, ``single``, ``multilabel`` or ``regression``.
        labels: a label table for the images under ``root`` (paths in it relative to the table).
        path_column, label_column: the table's columns, when not found by name.

    Returns:
        The split, class names sorted, paths sorted within each class.

    Raises:
        GraftError: one line naming the folder, file or row at fault and the fix.

    Example:
        >>> split = load_split("data/hymenoptera")  # doctest: +SKIP
        >>> split.class_names, len(split.train), len(split.val), split.how  # doctest: +SKIP
        (['ants', 'bees'], 245, 153, 'folders')
    """
    from graftkit.data.labels import data_warnings, encode, split_indices
    from graftkit.data.table import is_table, read_table

    if not 0 < val_split < 1:
        raise GraftError(f"--val-split {val_split} is out of range: use a fraction such as 0.2")
    if labels is not None or is_table(root):
        table = read_table(labels or root, item_column=path_column, label_column=label_column, strict=strict)
        task = ("multilabel" if table.multilabel else "single") if task == "auto" else task
        modality = "text" if table.holds_text else "image"
        items = [row.item for row in table.rows]
        checked = checked_texts(items) if table.holds_text else scan(items, strict=strict)
        good = set(checked.good)
        rows = [row for row in table.rows if row.item in good]
        if not rows:
            raise GraftError(f"no usable image in table '{table.path}': every file was skipped (see the warnings)")
        items, label_lists, parts = [r.item for r in rows], [r.labels for r in rows], [r.split for r in rows]
        if task == "regression":
            table.rows = rows
            table.targets()  # a one-line error naming the first row whose target is not a number
        how = f"table {Path(table.path).name}"
    else:
        items, label_lists, parts, checked, how, modality = _from_folders(root, task, strict)
        task = "single" if task == "auto" else task
    label_array, names = encode(label_lists, task)
    if task != "regression" and len(names) < 2:
        raise GraftError(f"'{root}' has only the label '{names[0]}': a classifier needs at least two; add "
                         "examples of another class")
    parts = np.array([part or "" for part in parts], dtype="<U5")
    if not (parts == "val").any():
        free = np.flatnonzero(parts == "")
        if len(free) < 2:
            raise GraftError(f"'{root}' has no validation examples and too few unsplit ones to hold some out: add "
                             "rows with split 'val', or leave some rows' split empty")
        if task == "single":
            _each_class_twice(label_array[free], names, root, checked.skipped)
        _, val = split_indices(label_array[free], task, val_split, seed)
        parts[free[val]] = "val"
        how = ", ".join(filter(None, [how, f"split {val_split:g}, seed {seed}"]))
    parts[parts == ""] = "train"

    def subset(part):
        chosen = np.flatnonzero(parts == part)
        return ImageSet([items[i] for i in chosen], label_array[chosen], names)

    split = DataSplit(subset("train"), subset("val"), names, how, task=task,
                      test=subset("test") if (parts == "test").any() else None, modality=modality)
    split.skipped = checked.skipped
    split.sizes = checked.sizes
    split.duplicates = find_duplicates(split.train.paths, split.val.paths, checked.digests, strict)
    order = {item: i for i, item in enumerate(items)}
    split.warnings = data_warnings(split, digests=checked.digests,
                                   label_lists=[label_lists[order[p]] for p in split.train.paths + split.val.paths])
    return split


def _from_folders(root, task: str, strict: bool):
    """Examples of a class-folder layout: (paths, label lists, presplit parts, scan, how)."""
    root, train_dir, val_dir = _open_root(root)
    if train_dir:
        train, val = _classes(train_dir), _classes(val_dir)
        if is_text_folder(train) and is_text_folder(val):
            return (*_text_examples([("train", train), ("val", val)], task, strict), "folders", "text")
        unmatched = sorted(set(train) ^ set(val))
        if unmatched:
            name = unmatched[0]
            have, lack = (train_dir, val_dir) if name in train else (val_dir, train_dir)
            raise GraftError(f"class '{name}' is in '{have}' but not in '{lack}': "
                             f"add '{lack / name}' with images or remove '{have / name}'")
        checked = scan([p for files in (*train.values(), *val.values()) for p in files], strict=strict)
        sources = [("train", _usable(train, checked, train_dir)), ("val", _usable(val, checked, val_dir))]
        how = "folders"
    else:
        classes = _classes(root)
        if is_text_folder(classes):
            return (*_text_examples([(None, classes)], task, strict), None, "text")
        checked = scan([p for name in sorted(classes) for p in classes[name]], strict=strict)
        sources = [(None, _usable(classes, checked, root))]
        how = None
    if task == "regression":
        bad = next((name for _, classes in sources for name in classes if not is_number(name)), None)
        if bad is not None:
            raise GraftError(f"--task regression needs class folders named by numbers (the target), and "
                             f"'{bad}' is not one: rename the folders, or use a label table with a target column")
    items, label_lists, parts = [], [], []
    for part, classes in sources:
        more_items, more_labels, more_parts = _examples(classes, task, checked, part)
        items, label_lists, parts = items + more_items, label_lists + more_labels, parts + more_parts
    return items, label_lists, parts, checked, how, "image"


def _text_examples(sources, task: str, strict: bool):
    """(texts, label lists, presplit parts, checked) of class folders of ``.txt`` files: each file's text is
    the example (a text in several folders is one example with each folder's label for a multi-label task)."""
    paths = [path for _, classes in sources for name in sorted(classes) for path in classes[name]]
    texts, skipped = read_text_files(paths, strict=strict)
    if not texts:
        raise GraftError(f"no usable text file among the {len(paths)} in the class folders (see the warnings): "
                         "save them as UTF-8 text")
    checked = checked_texts(list(texts.values()))
    checked.skipped = skipped
    items, label_lists, parts = [], [], []
    for part, classes in sources:
        as_texts = {name: [texts[p] for p in files if p in texts] for name, files in classes.items()}
        empty = next((name for name, found in as_texts.items() if not found), None)
        if empty is not None:
            raise GraftError(f"class folder '{empty}' has no usable text file (see the warnings): add UTF-8 .txt "
                             "files or remove the folder")
        more_items, more_labels, more_parts = _examples(as_texts, task, checked, part)
        items, label_lists, parts = items + more_items, label_lists + more_labels, parts + more_parts
    return items, label_lists, parts, checked


def _examples(classes: dict[str, list[str]], task: str, checked: Checked, part):
    """(paths, label lists, parts) of class folders: one example per file, or, for a multi-label task, one per
    distinct content, labelled with every folder it is in."""
    items, label_lists, parts = [], [], []
    if task == "multilabel":
        merged: dict[str, int] = {}  # content digest -> index of its example
        for name in sorted(classes):
            for path in classes[name]:
                key = checked.digests.get(path, path)
                if key in merged:
                    label_lists[merged[key]].append(name)
                    continue
                merged[key] = len(items)
                items.append(path)
                label_lists.append([name])
                parts.append(part)
    else:
        for name in sorted(classes):
            items += classes[name]
            label_lists += [[name]] * len(classes[name])
            parts += [part] * len(classes[name])
    return items, label_lists, parts


def _each_class_twice(labels: np.ndarray, names: list[str], root, skipped: list[tuple[str, str]]) -> None:
    counts = np.bincount(labels, minlength=len(names))
    for name, count in zip(names, counts):
        if count < 2:
            folder = Path(root) / name
            dropped = sum(1 for path, _ in skipped if Path(path).is_relative_to(folder))
            after = f" after skipping {dropped} bad file{'s' if dropped > 1 else ''}" if dropped else ""
            raise GraftError(f"class '{name}' has only {count} image{'s' if count != 1 else ''} ('{folder}'){after}: "
                             "a class needs at least 2 to split into train and val; add images or remove it")


def labelled_images(root, class_names: list[str], *, strict: bool = False, task: str = "single",
                    labels: str | Path | None = None, path_column: str | None = None,
                    label_column: str | None = None) -> ImageSet:
    """The checked, labelled images to score a trained model on, labelled with its classes.

    ``root`` holds class subfolders, or ``train/`` and ``val/`` (or ``validation/``), in which case its
    validation part is used; or it is a label table (or ``labels`` names one), whose ``test`` rows are
    used when it has a split column with some, else all its rows. A class of the model may be absent;
    a folder or label the model has no class for is an error. Bad files are left out with a warning
    (listed in the result's ``skipped``), or are an error with ``strict``.

    Args:
        root: the labelled folder or table.
        class_names: the model's class names, in the order of its outputs.
        strict: make any bad file an error.
        task: the model's task (``single``, ``multilabel`` or ``regression``).
        labels, path_column, label_column: a label table and its columns, as for :func:`load_split`.

    Returns:
        The images, labels as the task has them (indices into ``class_names`` for ``single``).

    Raises:
        GraftError: one line naming the folder, row or file at fault and the fix.

    Example:
        >>> labelled_images("data/hymenoptera", ["ants", "bees"]).counts()  # doctest: +SKIP
        {'ants': 70, 'bees': 83}
    """
    from graftkit.data.labels import encode
    from graftkit.data.table import is_table, read_table

    if labels is not None or is_table(root):
        table = read_table(labels or root, item_column=path_column, label_column=label_column, strict=strict)
        rows = [row for row in table.rows if row.split == "test"] or table.rows
        items = [row.item for row in rows]
        checked = checked_texts(items) if table.holds_text else scan(items, strict=strict, digests=False)
        good = set(checked.good)
        rows = [row for row in rows if row.item in good]
        unknown = next((row for row in rows for label in row.labels
                        if task != "regression" and label not in class_names), None)
        if unknown is not None:
            raise GraftError(f"{table.path}, line {unknown.line}: label '{unknown.labels[0]}' is not a class of the "
                             f"model ({', '.join(class_names[:8])}): fix the row or use a model trained on it")
        if task == "regression":
            table.rows = rows
            table.targets()
        paths, label_lists = [row.item for row in rows], [row.labels for row in rows]
    else:
        root, _, val_dir = _open_root(root)
        folder = val_dir or root
        classes = _classes(folder, min_classes=1)
        if task != "regression":
            unknown = sorted(set(classes) - set(class_names))
            if unknown:
                raise GraftError(f"class folder '{folder / unknown[0]}' is not a class of the model "
                                 f"({', '.join(class_names)}): move it out or use a model trained on that class")
        if is_text_folder(classes):
            paths, label_lists, _, checked = _text_examples([(None, classes)], task, strict)
        else:
            checked = scan([p for files in classes.values() for p in files], strict=strict,
                           digests=task == "multilabel")
            paths, label_lists, _ = _examples(_usable(classes, checked, folder), task, checked, None)
    encoded, _ = encode(label_lists, task, names=class_names)
    images = ImageSet(paths, encoded, list(class_names))
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
                             f"add {EXTENSIONS_TEXT} files or remove the folder (for texts, every file "
                             "of every class folder must be a UTF-8 .txt file)")
    return kept


def _image_set(classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [p for name in names for p in classes.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in classes.get(name, [])], dtype=np.int32)
    return ImageSet(paths, labels, list(names))


def list_images(inputs: list[str]) -> list[str]:
    """Expand files, folders and label tables into a sorted list of image files, for prediction.

    Folders are searched recursively for files ending in one of ``IMAGE_EXTENSIONS``
    (hidden entries skipped); a ``.csv`` / ``.tsv`` table gives the files of its path column;
    files given by name are kept whatever their extension.
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
    from graftkit.data.table import is_table, table_paths

    found = set()
    for item in inputs:
        path = Path(item)
        if is_table(path):
            found.update(table_paths(path))
        elif path.is_dir():
            found.update(p for p in _walk(path) if is_image_name(p))
        elif path.exists():
            found.add(str(path))
        else:
            raise GraftError(f"'{item}' does not exist: pass image files or folders of images")
    if not found:
        listed = ", ".join(f"'{item}'" for item in inputs)
        raise GraftError(f"no images found in {listed or 'the input'}: graftkit reads {EXTENSIONS_TEXT}")
    return sorted(found)
