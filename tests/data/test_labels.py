"""Tasks from tables and folders, and the data that looks wrong (each a counted warning)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from graftkit.data.labels import counts, encode, split_indices, upscale_warning
from graftkit.data.layout import labelled_images, load_split
from graftkit.errors import GraftError
from tests.helpers import write_images


def _table(root, text: str, name: str = "labels.csv"):
    (root / name).write_text(text)
    return root / name


def test_table_with_a_flat_folder_single_label(tmp_path):
    write_images(tmp_path / "all", {"x": 12}, size=16)  # one flat folder of images, labels in a table
    rows = ["path,label"] + [f"all/x/x_{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(12)]
    split = load_split(_table(tmp_path, "\n".join(rows) + "\n"), seed=0)
    assert split.task == "single" and split.class_names == ["cat", "dog"]
    assert len(split.train) + len(split.val) == 12 and split.how.startswith("table labels.csv, split 0.2")
    assert sorted(split.val.counts().values()) == [1, 1]  # stratified: each class held out


def test_table_split_column_and_test_rows(tmp_path):
    write_images(tmp_path, {"x": 9}, size=16)
    parts = ["train"] * 5 + ["val"] * 2 + ["test"] * 2
    rows = ["file,class,split"] + [f"x/x_{i}.png,{'a' if i % 2 else 'b'},{p}" for i, p in enumerate(parts)]
    split = load_split(_table(tmp_path, "\n".join(rows) + "\n"))
    assert (len(split.train), len(split.val), len(split.test)) == (5, 2, 2)
    evaluation = labelled_images(tmp_path / "labels.csv", ["a", "b"])
    assert evaluation.paths == split.test.paths  # evaluate scores a table's test rows


def test_multilabel_table_and_folders(tmp_path):
    write_images(tmp_path, {"x": 10}, size=16)
    rows = ["path,tags"] + [f"x/x_{i}.png,{'cat;dog' if i % 3 == 0 else 'dog'}" for i in range(10)]
    split = load_split(_table(tmp_path, "\n".join(rows) + "\n"))
    assert split.task == "multilabel" and split.train.labels.shape[1] == 2
    both = np.concatenate([split.train.labels, split.val.labels])
    assert counts(both, "multilabel", split.class_names) == {"cat": 4, "dog": 10}
    folders = write_images(tmp_path / "f", {"cat": 6, "dog": 6}, size=16)
    for i in range(3):  # the same pictures in both folders: one example with two labels
        shutil.copy(folders / "cat" / f"cat_{i}.png", folders / "dog" / f"copy_{i}.png")
    split = load_split(folders, task="multilabel")
    labels = np.concatenate([split.train.labels, split.val.labels])
    assert len(labels) == 12 and int((labels.sum(axis=1) == 2).sum()) == 3


def test_regression_from_a_table_and_from_number_folders(tmp_path):
    write_images(tmp_path, {"x": 10}, size=16)
    rows = ["path,target"] + [f"x/x_{i}.png,{i / 3:.3f}" for i in range(10)]
    split = load_split(_table(tmp_path, "\n".join(rows) + "\n"), task="regression")
    assert split.task == "regression" and split.train.labels.dtype == np.float32
    assert split.class_names == ["target"] and split.train.counts() == {}
    write_images(tmp_path / "n", {"0.5": 4, "1.25": 4, "3.0": 4}, size=16)
    split = load_split(tmp_path / "n", task="regression")
    assert sorted(set(np.concatenate([split.train.labels, split.val.labels]).tolist())) == [0.5, 1.25, 3.0]
    write_images(tmp_path / "w", {"low": 3, "high": 3}, size=16)
    with pytest.raises(GraftError, match="named by numbers"):
        load_split(tmp_path / "w", task="regression")
    _table(tmp_path, "path,target\nx/x_0.png,0.5\nx/x_1.png,high\n", "bad.csv")
    with pytest.raises(GraftError, match="line 3: target 'high'"):
        load_split(tmp_path / "bad.csv", task="regression")


def test_what_looks_wrong_is_warned_and_counted(tmp_path, capsys):
    root = write_images(tmp_path / "d", {"cats": 8, "dogs": 8, "rare": 3}, size=16)
    for i in range(2):
        shutil.copy(root / "cats" / f"cats_{i}.png", root / "dogs" / f"same_{i}.png")
    split = load_split(root)
    kinds = [w["kind"] for w in split.warnings]
    assert kinds.count("conflicting_labels") == 2 and "few_images" in kinds
    err = capsys.readouterr().err
    assert "labelled cats and dogs" in err and "--task multilabel" in err and "class 'rare' has only 2" in err
    numbers = write_images(tmp_path / "n", {"0.5": 6, "1.25": 6, "3.0": 6}, size=16)
    assert "numeric_classes" in [w["kind"] for w in load_split(numbers).warnings]
    assert "--task regression" in capsys.readouterr().err
    warning = upscale_warning(split.sizes, split.train.paths, 128)
    assert warning["count"] == len(split.train) and "16x16" in warning["message"]
    assert upscale_warning(split.sizes, split.train.paths, 32) is None


def test_encode_and_split_are_seeded_and_stratified():
    labels, names = encode([["b"], ["a"], ["b"], ["a"], ["b"]], "single")
    assert names == ["a", "b"] and labels.tolist() == [1, 0, 1, 0, 1]
    first, again = split_indices(labels, "single", 0.4, seed=3), split_indices(labels, "single", 0.4, seed=3)
    assert [a.tolist() for a in first] == [a.tolist() for a in again]
    assert sorted(labels[first[1]].tolist()) == [0, 1]
    with pytest.raises(KeyError):
        encode([["zebra"]], "single", names=["a", "b"])
