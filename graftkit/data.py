"""Image folders in, checked train/val splits and streamed ``tf.data`` pipelines out.

A data folder holds one subfolder per class, either already split into ``train/`` and
``val/`` (or ``validation/``) or split here, stratified and seeded. Every image is checked
once up front, so a bad file fails in seconds with its name instead of mid-epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from graftkit.errors import GraftError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
_EXTENSIONS_TEXT = " ".join(IMAGE_EXTENSIONS)
# Windows marks these hidden by attribute, not by name, so their owners never see them to move them.
_OS_FILES = {"thumbs.db", "desktop.ini"}
_FIX_LAYOUT = "pass a folder with one subfolder of images per class"


@dataclass
class ImageSet:
    """A list of labelled image files.

    Example:
        >>> import numpy as np
        >>> s = ImageSet(["a.jpg", "b.jpg", "c.jpg"], np.array([0, 1, 1], "int32"), ["ant", "bee"])
        >>> len(s), s.counts()
        (3, {'ant': 1, 'bee': 2})
    """

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]

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
    """

    train: ImageSet
    val: ImageSet
    class_names: list[str]
    how: str


def load_split(root, val_split: float = 0.2, seed: int = 0) -> DataSplit:
    """Find the classes and images under ``root``, check every image and split them.

    ``root`` holds either ``train/`` and ``val/`` (or ``validation/``) with the same class
    subfolders, or the class subfolders themselves, which are then split per class: a
    ``val_split`` share of each class (at least one image, never all) goes to validation.
    Images in nested folders count for their class; hidden entries and plain files at the
    top are ignored.

    Args:
        root: the data folder.
        val_split: share of each class held out for validation when ``root`` is not split.
        seed: seed of that split.

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
        _check_images([p for files in (*train.values(), *val.values()) for p in files])
        return DataSplit(_image_set(train, names), _image_set(val, names), names, "folders")
    if not 0 < val_split < 1:
        raise GraftError(f"--val-split {val_split} is out of range: use a fraction such as 0.2")
    classes = _classes(root)
    names = sorted(classes)
    rng = np.random.default_rng(seed)
    train, val = {}, {}
    for name in names:
        files = classes[name]
        if len(files) < 2:
            raise GraftError(f"class '{name}' has only 1 image ('{root / name}'): a class needs at least 2 "
                             "to split into train and val; add images or remove the folder")
        n_val = min(max(round(len(files) * val_split), 1), len(files) - 1)
        order = rng.permutation(len(files))
        val[name] = sorted(files[i] for i in order[:n_val])
        train[name] = sorted(files[i] for i in order[n_val:])
    _check_images([p for name in names for p in classes[name]])
    return DataSplit(_image_set(train, names), _image_set(val, names), names, f"split {val_split:g}, seed {seed}")


def labelled_images(root, class_names: list[str]) -> ImageSet:
    """The checked images of a labelled folder, labelled with a trained model's classes, for evaluation.

    ``root`` holds class subfolders, or ``train/`` and ``val/`` (or ``validation/``), in which
    case its validation part is used. A class of the model may be absent; a folder the model
    has no class for is an error.

    Args:
        root: the labelled folder.
        class_names: the model's class names, in the order of its outputs.

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
    _check_images([p for files in classes.values() for p in files])
    return _image_set(classes, list(class_names))


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
    return {e.name: Path(e.path) for e in os.scandir(folder) if _visible(e.name) and e.is_dir()}


def _walk(folder: Path) -> list[str]:
    """Every visible file under ``folder``, recursively, sorted."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if _visible(d)]
        found += [os.path.join(here, f) for f in files if _visible(f)]
    return sorted(found)


def _is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _classes(folder: Path, min_classes: int = 2) -> dict[str, list[str]]:
    """Class name -> its image files; checks the layout and the file names, not the contents."""
    folders = _subfolders(folder)
    if not folders:
        raise GraftError(f"data folder '{folder}' has no class subfolders: {_FIX_LAYOUT}")
    if len(folders) < min_classes:
        raise GraftError(f"data folder '{folder}' has only the class '{next(iter(folders))}': "
                         "a classifier needs at least two classes; add a subfolder per class")
    classes = {}
    for name, path in sorted(folders.items()):
        files = _walk(path)
        others = [f for f in files if not _is_image_name(f)]
        if others:
            raise GraftError(f"'{others[0]}' is not an image: graftkit reads {_EXTENSIONS_TEXT}; "
                             "move it out of the data folder")
        if not files:
            raise GraftError(f"class folder '{path}' has no images: add {_EXTENSIONS_TEXT} files or remove it")
        classes[name] = files
    return classes


def _check_image(path: str) -> None:
    with Image.open(path) as img:
        if img.format == "PNG":
            img.verify()  # walks every chunk and its CRC: catches truncation without decompressing
            return
        # verify() passes a truncated JPEG, GIF or BMP; a load does not. For JPEG, the
        # 1/8-scale draft still reads every byte of entropy-coded data but skips most of the IDCT.
        img.draft("RGB", (1, 1))
        img.load()


def _check_images(paths: list[str]) -> None:
    bad = []
    for path in paths:
        try:
            _check_image(path)
        except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, struct.error ...
            bad.append((path, error))
    if bad:
        path, error = bad[0]
        more = f" ({len(bad) - 1} more bad files after it)" if len(bad) > 1 else ""
        raise GraftError(f"'{path}' is not a readable image ({_reason(error)}){more}: "
                         "replace it or move it out of the data folder")


def _reason(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _image_set(classes: dict[str, list[str]], names: list[str]) -> ImageSet:
    paths = [p for name in names for p in classes.get(name, [])]
    labels = np.array([i for i, name in enumerate(names) for _ in classes.get(name, [])], dtype=np.int32)
    return ImageSet(paths, labels, list(names))


def read_image(path, size: int) -> np.ndarray:
    """Read one image file as RGB pixels squashed to ``size`` x ``size``.

    EXIF rotation is applied, a GIF gives its first frame, transparency is laid on white,
    and 16-bit images are scaled down to 8 bits.

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
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG only: decode at the smallest scale still >= size
            img = _to_rgb(ImageOps.exif_transpose(img))
            img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except Exception as error:
        raise GraftError(f"cannot read image '{path}' ({_reason(error)}): replace the file or leave it out") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        pixels = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16") or pixels.max() > 255:  # 32-bit "I" and "F" say nothing of range
            pixels = pixels / 257
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

    def load(path):
        return read_image(os.fsdecode(path), image_size)

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
    return ds.prefetch(tf.data.AUTOTUNE)


def augmentation():
    """The default light augmentation: horizontal flip, rotation up to 18 degrees, zoom up to 10%.

    Reflection fills the borders, so pixels stay in the 0..255 range of the input.

    Example:
        >>> import numpy as np
        >>> augmentation()(np.zeros((2, 32, 32, 3), "float32"), training=True).shape
        TensorShape([2, 32, 32, 3])
    """
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(0.05, fill_mode="reflect"),
        keras.layers.RandomZoom(0.1, fill_mode="reflect"),
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
