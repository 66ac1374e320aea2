"""Label tables: columns found or named, every bad row named by its line, multi-label and targets."""

from __future__ import annotations

import pytest

from graftkit.data.table import is_table, read_table
from graftkit.errors import GraftError


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "images" / name).write_bytes(b"x")
    return tmp_path


def test_columns_are_found_and_paths_resolved_against_the_table(folder):
    (folder / "labels.csv").write_text("image,class,split\nimages/a.png,cat,train\nimages/b.png,dog,VAL\n")
    table = read_table(folder / "labels.csv")
    assert (table.item_column, table.label_column, table.split_column) == ("image", "class", "split")
    assert [row.item for row in table.rows] == [str(folder / "images" / "a.png"), str(folder / "images" / "b.png")]
    assert [row.split for row in table.rows] == ["train", "val"]
    assert not table.multilabel and not table.holds_text


def test_tsv_semicolon_csv_and_named_columns(folder):
    (folder / "t.tsv").write_text("f\tlab\nimages/a.png\tcat\n")
    assert read_table(folder / "t.tsv", item_column="f", label_column="lab").rows[0].labels == ["cat"]
    (folder / "s.csv").write_text("path;label\nimages/a.png;cat\nimages/b.png;dog\n")
    assert [r.labels[0] for r in read_table(folder / "s.csv", label_separator="|").rows] == ["cat", "dog"]


def test_bad_rows_are_named_by_line_and_skipped(folder, capsys):
    (folder / "labels.csv").write_text("path,label\nimages/a.png,cat\nimages/zz.png,dog\nimages/b.png,\n"
                                       "images/a.png,dog\nimages/c.png,cat\n")
    table = read_table(folder / "labels.csv")
    assert [row.line for row in table.rows] == [2, 6]
    assert [line for line, _ in table.skipped] == [3, 4, 5]
    err = capsys.readouterr().err
    assert "line 3: file 'images/zz.png' not found" in err and "line 5: 'images/a.png' repeats line 2" in err
    with pytest.raises(GraftError, match=r"line 3: file 'images/zz.png' not found \(and 2 more rows\)"):
        read_table(folder / "labels.csv", strict=True)


def test_multilabel_cells_and_numeric_targets(folder):
    (folder / "m.csv").write_text("path,tags\nimages/a.png,cat; dog\nimages/b.png,dog;dog\n")
    table = read_table(folder / "m.csv")
    assert table.multilabel and [row.labels for row in table.rows] == [["cat", "dog"], ["dog"]]
    (folder / "r.csv").write_text("path,target\nimages/a.png,0.5\nimages/b.png,high\n")
    with pytest.raises(GraftError, match="line 3: target 'high' in column 'target' is not a number"):
        read_table(folder / "r.csv").targets()


def test_the_one_column_left_is_the_item_column_and_what_it_holds_is_told_by_its_cells(folder):
    (folder / "sms.tsv").write_text('Label\tSMS\nham\t"Quoted" start, no CSV quoting\nspam\tWIN now\n'
                                    "ham\tWIN now\nspam\tWIN now\n")
    table = read_table(folder / "sms.tsv")
    assert (table.item_column, table.holds_text) == ("SMS", True)
    assert table.rows[0].item == '"Quoted" start, no CSV quoting'  # a TSV cell keeps its quotation marks
    assert [row.line for row in table.rows] == [2, 3] and [line for line, _ in table.skipped] == [4]  # 5 repeats 3
    (folder / "files.csv").write_text("name,label\nimages/a.png,cat\nimages/b.png,dog\n")
    table = read_table(folder / "files.csv")
    assert (table.item_column, table.holds_text) == ("name", False) and table.rows[0].item.endswith("a.png")


def test_texts_stay_texts(tmp_path):
    (tmp_path / "sms.tsv").write_text("label\ttext\nham\tsee you at 5\nspam\tWIN a prize, call now\n")
    table = read_table(tmp_path / "sms.tsv", label_separator="")
    assert table.holds_text and table.rows[1].item == "WIN a prize, call now" and table.rows[1].labels == ["spam"]


@pytest.mark.parametrize("content, needle", [
    ("", "is empty"),
    ("name,owner,label\nimages/a.png,me,cat\n", "no column of the file paths"),
    ("path,label\nimages/zz.png,cat\n", "no usable row"),
])
def test_unusable_tables_are_one_line_errors(folder, content, needle):
    (folder / "bad.csv").write_text(content)
    with pytest.raises(GraftError, match=needle):
        read_table(folder / "bad.csv")


def test_missing_and_misnamed(folder):
    with pytest.raises(GraftError, match="does not exist"):
        read_table(folder / "nope.csv")
    (folder / "labels.csv").write_text("path,label\nimages/a.png,cat\n")
    with pytest.raises(GraftError, match="no column 'klass'.*--label-column"):
        read_table(folder / "labels.csv", label_column="klass")
    assert is_table(folder / "labels.csv") and not is_table(folder / "images")


def test_prediction_takes_a_tables_paths(folder):
    from graftkit.data.layout import list_images

    (folder / "new.csv").write_text("image,comment\nimages/b.png,x\nimages/a.png,\n")
    assert list_images([str(folder / "new.csv")]) == [str(folder / "images" / "a.png"), str(folder / "images" / "b.png")]
