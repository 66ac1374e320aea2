"""The Keras transformer encoders against Hugging Face transformers, one tiny random model per architecture.

``write_tiny_folder`` writes a Hugging Face folder (config.json, model.safetensors, tokenizer.json) from NumPy
alone, seeded (the seed is the architecture's index in ``SPECIALS``), so the same folder can be made where torch
is installed. ``REFERENCE`` holds what
``transformers.AutoModel.from_pretrained(folder)`` (transformers 5.24, torch 2.13, eval mode) gave for each
folder: the first 6 dims of the mean of the last hidden states of each of ``TEXTS``, each text run alone::

    model = AutoModel.from_pretrained(folder).eval()
    ids = [tokenizers.Tokenizer.from_file(f"{folder}/tokenizer.json").encode(t).ids for t in TEXTS]
    model(input_ids=torch.tensor([ids[i]])).last_hidden_state.mean(1)[0, :6]

The tests need neither torch nor transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

WORDS = "the cat sat on a mat dog ran far away quick brown fox jumps over lazy".split()
TEXTS = ["the cat sat on a mat", "quick brown fox", ""]
DIM, HEADS, FFN, BLOCKS, POSITIONS = 16, 2, 24, 2, 16

SPECIALS = {  # tokens before the words; (first, last) added around each text, or None
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]"], ("[CLS]", "[SEP]")),
    "distilbert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]"], ("[CLS]", "[SEP]")),
    "albert": (["<pad>", "<unk>", "[CLS]", "[SEP]"], ("[CLS]", "[SEP]")),
    "roberta": (["<s>", "<pad>", "</s>", "<unk>"], ("<s>", "</s>")),
    "xlm-roberta": (["<s>", "<pad>", "</s>", "<unk>"], ("<s>", "</s>")),
    "gpt2": ([], None),
}

# First 6 dims of each text's pooled vector from transformers (see the module docstring).
REFERENCE = {
    "bert": [
        [1.318429, 1.432354, 1.303629, -0.298313, 0.724595, -1.176095],
        [1.19215, 0.898391, 1.157238, -0.044704, 0.556713, -1.069393],
        [1.937368, 1.005456, 1.46675, -0.674972, 0.50976, -0.925341],
    ],
    "distilbert": [
        [-0.623936, 0.700039, 1.171866, 0.26948, 0.719124, -1.056435],
        [-0.31282, 1.030931, 1.071215, 0.966681, 0.602801, -1.558022],
        [-0.485185, -0.082111, 0.473992, 0.865119, 0.866544, -1.614694],
    ],
    "albert": [
        [1.222599, -1.337056, 0.536424, 0.551518, 0.897662, 1.531785],
        [1.034292, -1.207126, 0.395017, 0.390369, 0.604985, 1.573176],
        [0.528415, -1.294462, 1.158428, 0.645362, 0.7072, 1.271348],
    ],
    "roberta": [
        [-0.788266, 1.588295, 0.750747, 0.35944, 0.839647, -0.335958],
        [-0.57465, 1.388462, 0.820903, 0.338162, 0.68235, -0.057891],
        [-0.580538, 1.447747, 1.116724, 0.256225, 0.59707, -0.28951],
    ],
    "xlm-roberta": [
        [1.482005, -1.308846, -0.8935, -0.329017, 0.680743, 0.740146],
        [1.401299, -1.349591, -0.826883, -0.308231, 0.564841, 0.687185],
        [1.816166, -0.95492, -0.040966, -0.520192, 0.001066, 0.210308],
    ],
    "gpt2": [
        [-0.098097, -0.021502, -0.131309, -0.042107, -0.278838, 0.538909],
        [0.087098, -0.035174, -0.133432, -0.095797, -0.228064, 0.580682],
    ],
}


def _config(model_type: str) -> dict:
    vocab = len(SPECIALS[model_type][0]) + len(WORDS) + 4
    if model_type == "distilbert":
        return dict(model_type=model_type, vocab_size=vocab, dim=DIM, n_layers=BLOCKS, n_heads=HEADS,
                    hidden_dim=FFN, max_position_embeddings=POSITIONS, activation="gelu", pad_token_id=0)
    if model_type == "gpt2":
        return dict(model_type=model_type, vocab_size=vocab, n_embd=DIM, n_layer=BLOCKS, n_head=HEADS, n_inner=FFN,
                    n_positions=POSITIONS, activation_function="gelu_new", bos_token_id=vocab - 1,
                    eos_token_id=vocab - 1)
    config = dict(model_type=model_type, vocab_size=vocab, hidden_size=DIM, num_hidden_layers=BLOCKS,
                  num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=POSITIONS,
                  type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)
    if model_type in ("roberta", "xlm-roberta"):
        config.update(max_position_embeddings=POSITIONS + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                      eos_token_id=2, layer_norm_eps=1e-5)
    if model_type == "albert":
        config.update(embedding_size=8, hidden_act="gelu_new", num_hidden_groups=1, inner_group_num=1)
    return config


def _tensors(config: dict, rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Random weights under the Hugging Face names of ``config``'s model type."""
    kind, shapes = config["model_type"], {}
    v = config["vocab_size"]
    blocks = config.get("num_hidden_layers") or config.get("n_layers") or config.get("n_layer")

    def linear(name, n_in, n_out, conv1d=False):
        shapes[f"{name}.weight"] = (n_in, n_out) if conv1d else (n_out, n_in)
        shapes[f"{name}.bias"] = (n_out,)

    def norm(name, size=DIM):
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (size,)

    if kind == "gpt2":
        shapes.update({"wte.weight": (v, DIM), "wpe.weight": (POSITIONS, DIM)})
        for i in range(blocks):
            norm(f"h.{i}.ln_1")
            norm(f"h.{i}.ln_2")
            linear(f"h.{i}.attn.c_attn", DIM, 3 * DIM, conv1d=True)
            linear(f"h.{i}.attn.c_proj", DIM, DIM, conv1d=True)
            linear(f"h.{i}.mlp.c_fc", DIM, FFN, conv1d=True)
            linear(f"h.{i}.mlp.c_proj", FFN, DIM, conv1d=True)
        norm("ln_f")
    else:
        e = config.get("embedding_size", DIM)
        shapes["embeddings.word_embeddings.weight"] = (v, e)
        shapes["embeddings.position_embeddings.weight"] = (config["max_position_embeddings"], e)
        if kind != "distilbert":
            shapes["embeddings.token_type_embeddings.weight"] = (config["type_vocab_size"], e)
        norm("embeddings.LayerNorm", e)
        for i in range(blocks):
            if kind == "distilbert":
                p = f"transformer.layer.{i}"
                for part in ("q_lin", "k_lin", "v_lin", "out_lin"):
                    linear(f"{p}.attention.{part}", DIM, DIM)
                norm(f"{p}.sa_layer_norm")
                linear(f"{p}.ffn.lin1", DIM, FFN)
                linear(f"{p}.ffn.lin2", FFN, DIM)
                norm(f"{p}.output_layer_norm")
            elif kind == "albert":
                if i == 0:
                    p = "encoder.albert_layer_groups.0.albert_layers.0"
                    for part in ("query", "key", "value", "dense"):
                        linear(f"{p}.attention.{part}", DIM, DIM)
                    norm(f"{p}.attention.LayerNorm")
                    linear(f"{p}.ffn", DIM, FFN)
                    linear(f"{p}.ffn_output", FFN, DIM)
                    norm(f"{p}.full_layer_layer_norm")
                    linear("encoder.embedding_hidden_mapping_in", e, DIM)
            else:
                p = f"encoder.layer.{i}"
                for part in ("query", "key", "value"):
                    linear(f"{p}.attention.self.{part}", DIM, DIM)
                linear(f"{p}.attention.output.dense", DIM, DIM)
                norm(f"{p}.attention.output.LayerNorm")
                linear(f"{p}.intermediate.dense", DIM, FFN)
                linear(f"{p}.output.dense", FFN, DIM)
                norm(f"{p}.output.LayerNorm")
    tensors = {}
    for name, shape in sorted(shapes.items()):
        value = rng.normal(0.0, 0.3, shape)
        if ("LayerNorm" in name or "layer_norm" in name or ".ln_" in name) and name.endswith("weight"):
            value = 1.0 + 0.1 * rng.normal(size=shape)
        tensors[name] = value.astype(np.float32)
    return tensors


