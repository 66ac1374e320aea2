"""Scores and their terminal form: accuracy, per-class table, confusion matrix or top confusions; multi-label
mAP, F1 and thresholds; regression MAE, RMSE and R²."""

import numpy as np
import pytest

from graftkit.errors import GraftError
from graftkit.model.task import Task
from graftkit.results.evaluate import (
    LINE_WIDTH,
    choose_thresholds,
    format_scores,
    score,
    shorten,
    top_confusions,
)
from tests.results.synthetic import many_class_scores


def test_score_counts_and_per_class():
    s = score(np.array([0, 0, 1, 2]), np.eye(3)[[0, 1, 1, 1]], ["a", "b", "c"])
    assert s["accuracy"] == 0.5 and s["count"] == 4
    assert s["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    assert s["per_class"]["b"] == {"precision": 0.3333, "recall": 1.0, "f1": 0.5, "support": 1}
    assert s["per_class"]["c"]["support"] == 1 and s["per_class"]["c"]["recall"] == 0


def test_top_confusions_most_first_with_share_of_true_class():
    s = {"class_names": ["a", "b", "c"], "confusion_matrix": [[5, 3, 1], [0, 8, 0], [3, 0, 1]]}
    assert top_confusions(s) == [
        {"true": "c", "predicted": "a", "count": 3, "share": 0.75},  # same count as a -> b, larger share
        {"true": "a", "predicted": "b", "count": 3, "share": 0.3333},
        {"true": "a", "predicted": "c", "count": 1, "share": 0.1111}]
    assert len(top_confusions(s, limit=1)) == 1
    assert top_confusions({"class_names": ["a", "b"], "confusion_matrix": [[2, 0], [0, 3]]}) == []


def test_shorten_keeps_start_and_end():
    assert shorten("short", 10) == "short"
    cut = shorten("a_rather_long_class_name_number_042", 20)
    assert len(cut) == 20 and cut.startswith("a_rather") and cut.endswith("_042") and "…" in cut


def test_few_classes_show_the_matrix():
    s = score(np.array([0, 1, 1, 2]), np.eye(3)[[0, 1, 2, 2]], ["ant", "bee", "cicada"])
    text = format_scores(s)
    assert "confusion matrix" in text and "most frequent mistakes" not in text
    assert [line.split()[2:] for line in text.splitlines()[-3:]] == [["1", "0", "0"], ["0", "1", "1"], ["0", "0", "1"]]


def test_101_classes_show_top_confusions_in_short_lines():
    s = many_class_scores()
    text = format_scores(s)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= LINE_WIDTH, max(lines, key=len)
    assert "confusion matrix (rows" not in text  # no 101-column matrix
    # every class keeps its line, and shortened names stay apart
    rows = [line for line in lines if line.startswith("a_rather") and "->" not in line]
    assert len(rows) == 101 and len({line.split()[0] for line in rows}) == 101
    # the top confusions, most first, as top_confusions gives them
    top = top_confusions(s)
    mistakes = [line for line in lines if "->" in line]
    assert len(mistakes) == len(top) == 20
    for line, pair in zip(mistakes, top):
        true, predicted, count, share = line.replace(" -> ", " ").split()
        assert true.endswith(pair["true"][-3:]) and predicted.endswith(pair["predicted"][-3:])
        assert int(count) == pair["count"] and share == f"{pair['share']:.1%}"
    matrix = np.array(s["confusion_matrix"])
    np.fill_diagonal(matrix, 0)
    assert top[0]["count"] == matrix.max() and [p["count"] for p in top] == sorted((p["count"] for p in top),
                                                                                   reverse=True)


def test_many_classes_without_mistakes():
    names = [f"class{i}" for i in range(40)]
    s = score(np.arange(40), np.eye(40), names)
    text = format_scores(s)
    assert text.splitlines()[-1] == "no mistakes among the 40 classes"
    assert max(len(line) for line in text.splitlines()) <= LINE_WIDTH


def test_single_scores_name_their_task_and_headline():
    s = score(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
    assert (s["task"], s["headline_name"], s["headline"], s["count"]) == ("single", "accuracy", s["accuracy"], 3)


def test_perfect_multilabel_predictor():
    labels = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], "float32")
    s = score(labels, labels * 0.8 + 0.1, ["a", "b", "c"], task="multilabel")
    assert s["task"] == "multilabel" and s["count"] == 4 and s["headline_name"] == "mAP"
    assert s["headline"] == s["mean_average_precision"] == 1.0
    assert s["exact_match"] == s["micro_f1"] == s["macro_f1"] == s["label_accuracy"] == 1.0
    assert s["thresholds"] == {"a": 0.5, "b": 0.5, "c": 0.5}
    assert s["per_class"]["a"] == {"threshold": 0.5, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                                   "average_precision": 1.0, "support": 2}


