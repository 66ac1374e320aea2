"""Shared fixtures: where ../shared is, hermetic caches, tiny models and images."""

from __future__ import annotations

import builtins
import io
import os
import sys
from pathlib import Path

import pytest

from tests.badfiles import messy_folder, refusing_open
from tests.helpers import tiny_cnn, write_images

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def log_not_quiet():
    """Each test starts with progress messages on, whatever the test before it set (tests read the log)."""
    from graftkit import log

    log.set_quiet(False)
    yield


@pytest.fixture(scope="session", autouse=True)
def hermetic_caches(tmp_path_factory):
    """Keep tests away from the user's ~/.keras and ~/.cache (and from any earlier run's files)."""
    root = tmp_path_factory.mktemp("caches")
    saved = {k: os.environ.get(k) for k in ("KERAS_HOME", "GRAFT_CACHE_DIR", "GRAFT_WEIGHTS_DIR")}
    os.environ["KERAS_HOME"] = str(root / "keras")
    os.environ["GRAFT_CACHE_DIR"] = str(root / "graftkit")
    os.environ.pop("GRAFT_WEIGHTS_DIR", None)
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder of real data and weights; tests that need it skip when it is absent."""
    from graftkit.settings import shared_dir

    path = shared_dir()
    if not (path / "data").is_dir():
        pytest.skip(f"shared data not found at {path} (set GRAFT_SHARED to the shared folder)")
    return path


@pytest.fixture()
def imagenet_weights(shared, monkeypatch) -> Path:
    """Point graftkit's weight search at the real ImageNet files in shared/weights."""
    folder = shared / "weights"
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def keras2_files(tmp_path_factory) -> Path:
    """Genuine Keras 2 (tf-keras) model files of every kind in tests/keras2_models.py, at 32 px, each with
    ``NAME.io.npz`` (inputs and Keras 2 outputs); written once, in one tf-keras process (TensorFlow starts once)."""
    from graftkit.settings import shared_dir
    from tests.keras2_models import write_keras2_many

    folder = tmp_path_factory.mktemp("keras2")
    kinds = {"cnn.h5": "cnn", "cnn_functional.h5": "cnn_functional", "conv_only.h5": "conv_only",
             "flatten.h5": "flatten", "dense_only.h5": "dense_only", "nested.h5": "nested",
             "lambda.h5": "lambda", "savedmodel": "savedmodel", "tfkeras.keras": "keras_zip"}
    mobilenet = shared_dir() / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
    if mobilenet.exists():
        kinds["mobilenet_nested.h5"] = "mobilenet_nested"
    write_keras2_many({folder / name: kind for name, kind in kinds.items()}, size=32,
                      weights=mobilenet if mobilenet.exists() else None, check=True)
    return folder


@pytest.fixture()
def tiny_images(tmp_path) -> Path:
    """Three colour classes, 12 images each, unsplit."""
    return write_images(tmp_path / "images", {"red": 12, "green": 12, "blue": 12})


@pytest.fixture
def deny_unreadable(monkeypatch):
    """Make files named unreadable.* unreadable even to root (tests run as root in CI)."""
    monkeypatch.setattr(builtins, "open", refusing_open(builtins.open))


@pytest.fixture(scope="session")
def messy_run(tmp_path_factory):
    """One tiny end-to-end training run on a folder of every kind of mess (tests/badfiles.py): the Run, what
    was put in the folder, and the run's stderr. One file vanishes after the check, before the epochs."""
    from graftkit import api
    from graftkit.data import layout

    root = tmp_path_factory.mktemp("messy")
    mess = messy_folder(root / "data")
    model = tiny_cnn(root / "personal.keras", size=24, classes=3)
    real_load_split, real_open = layout.load_split, builtins.open
    stderr = io.StringIO()

    def load_split_then_vanish(*args, **kwargs):
        split = real_load_split(*args, **kwargs)
        os.unlink(mess["vanish"])
        return split

    saved = sys.stderr
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(layout, "load_split", load_split_then_vanish)
        patch.setattr(builtins, "open", refusing_open(real_open))
        sys.stderr = stderr
        try:
            run = api.train(root / "data", base=str(model), epochs=1, fine_tune_epochs=0, batch_size=8,
                            augment=False, lr=0.01, out=str(root / "run"), feature_cache="off")
        finally:
            sys.stderr = saved
    return run, mess, stderr.getvalue()


@pytest.fixture()
def empty_feature_cache(tmp_path, monkeypatch):
    """A test of its own feature cache, empty at its start (the seeded tiny model is the same in every test)."""
    monkeypatch.setenv("GRAFT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture()
def personal(tmp_path):
    """A tiny personal CNN saved as .keras (seeded: the same model every time)."""
    from tests.helpers import tiny_cnn

    return tiny_cnn(tmp_path / "personal.keras")


@pytest.fixture()
def images(tmp_path):
    """Ten small generated PNGs, two colour classes, as sorted paths."""
    root = write_images(tmp_path / "imgs", {"red": 5, "green": 5})
    return sorted(str(p) for p in root.rglob("*.png"))


@pytest.fixture()
def computed(monkeypatch):
    """Counts the images each feature extraction runs through the base."""
    from graftkit.features import extract

    calls = []
    original = extract._compute

    def counting(base, paths, rows, out, *args):
        calls.append(len(list(rows)))
        return original(base, paths, rows, out, *args)

    monkeypatch.setattr(extract, "_compute", counting)
    return calls
