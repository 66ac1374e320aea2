"""Label tables: a CSV or TSV file with a header, one row per example.

The most common way labels come (exports of labelling tools, Kaggle sets): a column naming each
example's file (relative to the table) or holding its text, a column of labels (one label, several
separated by ``;``, or a number), and an optional split column (``train`` / ``val`` / ``test``).
Column names are found from common spellings and can be given. Every row is checked once: a
problem (a missing file, an empty label, a repeated path) is named by its line number and skipped
with a warning, or is an error with ``strict``. Reading imports no TensorFlow.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from graftkit import log
from graftkit.errors import GraftError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "image_id", "id")
TEXT_COLUMNS = ("text", "sentence", "message", "sms", "content", "body", "document", "review", "comment", "title",
                "abstract", "tweet", "question")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "tags", "y")
SPLIT_COLUMNS = ("split", "subset", "set", "partition")
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
          "dev": "val", "test": "test", "testing": "test"}


@dataclass
class TableRow:
    """One checked row: ``item`` is a resolved file path (or the text itself), ``labels`` its label cells."""

    line: int
    item: str
    labels: list[str]
    split: str | None = None


@dataclass
class LabelTable:
    """A checked label table.

    Attributes:
        path: the table file.
        rows: the usable rows, in file order.
        item_column: the column naming each file (or holding each text).
        label_column: the column of labels or targets.
        split_column: the split column, or None.
        holds_text: True when ``item_column`` holds texts rather than file paths.
        skipped: ``(line, reason)`` of each row left out.
    """

    path: Path
    rows: list[TableRow]
    item_column: str
    label_column: str
    split_column: str | None = None
    holds_text: bool = False
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def multilabel(self) -> bool:
        """Whether some row has more than one label (a multi-label table)."""
        return any(len(row.labels) > 1 for row in self.rows)

    def targets(self) -> list[float]:
        """Each row's label as a number, for regression; a one-line error naming the first row that is not one."""
        values = []
        for row in self.rows:
            try:
                values.append(float(row.labels[0]))
            except ValueError:
                raise GraftError(f"{self.path}, line {row.line}: target '{row.labels[0]}' in column "
                                 f"'{self.label_column}' is not a number: fix the row or remove it") from None
        return values


def is_table(path: str | Path) -> bool:
    """Whether ``path`` is an existing label table file (a ``.csv``, ``.tsv`` or ``.txt``).

    Example:
        >>> is_table("photos/")
        False
    """
    return Path(path).suffix.lower() in TABLE_SUFFIXES and Path(path).is_file()


def read_table(path: str | Path, *, item_column: str | None = None, label_column: str | None = None,
               split_column: str | None = None, label_separator: str = ";", text: bool | None = None,
               strict: bool = False, quiet: bool = False) -> LabelTable:
    """Read and check a label table.

    Args:
        path: a ``.csv`` or ``.tsv`` file with a header row (the delimiter is sniffed for ``.csv`` and ``.txt``).
        item_column: the column of file paths (relative to the table's folder) or texts; found from
            common names (``path``, ``file``, ``image``, ``text``...) when not given.
        label_column: the column of labels (``label``, ``class``, ``target``...) when not given.
        split_column: a column of ``train`` / ``val`` / ``test`` (optional; ``split``, ``subset``...).
        label_separator: what separates several labels in one cell (a multi-label row).
        text: whether the item column holds texts (None: when it is named like a text column).
        strict: make any bad row an error instead of a warning.
        quiet: say nothing about bad or repeated rows (a first look, before the table is read for good).

    Returns:
        The checked table; bad rows are left out and listed in ``skipped``.

    Raises:
        GraftError: one line naming the file, column or row and the fix.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.png").write_bytes(b""); _ = (folder / "b.png").write_bytes(b"")
        >>> _ = (folder / "labels.csv").write_text("file,tags\\na.png,cat;dog\\nb.png,dog\\n")
        >>> table = read_table(folder / "labels.csv")
        >>> [row.labels for row in table.rows], table.multilabel
        ([['cat', 'dog'], ['dog']], True)
    """
    path = Path(path)
    header, records = _records(path)
    label_column = _column(path, header, label_column, LABEL_COLUMNS, "--label-column", "the labels")
    if split_column is None:
        split_column = next((name for name in header if name.strip().lower() in SPLIT_COLUMNS), None)
    elif split_column not in header:
        raise GraftError(f"table '{path}' has no column '{split_column}' (its columns: {', '.join(header)}): "
                         "pass the split column's name")
    others = [name for name in header if name not in (label_column, split_column)]
    item_column = _column(path, header, item_column, PATH_COLUMNS + TEXT_COLUMNS, "--path-column", "the file "
                          "paths (or texts)", only=others[0] if len(others) == 1 else None)
    holds_text = _holds_text(path, item_column, records) if text is None else text
    rows, problems, seen, repeats = [], [], {}, 0
    for line, record in records:
        item = (record.get(item_column) or "").strip()
        cell = (record.get(label_column) or "").strip()
        labels = [label.strip() for label in cell.split(label_separator) if label.strip()] if label_separator \
            else ([cell] if cell else [])
        if not item:
            problems.append((line, f"empty '{item_column}'"))
            continue
        if not labels:
            problems.append((line, f"empty label in '{label_column}'"))
            continue
        if not holds_text:
            item = str((path.parent / item).resolve())
            if not Path(item).is_file():
                problems.append((line, f"file '{record.get(item_column).strip()}' not found"))
                continue
        if item in seen:
            first = seen[item]
            if holds_text and first.labels == labels:
                repeats += 1  # the same text with the same labels: one example
            else:
                shown = record.get(item_column).strip()
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                problems.append((line, f"'{shown}' repeats line {first.line}"))
            continue
        split = None
        if split_column:
            value = (record.get(split_column) or "").strip().lower()
            split = SPLITS.get(value)
            if value and split is None:
                problems.append((line, f"split '{value}' is none of train, val, test"))
                continue
        rows.append(TableRow(line, item, sorted(set(labels), key=labels.index), split))
        seen[item] = rows[-1]
    if quiet:
        return LabelTable(path, rows, item_column, label_column, split_column, holds_text, problems)
    if repeats:
        log.info(f"{path.name}: {repeats} rows repeat an earlier row's text and labels; each text counts once")
    _report(path, problems, strict)
    if not rows:
        raise GraftError(f"table '{path}' has no usable row: check its '{item_column}' and '{label_column}' columns")
    return LabelTable(path, rows, item_column, label_column, split_column, holds_text, problems)


