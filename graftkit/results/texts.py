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
        for batch in model_batches(model, texts, run_dir, batch_size):
            parts.append(forward(batch).numpy())
            if progress:
                progress(min(len(parts) * batch_size, len(texts)))
        return np.concatenate(parts) if parts else np.zeros((0, int(model.output.shape[-1])), "float32")
    from graftkit.data.tokens import token_outputs

    tokens = run_tokenizer(run_dir).encode(texts)
    return token_outputs(model, tokens, batch_size=batch_size, progress=progress)


def model_batches(model, texts: list[str], run_dir: str | Path | None, batch_size: int):
    """``texts`` as the model takes them, batch by batch: string vectors in order (TF-IDF), or token-id matrices
    of like-length texts (an encoder; tokenized with the run's tokenizer).

    Example:
        >>> [b.tolist() for b in model_batches(tfidf_model, ["a", "b", "c"], None, 2)]  # doctest: +SKIP
        [['a', 'b'], ['c']]
    """
    if takes_strings(model):
        return (np.array(texts[i:i + batch_size], dtype=object) for i in range(0, len(texts), batch_size))
    from graftkit.data.tokens import padded_batches

    return (batch for _, batch in padded_batches(run_tokenizer(run_dir).encode(list(texts)), batch_size))


def predict_texts(model, texts: list[str], run_dir, class_names: list[str], *, task="single", top_k: int = 3,
                  thresholds=None, batch_size: int = 64, progress=None) -> list[dict]:
    """Prediction rows of texts (``text``, then the task's fields, as :func:`graftkit.results.predict.predict_files`).

    Example:
        >>> predict_texts(model, ["free prize"], "runs/sms", ["ham", "spam"])[0]["label"]  # doctest: +SKIP
        'spam'
    """
    from graftkit.results.predict import prediction_rows, text_rows

    outputs = text_outputs(model, texts, run_dir, batch_size=batch_size, progress=progress)
    return text_rows(prediction_rows(outputs, texts, class_names, task=task, top_k=top_k, thresholds=thresholds))


def run_tokenizer(run_dir: str | Path | None):
    """The tokenizer a text run trained with, from the run folder (it truncates to the run's max length).

    Raises:
        GraftError: the folder has no tokenizer (a bare model file, or a folder that lost it).
    """
    from graftkit.bases.text import TextTokenizer

    if run_dir is None:
        raise GraftError(f"no {TOKENIZER_FILE} beside the text model: pass the run folder it was trained in (it "
                         "holds the tokenizer)")
    return TextTokenizer.from_saved(run_dir)
