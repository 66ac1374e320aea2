"""Multi-label and regression end to end on real images, through the command line: a label table, train (killed
during fine-tuning, then resumed), predict, evaluate and export (keras and tflite)."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from tests.helpers import quiet_main, tiny_cnn
from tests.training.test_checkpoint import graft_process

pytestmark = pytest.mark.integration

TABLES = {  # task -> (label column, the cell of an ant, of a bee)
    "multilabel": ("tags", "ants;insect", "bees;insect;flies"),
    "regression": ("target", "0.0", "1.0"),
}


@pytest.fixture(scope="module")
def hymenoptera_table(shared, tmp_path_factory):
    """A label table over the real hymenoptera images (its split column keeps their train/val folders)."""
    root = tmp_path_factory.mktemp("tasks")
    rows = []
    for part in ("train", "val"):
        for kind in ("ants", "bees"):
            for path in sorted((shared / "data" / "hymenoptera" / part / kind).iterdir()):
                if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                    rows.append((path, kind, part))
    with open(root / "labels.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "tags", "target", "split"])
        for path, kind, part in rows:
            _, ant, bee = TABLES["multilabel"]
            writer.writerow([path, ant if kind == "ants" else bee, "0.0" if kind == "ants" else "1.0", part])
    tiny_cnn(root / "personal.keras", classes=2)
    return root, len(rows)


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_task_through_train_resume_predict_evaluate_export(hymenoptera_table, task, capsys):
    root, count = hymenoptera_table
    column = TABLES[task][0]
    run = root / f"run-{task}"
    train = ["train", str(root / "labels.csv"), "--task", task, "--label-column", column, "--base",
             str(root / "personal.keras"), "--epochs", "4", "--fine-tune-epochs", "2", "--lr", "0.01",
             "--batch-size", "16", "--freeze", "last:2", "--out", str(run)]
    process = graft_process(train, die_at=("fine_tune", 1, "after"))
    process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()[-2000:]
    assert quiet_main(["train", "--resume", str(run)]) == 0
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    headline = {"multilabel": "mAP", "regression": "MAE"}[task]
    assert answer["task"] == task and answer[headline] is not None
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"]["kind"] == task and len(metrics["stages"]["fine_tune"]) > 0
    assert (run / "thresholds.json").is_file() == (task == "multilabel")
    assert (run / ("pr_curves.png" if task == "multilabel" else "regression.png")).is_file()

    assert quiet_main(["predict", str(run), str(root / "labels.csv"), "-o", str(root / f"{task}.csv")]) == 0
    with open(root / f"{task}.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == count
    if task == "multilabel":
        assert all(set(filter(None, row["label"].split(";"))) <= {"ants", "bees", "flies", "insect"} for row in rows)
    else:
        assert all(float(row["value"]) == float(row["value"]) for row in rows)  # numbers, not NaN

    capsys.readouterr()
    assert quiet_main(["evaluate", str(run), str(root / "labels.csv"), "--label-column", column, "--json",
                   "--no-report"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["task"] == task and scores["count"] == count
    with open(root / "labels.csv") as stream:
        truth = {str(Path(row["path"]).resolve()): row[column] for row in csv.DictReader(stream)}
    if task == "multilabel":  # predict (labels over their thresholds) and evaluate agree image by image
        assert scores["per_class"]["insect"]["recall"] == 1.0  # every image has it: the threshold keeps it
        exact = sum(set(filter(None, r["label"].split(";"))) == set(truth[str(Path(r["path"]).resolve())].split(";"))
                    for r in rows)
        assert scores["exact_match"] == pytest.approx(exact / count, abs=1e-4)
    else:
        mae = sum(abs(float(r["value"]) - float(truth[str(Path(r["path"]).resolve())])) for r in rows) / count
        assert scores["mae"] == pytest.approx(mae, abs=1e-4)

    for export in ("keras", "tflite"):
        assert quiet_main(["export", str(run), "--format", export]) == 0
    assert {p.name for p in (run / "exports").iterdir()} >= {"model.keras", "model.tflite", "classes.json"}
