"""A trained model is the user's: its files load and run in a process that never imports graftkit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from graftkit.errors import GraftError
from tests.helpers import train_tiny_run, write_images

# Runs in a fresh interpreter: loads each model file with plain Keras, saves its probabilities,
# and reports every Python warning raised on the way. It fails if anything imported graftkit.
PLAIN_KERAS = r"""
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import keras, numpy as np
    for model_path, pixels_path, out_path in json.loads(sys.argv[1]):
        model = keras.models.load_model(model_path)
        np.save(out_path, model.predict(np.load(pixels_path), verbose=0))
assert "graftkit" not in sys.modules, "graftkit was imported"
print(json.dumps([f"{w.category.__name__}: {w.message}" for w in caught]))
"""

# Every export, each through its own runtime, none through graftkit.
EXPORTS = r"""
import json, sys
import numpy as np
import keras, onnxruntime, tensorflow as tf
folder, pixels_path = sys.argv[1], sys.argv[2]
x = np.load(pixels_path)
out = {}
out["keras"] = keras.models.load_model(f"{folder}/model.keras").predict(x, verbose=0)
loaded = tf.saved_model.load(f"{folder}/savedmodel")  # kept: its functions need its variables alive
out["savedmodel"] = loaded.serve(tf.constant(x)).numpy()
out["tfsmlayer"] = keras.layers.TFSMLayer(f"{folder}/savedmodel", call_endpoint="serve")(x).numpy()
interpreter = tf.lite.Interpreter(model_path=f"{folder}/model.tflite")
source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
interpreter.resize_tensor_input(source["index"], x.shape)
interpreter.allocate_tensors()
interpreter.set_tensor(source["index"], x)
interpreter.invoke()
out["tflite"] = interpreter.get_tensor(target["index"])
session = onnxruntime.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])
out["onnx"] = session.run(None, {session.get_inputs()[0].name: x})[0]
assert "graftkit" not in sys.modules, "graftkit was imported"
np.savez(f"{folder}/outputs.npz", **out)
"""


def _python(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter outside the repository, so ``import graftkit`` could only come
    from the model files themselves."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's C++ start-up lines; Python warnings are not affected
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, check=False,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _tf_startup(line: str) -> bool:
    """TensorFlow's C++ start-up lines (absl's notice and info lines such as oneDNN's), printed on every
    import whatever is loaded afterwards."""
    return (line.startswith("WARNING: All log messages before absl::InitializeLog()")
            or re.match(r"I\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\]", line) is not None)


def load_without_graftkit(models: list[Path], pixels: np.ndarray, tmp_path: Path) -> list[np.ndarray]:
    """Each model's probabilities on ``pixels`` from ``keras.models.load_model`` in a fresh process, after
    checking that it emitted no warning of any kind."""
    np.save(tmp_path / "pixels.npy", pixels)
    jobs = [[str(m), str(tmp_path / "pixels.npy"), str(tmp_path / f"out{i}.npy")] for i, m in enumerate(models)]
    done = _python(PLAIN_KERAS, json.dumps(jobs), cwd=tmp_path)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    noise = [line for line in done.stderr.splitlines() if line.strip() and not _tf_startup(line)]
    assert not noise, noise
    return [np.load(out) for _, _, out in jobs]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A finished run on a personal base (no extra options), loaded back."""
    import graftkit

    run_dir = train_tiny_run(tmp_path_factory.mktemp("tiny"))
    return graftkit.load(run_dir)


