"""`graft predict`: streamed in batches, written row by row to CSV / JSON, with a progress bar."""

import csv
import io
import json

import numpy as np
import pytest

from graftkit.cli import main
from graftkit.predict import predict_files, write_predictions
from tests.helpers import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def images(run_dir):
    return run_dir.parent / "images"


def test_rows_come_one_batch_at_a_time(run_dir, images, monkeypatch):
    """The first row is out after one forward pass: nothing waits for (or holds) all the images."""
    import graftkit.infer
    from graftkit.data import list_images
    from graftkit.runfiles import load_trained

    calls = []
    real = graftkit.infer.compiled_forward

    def counting(model):
        forward = real(model)

        def run(batch):
            calls.append(len(batch))
            return forward(batch)

        return run

    monkeypatch.setattr(graftkit.infer, "compiled_forward", counting)
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
    assert "36/36" in err and "images/s" in err
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
    from graftkit.data import list_images, make_dataset
    from graftkit.runfiles import load_trained

    model, names = load_trained(run_dir)
    paths = list_images([str(images / "green")])
    rows = list(predict_files(model, paths, names, top_k=3, batch_size=4))
    direct = np.concatenate([model(b, training=False).numpy() for b in make_dataset(paths, image_size=24, batch_size=4)])
    assert np.allclose([r["probability"] for r in rows], direct.max(axis=1), atol=1e-5)
