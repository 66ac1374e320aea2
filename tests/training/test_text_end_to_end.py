"""Texts end to end through the command line, on a tiny random BERT folder and on TF-IDF: a label table, train
(killed during fine-tuning, then resumed), predict (texts, lines, tables), evaluate, export, and the model loaded in
plain Keras with the run's tokenizer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from graftkit.cli import main
from tests.helpers import quiet_main, write_tiny_encoder
from tests.training.test_checkpoint import graft_process

CAT, DOG = "the cat sat on a mat".split(), "dog ran far away quick brown fox jumps over lazy".split()


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    """A table of 48 short texts in two classes told apart by their words, and a tiny random BERT folder."""
    root = tmp_path_factory.mktemp("texts")
    rng = np.random.default_rng(0)
    rows = [(name, " ".join(rng.choice(words, size=rng.integers(3, 9)))) for name, words in
            (("cat", CAT), ("dog", DOG)) for _ in range(24)]
    (root / "texts.tsv").write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    write_tiny_encoder(root / "encoder")
    return root


def test_encoder_run_trains_resumes_predicts_evaluates_and_exports(texts, capsys):
    run = texts / "run"
    train = ["train", str(texts / "texts.tsv"), "--base", str(texts / "encoder"), "--epochs", "3",
             "--fine-tune-epochs", "2", "--lr", "0.01", "--batch-size", "8", "--freeze", "last:1", "--out", str(run)]
    process = graft_process(train, die_at=("fine_tune", 1, "after"))
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    assert quiet_main(["train", "--resume", str(run)]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["task"] == "single" and answer["accuracy"] is not None
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["base"]["modality"] == "text" and metrics["base"]["max_length"] >= 5
    assert set(metrics["stages"]) == {"head", "fine_tune"}
    split = json.loads((run / "split.json").read_text())
    assert split["modality"] == "text" and all(row[0].split()[0] in CAT + DOG for row in split["train"])
    assert json.loads((run / "inputs.json").read_text())["kind"] == "text"
    assert "blockquote" in (run / "report.html").read_text()  # mistakes shown as texts, if any; the style always

    (texts / "new.txt").write_text("the cat sat on a mat\nquick brown fox jumps\n")
    assert quiet_main(["predict", str(run), "the cat sat", str(texts / "new.txt"), "-o", str(texts / "p.csv")]) == 0
    lines = (texts / "p.csv").read_text().splitlines()
    assert lines[0] == "text,label,probability,top_k" and len(lines) == 4 and lines[1].startswith("the cat sat,")

    assert quiet_main(["evaluate", str(run), str(texts / "texts.tsv"), "--json", "--no-report"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["count"] == 48

    for format in ("keras", "savedmodel", "tflite"):
        assert quiet_main(["export", str(run), "--format", format]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["agreement"] == 1.0
    assert quiet_main(["export", str(run), "--format", "onnx"]) == 2
    assert "exact GELU" in capsys.readouterr().err
    assert (run / "exports" / "tokenizer.json").is_file()


def test_the_text_model_runs_in_plain_keras_with_its_tokenizer(texts, capsys):
    run = texts / "run-plain"
    assert quiet_main(["train", str(texts / "texts.tsv"), "--base", str(texts / "encoder"), "--epochs", "2",
                   "--fine-tune-epochs", "0", "--out", str(run)]) == 0
    import graftkit

    expected = [row["probability"] for row in graftkit.load(run).predict(["the cat sat", "quick brown fox"])]
    code = textwrap.dedent(f"""
        import json, sys
        import keras, numpy as np
        from tokenizers import Tokenizer
        folder = {str(run)!r}
        tokenizer = Tokenizer.from_file(folder + "/tokenizer.json")
        contract = json.load(open(folder + "/tokenizer_contract.json"))
        rows = [np.array(e.ids or [contract["empty_text_id"]]) + contract["id_shift"]
                for e in tokenizer.encode_batch(["the cat sat", "quick brown fox"])]
        token_ids = np.zeros((len(rows), max(map(len, rows))), "int32")
        for i, ids in enumerate(rows):
            token_ids[i, :len(ids)] = ids
        probabilities = keras.models.load_model(folder + "/model.keras").predict(token_ids, verbose=0)
        assert "graftkit" not in sys.modules
        print(json.dumps(probabilities.max(axis=1).tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    np.testing.assert_allclose(json.loads(out.stdout.strip().splitlines()[-1]), expected, atol=1e-4)


def test_tfidf_run_takes_raw_strings_everywhere(texts, capsys):
    run = texts / "run-tfidf"
    assert quiet_main(["train", str(texts / "texts.tsv"), "--base", "tfidf", "--out", str(run)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] >= 0.9
    assert json.loads((run / "inputs.json").read_text())["dtype"] == "string"
    assert quiet_main(["predict", str(run), "the cat sat on a mat", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == "cat"
    for format in ("keras", "savedmodel"):
        assert quiet_main(["export", str(run), "--format", format]) == 0
    assert quiet_main(["export", str(run), "--format", "tflite"]) == 2
    assert "raw strings" in capsys.readouterr().err


def test_an_image_base_for_texts_is_refused_before_any_work(texts, capsys):
    assert main(["train", str(texts / "texts.tsv"), "--base", "mobilenet_v2_0.35"]) == 2
    err = capsys.readouterr().err
    assert "holds texts" in err and "image base" in err and "Traceback" not in err


@pytest.mark.parametrize("base", ["encoder", "tfidf"])
def test_multilabel_and_regression_texts(texts, base, capsys):
    rows = [(("cat;dog" if i % 2 else "cat"), " ".join(CAT[:3] + (DOG[:3] if i % 2 else [])), 3 + 3 * (i % 2))
            for i in range(30)]
    (texts / "tags.csv").write_text("tags,text\n" + "".join(f"{t},{x}\n" for t, x, _ in rows))
    (texts / "sizes.csv").write_text("target,text\n" + "".join(f"{v},{x}\n" for _, x, v in rows))
    source = str(texts / "encoder") if base == "encoder" else "tfidf"
    for table, task, headline in (("tags.csv", "multilabel", "mAP"), ("sizes.csv", "regression", "MAE")):
        run = texts / f"run-{base}-{task}"
        assert quiet_main(["train", str(texts / table), "--base", source, "--task", task, "--epochs", "3",
                       "--fine-tune-epochs", "1", "--out", str(run)]) == 0
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert answer["task"] == task and answer[headline] is not None
        assert quiet_main(["predict", str(run), "the cat sat dog ran far", "--format", "json"]) == 0
        row = json.loads(capsys.readouterr().out)[0]
        assert row["text"] == "the cat sat dog ran far" and ("labels" in row if task == "multilabel" else "value" in row)
