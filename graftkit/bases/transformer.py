"""Transformer text encoders (BERT, DistilBERT, RoBERTa, XLM-R, ALBERT, GPT-2) built from built-in Keras layers.

A Hugging Face ``config.json`` becomes an :class:`EncoderConfig`; :func:`build_encoder` makes the Keras model and
:func:`load_hf_weights` fills it from the checkpoint's tensors (``model.safetensors``, read with NumPy). The model
holds nothing but Keras' own layers and ``keras.ops`` nodes (no ``Lambda``, no custom class), so a model that
contains it loads with plain ``keras.models.load_model``, in safe mode, where neither graftkit nor keras-hub is
installed.

The model takes ``token_ids`` (int32, ``(batch, length)``, 0 = padding, any length up to the encoder's positions)
and returns the mean of the last hidden states over the tokens that are not padding, as sentence-transformers
pools. Padding is masked out of attention and of the mean, so extra zeros at the end change nothing.

Two reparametrisations keep the graph small and change no output:

- the token-type embedding of type 0 (every token of a single text has type 0) is added into the position
  table, so ``embeddings_position`` holds ``position + type 0``;
- when the checkpoint's padding id is not 0 (RoBERTa pads with 1, GPT-2 has no padding id), every id is shifted
  by one and ``embeddings_token`` gets a zero row 0, so 0 is always padding; RoBERTa's positions, which start
  after its padding id, are sliced so that position 0 is the table's first used row.

ALBERT shares one set of block weights across all its blocks; here every block gets its own copy (identical at
first), so blocks can be frozen and fine-tuned one by one (the model then has more weights than the checkpoint).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np

from graftkit.errors import GraftError

SUPPORTED = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "albert", "gpt2")
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert")

# HF activation name -> (Dense activation, whether the tanh approximation of GELU follows as an op).
ACTIVATIONS = {
    "gelu": ("gelu", False),  # HF "gelu" is the exact erf GELU, as Keras' "gelu"
    "gelu_new": (None, True),
    "gelu_pytorch_tanh": (None, True),
    "gelu_fast": (None, True),
    "relu": ("relu", False),
    "silu": ("silu", False),
    "swish": ("silu", False),
    "tanh": ("tanh", False),
}

# HF's defaults for keys an older config.json may leave out.
DEFAULTS = {
    "bert": dict(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                 layer_norm_eps=1e-12, type_vocab_size=2, max_position_embeddings=512, pad_token_id=0,
                 position_embedding_type="absolute"),
    "roberta": dict(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                    layer_norm_eps=1e-5, type_vocab_size=1, max_position_embeddings=514, pad_token_id=1,
                    position_embedding_type="absolute"),
    "distilbert": dict(activation="gelu", dropout=0.1, attention_dropout=0.1, max_position_embeddings=512,
                       pad_token_id=0, sinusoidal_pos_embds=False),
    "albert": dict(hidden_act="gelu_new", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                   layer_norm_eps=1e-12, type_vocab_size=2, max_position_embeddings=512, pad_token_id=0,
                   num_hidden_groups=1, inner_group_num=1, embedding_size=128,
                   position_embedding_type="absolute"),
    "gpt2": dict(activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                 layer_norm_epsilon=1e-5, n_positions=1024, n_inner=None, pad_token_id=None,
                 scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, reorder_and_upcast_attn=False),
}


@dataclass(frozen=True)
class EncoderConfig:
    """What :func:`build_encoder` needs to know of a Hugging Face encoder, read from its ``config.json``.

    Example:
        >>> config = encoder_config({"model_type": "bert", "vocab_size": 99, "hidden_size": 32,
        ...     "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37})
        >>> config.dim, config.blocks, config.max_positions
        (32, 2, 512)
    """

    architecture: str  # HF model_type
    vocab_size: int
    dim: int
    blocks: int
    heads: int
    ffn_dim: int
    max_positions: int  # positions the encoder takes (special tokens included)
    position_offset: int  # rows of the checkpoint's position table before position 0 (RoBERTa: pad id + 1)
    type_vocab_size: int
    norm_epsilon: float
    activation: str  # the HF name
    embedding_dropout: float
    attention_dropout: float  # on the attention probabilities
    attention_output_dropout: float  # on the attention's projected output
    ffn_dropout: float
    embedding_dim: int  # ALBERT factorises its embeddings; others: == dim
    pre_norm: bool = False  # GPT-2: LayerNorm before attention and feed-forward, and once after the blocks
    causal: bool = False  # GPT-2: each token attends to those before it
    pad_token_id: int | None = 0
    hidden_groups: int = 1  # ALBERT: how many distinct sets of block weights
    inner_layers: int = 1  # ALBERT: layers per block
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def encoder_config(hf: dict, source: str = "config.json") -> EncoderConfig:
    """Read a Hugging Face ``config.json`` (as a dict) into an :class:`EncoderConfig`.

    Args:
        hf: the parsed ``config.json``.
        source: how to name the file in errors.

    Raises:
        GraftError: the model type is not supported, a key the encoder needs is missing or out of range, or the
            model uses something this encoder does not build (relative positions, ...).

    Example:
        >>> encoder_config({"model_type": "t5"})
        Traceback (most recent call last):
        graftkit.errors.GraftError: config.json: model_type 't5' is not a supported text encoder: use a folder of bert, roberta, xlm-roberta, camembert, distilbert, albert or gpt2
    """
    kind = str(hf.get("model_type", "")).lower().replace("_", "-")
    if kind not in SUPPORTED:
        shown = f"model_type '{hf.get('model_type')}'" if hf.get("model_type") else "no model_type"
        raise GraftError(f"{source}: {shown} is not a supported text encoder: use a folder of "
                         f"{', '.join(SUPPORTED[:-1])} or {SUPPORTED[-1]}")
    family = "roberta" if kind in ROBERTA_LIKE else kind
    cfg = {**DEFAULTS[family], **{k: v for k, v in hf.items() if v is not None or k not in DEFAULTS[family]}}

    def need(*keys):
        for key in keys:
            value = cfg.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise GraftError(f"{source}: '{key}' must be a positive integer for a {kind} model "
                                 f"(found {value!r})")
        return [cfg[key] for key in keys]

    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise GraftError(f"{source}: position_embedding_type '{cfg['position_embedding_type']}' is not "
                         "supported: only absolute position embeddings are")
    if family == "gpt2":
        vocab, dim, blocks, heads, positions = need("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")
        if not cfg["scale_attn_weights"] or cfg["scale_attn_by_inverse_layer_idx"] or cfg["reorder_and_upcast_attn"]:
            raise GraftError(f"{source}: this GPT-2 changes its attention scaling (scale_attn_weights, "
                             "scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn), which is not supported")
        residual = float(cfg["resid_pdrop"])
        config = EncoderConfig(
            kind, vocab, dim, blocks, heads, cfg["n_inner"] or 4 * dim, max_positions=positions, position_offset=0,
            type_vocab_size=0, norm_epsilon=float(cfg["layer_norm_epsilon"]),
            activation=str(cfg["activation_function"]), embedding_dropout=float(cfg["embd_pdrop"]),
            attention_dropout=float(cfg["attn_pdrop"]), attention_output_dropout=residual, ffn_dropout=residual,
            embedding_dim=dim, pre_norm=True, causal=True, pad_token_id=cfg.get("pad_token_id"))
    elif family == "distilbert":
        vocab, dim, blocks, heads, ffn, positions = need(
            "vocab_size", "dim", "n_layers", "n_heads", "hidden_dim", "max_position_embeddings")
        config = EncoderConfig(
            kind, vocab, dim, blocks, heads, ffn, max_positions=positions, position_offset=0, type_vocab_size=0,
            norm_epsilon=1e-12, activation=str(cfg["activation"]), embedding_dropout=float(cfg["dropout"]),
            attention_dropout=float(cfg["attention_dropout"]), attention_output_dropout=0.0,
            ffn_dropout=float(cfg["dropout"]), embedding_dim=dim, pad_token_id=cfg.get("pad_token_id"))
    else:
        vocab, dim, blocks, heads, ffn, table = need(
            "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings")
        pad = cfg.get("pad_token_id")
        offset = (pad if isinstance(pad, int) else 1) + 1 if family == "roberta" else 0
        if table <= offset:
            raise GraftError(f"{source}: max_position_embeddings {table} leaves no positions after the "
                             f"padding offset {offset}")
        groups, inner = need("num_hidden_groups", "inner_group_num") if family == "albert" else (1, 1)
        if blocks % groups:
            raise GraftError(f"{source}: num_hidden_layers {blocks} is not a multiple of num_hidden_groups {groups}")
        hidden = float(cfg["hidden_dropout_prob"])
        config = EncoderConfig(
            kind, vocab, dim, blocks, heads, ffn, max_positions=table - offset, position_offset=offset,
            type_vocab_size=int(cfg.get("type_vocab_size") or 0), norm_epsilon=float(cfg["layer_norm_eps"]),
            activation=str(cfg["hidden_act"]), embedding_dropout=hidden,
            attention_dropout=float(cfg["attention_probs_dropout_prob"]), attention_output_dropout=hidden,
            ffn_dropout=0.0 if family == "albert" else hidden,
            embedding_dim=need("embedding_size")[0] if family == "albert" else dim, pad_token_id=pad,
            hidden_groups=groups, inner_layers=inner)
    ends = {key: hf.get(key) if isinstance(hf.get(key), int) else None for key in ("bos_token_id", "eos_token_id")}
    config = dataclasses.replace(config, **ends)
    if config.dim % config.heads:
        raise GraftError(f"{source}: the hidden size {config.dim} is not a multiple of the {config.heads} heads")
    if config.activation not in ACTIVATIONS:
        raise GraftError(f"{source}: activation '{config.activation}' is not supported: use one of "
                         f"{', '.join(ACTIVATIONS)}")
    return config


def layer_groups(blocks: int) -> tuple[str, ...]:
    """The regexes of the encoder's layer groups, embeddings first (``graftkit.model.freeze``'s ``blocks:N``).

    Example:
        >>> layer_groups(2)
        ('^embeddings', '^block_0_', '^block_1_')
    """
    return ("^embeddings", *(f"^block_{i}_" for i in range(blocks)))


def build_encoder(config: EncoderConfig, *, id_shift: int = 0, name: str = "base"):
    """The encoder as a functional Keras model with random weights: ``token_ids`` in, mean-pooled states out.

    Layers are named ``embeddings_token``, ``embeddings_position``, ``embeddings_norm``, ``embeddings_dropout``
    (ALBERT: then ``embeddings_projection``), and for block ``i`` ``block_{i}_attention``,
    ``block_{i}_attention_dropout``, ``block_{i}_attention_add``, ``block_{i}_attention_norm``,
    ``block_{i}_ffn_in``, ``block_{i}_ffn_out``, ``block_{i}_ffn_dropout``, ``block_{i}_ffn_add``,
    ``block_{i}_ffn_norm`` (GPT-2 normalises before attention and feed-forward and ends with ``final_norm``),
    then ``pooling``. Dropout follows the config's hidden and attention rates and is active only in training.

    Args:
        config: from :func:`encoder_config`.
        id_shift: 1 when the tokenizer's ids are shifted by one so that 0 is padding (the token table then has
            one row more, row 0).
        name: the model's name.

    Returns:
        A ``keras.Model``; its ``_graft_layer_groups`` are :func:`layer_groups`.

    Example:
        >>> import numpy as np
        >>> config = encoder_config({"model_type": "bert", "vocab_size": 99, "hidden_size": 32,
        ...     "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37})
        >>> model = build_encoder(config)
        >>> model(np.array([[5, 6, 7, 0]], "int32")).shape
        TensorShape([1, 32])
    """
    import keras
    from keras import layers, ops

    dense_activation, tanh_gelu = ACTIVATIONS[config.activation]
    token_ids = keras.Input((None,), dtype="int32", name="token_ids")
    mask = ops.not_equal(token_ids, 0)
    attention_mask = ops.expand_dims(mask, 1)  # (batch, 1, keys): padding is never attended to
    positions = ops.subtract(ops.cumsum(ops.ones_like(token_ids), axis=1), 1)

    x = layers.Embedding(config.vocab_size + id_shift, config.embedding_dim, name="embeddings_token")(token_ids)
    position = layers.Embedding(config.max_positions, config.embedding_dim, name="embeddings_position")(positions)
    x = layers.Add(name="embeddings_add")([x, position])
    if not config.pre_norm:
        x = layers.LayerNormalization(epsilon=config.norm_epsilon, name="embeddings_norm")(x)
    x = layers.Dropout(config.embedding_dropout, name="embeddings_dropout")(x)
    if config.embedding_dim != config.dim:
        x = layers.Dense(config.dim, name="embeddings_projection")(x)

    def norm(name):
        return layers.LayerNormalization(epsilon=config.norm_epsilon, name=name)

    def attention(prefix, h):
        h = layers.MultiHeadAttention(
            config.heads, config.head_dim, dropout=config.attention_dropout, name=f"{prefix}_attention",
        )(h, h, attention_mask=attention_mask, use_causal_mask=config.causal)
        return layers.Dropout(config.attention_output_dropout, name=f"{prefix}_attention_dropout")(h)

    def feed_forward(prefix, h):
        h = layers.Dense(config.ffn_dim, activation=dense_activation, name=f"{prefix}_ffn_in")(h)
        if tanh_gelu:
            h = ops.gelu(h, approximate=True)
        h = layers.Dense(config.dim, name=f"{prefix}_ffn_out")(h)
        return layers.Dropout(config.ffn_dropout, name=f"{prefix}_ffn_dropout")(h)

    for prefix in _block_prefixes(config):
        if config.pre_norm:
            h = attention(prefix, norm(f"{prefix}_attention_norm")(x))
            x = layers.Add(name=f"{prefix}_attention_add")([x, h])
            h = feed_forward(prefix, norm(f"{prefix}_ffn_norm")(x))
            x = layers.Add(name=f"{prefix}_ffn_add")([x, h])
        else:
            x = norm(f"{prefix}_attention_norm")(layers.Add(name=f"{prefix}_attention_add")([x, attention(prefix, x)]))
            x = norm(f"{prefix}_ffn_norm")(layers.Add(name=f"{prefix}_ffn_add")([x, feed_forward(prefix, x)]))
    if config.pre_norm:
        x = norm("final_norm")(x)
    # float32 under mixed precision too: the features and their mean stay exact enough to cache
    pooled = layers.GlobalAveragePooling1D(name="pooling", dtype="float32")(x, mask=mask)
    model = keras.Model(token_ids, pooled, name=name)
    model._graft_layer_groups = layer_groups(config.blocks)
    return model


def _block_prefixes(config: EncoderConfig) -> list[str]:
    """``block_{i}`` per block; ALBERT blocks of several inner layers: ``block_{i}_{j}``."""
    if config.inner_layers == 1:
        return [f"block_{i}" for i in range(config.blocks)]
    return [f"block_{i}_{j}" for i in range(config.blocks) for j in range(config.inner_layers)]


def read_safetensors(path) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as NumPy arrays; bfloat16 ones are widened to float32.

    ``safetensors.numpy`` cannot hold bfloat16 (NumPy has no such type), so such a file is read here: a
    bfloat16 is the upper half of a float32.

    Example:
        >>> import tempfile, numpy as np
        >>> from safetensors.numpy import save_file
        >>> path = tempfile.mkdtemp() + "/w.safetensors"
        >>> save_file({"a": np.ones((2, 3), "float16")}, path)
        >>> read_safetensors(path)["a"].dtype
        dtype('float16')
    """
    import json
    import struct

    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (TypeError, ValueError) as error:
        if "bf16" not in str(error).lower() and "bfloat16" not in str(error).lower():
            raise
    with open(path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(size))
        data = file.read()
    numpy_types = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                   "I8": "i1", "U8": "u1", "BOOL": "?"}
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[start:end]
        if info["dtype"] == "BF16":
            value = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            value = np.frombuffer(raw, numpy_types[info["dtype"]])
        tensors[key] = value.reshape(info["shape"])
    return tensors


_TORCH_STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _TorchZipUnpickler(pickle.Unpickler):
    """Unpickles the ``data.pkl`` of a zip-format torch file, allowing only what a state dict of tensors uses."""

    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root = archive, root

    def find_class(self, module, name):
        allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
            ("torch._tensor", "_rebuild_from_type_v2"): lambda func, _type, args, _state: func(*args),
        }
        if (module, name) in allowed:
            return allowed[(module, name)]
        if module == "torch" and name in _TORCH_STORAGES:
            return name
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a torch state dict")

    def persistent_load(self, pid):
        kind, storage, key, _location, _count = pid
        if kind != "storage" or storage not in _TORCH_STORAGES:
            raise pickle.UnpicklingError(f"unsupported torch storage reference {pid!r}")
        return storage, np.frombuffer(self.archive.read(f"{self.root}data/{key}"), _TORCH_STORAGES[storage])


