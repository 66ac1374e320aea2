"""A trained text model's outputs for texts: tokenized with its run's tokenizer, or fed as strings.

A model trained on a transformer takes token ids (its run folder holds the tokenizer that makes
them); the TF-IDF model takes the raw strings itself. Either way the texts go in batches and the
outputs come back in the texts' order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graftkit.errors import GraftError
from graftkit.runfolder import TOKENIZER_FILE


def takes_strings(model) -> bool:
    """Whether ``model`` takes raw strings (the TF-IDF model) rather than token ids.

    Example:
        >>> import keras
        >>> takes_strings(keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(5, 2)]))
        False
    """
    return "string" in str(model.inputs[0].dtype)


def is_text_model(model) -> bool:
    """Whether ``model`` is a text model (token ids or strings in) rather than an image model.

    Example:
        >>> import keras
        >>> is_text_model(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten()]))
        False
    """
    dtype = str(model.inputs[0].dtype)
    return "string" in dtype or "int" in dtype


def text_outputs(model, texts: list[str], run_dir: str | Path | None, *, batch_size: int = 64,
                 progress=None) -> np.ndarray:
    """The model's outputs for ``texts``, in their order.

    Args:
        model: a text model trained by graftkit.
        texts: the texts.
        run_dir: its run folder (where the tokenizer lies); unused for a model that takes strings.
        batch_size: texts per forward pass.
        progress: optional callable receiving the number of texts done.

    Example:
        >>> outputs = text_outputs(model, ["free prize", "see you at 5"], "runs/sms")  # doctest: +SKIP
    """
    if takes_strings(model):
        from graftkit.model.infer import compiled_forward

        forward = compiled_forward(model, input_shape=(), dtype="string")
        parts = []
        for start in range(0, len(texts), batch_size):
            parts.append(forward(np.array(texts[start:start + batch_size], dtype=object)).numpy())
            if progress:
                progress(min(start + batch_size, len(texts)))
        return np.concatenate(parts) if parts else np.zeros((0, int(model.output.shape[-1])), "float32")
    from graftkit.data.tokens import token_outputs

    tokenizer, max_length = run_tokenizer(run_dir)
    return token_outputs(model, tokenizer.encode(texts, max_length), batch_size=batch_size, progress=progress)


def run_tokenizer(run_dir: str | Path | None):
    """The tokenizer a text run trained with and its longest token sequence, from the run folder.

    Raises:
        GraftError: the folder has no tokenizer (a bare model file, or a folder that lost it).
    """
    from graftkit.bases.text import TextTokenizer

    if run_dir is None:
        raise GraftError(f"no {TOKENIZER_FILE} beside the text model: pass the run folder it was trained in (it "
                         "holds the tokenizer)")
    tokenizer = TextTokenizer.from_saved(run_dir)
    return tokenizer, tokenizer.max_length