def write_tokenizer(path: Path, model_type: str) -> None:
    """A word-level ``tokenizer.json`` over ``WORDS`` with the model type's special tokens."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    specials, around = SPECIALS[model_type]
    ends = ["<|endoftext|>"] if model_type == "gpt2" else []
    vocab = {token: i for i, token in enumerate(specials + WORDS + ["unknown"] + ends)}
    unknown = next((t for t in specials if "unk" in t.lower()), "unknown")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=unknown))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens([t for t in specials + ends])
    if around:
        first, last = around
        tokenizer.post_processor = TemplateProcessing(
            single=f"{first} $A {last}", special_tokens=[(first, vocab[first]), (last, vocab[last])])
    tokenizer.save(str(path))


def write_tiny_folder(folder: Path, model_type: str = "bert", seed: int = 0, **config_changes) -> Path:
    """A Hugging Face folder of a tiny random ``model_type`` model, from NumPy alone (seeded: always the same)."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {**_config(model_type), **config_changes}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file(_tensors(config, np.random.RandomState(seed)), str(folder / "model.safetensors"))
    write_tokenizer(folder / "tokenizer.json", model_type)
    return folder


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_hf")
    return {kind: write_tiny_folder(root / kind, kind, seed=seed) for seed, kind in enumerate(SPECIALS)}


