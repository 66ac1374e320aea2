"""Scores and their terminal form: accuracy, per-class table, confusion matrix or top confusions."""

import numpy as np

from graftkit.results.evaluate import (
    LINE_WIDTH,
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
