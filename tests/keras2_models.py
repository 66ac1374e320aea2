"""Write genuine Keras 2 (tf-keras) model files for tests.

Run as a script so that Keras 2 never shares a process with Keras 3::

    python tests/keras2_models.py KIND OUT_PATH [KIND OUT_PATH ...] [--size 32] [--classes N] [--weights FILE]

or from a test with :func:`write_keras2` (one file) or :func:`write_keras2_many` (several
files in one process: starting TensorFlow costs a few seconds each time). Kinds:

- ``cnn``: Sequential conv / BatchNorm / conv, GlobalAveragePooling2D, Dense softmax (rank-2 output);
- ``cnn_functional``: the same as a functional model;
- ``conv_only``: conv layers only, the output is a 4-D feature map;
- ``flatten``: conv, MaxPooling2D, Flatten, Dense, Dropout, Dense softmax;
- ``dense_only``: a model on flat vectors (no 4-D layer at all);
- ``nested``: Sequential([a conv sub-model, GlobalAveragePooling2D, Dense softmax]);
- ``lambda``: a conv model with a Python ``Lambda`` layer (needs ``safe_mode=False`` in Keras 3);
- ``savedmodel``: ``cnn`` exported as a SavedModel directory (``OUT_PATH`` is the directory);
- ``keras_zip``: ``cnn`` saved by tf-keras in its own ``.keras`` zip format;
- ``mobilenet``: MobileNet alpha 0.25 from ``--weights`` (an ImageNet no-top ``.h5``, e.g.
  ``shared/weights/mobilenet_2_5_224_tf_no_top.h5``) plus GlobalAveragePooling2D and a
  ``--classes``-way (default 2) Dense softmax head, as one functional model;
- ``mobilenet_nested``: the same as ``Sequential([MobileNet, GlobalAveragePooling2D, Dense])``.

``--check`` also writes ``OUT_PATH.io.npz`` with a batch ``x`` of two random inputs and the
Keras 2 model's predictions ``y`` on it, to check that Keras 3 loads the same model.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

KINDS = ("cnn", "cnn_functional", "conv_only", "flatten", "dense_only", "nested", "lambda",
         "savedmodel", "keras_zip", "mobilenet", "mobilenet_nested")


def write_keras2_many(files: dict, *, size: int = 32, classes: int | None = None, weights=None,
                      check: bool = False, timeout: float = 600) -> dict:
    """Write ``{path: kind}`` Keras 2 models in one fresh Python process; return ``files``."""
    cmd = [sys.executable, str(Path(__file__).resolve())]
    for path, kind in files.items():
        cmd += [kind, str(path)]
    cmd += ["--size", str(size)]
    if classes is not None:
        cmd += ["--classes", str(classes)]
    if weights is not None:
        cmd += ["--weights", str(weights)]
    if check:
        cmd += ["--check"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "TF_USE_LEGACY_KERAS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"writing Keras 2 models {sorted(set(files.values()))} failed:\n"
                           f"{done.stderr[-4000:]}")
    return files


def write_keras2(kind: str, path, **kwargs) -> Path:
    """Write one Keras 2 model of ``kind`` to ``path`` in a fresh Python process; return the path."""
    write_keras2_many({path: kind}, **kwargs)
    return Path(path)


def _build(kind: str, size: int, classes: int, weights):
    import tf_keras as k2
    from tf_keras import layers

    shape = (size, size, 3)
    if kind == "cnn":
        return k2.Sequential([
            k2.Input(shape),
            layers.Conv2D(8, 3, padding="same", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(classes, activation="softmax", name="predictions"),
        ], name="cnn")
    if kind == "cnn_functional":
        inputs = k2.Input(shape, name="image")
        x = layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
        x = layers.BatchNormalization(name="bn1")(x)
        x = layers.ReLU(name="relu1")(x)
        x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
        x = layers.GlobalAveragePooling2D(name="gap")(x)
        outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
        return k2.Model(inputs, outputs, name="cnn_functional")
    if kind == "conv_only":
        return k2.Sequential([
            k2.Input(shape),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2"),
        ], name="conv_only")
    if kind == "flatten":
        return k2.Sequential([
            k2.Input(shape),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Flatten(name="flatten"),
            layers.Dense(16, activation="relu", name="fc1"),
            layers.Dropout(0.5, name="drop"),
            layers.Dense(classes, activation="softmax", name="predictions"),
        ], name="flatten")
    if kind == "dense_only":
        return k2.Sequential([
            k2.Input((20,)),
            layers.Dense(16, activation="relu", name="fc1"),
            layers.Dense(8, activation="relu", name="fc2"),
            layers.Dropout(0.2, name="drop"),
            layers.Dense(classes, activation="softmax", name="predictions"),
        ], name="dense_only")
    if kind == "nested":
        features = k2.Sequential([
            k2.Input(shape),
            layers.Conv2D(8, 3, padding="same", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2"),
        ], name="features")
        return k2.Sequential([
            k2.Input(shape),
            features,
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(classes, activation="softmax", name="predictions"),
        ], name="nested")
    if kind == "lambda":
        return k2.Sequential([
            k2.Input(shape),
            layers.Lambda(lambda t: t / 255.0, name="scale"),
            layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(classes, activation="softmax", name="predictions"),
        ], name="with_lambda")
    if kind in ("mobilenet", "mobilenet_nested"):
        if weights is None:
            raise SystemExit(f"{kind} needs --weights FILE (an ImageNet MobileNet 0.25 no-top .h5)")
        base = k2.applications.MobileNet(alpha=0.25, include_top=False, weights=str(weights),
                                         input_shape=shape)
        gap = layers.GlobalAveragePooling2D(name="gap")
        dense = layers.Dense(classes, activation="softmax", name="predictions")
        if kind == "mobilenet_nested":
            return k2.Sequential([k2.Input(shape), base, gap, dense], name="personal_mobilenet")
        return k2.Model(base.input, dense(gap(base.output)), name="personal_mobilenet")
    raise SystemExit(f"unknown kind '{kind}': use one of {', '.join(KINDS)}")


def _write(kind: str, out: Path, size: int, classes: int | None, weights, check: bool) -> None:
    import numpy as np
    import tf_keras as k2

    if classes is None:
        classes = 2 if kind.startswith("mobilenet") else 3
    base_kind = "cnn" if kind in ("savedmodel", "keras_zip") else kind
    model = _build(base_kind, size, classes, weights)
    # One training step so weights and BatchNorm statistics are not at their initial values.
    if not base_kind.startswith("mobilenet") and base_kind != "conv_only":
        shape = (4,) + tuple(model.input_shape[1:])
        x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
        y = k2.utils.to_categorical(np.arange(4) % classes, classes)
        model.compile("sgd", "categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "savedmodel":
        model.save(str(out), save_format="tf")
    elif kind == "keras_zip":
        model.save(str(out), save_format="keras")
    else:
        model.save(str(out), save_format="h5")
    if check:
        shape = (2,) + tuple(model.input_shape[1:])
        x = np.random.default_rng(1).uniform(0, 255, shape).astype("float32")
        np.savez(f"{out}.io.npz", x=x, y=model.predict(x, verbose=0))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="KIND OUT_PATH")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--check", action="store_true", help="also write OUT_PATH.io.npz")
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give KIND OUT_PATH pairs")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    for kind, _ in pairs:
        if kind not in KINDS:
            parser.error(f"unknown kind '{kind}': use one of {', '.join(KINDS)}")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    for kind, out in pairs:
        tf.random.set_seed(0)
        _write(kind, Path(out), args.size, args.classes, args.weights, args.check)


if __name__ == "__main__":
    main()
