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
- ``mobilenet_nested``: the same as ``Sequential([MobileNet, GlobalAveragePooling2D, Dense])``;
- ``keras22``: a Sequential ``.h5`` as Keras 2.2.4 wrote it (the personal model of 2018-2020): no
  ``InputLayer``, ``batch_input_shape`` on the first Conv2D, Keras 2.2 layer configs, ``keras_version``
  ``2.2.4`` and ``backend`` attributes, a ``training_config``; conv, pooling, dropout, flatten, dense;
- ``lambda35``: ``lambda`` with its Lambda's code replaced by ``lambda x: x / 255.0`` marshalled as
  Python 3.5 wrote it (``keras_version`` 2.2.4): other Pythons cannot read such bytecode;
- ``savedmodel_slots``: ``cnn`` trained a step with the Keras 2 optimizer of TF 2.3 (OptimizerV2,
  ``optimizers.legacy`` here) and saved as a SavedModel with its optimizer's slot variables;
- ``teachable``: a Teachable Machine image export: ``Sequential([Sequential([MobileNetV2 0.35
  (named model1, cut at out_relu), GlobalAveragePooling2D]), Sequential([Dense(100), Dense(softmax, no
  bias)])])`` with TF.js layer names; ``--weights`` may give MobileNetV2 0.35 no-top ImageNet weights;
- ``gray``: ``cnn`` on 1-channel images (``--size`` x ``--size`` x 1);
- ``mnist``: an MNIST-style dense model on ``(28, 28)`` inputs without a channel axis (``--size`` ignored).

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
         "savedmodel", "keras_zip", "mobilenet", "mobilenet_nested", "keras22", "lambda35", "savedmodel_slots",
         "teachable", "gray", "mnist")


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

    shape = (size, size, 1 if kind == "gray" else 3)
    if kind in ("cnn", "gray"):
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
    if kind == "keras22":  # Keras 2.2's default layer names, which its weights are stored under
        return k2.Sequential([
            k2.Input(shape),
            layers.Conv2D(8, 5, activation="relu", name="conv2d_1"),
            layers.MaxPooling2D(name="max_pooling2d_1"),
            layers.Dropout(0.25, name="dropout_1"),
            layers.Flatten(name="flatten_1"),
            layers.Dense(16, activation="relu", name="dense_1"),
            layers.Dense(classes, activation="softmax", name="dense_2"),
        ], name="sequential_1")
    if kind == "mnist":
        return k2.Sequential([
            k2.Input((28, 28)),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="dense"),
            layers.Dense(classes, activation="softmax", name="dense_1"),
        ], name="mnist")
    if kind == "teachable":
        mobilenet = k2.applications.MobileNetV2(alpha=0.35, include_top=False, input_shape=shape,
                                                weights=str(weights) if weights else None)
        trunk = k2.Model(mobilenet.input, mobilenet.get_layer("out_relu").output, name="model1")
        features = k2.Sequential([
            k2.Input(shape), trunk,
            layers.GlobalAveragePooling2D(name="global_average_pooling2d_GlobalAveragePooling2D1"),
        ], name="sequential_1")
        head = k2.Sequential([
            k2.Input((1280,)),
            layers.Dense(100, activation="relu", name="dense_Dense1"),
            layers.Dense(classes, activation="softmax", use_bias=False, name="dense_Dense2"),
        ], name="sequential_3")
        return k2.Sequential([k2.Input(shape), features, head], name="sequential_4")
    raise SystemExit(f"unknown kind '{kind}': use one of {', '.join(KINDS)}")