def table_paths(path: str | Path, *, item_column: str | None = None) -> list[str]:
    """The image files a table names (its path column, relative to the table), for prediction; no label needed.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "new.csv").write_text("image\\nx.png\\n")
        >>> [pathlib.Path(p).name for p in table_paths(folder / "new.csv")]
        ['x.png']
    """
    path = Path(path)
    header, records = _records(path)
    column = _column(path, header, item_column, PATH_COLUMNS, "--path-column", "the file paths")
    return [str((path.parent / record[column].strip()).resolve()) for _, record in records
            if (record.get(column) or "").strip()]


def _holds_text(path: Path, column: str, records: list[tuple[int, dict]]) -> bool:
    """Whether a table's item column holds texts: named like a text column, or (not named like a path column)
    most of its first cells name no file beside the table."""
    name = column.strip().lower()
    if name in TEXT_COLUMNS:
        return True
    if name in PATH_COLUMNS:
        return False
    cells = [(record.get(column) or "").strip() for _, record in records[:20]]
    cells = [cell for cell in cells if cell]
    files = sum(1 for cell in cells if len(cell) < 1024 and (path.parent / cell).is_file())
    return files * 2 < len(cells)


def read_texts(path: str | Path, *, item_column: str | None = None) -> list[str]:
    """The non-empty texts of a table's text column (no label needed), in file order, for prediction.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "new.csv").write_text("message\\nfree prize\\nsee you\\n")
        >>> read_texts(folder / "new.csv")
        ['free prize', 'see you']
    """
    path = Path(path)
    header, records = _records(path)
    column = _column(path, header, item_column, TEXT_COLUMNS, "--path-column", "texts",
                     only=header[0] if len(header) == 1 else None)
    return [record[column].strip() for _, record in records if (record.get(column) or "").strip()]


def _records(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GraftError(f"label table '{path}' does not exist: pass a .csv or .tsv file") from None
    except UnicodeDecodeError:
        raise GraftError(f"label table '{path}' is not UTF-8 text: save it as UTF-8 CSV") from None
    except OSError as error:
        raise GraftError(f"cannot read label table '{path}': {error.strerror}") from None
    quoting = csv.QUOTE_MINIMAL
    if path.suffix.lower() == ".tsv":  # TSV has no quoting: a cell may start with a quotation mark
        delimiter, quoting = "\t", csv.QUOTE_NONE
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    header = [name for name in (reader.fieldnames or []) if name is not None]
    if not header:
        raise GraftError(f"label table '{path}' is empty: it needs a header row and a row per example")
    return header, [(index + 2, record) for index, record in enumerate(reader)]


def _column(path: Path, header: list[str], given: str | None, known: tuple, flag: str, what: str,
            only: str | None = None) -> str:
    """The column named ``given``, else the first with a ``known`` name, else ``only`` (the one column left)."""
    if given is not None:
        if given not in header:
            raise GraftError(f"table '{path}' has no column '{given}' (its columns: {', '.join(header)}): "
                             f"fix {flag}")
        return given
    lowered = {name.strip().lower(): name for name in header}
    found = next((lowered[name] for name in known if name in lowered), only)
    if found is None:
        raise GraftError(f"table '{path}': no column of {what} among {', '.join(header)}: name it with {flag}")
    return found


def _report(path: Path, problems: list[tuple[int, str]], strict: bool) -> None:
    if not problems:
        return
    if strict:
        line, reason = problems[0]
        more = f" (and {len(problems) - 1} more rows)" if len(problems) > 1 else ""
        raise GraftError(f"{path}, line {line}: {reason}{more}: fix the row (without --strict, bad rows are "
                         "skipped with a warning)")
    from graftkit.data.check import warn_listed

    warn_listed([f"{path}, line {line}: {reason}; row skipped" for line, reason in problems],
                f"{{n}} more bad rows in '{path}' skipped")
