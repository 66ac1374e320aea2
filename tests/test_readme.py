"""README's "Use your model in your own code" snippets, run as written on a real run folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import train_tiny_run

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPET = re.compile(r"<!-- readme-snippet: (\S+) -->\n```python\n(.*?)```", re.DOTALL)
NO_GRAFTKIT = '\nimport sys\nassert "graftkit" not in sys.modules, "graftkit was imported"\n'


def snippets() -> dict[str, str]:
    return dict(SNIPPET.findall(README.read_text()))


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder as the snippets expect it: ``runs/my-run`` (a finished run with TFLite and ONNX exports) and
    ``photo.jpg``, a large, EXIF-rotated JPEG (so that draft decoding and rotation both change its pixels)."""
    from PIL import Image

    import graftkit

    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(train_tiny_run(root / "train"), root / "runs" / "my-run")
    run = graftkit.load(root / "runs" / "my-run")
    run.export("tflite")
    run.export("onnx")
    rng = np.random.default_rng(5)
    photo = np.zeros((150, 220, 3), np.float32)
    photo[..., 0] = 200  # the "red" class of the tiny run
    photo = np.clip(photo + rng.normal(0, 40, photo.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(root / "photo.jpg", quality=90, exif=exif)
    return root


@pytest.fixture(scope="module")
def expected(workdir):
    """graftkit's own answer for photo.jpg."""
    import graftkit

    row = graftkit.load(workdir / "runs" / "my-run").predict([workdir / "photo.jpg"])[0]
    return row["label"], row["probability"]


def test_readme_has_every_snippet():
    assert set(snippets()) == {"input-pixels", "use-keras", "use-tflite", "use-onnx", "use-graftkit",
                               "use-text-keras"}


def test_text_snippet_gives_graftkits_answers_without_graftkit(tmp_path):
    import graftkit
    from tests.helpers import write_tiny_encoder

    rng = np.random.default_rng(0)
    words = {"ham": "see you at home soon ok".split(), "spam": "free entry win text now prize".split()}
    rows = [(label, " ".join(rng.choice(vocabulary, size=5))) for label, vocabulary in words.items() for _ in range(20)]
    (tmp_path / "texts.tsv").write_text("label\ttext\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    write_tiny_encoder(tmp_path / "encoder")
    run = graftkit.train(tmp_path / "texts.tsv", base=str(tmp_path / "encoder"), epochs=2, fine_tune_epochs=0,
                         out=str(tmp_path / "runs" / "my-text-run"))
    texts = ["Free entry in a weekly competition, text WIN now", "see you at 5"]
    expected = [(row["label"], row["probability"]) for row in run.predict(texts)]
    done = run_python(snippets()["use-text-keras"] + NO_GRAFTKIT, tmp_path)
    printed = [line.split(" ", 2) for line in done.stdout.strip().splitlines()]
    assert [label for label, _, _ in printed] == [label for label, _ in expected]
    np.testing.assert_allclose([float(p) for _, p, _ in printed], [p for _, p in expected], atol=1e-4)


def test_pixels_snippet_gives_trainings_pixels(workdir):
    from PIL import Image, ImageOps

    from graftkit.data.decode import read_image

    run_python(snippets()["input-pixels"] + NO_GRAFTKIT + 'np.save("pixels.npy", pixels("photo.jpg"))\n', workdir)
    snippet = np.load(workdir / "pixels.npy")
    trained = read_image(workdir / "photo.jpg", 24)
    assert snippet.dtype == np.float32 and snippet.shape == (24, 24, 3)
    np.testing.assert_array_equal(snippet, trained)
    with Image.open(workdir / "photo.jpg") as img:  # the same without draft decoding: other pixels
        full = ImageOps.exif_transpose(img).convert("RGB").resize((24, 24), Image.Resampling.BILINEAR)
    assert not np.array_equal(np.asarray(full), trained)


@pytest.mark.parametrize("name", ["use-keras", "use-tflite", "use-onnx"])
def test_snippet_gives_graftkits_answer_without_graftkit(workdir, expected, name):
    done = run_python(snippets()["input-pixels"] + snippets()[name] + NO_GRAFTKIT, workdir)
    label, probability = done.stdout.split()[-2:]
    assert label == expected[0]
    assert float(probability) == pytest.approx(expected[1], abs=1e-5)
    if name == "use-keras":
        assert "Skipping" not in done.stderr and "Warning" not in done.stderr, done.stderr


def test_graftkit_snippet(workdir, expected):
    done = run_python(snippets()["use-graftkit"], workdir)
    label, probability = done.stdout.split()[-2:]
    assert (label, float(probability)) == (expected[0], pytest.approx(expected[1], abs=1e-6))