def _keras22_layer(entry: dict, first: bool, size: int) -> dict:
    """One layer's config as Keras 2.2.4 wrote it (its own arguments, initializers as VarianceScaling)."""
    cls, cfg = entry["class_name"], entry["config"]
    glorot = {"class_name": "VarianceScaling",
              "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    out = {"name": cfg["name"], "trainable": True}
    if first:
        out.update(batch_input_shape=[None, size, size, 3], dtype="float32")
    if cls in ("Conv2D", "Dense"):
        if cls == "Conv2D":
            out.update(filters=cfg["filters"], kernel_size=list(cfg["kernel_size"]), strides=[1, 1],
                       padding="valid", data_format="channels_last", dilation_rate=[1, 1])
        else:
            out.update(units=cfg["units"])
        out.update(activation=cfg["activation"], use_bias=True, kernel_initializer=glorot,
                   bias_initializer={"class_name": "Zeros", "config": {}}, kernel_regularizer=None,
                   bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None)
    elif cls == "MaxPooling2D":
        out.update(pool_size=[2, 2], padding="valid", strides=[2, 2], data_format="channels_last")
    elif cls == "Dropout":
        out.update(rate=cfg["rate"], noise_shape=None, seed=None)
    elif cls == "Flatten":
        out.update(data_format="channels_last")
    return {"class_name": cls, "config": out}


def _as_keras22(path: Path, size: int) -> None:
    """Rewrite a tf-keras Sequential ``.h5`` as Keras 2.2.4 wrote it (the weights stay as they are)."""
    import json

    import h5py

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = [e for e in config["config"]["layers"] if e["class_name"] != "InputLayer"]
        old = {"class_name": "Sequential", "config": {
            "name": config["config"]["name"],
            "layers": [_keras22_layer(e, i == 0, size) for i, e in enumerate(layers)]}}
        f.attrs["model_config"] = json.dumps(old).encode("utf-8")
        f.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "Adam", "config": {
                "lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "decay": 0.0, "epsilon": 1e-07, "amsgrad": False}},
            "loss": "categorical_crossentropy", "metrics": ["accuracy"], "sample_weight_mode": None,
            "loss_weights": None}).encode("utf-8")
        for group in (f, f["model_weights"]):
            group.attrs["keras_version"] = b"2.2.4"
            group.attrs["backend"] = b"tensorflow"


def python35_lambda_code() -> str:
    """``lambda x: x / 255.0`` marshalled by Python 3.5 (code-object layout of marshal version 4), in base64
    as Keras 2 stores it: the 3.5 layout has no ``posonlyargcount`` and 2-byte opcode arguments, so a
    newer Python's ``marshal.loads`` runs off its end (``EOFError``)."""
    import base64
    import struct

    def int32(n):
        return struct.pack("<i", n)

    def text(t, interned=False):
        return (b"Z" if interned else b"z") + bytes([len(t)]) + t.encode()

    def small_tuple(*items):
        return b")" + bytes([len(items)]) + b"".join(items)

    code = b"|\x00\x00d\x01\x00\x1bS"  # LOAD_FAST x; LOAD_CONST 255.0; BINARY_TRUE_DIVIDE; RETURN_VALUE
    data = (b"\xe3" + int32(1) + int32(0) + int32(1) + int32(2) + int32(67)  # code object (FLAG_REF), counts, flags
            + b"s" + int32(len(code)) + code
            + small_tuple(b"N", b"g" + struct.pack("<d", 255.0)) + small_tuple()
            + small_tuple(text("x", interned=True)) + small_tuple() + small_tuple()
            + text("/home/user/train.py") + text("<lambda>", interned=True) + int32(12) + b"s" + int32(0))
    return base64.encodebytes(data).decode("ascii")  # with newlines every 76 characters, as Keras 2 wrote it


def _with_python35_lambda(path: Path) -> None:
    import json

    import h5py

    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for entry in config["config"]["layers"]:
            if entry["class_name"] == "Lambda":
                entry["config"]["function"][0] = python35_lambda_code()
        f.attrs["model_config"] = json.dumps(config).encode("utf-8")
        f.attrs["keras_version"] = b"2.2.4"


def _write(kind: str, out: Path, size: int, classes: int | None, weights, check: bool) -> None:
    import numpy as np
    import tf_keras as k2

    if classes is None:
        classes = 2 if kind.startswith("mobilenet") else 3
    base_kind = {"savedmodel": "cnn", "keras_zip": "cnn", "savedmodel_slots": "cnn", "lambda35": "lambda"}.get(
        kind, kind)
    model = _build(base_kind, size, classes, weights)
    # One training step so weights and BatchNorm statistics are not at their initial values.
    if not base_kind.startswith("mobilenet") and base_kind not in ("conv_only", "teachable"):
        shape = (4,) + tuple(model.input_shape[1:])
        x = np.random.default_rng(0).uniform(0, 1, shape).astype("float32")
        y = k2.utils.to_categorical(np.arange(4) % classes, classes)
        optimizer = k2.optimizers.legacy.Adam() if kind == "savedmodel_slots" else "sgd"
        model.compile(optimizer, "categorical_crossentropy")
        model.fit(x, y, epochs=1, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("savedmodel", "savedmodel_slots"):
        model.save(str(out), save_format="tf")
    elif kind == "keras_zip":
        model.save(str(out), save_format="keras")
    else:
        model.save(str(out), save_format="h5")
    if kind == "keras22":
        _as_keras22(out, size)
    elif kind == "lambda35":
        _with_python35_lambda(out)
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
