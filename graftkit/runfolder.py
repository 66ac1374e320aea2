"""The run folder's layout: the names of its files, creating it, and cleaning what a killed process left."""

from __future__ import annotations

import re
import time
from pathlib import Path

from graftkit.errors import GraftError

MODEL_FILE = "model.keras"
CLASSES_FILE = "classes.json"
CONFIG_FILE = "config.json"  # the options as the run ran, written once before training
SPLIT_FILE = "split.json"  # the training and validation files with their labels, written once
THRESHOLDS_FILE = "thresholds.json"  # a multi-label model's per-label decision thresholds, chosen on validation
INPUTS_FILE = "inputs.json"  # the model's input contract: size, resize filter, channel order, value range
TOKENIZER_FILE = "tokenizer.json"  # a text model's tokenizer (Hugging Face tokenizers' format)
TOKENIZER_CONTRACT_FILE = "tokenizer_contract.json"  # how its ids become the model's: shift, special tokens
UNFINISHED_FILE = "UNFINISHED"  # in a run folder from the start of a run until its model is written
CHECKPOINT_FILE = "checkpoint.npz"  # the state after a run's last completed epoch (graftkit.training.checkpoint)


def new_run_dir(out: str | Path | None, label: str) -> Path:
    """Create the run folder: ``out`` if given (must not hold a finished run), else ``runs/<time>-<label>``.

    Example:
        >>> import tempfile; d = new_run_dir(Path(tempfile.mkdtemp()) / "run", "demo")
        >>> d.is_dir()
        True
    """
    if out is None:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(label).stem)
        out = Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}"
    path = check_out(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GraftError(f"cannot create run folder '{path}': {error.strerror}") from None
    return path


def check_out(out: str | Path) -> Path:
    """Refuse an ``--out`` folder that holds a finished or unfinished run (nothing of it may be overwritten).

    Example:
        >>> import tempfile; check_out(Path(tempfile.mkdtemp()) / "new").name
        'new'
    """
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise GraftError(f"--out '{path}' is a file: pass a folder for the run")
    if (path / MODEL_FILE).exists():
        raise GraftError(f"run folder '{path}' already holds a trained model: pass another --out or remove it")
    if (path / UNFINISHED_FILE).exists():
        raise GraftError(f"run folder '{path}' holds an unfinished run: continue it with "
                         f"graft train --resume {path}, or pass another --out")
    return path


RUN_FILES = (MODEL_FILE, CLASSES_FILE, CONFIG_FILE, SPLIT_FILE, INPUTS_FILE, THRESHOLDS_FILE, UNFINISHED_FILE,
             TOKENIZER_FILE, TOKENIZER_CONTRACT_FILE,
             CHECKPOINT_FILE, "history.json", "metrics.json", "curves.png", "confusion.png", "pr_curves.png",
             "regression.png", "report.html", "lr_find.json", "lr_find.png")


def remove_leftovers(folder: Path) -> int:
    """Delete the temporary files a killed process left in a run folder (see :class:`temporary_beside`).

    Only ``.NAME.XXXXXXXX.SUFFIX`` files of graftkit's own run files are touched.

    Example:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> _ = (d / ".model.keras.x1y2z3w4.keras").write_text(""); _ = (d / ".env.local").write_text("")
        >>> remove_leftovers(d), sorted(p.name for p in d.iterdir())
        (1, ['.env.local'])
    """
    names = "|".join(re.escape(name) for name in RUN_FILES)
    pattern = re.compile(rf"\.({names})\.[a-z0-9_]{{8}}\.[a-z.]+")
    removed = 0
    for path in Path(folder).iterdir():
        if pattern.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def input_contract(image_size: int, preprocessing: str, channels: int = 3, *, python_code: bool = False) -> dict:
    """What the saved model takes, for ``inputs.json`` and the README: feed it exactly this.

    ``python_code``: the model holds a Lambda layer's Python code (from a personal base loaded
    with ``--trust-model``), so Keras loads it only with ``safe_mode=False``.

    Example:
        >>> input_contract(224, "lite")["shape"]
        [224, 224, 3]
    """
    contract = {
        "shape": [image_size, image_size, channels],
        "channel_order": "RGB" if channels == 3 else "grayscale",
        "value_range": [0, 255],
        "dtype": "float32",
        "resize": ("PIL: Image.open, img.draft('RGB', (size, size)) (JPEG: decodes at the smallest scale still "
                   ">= size), EXIF rotation (ImageOps.exif_transpose), convert('RGB'), then resize to exactly "
                   "the shape with Image.Resampling.BILINEAR (aspect ratio not kept)"),
        "preprocessing": f"'{preprocessing}', inside the model: do not scale the pixels yourself",
        "load": f'keras.models.load_model("{MODEL_FILE}"' + (", safe_mode=False)" if python_code else ")"),
    }
    if python_code:
        contract["python_code"] = ("the model holds Python code (a Lambda layer of its personal base), which Keras "
                                   "runs only with safe_mode=False: load it only if you trust that base")
    return contract


def text_contract(max_length: int | None, tokenizer: str | None) -> dict:
    """What a text model takes, for ``inputs.json``: token ids from the run's tokenizer, 0 for padding; or, for
    a model that holds its own vocabulary (TF-IDF; ``tokenizer`` None), the texts themselves as strings.

    Example:
        >>> text_contract(64, "wordpiece")["dtype"], text_contract(None, None)["dtype"]
        ('int32', 'string')
    """
    if tokenizer is None:
        return {"kind": "text", "input": "text", "shape": [], "dtype": "string",
                "tokenize": "nothing to do: the model lowercases and splits the texts itself (keras TextVectorization)",
                "load": f'keras.models.load_model("{MODEL_FILE}")'}
    return {
        "kind": "text",
        "input": "token_ids",
        "shape": [None],
        "dtype": "int32",
        "padding_id": 0,
        "max_length": int(max_length),
        "tokenizer": f"{TOKENIZER_FILE} ({tokenizer}); {TOKENIZER_CONTRACT_FILE} says how its ids map to the "
                     "model's (an id shift, when the tokenizer's own padding id is not 0)",
        "tokenize": (f"as {TOKENIZER_CONTRACT_FILE}'s 'how' says: the tokenizer's ids (it truncates to max_length, "
                     "special tokens included) plus id_shift; pad a batch with 0 on the right to its longest text"),
        "load": f'keras.models.load_model("{MODEL_FILE}")',
    }
