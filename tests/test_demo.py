"""The demo's data: generated from packages, laid out as graftkit reads it, nothing copied."""

import os

import pytest

from graftkit.data.layout import load_split
from graftkit.demo import ELPV_CLASSES, SHOTS, elpv_folders, prepare


def test_digits_tasks_are_disjoint_and_few_shot(tmp_path):
    counts = prepare(tmp_path)
    split = load_split(tmp_path / "task_b")
    assert split.class_names == [f"digit_{d}" for d in range(5, 10)]
    assert split.train.counts() == {name: SHOTS for name in split.class_names}
    assert load_split(tmp_path / "task_a").class_names == [f"digit_{d}" for d in range(5)]
    assert counts["test"] > 500


def test_elpv_layout_is_stratified_links(tmp_path):
    pytest.importorskip("elpv_dataset")
    counts = elpv_folders(tmp_path)
    assert sum(counts.values()) == 2624
    split = load_split(tmp_path)
    assert split.class_names == sorted(ELPV_CLASSES.values())
    for name in split.class_names:
        train, val = split.train.counts()[name], split.val.counts()[name]
        test = len(os.listdir(tmp_path / "test" / name))
        assert abs(train / (train + val + test) - 0.6) < 0.02
    sample = next((tmp_path / "train" / split.class_names[0]).iterdir())
    assert sample.is_symlink()