def test_multilabel_known_scores_and_a_label_without_positives():
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0]])
    outputs = np.array([[.9, .6, .1], [.4, .2, .1], [.1, .7, .1], [.2, .8, .6]])
    s = score(labels, outputs, ["a", "b", "never"], "multilabel", thresholds=[0.5, 0.5, 0.5])
    # a: tp 1, fn 1; b: tp 2, fp 1; never: fp 1
    assert s["per_class"]["a"]["precision"] == 1.0 and s["per_class"]["a"]["recall"] == 0.5
    assert s["per_class"]["b"]["precision"] == 0.6667 and s["per_class"]["b"]["recall"] == 1.0
    assert s["per_class"]["never"]["average_precision"] is None and s["per_class"]["never"]["f1"] == 0
    assert s["mean_average_precision"] == 1.0  # mean over a and b, each ranked perfectly
    assert s["macro_f1"] == round((2 / 3 + 0.8) / 2, 4)  # over the labels present
    assert s["micro_f1"] == round(2 * 3 / (2 * 3 + 2 + 1), 4)
    assert s["exact_match"] == 0.25 and s["label_accuracy"] == round(9 / 12, 4)
    # the thresholds decide: with a's lowered to 0.3 both a-images are found
    lowered = score(labels, outputs, ["a", "b", "never"], "multilabel", thresholds={"a": .3, "b": .5, "never": .7})
    assert lowered["per_class"]["a"]["recall"] == 1.0 and lowered["thresholds"]["a"] == 0.3
    assert lowered["exact_match"] == 0.75  # only the first image keeps a wrong label (b)


def test_bad_thresholds_and_task_are_one_line_errors():
    labels, outputs = np.array([[1, 0]]), np.array([[.9, .1]])
    with pytest.raises(GraftError, match="3 thresholds for 2 labels"):
        score(labels, outputs, ["a", "b"], "multilabel", thresholds=[.5, .5, .5])
    with pytest.raises(GraftError, match="no value for the label.* b"):
        score(labels, outputs, ["a", "b"], "multilabel", thresholds={"a": .5})
    with pytest.raises(GraftError, match="unknown task 'multiclass'"):
        score(labels, outputs, ["a", "b"], "multiclass")


def test_regression_off_by_one():
    targets = np.array([0.0, 1.0, 2.0, 3.0], "float32")
    s = score(targets, (targets + 1)[:, None], ["defect"], task=Task("regression", 1.5, 1.1))
    assert s["task"] == "regression" and s["count"] == 4 and s["class_names"] == ["defect"]
    assert s["mae"] == s["rmse"] == s["headline"] == 1.0 and s["headline_name"] == "MAE"
    assert s["r2"] == round(1 - 1 / 1.25, 4)  # mean squared error 1, variance of the targets 1.25
    assert s["mean_target"] == 1.5 and s["mean_prediction"] == 2.5
    flat = score(np.ones(3), np.ones((3, 1)), ["t"], "regression")
    assert flat["r2"] is None and flat["mae"] == 0.0  # R² is undefined when every target is the same


def brute_force_f1(truth, p):
    return max((f1_at(truth, p, t) for t in np.r_[p, 1.1]), default=0)


def f1_at(truth, p, t):
    predicted = p >= t
    tp = (truth & predicted).sum()
    return 2 * tp / max(truth.sum() + predicted.sum(), 1)


def test_chosen_thresholds_reach_the_best_f1():
    assert choose_thresholds(np.array([[0], [0], [1], [1]]), np.array([[.1], [.4], [.35], [.8]]))[0] == \
        pytest.approx(0.225)  # halfway between .35 (lowest kept) and .1: F1 0.8
    rng = np.random.default_rng(0)
    truth = rng.random((60, 5)) < [0.1, 0.3, 0.5, 0.8, 0.0]
    outputs = np.clip(truth * 0.3 + rng.random((60, 5)) * 0.7, 0, 1).round(2)  # ties included
    chosen = choose_thresholds(truth.astype("float32"), outputs)
    assert chosen[4] == 0.5  # no positive example
    for i in range(4):
        assert f1_at(truth[:, i], outputs[:, i], chosen[i]) == pytest.approx(brute_force_f1(truth[:, i], outputs[:, i]))
        assert 0 < chosen[i] < 1


def test_format_multilabel_and_regression_scores():
    names = [f"a_very_long_label_name_that_goes_on_and_on_{i}" for i in range(30)]
    rng = np.random.default_rng(1)
    labels = rng.random((50, 30)) < 0.3
    text = format_scores(score(labels, rng.random((50, 30)), names, "multilabel"))
    lines = text.splitlines()
    assert lines[0].startswith("mAP ") and "on 50 images, 30 labels" in lines[0]
    assert "exact match" in lines[1] and max(len(line) for line in lines) <= LINE_WIDTH
    assert len([line for line in lines if line.startswith("a_very")]) == 30
    text = format_scores(score(np.array([0.0, 1.0]), np.array([[0.5], [1.5]]), ["defect probability"], "regression"))
    assert text.splitlines()[0] == "MAE 0.5 on 2 images (RMSE 0.5, R² 0.0000)"
    assert text.splitlines()[1].startswith("defect probability: mean 0.5")
