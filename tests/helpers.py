"""Small builders shared by the tests: generated images and a tiny personal model."""

from pathlib import Path

import keras


def write_images(root: Path, classes: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """Write a class-per-folder set of PNGs whose classes differ in colour (learnable in a few steps)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(classes.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            base = np.zeros((size, size, 3), np.float32)
            base[..., index % 3] = 200
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{name}_{i}.png")
    return root


def solid_image(path: Path, color=(255, 0, 0), size=(16, 12), mode="RGB", **save) -> Path:
    """Write a solid-colour image (``size`` is width, height); the format follows the extension."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).convert(mode).save(path, **save)
    return path


def tiny_cnn(path, size=24, classes=5):
    """A personal model ending in Dense softmax, the article's Example 3 shape (seeded: the same every time)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="old_top")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def train_tiny_run(root: Path, **options) -> Path:
    """A finished graftkit run folder (tiny personal CNN on three colour classes, a few seconds on CPU)."""
    from graftkit import log
    from graftkit.api import train

    images = write_images(root / "images", {"red": 12, "green": 12, "blue": 12})
    personal = tiny_cnn(root / "personal.keras")
    log.set_quiet(True)
    try:
        run = train(images, base=str(personal), epochs=10, fine_tune_epochs=1, lr=0.05, batch_size=8,
                             freeze="last:2", out=str(root / "run"), **options)
    finally:
        log.set_quiet(False)
    return run.run_dir


LAYER_NAMES = ["c1", "b1", "r1", "c2", "b2", "r2", "c3"]


def small_base(end_with_conv=True):
    """A 16 x 16 Sequential base named ``base``: conv / BatchNorm / ReLU twice, then a conv (layers ``LAYER_NAMES``)."""
    layers = [keras.layers.Conv2D(4, 3, padding="same", name="c1"),
              keras.layers.BatchNormalization(name="b1"), keras.layers.ReLU(name="r1"),
              keras.layers.Conv2D(4, 3, padding="same", name="c2"),
              keras.layers.BatchNormalization(name="b2"), keras.layers.ReLU(name="r2")]
    if end_with_conv:
        layers.append(keras.layers.Conv2D(4, 3, padding="same", name="c3"))
    return keras.Sequential([keras.Input((16, 16, 3)), *layers], name="base")


def write_tiny_encoder(folder: Path, model_type: str = "bert") -> Path:
    """A Hugging Face folder of a tiny random text encoder (16 wide, 2 blocks, 16 positions; seeded)."""
    from tests.bases.test_transformer import write_tiny_folder

    return write_tiny_folder(folder, model_type)


def quiet_main(argv: list[str]) -> int:
    """``graft ARGV`` in this process with its progress lines off (warnings and errors still show)."""
    from graftkit import log
    from graftkit.cli import main

    log.set_quiet(True)
    try:
        return main(argv)
    finally:
        log.set_quiet(False)
