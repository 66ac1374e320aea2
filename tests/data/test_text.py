"""Text examples: class folders of .txt files and text tables become splits whose items are the texts."""

import numpy as np
import pytest

from graftkit.data.layout import labelled_images, load_split
from graftkit.data.text import is_text_data, list_texts
from graftkit.errors import GraftError


@pytest.fixture
def text_folder(tmp_path):
    for label, texts in {"ham": ["see you at 5", "ok lar", "on my way", "call you later"],
                         "spam": ["WIN a prize now", "free entry, text WIN", "claim your reward", "urgent: call"]}.items():
        (tmp_path / "data" / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (tmp_path / "data" / label / f"{i}.txt").write_text(text + "\n")
    return tmp_path / "data"


def test_a_folder_of_txt_files_is_a_text_split_of_their_contents(text_folder):
    (text_folder / "spam" / "bad.txt").write_bytes(b"caf\xe9 latin-1")
    (text_folder / "ham" / "empty.txt").write_text("  \n")
    assert is_text_data(text_folder)
    split = load_split(text_folder, val_split=0.25)
    assert split.modality == "text" and split.class_names == ["ham", "spam"]
    assert "WIN a prize now" in split.train.paths + split.val.paths  # the text, stripped, not the file
    assert sorted(reason for _, reason in split.skipped) == ["empty (no text)", "not UTF-8 text (save it as UTF-8)"]
    assert len(split.train) + len(split.val) == 8 and np.bincount(split.val.labels).tolist() == [1, 1]
    with pytest.raises(GraftError, match=r"empty.txt' is empty \(no text\) \(and 1 more\)"):
        load_split(text_folder, strict=True)


def test_a_text_table_splits_stratified_and_evaluates_on_its_rows(tmp_path):
    rows = [("ham", f"message number {i}") for i in range(20)] + [("spam", f"WIN prize {i}") for i in range(10)]
    (tmp_path / "sms.tsv").write_text("label\tsms\n" + "".join(f"{label}\t{text}\n" for label, text in rows))
    split = load_split(tmp_path / "sms.tsv")
    assert split.modality == "text" and (len(split.train), len(split.val)) == (24, 6)
    assert np.bincount(split.val.labels).tolist() == [4, 2]
    scored = labelled_images(tmp_path / "sms.tsv", ["ham", "spam"])
    assert len(scored) == 30 and scored.paths[0] == "message number 0"


def test_predict_inputs_are_texts_lines_folders_and_tables(text_folder, tmp_path):
    (tmp_path / "new.txt").write_text("first text\n\nsecond text\n")
    (tmp_path / "new.csv").write_text("text\nfrom a table\n")
    texts = list_texts(["a text as it is", str(tmp_path / "new.txt"), str(tmp_path / "new.csv"),
                        str(text_folder / "ham")])
    assert texts[:4] == ["a text as it is", "first text", "second text", "from a table"] and len(texts) == 8
    with pytest.raises(GraftError, match="'mesages.txt' does not exist"):
        list_texts(["mesages.txt"])  # a mistyped file name is not classified as a text
