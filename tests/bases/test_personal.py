"""Personal model files: genuine Keras 2 files (written by tf-keras in a subprocess) and Keras 3 ones."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from graftkit.bases.personal import load_personal
from graftkit.bases.preprocess import guess_preprocessing, preprocessing_layer
from graftkit.cli import main
from graftkit.errors import GraftError
from graftkit.model.cut import cut_at, find_cut
from graftkit.model.freeze import apply_freeze, parse_freeze
from graftkit.settings import shared_dir
from tests.badfiles import one_line
from tests.helpers import write_images

SIZE = 32
MOBILENET_WEIGHTS = shared_dir() / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


@pytest.fixture(scope="module")
def k2(keras2_files):
    """All the Keras 2 files (conftest.keras2_files: written once per session, at SIZE px)."""
    return keras2_files


def _same_as_keras2(model, path: Path, atol=1e-4):
    io = np.load(f"{path}.io.npz")
    np.testing.assert_allclose(model.predict(io["x"], verbose=0), io["y"], atol=atol)


def _one_line_error(call, *needles):
    with pytest.raises(GraftError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------- Keras 2 .h5 files
@pytest.mark.parametrize("name", ["cnn.h5", "cnn_functional.h5"])
def test_keras2_classifier_is_cut_at_its_last_conv_stage(k2, name):
    model = load_personal(k2 / name)
    _same_as_keras2(model, k2 / name)
    assert find_cut(model) == "conv2"
    base = cut_at(model)
    assert base.output.shape == (None, SIZE // 2, SIZE // 2, 16)
    assert base.input.shape == (None, SIZE, SIZE, 3)  # defined even for a Keras 2 Sequential
    assert base.get_layer("conv2") is model.get_layer("conv2")  # shares weights
    # The article's head now fits: pooling a 4-D feature map, not a rank-2 softmax.
    head = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(base.output))
    assert keras.Model(base.input, head).output.shape == (None, 2)


def test_keras2_feature_extractor_is_kept_whole(k2):
    model = load_personal(k2 / "conv_only.h5")
    assert find_cut(model) == "conv2"
    assert cut_at(model).output.shape == (None, SIZE // 2, SIZE // 2, 16)


def test_keras2_flatten_model_is_cut_before_flatten(k2):
    model = load_personal(k2 / "flatten.h5")
    _same_as_keras2(model, k2 / "flatten.h5")
    assert find_cut(model) == "pool1"
    assert cut_at(model).output.shape == (None, SIZE // 2, SIZE // 2, 8)


def test_model_without_spatial_layers_is_cut_before_its_classifier(k2):
    model = load_personal(k2 / "dense_only.h5")
    assert find_cut(model) == "fc2"  # skips the trailing Dropout
    assert cut_at(model).output.shape == (None, 8)


def test_keras2_nested_model(k2):
    model = load_personal(k2 / "nested.h5")  # BatchNormalization axis=[3] inside: fixed on load
    _same_as_keras2(model, k2 / "nested.h5")
    assert find_cut(model) == "features"
    assert cut_at(model).output.shape == (None, SIZE // 2, SIZE // 2, 16)
    inner = cut_at(model, "relu1")  # a layer inside the nested model
    assert inner.output.shape == (None, SIZE, SIZE, 8)
    assert apply_freeze(inner, parse_freeze("none")) == 2  # conv1 kernel + bias; bn1 stays frozen


@pytest.mark.skipif(not MOBILENET_WEIGHTS.exists(), reason="needs shared/weights")
def test_keras2_mobilenet_with_imagenet_weights(k2):
    path = k2 / "mobilenet_nested.h5"  # DepthwiseConv2D(groups=1) and a nested Functional
    model = load_personal(path)
    _same_as_keras2(model, path)
    assert find_cut(model) == "mobilenet_0.25_32"
    assert cut_at(model, "conv_pw_13_relu").output.shape == (None, 1, 1, 256)
    assert guess_preprocessing(model) == "tf"  # a MobileNet inside: Keras' MobileNet preprocessing


def test_lambda_needs_trust(k2):
    path = k2 / "lambda.h5"
    _one_line_error(lambda: load_personal(path), str(path), "custom Python code", "--trust-model")
    model = load_personal(path, trust_model=True)
    _same_as_keras2(model, path)
    assert find_cut(model) == "conv1"


def test_keras2_savedmodel_is_inference_only(k2):
    path = k2 / "savedmodel"
    # A SavedModel is a TensorFlow program (its ops can read and write files): only on trust.
    _one_line_error(lambda: load_personal(path), str(path), "SavedModel", "--trust-model")
    model = load_personal(path, trust_model=True)
    assert model._graft_inference_only
    io = np.load(f"{path}.io.npz")
    np.testing.assert_allclose(model.predict(io["x"], verbose=0), io["y"], atol=1e-4)
    base = cut_at(model)
    assert apply_freeze(base, parse_freeze("all")) == 0
    _one_line_error(lambda: apply_freeze(base, parse_freeze("last:1")), str(path), "--freeze all")


def test_tf_keras_dot_keras_file_is_refused(k2):
    path = k2 / "tfkeras.keras"
    _one_line_error(lambda: load_personal(path), str(path), "tf-keras", ".h5")


# ---------------------------------------------------------------- Keras 3 files
def _keras3_classifier(first=None):
    layers = [keras.Input((16, 16, 3))] + ([first] if first else []) + [
        keras.layers.Conv2D(4, 3, name="conv"), keras.layers.BatchNormalization(name="bn"),
        keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(2, name="out")]
    return keras.Sequential(layers, name="k3")


def test_keras3_file_loads(tmp_path):
    path = tmp_path / "model.keras"
    model = _keras3_classifier(preprocessing_layer("tf", name="pre"))
    model.save(path)
    loaded = load_personal(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert find_cut(loaded) == "bn"
    assert guess_preprocessing(loaded) == "none"


def test_keras3_lambda_needs_trust(tmp_path):
    path = tmp_path / "model.keras"
    _keras3_classifier(keras.layers.Lambda(lambda t: t / 255.0, name="scale")).save(path)
    _one_line_error(lambda: load_personal(path), str(path), "--trust-model")
    assert find_cut(load_personal(path, trust_model=True)) == "bn"


# ---------------------------------------------------------------- find_cut on Keras 3 models
def test_cut_of_nested_base_keeps_the_base():
    base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="c1"),
                             keras.layers.Conv2D(4, 3, name="c2")], name="backbone")
    model = keras.Sequential([keras.Input((16, 16, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    assert find_cut(model) == "backbone"
    assert cut_at(model).output.shape == (None, 12, 12, 4)


def test_cut_falls_inside_a_nested_classifier():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(keras.layers.Rescaling(1 / 255, name="scale")(inputs))
    inner = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)), name="classifier")
    outer_in = keras.Input((16, 16, 3))
    outer = keras.Model(outer_in, keras.layers.Dense(2)(inner(outer_in)))
    assert find_cut(outer) == "c1"
    assert cut_at(outer).output.shape == (None, 14, 14, 4)
    assert guess_preprocessing(outer) == "none"


def test_preprocessing_alone_is_not_a_feature_map():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(name="flat"), keras.layers.Dense(6, name="fc"),
                              keras.layers.Dropout(0.5), keras.layers.Dense(2, name="out"),
                              keras.layers.Softmax()])
    assert find_cut(model) == "fc"


# ---------------------------------------------------------------- bad files
def test_bad_files_give_one_line_errors(tmp_path, k2):
    text = tmp_path / "model.h5"
    text.write_text("this is not a model\n")
    _one_line_error(lambda: load_personal(text), str(text), "not an HDF5")

    jpeg = tmp_path / "model.keras"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200))
    _one_line_error(lambda: load_personal(jpeg), str(jpeg), "not a Keras .keras file")

    truncated = tmp_path / "truncated.h5"
    data = (k2 / "cnn.h5").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_error(lambda: load_personal(truncated), str(truncated), "truncated")

    weights = tmp_path / "only.weights.h5"
    _keras3_classifier().save_weights(weights)
    _one_line_error(lambda: load_personal(weights), str(weights), "only weights")

    missing = tmp_path / "nope.h5"
    _one_line_error(lambda: load_personal(missing), str(missing), "does not exist")

    torch_file = tmp_path / "model.pt"
    torch_file.write_bytes(b"x")
    _one_line_error(lambda: load_personal(torch_file), str(torch_file), ".pt")

    folder = tmp_path / "folder"
    folder.mkdir()
    _one_line_error(lambda: load_personal(folder), str(folder), "SavedModel")

    broken = tmp_path / "broken_savedmodel"
    shutil.copytree(k2 / "savedmodel", broken)
    (broken / "saved_model.pb").write_bytes(b"garbage")
    _one_line_error(lambda: load_personal(broken, trust_model=True), str(broken))


def test_unknown_cut_layer(k2):
    model = load_personal(k2 / "cnn.h5")
    _one_line_error(lambda: cut_at(model, "conv3"), "--cut", "'conv3'", "conv1", "graft inspect")


# ---------------------------------------------------------------- untrusted and unusable model files
def _h5_config(path):
    import h5py

    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def _rewrite_h5_config(src, dst, edit):
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["model_config"] = json.dumps(edit(json.loads(f.attrs["model_config"])))
    return dst


def test_h5_with_marshalled_bytecode_is_refused(keras2_files, tmp_path):
    path = keras2_files / "lambda.h5"
    lam = next(layer for layer in _h5_config(path)["config"]["layers"] if layer["class_name"] == "Lambda")
    assert lam["config"]["function_type"] == "lambda"  # a genuine tf-keras file: Python bytecode, marshalled
    with pytest.raises(GraftError) as e:
        load_personal(path)
    one_line(e, path, "custom Python code", "--trust-model")
    # The same bytecode under another class name is still found.
    disguised = _rewrite_h5_config(path, tmp_path / "disguised.h5", lambda c: json.loads(
        json.dumps(c).replace('"class_name": "Lambda"', '"class_name": "Scale"')))
    with pytest.raises(GraftError) as e:
        load_personal(disguised)
    one_line(e, disguised, "--trust-model")
    assert load_personal(path, trust_model=True).name == "with_lambda"


def test_h5_with_an_unknown_custom_class(keras2_files, tmp_path):
    custom = _rewrite_h5_config(keras2_files / "cnn.h5", tmp_path / "custom.h5", lambda c: json.loads(
        json.dumps(c).replace('"class_name": "ReLU"', '"class_name": "StrangersActivation"')))
    for trust in (False, True):
        with pytest.raises(GraftError) as e:
            load_personal(custom, trust_model=trust)
        one_line(e, custom, "custom class", "StrangersActivation")


def test_keras_file_with_custom_object_class(tmp_path):
    @keras.saving.register_keras_serializable(package="robustness_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    model = keras.Sequential([keras.Input((16, 16, 3)), Doubler(name="double"), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    saved = tmp_path / "saved.keras"
    model.save(saved)
    # On a machine without that code: the class is not registered.
    stranger = tmp_path / "stranger.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(stranger, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "config.json":
                body = body.replace(b"robustness_test>Doubler", b"someone_else>Doubler")
            dst.writestr(item, body)
    with pytest.raises(GraftError) as e:
        load_personal(stranger)
    one_line(e, stranger, "custom class", "Doubler")


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_keras_file_with_python_lambda_in_a_config_is_refused(tmp_path):
    path = tmp_path / "act.keras"
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, activation=lambda t: t * 0.5),
                      keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]).save(path)
    with pytest.raises(GraftError) as e:
        load_personal(path)
    one_line(e, path, "--trust-model")


def test_savedmodel_needs_trust_through_the_cli(keras2_files, tmp_path, capsys):
    root = write_images(tmp_path / "data", {"a": 3, "b": 3}, size=32)
    code = main(["train", str(root), "--base", str(keras2_files / "savedmodel"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err  # checked before TensorFlow starts: a SavedModel cannot be fine-tuned
    assert code == 2 and "--freeze all" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()
    code = main(["train", str(root), "--base", str(keras2_files / "savedmodel"), "--freeze", "all",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-model" in err and "SavedModel" in err and "Traceback" not in err
    code = main(["inspect", str(keras2_files / "savedmodel"), "--trust-model"])
    assert code == 0 and "=>" in capsys.readouterr().out


# ---------------------------------------------------------------- personal models as people really saved them
MOBILENET_V2_WEIGHTS = shared_dir() / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The constructs of issue 13, written by tf-keras and rewritten as the original tools wrote them."""
    from tests.keras2_models import write_keras2_many

    folder = tmp_path_factory.mktemp("real")
    write_keras2_many({folder / "keras22.h5": "keras22", folder / "lambda35.h5": "lambda35",
                       folder / "slots": "savedmodel_slots", folder / "gray.h5": "gray",
                       folder / "mnist.h5": "mnist"}, size=SIZE, check=True)
    write_keras2_many({folder / "teachable.h5": "teachable"}, size=64, check=True,
                      weights=MOBILENET_V2_WEIGHTS if MOBILENET_V2_WEIGHTS.exists() else None)
    return folder


