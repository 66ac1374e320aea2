"""Text examples: class folders of ``.txt`` files, a label table's text column, or lines to classify.

A text example is its content: the texts themselves travel where image examples carry file
paths (``ImageSet.paths`` of a text split holds texts), so splitting, labels, warnings and
scores are one piece of code for both. Every file is read once, up front: a file that is not
UTF-8 or holds only white space is named and left out (or, with ``strict``, an error).
Reading imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from graftkit.data.check import Checked, warn_listed
from graftkit.errors import GraftError

TEXT_EXTENSIONS = (".txt", ".text")


def is_text_name(path: str | Path) -> bool:
    """Whether a file name marks a text example.

    Example:
        >>> is_text_name("notes/a.TXT"), is_text_name("cat.jpg")
        (True, False)
    """
    return str(path).lower().endswith(TEXT_EXTENSIONS)


def is_text_folder(classes: dict[str, list[str]]) -> bool:
    """Whether class folders (name -> files) hold text examples: every file a ``.txt``.

    Example:
        >>> is_text_folder({"spam": ["a.txt"], "ham": ["b.txt", "c.txt"]}), is_text_folder({"ant": ["a.jpg"]})
        (True, False)
    """
    files = [path for paths in classes.values() for path in paths]
    return bool(files) and all(is_text_name(path) for path in files)


def is_text_data(root, *, labels=None, path_column: str | None = None, label_column: str | None = None) -> bool:
    """Whether training data holds texts: a table whose item column holds texts, or class folders of ``.txt``
    files. Looks at a table's rows and a folder's first files only; imports no TensorFlow.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "sms.tsv").write_text("label\\tmessage\\nham\\tsee you\\nspam\\tfree prize\\n")
        >>> is_text_data(folder / "sms.tsv"), is_text_data(folder)
        (True, False)
    """
    from graftkit.data.table import is_table, read_table

    if labels is not None or is_table(root):
        try:
            return read_table(labels or root, item_column=path_column, label_column=label_column,
                              quiet=True).holds_text
        except GraftError:
            return False  # training reads it again and says what is wrong
    root = Path(root)
    if not root.is_dir():
        return False
    parts = [root / name for name in ("train", "val", "validation") if (root / name).is_dir()] or [root]
    files = []
    for part in parts:
        for folder in sorted(p for p in part.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files += [p for p in sorted(folder.rglob("*"))[:20] if p.is_file() and not p.name.startswith(".")]
    return bool(files) and all(is_text_name(p) for p in files)


def text_digest(text: str) -> str:
    """A text's identity: the sha256 of its UTF-8 bytes (32 hex digits).

    Example:
        >>> text_digest("hello") == text_digest("hello"), len(text_digest("hello"))
        (True, 32)
    """
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def checked_texts(texts: list[str]) -> Checked:
    """Texts as :func:`graftkit.data.check.scan` reports files: all good, each with its digest."""
    return Checked(good=list(texts), skipped=[], digests={text: text_digest(text) for text in texts})


def read_text_files(paths: list[str], *, strict: bool = False) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Read text files as UTF-8 (a byte-order mark is dropped); the unreadable ones are left out.

    Args:
        paths: ``.txt`` files.
        strict: make a bad file an error instead of a warning.

    Returns:
        ``({path: text}, [(bad path, reason), ...])``; texts are stripped of surrounding white space.

    Raises:
        GraftError: ``strict`` and a file is bad (one line naming it).

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "a.txt").write_text("win a prize now")
        >>> _ = (folder / "b.txt").write_bytes(b"caf\\xe9")
        >>> texts, skipped = read_text_files([str(folder / "a.txt"), str(folder / "b.txt")])
        >>> list(texts.values()), [reason for _, reason in skipped]
        (['win a prize now'], ['not UTF-8 text (save it as UTF-8)'])
    """
    texts, skipped = {}, []
    for path in paths:
        try:
            with open(path, "rb") as stream:
                text = stream.read().decode("utf-8-sig").strip()
        except UnicodeDecodeError:
            skipped.append((path, "not UTF-8 text (save it as UTF-8)"))
            continue
        except OSError as error:
            skipped.append((path, f"not readable ({error.strerror or type(error).__name__})"))
            continue
        if not text:
            skipped.append((path, "empty (no text)"))
            continue
        texts[path] = text
    if skipped and strict:
        path, reason = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise GraftError(f"text file '{path}' is {reason}{more}: fix or remove it (without --strict, bad files "
                         "are skipped with a warning)")
    warn_listed([f"skipped '{path}': {reason}" for path, reason in skipped], "{n} more bad text files skipped")
    return texts, skipped


def list_texts(inputs: list, *, item_column: str | None = None) -> list[str]:
    """The texts to classify in ``inputs``: strings as they are, and files read as a user would mean them.

    A ``.csv`` / ``.tsv`` table gives its text column; a ``.txt`` file one text per non-empty line;
    a folder every ``.txt`` file under it, one text each; ``-`` the lines of standard input. In
    Python a ``str`` that is not an existing file is a text; pass ``pathlib.Path`` objects to mean files.

    Raises:
        GraftError: a named file or folder does not exist, or nothing to classify was found.

    Example:
        >>> list_texts(["free entry in a weekly competition", "see you at 5"])
        ['free entry in a weekly competition', 'see you at 5']
    """
    import sys

    from graftkit.data.table import is_table, read_texts

    texts = []
    for item in inputs:
        path = Path(item)
        if isinstance(item, str) and item == "-":
            texts += [line.strip() for line in sys.stdin if line.strip()]
        elif isinstance(item, str) and not os.path.exists(item):
            if _looks_like_path(item):
                raise GraftError(f"'{item}' does not exist: pass texts, .txt files, folders of .txt files or a "
                                 "table")
            texts.append(item)
        elif is_table(path) and path.suffix.lower() != ".txt":
            texts += read_texts(path, item_column=item_column)
        elif path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_text_name(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            read, _ = read_text_files(found)
            texts += list(read.values())
        elif path.is_file():
            texts += _lines(path)
        else:
            raise GraftError(f"'{item}' does not exist: pass texts, .txt files, folders of .txt files or a table")
    if not texts:
        raise GraftError("no text to classify in the input: pass texts, .txt files (a text a line), folders of "
                         ".txt files or a table with a text column")
    return texts


def _looks_like_path(item: str) -> bool:
    """Whether a string that names no file was meant as one (a mistyped file name), not as a text.

    Example:
        >>> _looks_like_path("mesages.txt"), _looks_like_path("data/new"), _looks_like_path("call me at 5/6")
        (True, True, False)
    """
    return " " not in item.strip() and (item.lower().endswith((*TEXT_EXTENSIONS, ".csv", ".tsv")) or "/" in item)


def _lines(path: Path) -> list[str]:
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise GraftError(f"'{path}' is not UTF-8 text: save it as UTF-8") from None
    except OSError as error:
        raise GraftError(f"cannot read '{path}' ({error.strerror})") from None
    return [line.strip() for line in content.splitlines() if line.strip()]