def _rebuild_tensor(storage, offset, shape, stride, *_ignored):
    kind, data = storage
    item = data.dtype.itemsize
    value = np.lib.stride_tricks.as_strided(data[offset:], tuple(shape), [s * item for s in stride]).copy()
    if kind == "BFloat16Storage":
        value = (value.astype(np.uint32) << 16).view(np.float32)
    return value


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """A ``pytorch_model.bin`` of plain tensors as NumPy arrays, read without torch (zip or legacy format).

    Only the few pickled globals a state dict of tensors uses are allowed; anything else is refused, so a
    file cannot run code here.

    Raises:
        GraftError: the file is not a torch state dict of tensors.

    Example:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/pytorch_model.bin"
        >>> _ = open(path, "wb").write(b"not torch")
        >>> read_torch_state_dict(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graftkit.errors.GraftError: ...pytorch_model.bin is not a torch state dict of tensors (...)
    """
    try:
        if not zipfile.is_zipfile(path):
            from graftkit.bases.lite import read_legacy_pth

            return read_legacy_pth(path)
        with zipfile.ZipFile(path) as archive:
            pickled = next(n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            root = pickled[: -len("data.pkl")]
            state = _TorchZipUnpickler(io.BytesIO(archive.read(pickled)), archive, root).load()
    except Exception as error:  # pickle, zipfile and struct each raise their own kinds for a file that is not one
        raise GraftError(f"{path} is not a torch state dict of tensors ({type(error).__name__}: "
                         f"{str(error)[:100]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise GraftError(f"{path} is not a torch state dict of tensors (it holds a {type(state).__name__})")
    return dict(state)


class _Tensors:
    """The checkpoint's tensors under the names of the bare model (``bert.``, ``roberta.``... prefixes dropped)."""

    def __init__(self, tensors: dict[str, np.ndarray], config: EncoderConfig, source: str):
        anchor = "wte.weight" if config.architecture == "gpt2" else "embeddings.word_embeddings.weight"
        found = sorted((k for k in tensors if k == anchor or k.endswith("." + anchor)), key=len)
        self.prefix = found[0][: -len(anchor)] if found else ""
        self.tensors, self.config, self.source = tensors, config, source

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        names = [name]
        if name.endswith("LayerNorm.weight"):  # checkpoints converted from TF 1 BERT
            names.append(name[: -len("weight")] + "gamma")
        if name.endswith("LayerNorm.bias"):
            names.append(name[: -len("bias")] + "beta")
        for candidate in names:
            value = self.tensors.get(self.prefix + candidate)
            if value is not None:
                break
        else:
            raise GraftError(f"weights in {self.source} do not fit its config.json: there is no tensor "
                             f"'{self.prefix}{name}' (a {self.config.architecture} model of "
                             f"{self.config.blocks} blocks has one)")
        if tuple(value.shape) != tuple(shape):
            raise GraftError(f"weights in {self.source} do not fit its config.json: tensor '{self.prefix}{name}' "
                             f"has shape {tuple(value.shape)}, the config needs {tuple(shape)}")
        return np.asarray(value, dtype=np.float32)


def keras_weights(config: EncoderConfig, tensors: dict[str, np.ndarray], *, id_shift: int = 0,
                  source: str = "the checkpoint") -> dict[str, np.ndarray]:
    """The checkpoint's tensors as ``{Keras weight path: array}`` for the model of :func:`build_encoder`.

    Args:
        config: the encoder's config.
        tensors: a Hugging Face state dict (``model.safetensors``), with or without a ``bert.``-like prefix.
        id_shift: as for :func:`build_encoder`.
        source: how to name the weights in errors.

    Raises:
        GraftError: a tensor the config needs is missing or has another shape (the message names it).
    """
    take = _Tensors(tensors, config, source)
    d, e, heads, hd, ffn = config.dim, config.embedding_dim, config.heads, config.head_dim, config.ffn_dim
    out: dict[str, np.ndarray] = {}

    def dense(path, name, n_in, n_out, transposed=True):
        weight = take(f"{name}.weight", (n_out, n_in) if transposed else (n_in, n_out))
        out[f"{path}/kernel"] = weight.T if transposed else weight
        out[f"{path}/bias"] = take(f"{name}.bias", (n_out,))

    def layer_norm(path, name, size=d):
        out[f"{path}/gamma"] = take(f"{name}.weight", (size,))
        out[f"{path}/beta"] = take(f"{name}.bias", (size,))

    def attention(path, query, key, value, output):
        for part, name in (("query", query), ("key", key), ("value", value)):
            out[f"{path}/{part}/kernel"] = take(f"{name}.weight", (d, d)).T.reshape(d, heads, hd)
            out[f"{path}/{part}/bias"] = take(f"{name}.bias", (d,)).reshape(heads, hd)
        out[f"{path}/attention_output/kernel"] = take(f"{output}.weight", (d, d)).T.reshape(heads, hd, d)
        out[f"{path}/attention_output/bias"] = take(f"{output}.bias", (d,))

    arch = config.architecture
    if arch == "gpt2":
        words = take("wte.weight", (config.vocab_size, d))
        table = take("wpe.weight", (config.max_positions, d))
    else:
        words = take("embeddings.word_embeddings.weight", (config.vocab_size, e))
        rows = config.max_positions + config.position_offset
        table = take("embeddings.position_embeddings.weight", (rows, e))[config.position_offset:]
        if config.type_vocab_size:
            table = table + take("embeddings.token_type_embeddings.weight", (config.type_vocab_size, e))[0]
        layer_norm("embeddings_norm", "embeddings.LayerNorm", e)
    if id_shift:
        words = np.concatenate([np.zeros((id_shift, words.shape[1]), np.float32), words])
    out["embeddings_token/embeddings"] = words
    out["embeddings_position/embeddings"] = table
    if arch == "albert":
        dense("embeddings_projection", "encoder.embedding_hidden_mapping_in", e, d)

    for i, prefix in enumerate(_block_prefixes(config)):
        block, inner = divmod(i, config.inner_layers)
        if arch == "gpt2":
            h = f"h.{block}"
            qkv_w, qkv_b = take(f"{h}.attn.c_attn.weight", (d, 3 * d)), take(f"{h}.attn.c_attn.bias", (3 * d,))
            for j, part in enumerate(("query", "key", "value")):
                out[f"{prefix}_attention/{part}/kernel"] = qkv_w[:, j * d:(j + 1) * d].reshape(d, heads, hd)
                out[f"{prefix}_attention/{part}/bias"] = qkv_b[j * d:(j + 1) * d].reshape(heads, hd)
            out[f"{prefix}_attention/attention_output/kernel"] = take(f"{h}.attn.c_proj.weight", (d, d)).reshape(
                heads, hd, d)
            out[f"{prefix}_attention/attention_output/bias"] = take(f"{h}.attn.c_proj.bias", (d,))
            layer_norm(f"{prefix}_attention_norm", f"{h}.ln_1")
            layer_norm(f"{prefix}_ffn_norm", f"{h}.ln_2")
            dense(f"{prefix}_ffn_in", f"{h}.mlp.c_fc", d, ffn, transposed=False)
            dense(f"{prefix}_ffn_out", f"{h}.mlp.c_proj", ffn, d, transposed=False)
        elif arch == "distilbert":
            h = f"transformer.layer.{block}"
            attention(f"{prefix}_attention", *(f"{h}.attention.{n}_lin" for n in ("q", "k", "v", "out")))
            layer_norm(f"{prefix}_attention_norm", f"{h}.sa_layer_norm")
            dense(f"{prefix}_ffn_in", f"{h}.ffn.lin1", d, ffn)
            dense(f"{prefix}_ffn_out", f"{h}.ffn.lin2", ffn, d)
            layer_norm(f"{prefix}_ffn_norm", f"{h}.output_layer_norm")
        elif arch == "albert":
            group = block * config.hidden_groups // config.blocks
            h = f"encoder.albert_layer_groups.{group}.albert_layers.{inner}"
            attention(f"{prefix}_attention", *(f"{h}.attention.{n}" for n in ("query", "key", "value", "dense")))
            layer_norm(f"{prefix}_attention_norm", f"{h}.attention.LayerNorm")
            dense(f"{prefix}_ffn_in", f"{h}.ffn", d, ffn)
            dense(f"{prefix}_ffn_out", f"{h}.ffn_output", ffn, d)
            layer_norm(f"{prefix}_ffn_norm", f"{h}.full_layer_layer_norm")
        else:
            h = f"encoder.layer.{block}"
            attention(f"{prefix}_attention", *(f"{h}.attention.self.{n}" for n in ("query", "key", "value")),
                      f"{h}.attention.output.dense")
            layer_norm(f"{prefix}_attention_norm", f"{h}.attention.output.LayerNorm")
            dense(f"{prefix}_ffn_in", f"{h}.intermediate.dense", d, ffn)
            dense(f"{prefix}_ffn_out", f"{h}.output.dense", ffn, d)
            layer_norm(f"{prefix}_ffn_norm", f"{h}.output.LayerNorm")
    if arch == "gpt2":
        layer_norm("final_norm", "ln_f")
    return out


def load_hf_weights(model, config: EncoderConfig, tensors: dict[str, np.ndarray], *, id_shift: int = 0,
                    source: str = "the checkpoint") -> None:
    """Fill ``model`` (from :func:`build_encoder`) with a Hugging Face checkpoint's tensors.

    Raises:
        GraftError: a tensor the config needs is missing or has another shape.

    Example:
        >>> import numpy as np
        >>> config = encoder_config({"model_type": "bert", "vocab_size": 9, "hidden_size": 8,
        ...     "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
        ...     "max_position_embeddings": 6})
        >>> load_hf_weights(build_encoder(config), config, {}, source="folder")
        Traceback (most recent call last):
        graftkit.errors.GraftError: weights in folder do not fit its config.json: there is no tensor 'embeddings.word_embeddings.weight' (a bert model of 1 blocks has one)
    """
    values = keras_weights(config, tensors, id_shift=id_shift, source=source)
    for weight in model.weights:
        value = values.pop(weight.path)
        weight.assign(value.astype(weight.dtype))
    if values:
        raise AssertionError(f"weights without a layer: {sorted(values)[:5]}")


def parameter_count(config: EncoderConfig) -> int:
    """How many weights the Keras encoder has (ALBERT's shared blocks counted once per block).

    Example:
        >>> parameter_count(encoder_config({"model_type": "bert", "vocab_size": 30522, "hidden_size": 384,
        ...     "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536}))
        22564608
    """
    d, e, f = config.dim, config.embedding_dim, config.ffn_dim
    embeddings = (config.vocab_size + config.max_positions) * e + (0 if config.pre_norm else 2 * e)
    embeddings += (e * d + d) if e != d else 0
    block = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 4 * d
    return embeddings + block * config.blocks * config.inner_layers + (2 * d if config.pre_norm else 0)


def check_positions(config: EncoderConfig, length: int) -> None:
    """Refuse a token length the encoder has no positions for.

    Example:
        >>> check_positions(encoder_config({"model_type": "bert", "vocab_size": 9, "hidden_size": 8,
        ...     "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 4,
        ...     "max_position_embeddings": 6}), 7)
        Traceback (most recent call last):
        graftkit.errors.GraftError: --max-length 7: this bert encoder takes at most 6 tokens
    """
    if length > config.max_positions:
        raise GraftError(f"--max-length {length}: this {config.architecture} encoder takes at most "
                         f"{config.max_positions} tokens")


def describe_blocks(config: EncoderConfig) -> str:
    """One line on the encoder's shape, for logs and ``graft inspect``.

    Example:
        >>> describe_blocks(encoder_config({"model_type": "distilbert", "vocab_size": 99, "dim": 32,
        ...     "n_layers": 2, "n_heads": 4, "hidden_dim": 37}))
        'distilbert: 2 blocks, 4 heads, 32-d, feed-forward 37, 512 positions'
    """
    return (f"{config.architecture}: {config.blocks} blocks, {config.heads} heads, {config.dim}-d, "
            f"feed-forward {config.ffn_dim}, {config.max_positions} positions")

