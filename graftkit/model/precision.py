"""``--precision``: float32, or mixed precision where the hardware computes in 16 bits natively.

``mixed`` means Keras' ``mixed_float16`` on a GPU and ``mixed_bfloat16`` on a CPU with AVX-512 BF16
or AMX; elsewhere it is refused, because a CPU without them emulates bfloat16 (measured 2.4x slower
to train than float32 on an AVX2 CPU). Variables stay float32 either way, and so does the head (its
output, the probabilities the loss reads, above all). Deciding imports no TensorFlow when the answer
is a refusal, so the command line says no in a moment.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.metadata
from pathlib import Path

from graftkit.errors import GraftError

PRECISIONS = ("float32", "mixed")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of native bfloat16 arithmetic


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The feature flags of this machine's CPU (empty when ``cpuinfo`` cannot be read).

    Example:
        >>> import tempfile
        >>> info = Path(tempfile.mkdtemp()) / "cpuinfo"
        >>> _ = info.write_text("processor : 0" + chr(10) + "flags : fpu avx2 amx_bf16" + chr(10))
        >>> sorted(cpu_flags(info))
        ['amx_bf16', 'avx2', 'fpu']
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def might_have_gpu() -> bool:
    """Whether a CUDA GPU may be usable, judged without TensorFlow: an NVIDIA device and a TensorFlow that
    is not the CPU-only package."""
    if not glob.glob("/dev/nvidia[0-9]*"):
        return False
    try:
        importlib.metadata.version("tensorflow-cpu")
        return False
    except importlib.metadata.PackageNotFoundError:
        return True


def check_precision(precision: str, *, flags: set[str] | None = None, gpu: bool | None = None) -> None:
    """Refuse ``--precision mixed`` at once where neither a GPU nor native bfloat16 can serve it.

    Raises:
        GraftError: one line saying why and what to do.

    Example:
        >>> check_precision("mixed", flags={"avx2"}, gpu=False)
        Traceback (most recent call last):
        graftkit.errors.GraftError: --precision mixed needs a GPU or a CPU with AVX-512 BF16 or AMX, and this machine has neither: a CPU without them emulates bfloat16 (measured 2.4x slower to train than float32 on AVX2): drop --precision mixed
        >>> check_precision("mixed", flags={"amx_bf16"}, gpu=False)
    """
    if precision != "mixed":
        return
    flags = cpu_flags() if flags is None else flags
    gpu = might_have_gpu() if gpu is None else gpu
    if not gpu and not flags & set(BF16_FLAGS):
        raise _refusal("this machine has neither")


def policy_for(precision: str, *, gpus: int | None = None, flags: set[str] | None = None) -> str:
    """The Keras dtype policy of ``precision`` on this machine: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.

    ``gpus`` is the number of GPUs TensorFlow sees (asked of TensorFlow when None).

    Raises:
        GraftError: ``mixed`` with no GPU and no native bfloat16 on the CPU.

    Example:
        >>> policy_for("mixed", gpus=1), policy_for("mixed", gpus=0, flags={"amx_bf16"}), policy_for("float32")
        ('mixed_float16', 'mixed_bfloat16', 'float32')
    """
    if precision == "float32":
        return "float32"
    if precision != "mixed":
        raise GraftError(f"--precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return "mixed_float16"
    if (cpu_flags() if flags is None else flags) & set(BF16_FLAGS):
        return "mixed_bfloat16"
    raise _refusal("TensorFlow sees no GPU here and the CPU has neither")


@contextlib.contextmanager
def using(policy: str):
    """Build and train under the Keras dtype policy ``policy``; the one before comes back afterwards.

    Example:
        >>> import keras
        >>> with using("mixed_bfloat16"):
        ...     keras.layers.Dense(2).dtype_policy.name
        'mixed_bfloat16'
        >>> keras.config.dtype_policy().name
        'float32'
    """
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def follow_policy(model):
    """``model`` computing under the current global dtype policy: itself when every layer already does, else a
    copy with its weights (a model file saved in float32 pins its layers' policy to float32).

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="base")
        >>> with using("mixed_bfloat16"):
        ...     copy = follow_policy(m)
        >>> copy.name, copy.layers[0].dtype_policy.name, copy.layers[0].variable_dtype
        ('base', 'mixed_bfloat16', 'float32')
    """
    import keras

    from graftkit.model.graph import flatten_layers

    policy = keras.config.dtype_policy().name
    if all(layer.dtype_policy.name == policy for layer in flatten_layers(model)):
        return model

    def clone(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    for name in ("_graft_layer_groups", "_graft_source", "_graft_inference_only"):  # what graftkit knows of it
        if hasattr(model, name):
            setattr(copy, name, getattr(model, name))
    return copy


def _refusal(what: str) -> GraftError:
    return GraftError(f"--precision mixed needs a GPU or a CPU with AVX-512 BF16 or AMX, and {what}: a CPU "
                      "without them emulates bfloat16 (measured 2.4x slower to train than float32 on AVX2): "
                      "drop --precision mixed")
