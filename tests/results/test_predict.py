"""`graft predict`: streamed in batches, written row by row to CSV / JSON, with a progress bar."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graftkit.cli import main
from graftkit.errors import GraftError
from graftkit.results.predict import predict_files, prediction_rows, write_predictions
from tests.badfiles import NON_UTF8, noise, png_bytes, write_bytes
from tests.helpers import train_tiny_run, write_images


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def images(run_dir):
    return run_dir.parent / "images"


def test_rows_come_one_batch_at_a_time(run_dir, images, monkeypatch):
    """The first row is out after one forward pass: nothing waits for (or holds) all the images."""
    from graftkit.data.layout import list_images
    from graftkit.model import infer
    from graftkit.results.trained import load_trained

    calls = []
    real = infer.compiled_forward

    def counting(model):
        forward = real(model)

        def run(batch):
            calls.append(len(batch))
            return forward(batch)

        return run

    monkeypatch.setattr(infer, "compiled_forward", counting)
    model, names = load_trained(run_dir)
    paths = list_images([str(images)])
    done = []
    rows = predict_files(model, paths, names, batch_size=5, top_k=2, progress=done.append)
    first = next(rows)
    assert calls == [5] and first["path"] == paths[0]
    rest = list(rows)
    assert len(rest) == 35 and calls == [5] * 7 + [1]
    assert done == [5, 10, 15, 20, 25, 30, 35, 36]
    assert all(len(r["top_k"]) == 2 and r["top_k"][0][0] == r["label"] for r in [first, *rest])


def test_write_predictions_formats():
    rows = [{"path": "a,b.png", "label": "cat", "probability": 0.75, "top_k": [("cat", 0.75), ("dog", 0.25)]},
            {"path": "c.png", "label": "dog", "probability": 0.5, "top_k": [("dog", 0.5), ("cat", 0.5)]}]
    out = io.StringIO()
    assert write_predictions(iter(rows), out, "csv") == 2
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert parsed[0] == {"path": "a,b.png", "label": "cat", "probability": "0.7500", "top_k": "cat:0.7500;dog:0.2500"}
    out = io.StringIO()
    write_predictions(iter(rows), out, "json")
    assert [r["path"] for r in json.loads(out.getvalue())] == ["a,b.png", "c.png"]
    out = io.StringIO()
    write_predictions(iter([]), out, "json")
    assert json.loads(out.getvalue()) == []


def test_cli_output_file_with_progress(run_dir, images, tmp_path, capsys):
    target = tmp_path / "predictions.csv"
    code = main(["predict", str(run_dir), str(images), "--output", str(target), "--batch-size", "7", "--top-k", "3"])
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 36 and list(rows[0]) == ["path", "label", "probability", "top_k"]
    assert {r["label"] for r in rows} <= {"red", "green", "blue"}
    assert all(len(r["top_k"].split(";")) == 3 and 0 <= float(r["probability"]) <= 1 for r in rows)
    assert "predict: 36 images in" in err and "images/s" in err  # off a terminal: the last line only (within 10 s)
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]  # no temporary left

    code = main(["predict", str(run_dir), str(images / "red"), "-o", str(tmp_path / "p.json"), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert len(json.loads((tmp_path / "p.json").read_text())) == 12


def test_cli_output_to_a_missing_folder_is_one_line(run_dir, images, tmp_path, capsys):
    code = main(["predict", str(run_dir), str(images), "--output", str(tmp_path / "nope" / "p.csv")])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("graft: error:") == 1 and "nope" in err and "Traceback" not in err


def test_probabilities_match_the_model(run_dir, images):
    from graftkit.data.layout import list_images
    from graftkit.data.pipeline import make_dataset
    from graftkit.results.trained import load_trained

    model, names = load_trained(run_dir)
    paths = list_images([str(images / "green")])
    rows = list(predict_files(model, paths, names, top_k=3, batch_size=4))
    direct = np.concatenate([model(b, training=False).numpy() for b in make_dataset(paths, image_size=24, batch_size=4)])
    assert np.allclose([r["probability"] for r in rows], direct.max(axis=1), atol=1e-5)


def test_predict_and_evaluate_skip_bad_files(messy_run, tmp_path, capsys):
    run, _, _ = messy_run
    folder = tmp_path / "new"
    for i in range(3):
        noise(folder / f"ok{i}.png", side=24, seed=i)
    write_bytes(folder / "broken.jpg", b"\xff\xd8\xff garbage")
    write_bytes(folder / "bomb.png", png_bytes(30000, 30000))
    os.mkfifo(folder / "pipe.png")
    with open(os.path.join(os.fsencode(folder), NON_UTF8), "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")

    code = main(["predict", str(run.run_dir), str(folder), "--format", "json", "--quiet"])
    out, err = capsys.readouterr()
    names = sorted(os.fsencode(Path(r["path"]).name) for r in json.loads(out))
    assert code == 0 and names == [b"caf\xe9.png", b"ok0.png", b"ok1.png", b"ok2.png"]
    for name in ("broken.jpg", "bomb.png", "pipe.png"):
        assert f"skipped '{folder / name}'" in err

    code = main(["predict", str(run.run_dir), str(folder), "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("graft: error:")][0].count("'") >= 2

    labelled = write_images(tmp_path / "labelled", {"red": 2, "blue": 2}, size=24)
    write_bytes(labelled / "red" / "cut.jpg", b"\xff\xd8\xff\xe0")
    code = main(["evaluate", str(run.run_dir), str(labelled), "--json", "--no-report"])
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["count"] == 4 and f"skipped '{labelled / 'red' / 'cut.jpg'}'" in err
    code = main(["evaluate", str(run.run_dir), str(labelled), "--strict", "--no-report"])
    assert code == 2 and "cut.jpg" in capsys.readouterr().err


def test_predict_prints_a_non_utf8_name_as_its_bytes(messy_run, tmp_path, capsysbinary):
    run, _, _ = messy_run
    with open(os.path.join(os.fsencode(tmp_path), NON_UTF8), "wb") as handle:
        Image.new("RGB", (24, 24), (200, 0, 0)).save(handle, format="PNG")
    code = main(["predict", str(run.run_dir), str(tmp_path), "--format", "csv", "--quiet"])  # strict stdout
    out = capsysbinary.readouterr().out
    assert code == 0 and os.path.join(os.fsencode(tmp_path), NON_UTF8) in out


def test_rows_of_each_task():
    outputs = np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]], "float32")
    multi = prediction_rows(outputs, ["a.png", "b.png"], ["cat", "dog", "sun"], task="multilabel", top_k=2,
                            thresholds={"cat": 0.5, "dog": 0.25, "sun": 0.7})
    assert multi[0]["label"] == "cat" and [n for n, _ in multi[0]["labels"]] == ["cat"]  # sun under its 0.7
    assert multi[1] == {"path": "b.png", "label": "dog", "labels": [("dog", pytest.approx(0.3))],
                        "top_k": [("dog", pytest.approx(0.3)), ("sun", pytest.approx(0.2))]}
    nothing = prediction_rows(outputs * 0.1, ["c.png"], ["cat", "dog", "sun"], task="multilabel")[0]
    assert nothing["label"] == "" and nothing["labels"] == []
    values = prediction_rows(np.array([[0.25], [3.5]]), ["a.png", "b.png"], ["defect"], task="regression")
    assert values == [{"path": "a.png", "value": 0.25}, {"path": "b.png", "value": 3.5}]
    single = prediction_rows(outputs[:1], ["a.png"], ["cat", "dog", "sun"], top_k=1)[0]
    assert single["label"] == "cat" and single["top_k"] == [("cat", pytest.approx(0.9))]


def test_write_multilabel_and_regression_predictions():
    rows = [{"path": "a.png", "label": "cat;sun", "labels": [("cat", 0.9), ("sun", 0.7)],
             "top_k": [("cat", 0.9), ("sun", 0.7)]},
            {"path": "b.png", "label": "", "labels": [], "top_k": [("dog", 0.3)]}]
    out = io.StringIO()
    assert write_predictions(iter(rows), out, "csv") == 2
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert parsed == [{"path": "a.png", "label": "cat;sun", "labels": "cat:0.9000;sun:0.7000",
                       "top_k": "cat:0.9000;sun:0.7000"},
                      {"path": "b.png", "label": "", "labels": "", "top_k": "dog:0.3000"}]
    out = io.StringIO()
    write_predictions(iter(rows), out, "json")
    assert [r["label"] for r in json.loads(out.getvalue())] == ["cat;sun", ""]
    out = io.StringIO()
    write_predictions(iter(rows), out, "table")
    assert out.getvalue().splitlines() == ["cat;sun          a.png   (cat 0.900  sun 0.700)", "(none)           b.png"]
    values = [{"path": "a.png", "value": 0.333333333}, {"path": "b.png", "value": 12500.0}]
    for format, expected in (("csv", ["path,value", "a.png,0.333333", "b.png,12500"]),
                             ("table", ["0.333333         a.png", "12500            b.png"])):
        out = io.StringIO()
        assert write_predictions(iter(values), out, format) == 2
        assert out.getvalue().splitlines() == expected
    out = io.StringIO()
    write_predictions(iter(values), out, "json")
    assert json.loads(out.getvalue()) == values


def test_tta_averages_each_image_with_its_mirror_image(run_dir, images, tmp_path):
    """--tta: predict and evaluate both give the mean of the model on each image and on its left-right flip."""
    from graftkit.data.layout import list_images
    from graftkit.data.pipeline import make_dataset
    from graftkit.results.trained import load, load_trained

    model, names = load_trained(run_dir)
    paths = list_images([str(images / "green"), str(images / "red")])
    batches = list(make_dataset(paths, image_size=24, batch_size=4))
    plain = np.concatenate([model(b, training=False).numpy() for b in batches])
    flipped = np.concatenate([model(b[:, :, ::-1], training=False).numpy() for b in batches])
    assert np.abs(plain - flipped).max() > 1e-4  # the model is not flip-invariant, so the test can fail
    rows = list(predict_files(model, paths, names, top_k=len(names), batch_size=4, tta=True))
    expected = (plain + flipped) / 2
    for row, probabilities in zip(rows, expected):
        assert dict(row["top_k"])[row["label"]] == pytest.approx(probabilities.max(), abs=1e-5)
    run = load(run_dir)
    assert run.predict(paths, tta=True)[0]["probability"] == pytest.approx(expected[0].max(), abs=1e-5)
    _, _, outputs = run.evaluate_outputs(images, tta=True)
    _, _, untouched = run.evaluate_outputs(images)
    assert not np.allclose(outputs, untouched)


def _tiny_model(flip_invariant: bool):
    """Softmax over 2 classes of 8 x 8 RGB pixels: after global pooling (a mirror image gives the same outputs),
    or after flattening (it does not)."""
    import keras

    keras.utils.set_random_seed(0)
    reduce = keras.layers.GlobalAveragePooling2D() if flip_invariant else keras.layers.Flatten()
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255), reduce,
                             keras.layers.Dense(2, activation="softmax")])


@pytest.mark.parametrize("flip_invariant", [True, False])
def test_tta_on_arrays_is_the_mean_over_each_image_and_its_mirror_image(flip_invariant):
    from graftkit.results.predict import predict_arrays

    model = _tiny_model(flip_invariant)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3)).astype("uint8")
    plain = model(pixels.astype("float32"), training=False).numpy()
    mirrored = model(pixels[:, :, ::-1].astype("float32"), training=False).numpy()
    assert np.allclose(plain, mirrored, atol=1e-6) == flip_invariant
    rows = list(predict_arrays(model, pixels, ["a", "b"], top_k=2, batch_size=2, tta=True))
    tta = np.array([[dict(row["top_k"])[name] for name in ("a", "b")] for row in rows])
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, atol=1e-6)
    if flip_invariant:
        untouched = list(predict_arrays(model, pixels, ["a", "b"], top_k=2, batch_size=2))
        np.testing.assert_allclose(tta, [[dict(r["top_k"])[n] for n in ("a", "b")] for r in untouched], atol=1e-6)


def test_cli_tta_for_evaluate_and_predict(run_dir, images, capsys, tmp_path):
    assert main(["evaluate", str(run_dir), str(images), "--tta", "--no-report", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert "accuracy" in scores and scores["tta"] is True
    report = tmp_path / "tta.html"
    assert main(["evaluate", str(run_dir), str(images), "--tta", "--report", str(report)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("accuracy ") and first.endswith("each averaged with its mirror image (--tta)")
    assert "each averaged with its mirror image (--tta)" in report.read_text()
    assert json.loads((tmp_path / "tta.json").read_text())["tta"] is True
    assert main(["predict", str(run_dir), str(images / "green"), "--tta", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run_dir), str(images), "--no-report", "--json"]) == 0
    assert "tta" not in json.loads(capsys.readouterr().out)


def test_tta_for_a_text_model_is_a_one_line_error(tmp_path, capsys):
    """Told from the run folder's inputs.json, before any model loads (there is none here)."""
    from graftkit.results.trained import Run

    (tmp_path / "inputs.json").write_text(json.dumps({"kind": "text"}))
    (tmp_path / "texts.txt").write_text("hello\n")
    for argv in (["predict", str(tmp_path), "hello", "--tta"], ["evaluate", str(tmp_path), str(tmp_path), "--tta"]):
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error == ("graft: error: --tta averages over flipped images, and this is a text model: drop --tta")
    text_run = Run(model=None, class_names=["ham", "spam"], metrics={"base": {"modality": "text"}})
    with pytest.raises(GraftError, match="drop --tta"):
        text_run.predict(["hello"], tta=True)
    with pytest.raises(GraftError, match="drop --tta"):
        text_run.evaluate(str(tmp_path), tta=True)
