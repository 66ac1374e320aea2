"""``--precision``: refused in a moment where 16-bit arithmetic would be emulated; a mixed run keeps its head in float32."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from graftkit import api, log
from graftkit.cli import main
from graftkit.model import precision
from tests.helpers import tiny_cnn


def test_mixed_is_refused_on_a_cpu_without_native_bfloat16(tiny_images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx", "avx2", "fma"})
    monkeypatch.setattr(precision, "might_have_gpu", lambda: False)
    out = tmp_path / "run"
    assert main(["train", str(tiny_images), "--base", "mobilenet_v2_0.35", "--precision", "mixed",
                 "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("graft: error:")]
    assert len(errors) == 1
    assert "--precision mixed needs a GPU or a CPU with AVX-512 BF16 or AMX" in errors[0]
    assert "2.4x slower" in errors[0]
    assert not out.exists()  # refused before any work


def test_policy_per_machine():
    assert precision.policy_for("mixed", gpus=2, flags=set()) == "mixed_float16"
    assert precision.policy_for("mixed", gpus=0, flags={"avx512_bf16"}) == "mixed_bfloat16"
    with pytest.raises(Exception, match="TensorFlow sees no GPU here"):
        precision.policy_for("mixed", gpus=0, flags={"avx2"})


def test_mixed_bfloat16_run_keeps_the_head_in_float32(tiny_images, tmp_path, monkeypatch):
    """As on a CPU with AMX: the base computes in bfloat16 (a personal float32 model file too), the head in float32."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "amx_bf16"})
    personal = tiny_cnn(tmp_path / "personal.keras", classes=3)
    log.set_quiet(True)
    try:
        run = api.train(tiny_images, base=str(personal), epochs=2, fine_tune_epochs=1, lr=0.05, batch_size=8,
                        freeze="last:2", precision="mixed", out=str(tmp_path / "run"))
    finally:
        log.set_quiet(False)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    base, head = run.model.get_layer("base"), run.model.get_layer("head")
    assert {layer.dtype_policy.name for layer in base.layers[1:]} == {"mixed_bfloat16"}
    assert {layer.dtype_policy.name for layer in head.layers[1:]} == {"float32"}
    assert all(w.dtype == "float32" for w in run.model.weights)
    outputs = run.model(np.zeros((2, 24, 24, 3), "float32"))
    assert outputs.dtype == "float32"
    np.testing.assert_allclose(np.sum(outputs, axis=-1), 1.0, rtol=1e-5)
    assert (tmp_path / "run" / "model.keras").is_file()