def _pixels(size: int, count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _probabilities(run, pixels: np.ndarray) -> np.ndarray:
    rows = run.predict(pixels, top_k=len(run.class_names))
    return np.array([[dict(row["top_k"])[name] for name in run.class_names] for row in rows])


def _named_run(root: Path, base: str, size: int, **options):
    from graftkit import log
    from graftkit.api import train

    images = write_images(root / "images", {"red": 6, "green": 6}, size=size)
    log.set_quiet(True)
    try:
        return train(images, base=base, image_size=size, epochs=1, fine_tune_epochs=1, batch_size=4,
                     freeze="last:2", out=str(root / "run"), augment=False, **options)
    finally:
        log.set_quiet(False)


def test_model_file_has_no_optimizer_or_compile_state(tiny):
    with zipfile.ZipFile(tiny.run_dir / "model.keras") as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("model.weights.h5")
    assert not config.get("compile_config")  # {} or None: load_model compiles nothing
    assert b"optimizer" not in weights


def test_personal_base_run_loads_in_plain_keras_with_the_same_probabilities(tiny, tmp_path):
    pixels = _pixels(tiny.image_size)
    [plain] = load_without_graftkit([tiny.run_dir / "model.keras"], pixels, tmp_path)
    np.testing.assert_allclose(plain, _probabilities(tiny, pixels), atol=1e-5)
    np.testing.assert_allclose(plain, tiny.model(pixels, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("base, size, weights, mode", [
    ("resnet50", 32, "none", "caffe"),  # the BGR flip inside the model
    ("efficientnet_lite0", 32, "none", "lite"),  # graftkit's port, built-in layers only
])
def test_named_base_runs_load_in_plain_keras(tmp_path, base, size, weights, mode):
    run = _named_run(tmp_path, base, size, weights=weights)
    assert run.metrics["base"]["preprocessing"] == mode
    pixels = _pixels(size)
    [plain] = load_without_graftkit([run.run_dir / "model.keras"], pixels, tmp_path)
    np.testing.assert_allclose(plain, _probabilities(run, pixels), atol=1e-5)


def test_imagenet_base_run_loads_in_plain_keras(shared, imagenet_weights, tmp_path):
    run = _named_run(tmp_path, "mobilenet_v2_0.35", 96)
    assert run.metrics["base"]["preprocessing"] == "tf"
    assert Path(run.metrics["base"]["weights"]).parent == imagenet_weights
    pixels = _pixels(96)
    [plain] = load_without_graftkit([run.run_dir / "model.keras"], pixels, tmp_path)
    np.testing.assert_allclose(plain, _probabilities(run, pixels), atol=1e-5)


def test_every_export_runs_without_graftkit(tiny, tmp_path):
    folder = tmp_path / "exports"
    for format in ("keras", "savedmodel", "tflite", "onnx"):
        tiny.export(format, out=folder / {"savedmodel": "savedmodel"}.get(format, f"model.{format}"))
    pixels = _pixels(tiny.image_size)
    np.save(tmp_path / "pixels.npy", pixels)
    _python(EXPORTS, str(folder), str(tmp_path / "pixels.npy"), cwd=tmp_path)
    outputs = np.load(folder / "outputs.npz")
    expected = _probabilities(tiny, pixels)
    assert sorted(outputs.files) == ["keras", "onnx", "savedmodel", "tflite", "tfsmlayer"]
    for name in outputs.files:
        np.testing.assert_allclose(outputs[name], expected, atol=1e-5, err_msg=name)


def test_run_folder_states_the_input_contract(tiny):
    contract = json.loads((tiny.run_dir / "inputs.json").read_text())
    assert contract == tiny.input_contract
    assert contract["shape"] == [tiny.image_size, tiny.image_size, 3]
    assert contract["channel_order"] == "RGB" and contract["value_range"] == [0, 255]
    assert "BILINEAR" in contract["resize"] and "draft" in contract["resize"]
    assert contract["load"] == 'keras.models.load_model("model.keras")' and "python_code" not in contract


def test_predict_on_arrays_resizes_as_training_does(tiny, tmp_path):
    """An array of another size goes through training's bilinear filter: the same as the file it came from."""
    from PIL import Image

    rng = np.random.default_rng(3)
    big = np.clip(rng.normal(120, 60, (57, 83, 3)), 0, 255).astype("uint8")
    Image.fromarray(big).save(tmp_path / "big.png")
    from_file = tiny.predict([tmp_path / "big.png"], top_k=3)[0]
    from_array = tiny.predict(big, top_k=3)[0]
    assert from_array["label"] == from_file["label"]
    assert from_array["probability"] == pytest.approx(from_file["probability"], abs=1e-6)
    bicubic = np.asarray(Image.fromarray(big).resize((tiny.image_size,) * 2), "float32")
    assert tiny.predict(bicubic)[0]["probability"] != pytest.approx(from_file["probability"], abs=1e-6)


def test_resize_pixels_matches_decode_pixel_for_pixel(tmp_path):
    """On a JPEG that draft decoding leaves at full scale, PIL open + exif_transpose + convert('RGB') +
    resize_pixels gives exactly read_image's pixels."""
    from PIL import Image, ImageOps

    from graftkit.data.decode import read_image, resize_pixels

    rng = np.random.default_rng(1)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exif_transpose must turn it
    Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)).save(tmp_path / "p.jpg", exif=exif)
    with Image.open(tmp_path / "p.jpg") as img:
        pixels = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    assert pixels.shape == (70, 40, 3)
    np.testing.assert_array_equal(resize_pixels(pixels, 32), read_image(tmp_path / "p.jpg", 32).astype("float32"))


# ---------------------------------------------------------------- personal models with code

def _lambda_cnn(path: Path, size: int = 24) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="old_top")(x)).save(path)
    return path


def test_lambda_base_run_says_it_needs_safe_mode_off(tmp_path):
    import keras

    import graftkit
    from graftkit import log

    images = write_images(tmp_path / "images", {"red": 6, "green": 6, "blue": 6})
    personal = _lambda_cnn(tmp_path / "lambda.keras")
    log.set_quiet(True)
    try:
        run = graftkit.train(images, base=str(personal), epochs=2, fine_tune_epochs=1, batch_size=6,
                             freeze="last:2", out=str(tmp_path / "run"), trust_model=True)
    finally:
        log.set_quiet(False)
    model_file = run.run_dir / "model.keras"
    contract = json.loads((run.run_dir / "inputs.json").read_text())
    assert contract["load"] == 'keras.models.load_model("model.keras", safe_mode=False)'
    assert "Lambda" in contract["python_code"]
    assert "safe_mode=False" in (run.run_dir / "report.html").read_text()

    with pytest.raises(ValueError, match="safe_mode"):
        keras.models.load_model(model_file)
    with pytest.raises(GraftError) as error:
        graftkit.load(run.run_dir)
    message = str(error.value)
    assert "\n" not in message and str(model_file) in message and "--trust-model" in message

    pixels = _pixels(24)
    loaded = graftkit.load(run.run_dir, trust_model=True)
    unsafe = keras.models.load_model(model_file, safe_mode=False)
    np.testing.assert_allclose(unsafe.predict(pixels, verbose=0), _probabilities(loaded, pixels), atol=1e-5)
    export = loaded.export("onnx", out=tmp_path / "model.onnx")  # the exports hold no Python code
    assert export.check.passed


def test_custom_layer_personal_model_is_still_refused(tmp_path):
    import keras

    from graftkit.bases.loader import load_base

    @keras.saving.register_keras_serializable(package="users_own")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="c")(Doubler(name="twice")(inputs))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x)).save(path)
    keras.saving.get_custom_objects().pop("users_own>Doubler")
    for trust in (False, True):
        with pytest.raises(GraftError) as error:
            load_base(str(path), trust_model=trust)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and "users_own>Doubler" in message
