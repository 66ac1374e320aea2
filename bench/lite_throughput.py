"""Feature-extraction throughput: EfficientNet-Lite0 vs MobileNetV2 alpha 0.5, no top, random weights.

Run from the project root: ``python bench/lite_throughput.py [--size 224] [--batch 32] [--batches 10]``.
Both models run as a compiled ``tf.function`` forward pass on the same random batch;
after warm-up, the median time of several batches, alternating between the two models,
gives images per second.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import graftkit  # noqa: E402,F401  (sets TensorFlow's start-up options first)
from graftkit.bases import lite  # noqa: E402


def images_per_second(models, x, batches, warmup=3, jit=False):
    """Median images/s of each model; batches alternate between models so both see the same load."""
    forwards = {name: tf.function(lambda batch, m=model: m(batch, training=False), jit_compile=jit)
                for name, model in models.items()}
    for forward in forwards.values():
        for _ in range(warmup):
            forward(x).numpy()
    times = {name: [] for name in forwards}
    for _ in range(batches):
        for name, forward in forwards.items():
            start = time.perf_counter()
            forward(x).numpy()
            times[name].append(time.perf_counter() - start)
    return {name: len(x) / statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--jit", action="store_true", help="compile with XLA")
    args = parser.parse_args()

    shape = (args.size, args.size, 3)
    x = tf.constant(np.random.default_rng(0).standard_normal((args.batch, *shape)).astype("float32"))
    models = {
        "efficientnet_lite0": lite.build(include_top=False, input_shape=shape),
        "mobilenet_v2_0.5": keras.applications.MobileNetV2(alpha=0.5, include_top=False, weights=None,
                                                           input_shape=shape),
    }
    print(f"{args.size} px, batch {args.batch}, median of {args.batches} batches, "
          f"TensorFlow {tf.__version__}, {'XLA' if args.jit else 'tf.function'}")
    rates = images_per_second(models, x, args.batches, jit=args.jit)
    for name, model in models.items():
        print(f"{name:20s} {model.count_params():>10,d} params  {rates[name]:8.1f} images/s")
    print(f"ratio lite0 / mobilenet_v2_0.5: {rates['efficientnet_lite0'] / rates['mobilenet_v2_0.5']:.2f}")


if __name__ == "__main__":
    main()