def test_keras22_sequential_h5_loads_with_a_rank_4_input(real):
    path = real / "keras22.h5"
    # The construct: no InputLayer, batch_input_shape on the first Conv2D, written by Keras 2.2.4.
    config = _h5_config(path)
    assert "InputLayer" not in json.dumps(config) and "batch_input_shape" in config["config"]["layers"][0]["config"]
    model = load_personal(path)
    assert tuple(model.inputs[0].shape) == (None, SIZE, SIZE, 3)  # Keras 3 alone makes it (None, None, 32, 32, 3)
    _same_as_keras2(model, path)
    assert find_cut(model) == "max_pooling2d_1"  # the Dropout after it changes nothing at inference


def test_lambda_from_python35_is_one_line(real, capsys):
    path = real / "lambda35.h5"
    _one_line_error(lambda: load_personal(path), "--trust-model")  # still code: refused without trust
    _one_line_error(lambda: load_personal(path, trust_model=True), str(path), "another Python version",
                    "re-save the model without the Lambda")
    assert main(["inspect", str(path), "--trust-model"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "another Python version" in err and "Traceback" not in err


def test_savedmodel_with_optimizer_slots_without_tf_keras(real, monkeypatch):
    import sys

    from tensorflow.python.saved_model import revived_types

    path = real / "slots"
    with monkeypatch.context() as patch:  # as for a graftkit user: no tf-keras, so no revived Keras 2 optimizer
        patch.setitem(sys.modules, "tf_keras", None)
        patch.delitem(revived_types._REVIVED_TYPE_REGISTRY, "optimizer", raising=False)
        _one_line_error(lambda: load_personal(path, trust_model=True), str(path), "optimizer",
                        "pip install tf-keras", "include_optimizer=False")
    model = load_personal(path, trust_model=True)  # with tf-keras, TensorFlow restores the slots
    _same_as_keras2(model, path)


def test_savedmodel_base_needs_freeze_all_before_any_work(real, tmp_path):
    from graftkit.bases.loader import load_base
    from graftkit.config import TrainConfig

    images = write_images(tmp_path / "images", {"a": 4, "b": 4}, size=SIZE)
    out = tmp_path / "run"
    with pytest.raises(GraftError) as caught:
        TrainConfig(data=str(images), base=str(real / "slots"), out=str(out), trust_model=True).validated()
    one_line(caught, "SavedModel", "--freeze all")
    assert not out.exists()
    TrainConfig(data=str(images), base=str(real / "slots"), freeze="all", trust_model=True).validated()
    base = load_base(real / "slots", trust_model=True)
    assert base.inference_only and base.feature_shape == (3,)
    assert any("probabilities" in note and "cannot be cut inside" in note for note in base.notes)


def test_teachable_machine_export_has_one_cut_name_and_its_preprocessing(real):
    from graftkit.bases.loader import load_base

    path = real / "teachable.h5"
    model = load_personal(path)
    _same_as_keras2(model, path, atol=1e-4)
    base = load_base(path)
    assert base.cut == "model1" and base.feature_shape == (2, 2, 1280)  # not the pooled 'sequential_1'
    again = load_base(path, cut=base.cut)  # passing the name back gives the same cut
    assert again.cut == "model1" and again.feature_shape == base.feature_shape
    assert base.preprocessing == "tf" and "Teachable Machine" in base.preprocessing_why
    assert load_base(path, cut="sequential_1").feature_shape == (1280,)  # the nested model itself: pooled


@pytest.mark.parametrize("name, shape", [("gray.h5", (SIZE, SIZE, 1)), ("mnist.h5", (28, 28, 1))])
def test_grayscale_models_are_fed_grayscale(real, name, shape):
    from graftkit.bases.loader import load_base

    base = load_base(real / name)
    assert base.channels == 1 and tuple(base.model.inputs[0].shape[1:]) == shape
    assert base.image_size == shape[0] and "a guess" in base.preprocessing_why and "--preprocess" in \
        base.preprocessing_why
    if name == "mnist.h5":  # the channel axis is added in front of the model: same outputs as the file
        io = np.load(real / "mnist.h5.io.npz")
        full = keras.Model(base.model.inputs, load_personal(real / name)(keras.ops.squeeze(base.model.inputs[0], -1)))
        np.testing.assert_allclose(full.predict(io["x"][..., None], verbose=0), io["y"], atol=1e-5)


@pytest.mark.parametrize("name", ["keras22.h5", "gray.h5", "mnist.h5", "teachable.h5"])
def test_real_constructs_end_to_end(real, tmp_path, capsys, name):
    """inspect, train (tiny), predict, export (keras + tflite): one run per construct."""
    from graftkit.api import train
    from graftkit.results.export import export_run
    from graftkit.results.predict import predict_files
    from graftkit.results.trained import load_trained

    path = real / name
    assert main(["inspect", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "input: (None," in shown and "preprocessing: '" in shown and "cut: '" in shown
    size = 64 if name == "teachable.h5" else 28 if name == "mnist.h5" else SIZE
    images = write_images(tmp_path / "images", {"red": 8, "green": 8, "blue": 8}, size=size)
    run = train(images, base=str(path), epochs=2, fine_tune_epochs=1, batch_size=8, out=str(tmp_path / "run"))
    channels = 1 if name in ("gray.h5", "mnist.h5") else 3
    assert tuple(run.model.inputs[0].shape[1:]) == (size, size, channels)
    assert json.loads((tmp_path / "run" / "inputs.json").read_text())["shape"] == [size, size, channels]
    cut = json.loads((tmp_path / "run" / "metrics.json").read_text())["base"]["cut"]
    assert f"cut: '{cut}'" in shown  # one name: inspect, log and metrics.json
    model, class_names = load_trained(tmp_path / "run")[:2]
    rows = list(predict_files(model, sorted(str(p) for p in (images / "red").iterdir())[:3], class_names))
    assert len(rows) == 3 and all(r["label"] in class_names for r in rows)
    for format in ("keras", "tflite"):
        export = export_run(tmp_path / "run", format, check_count=6)
        assert export.to_dict()["agreement"] >= 0.99 and export.path.exists(), (format, export)