@pytest.mark.filterwarnings("ignore:You are using a softmax over axis:UserWarning")  # a 1-token text, eagerly
@pytest.mark.parametrize("model_type", list(SPECIALS))
def test_encoder_matches_transformers(tiny_folders, model_type):
    from graftkit.bases.text import load_text_base, pad_ids

    base = load_text_base(str(tiny_folders[model_type]))
    rows = base.tokenizer.encode(TEXTS)
    solo = np.stack([base.model(pad_ids([ids])).numpy()[0] for ids in rows])
    if model_type == "gpt2":  # an empty text gets the end-of-text token, which transformers was not given
        solo = solo[:2]
    np.testing.assert_allclose(solo[:, :6], np.array(REFERENCE[model_type])[: len(solo)], atol=1e-4)
    batch = base.model(pad_ids(rows, POSITIONS)).numpy()
    np.testing.assert_allclose(batch, np.stack([base.model(pad_ids([ids])).numpy()[0] for ids in rows]),
                               atol=1e-5)


def test_roberta_ids_are_shifted_and_positions_sliced(tiny_folders):
    from tokenizers import Tokenizer

    from graftkit.bases.text import load_text_base

    base = load_text_base(str(tiny_folders["roberta"]))
    raw = Tokenizer.from_file(str(tiny_folders["roberta"] / "tokenizer.json")).encode("the cat").ids
    assert base.tokenizer.id_shift == 1
    assert base.tokenizer.encode(["the cat"])[0].tolist() == [i + 1 for i in raw]
    assert base.max_positions == POSITIONS  # the table has 2 more rows, before the padding id + 1
    token = base.model.get_layer("embeddings_token").get_weights()[0]
    assert token.shape[0] == _config("roberta")["vocab_size"] + 1 and not token[0].any()


def test_gpt2_attends_causally(tiny_folders):
    """A later token cannot change the states of earlier ones, so a text's prefix pools the same as itself."""
    import keras

    from graftkit.bases.text import load_text_base, pad_ids

    base = load_text_base(str(tiny_folders["gpt2"]))
    states = keras.Model(base.model.input, base.model.get_layer("final_norm").output)
    ids = base.tokenizer.encode(["the cat sat on a mat"])[0]
    full = states(pad_ids([ids])).numpy()[0]
    prefix = states(pad_ids([ids[:3]])).numpy()[0]
    np.testing.assert_allclose(full[:3], prefix, atol=1e-5)
    assert np.abs(full[3:] - full[2]).max() > 1e-3


def test_albert_blocks_start_equal_and_are_separate_layers(tiny_folders):
    from graftkit.bases.text import load_text_base

    base = load_text_base(str(tiny_folders["albert"]))
    first, second = (base.model.get_layer(f"block_{i}_ffn_in") for i in range(2))
    assert first is not second
    np.testing.assert_array_equal(first.get_weights()[0], second.get_weights()[0])
    assert any("ALBERT" in note for note in base.notes)
