"""One short check of whatever accelerator is present: the hymenoptera head stage and one fine-tuning epoch.

Run from the project root, with the shared folder beside it (or ``GRAFT_SHARED`` set)::

    python bench/gpu_check.py                       # float32
    python bench/gpu_check.py --precision mixed     # float16 on a GPU; refused on a CPU without bf16

It trains graftkit's default recipe through :func:`graftkit.train` on ``data/hymenoptera``
(244 training, 153 validation images) with an ImageNet base: the head stage on an empty feature
cache (the base runs once per image, then the head trains on the features), and one fine-tuning
epoch with the whole base run every step (``fine_tune_cache="off"``), so the fine-tuning rate is
the accelerator's forward and backward speed through the base. Printed: the device TensorFlow
uses, the precision policy, and per stage its seconds and images per second (training images /
stage seconds; validation included, as a user waits for it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def device_name() -> str:
    """What TensorFlow computes on: the GPUs it sees by name, else the CPU's model name."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
        return f"{len(gpus)} GPU: " + ", ".join(names)
    model = next((line.partition(":")[2].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"CPU: {model} ({os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="hymenoptera", help="a data set under $GRAFT_SHARED/data, or a folder")
    parser.add_argument("--base", default="mobilenet_v2_0.5")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="head-stage epochs")
    parser.add_argument("--precision", choices=["float32", "mixed"], default="float32")
    args = parser.parse_args()

    from graftkit.settings import shared_dir

    os.environ.setdefault("GRAFT_WEIGHTS_DIR", str(shared_dir() / "weights"))
    data = Path(args.data) if Path(args.data).is_dir() else shared_dir() / "data" / args.data
    with tempfile.TemporaryDirectory() as folder:
        os.environ["GRAFT_CACHE_DIR"] = str(Path(folder) / "cache")  # a cold feature cache
        import graftkit
        from graftkit import log
        from graftkit.model.precision import policy_for

        print(f"device: {device_name()}")
        print(f"precision: {args.precision} (policy {policy_for(args.precision)})")
        started = time.perf_counter()
        log.set_quiet(True)
        run = graftkit.train(data, base=args.base, image_size=args.image_size, batch_size=args.batch_size,
                             epochs=args.epochs, patience=args.epochs, fine_tune_epochs=1, fine_tune_cache="off",
                             precision=args.precision, out=str(Path(folder) / "run"))
        total = time.perf_counter() - started
        metrics = json.loads((run.run_dir / "metrics.json").read_text())
    images = metrics["train_images"]
    print(f"data: {data.name}, {images} training and {metrics['val_images']} validation images, "
          f"{args.base} at {args.image_size} px, batch {args.batch_size}")
    for name, stage in metrics["stages"].items():
        epochs = {"head": f"{args.epochs} epochs on a cold feature cache", "fine_tune": "1 epoch, whole base"}[name]
        print(f"{name} stage ({epochs}): {stage['seconds']:.1f} s, {images / stage['seconds']:.1f} img/s")
    print(f"whole run {total:.1f} s (base loading and scoring included); val accuracy {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    main()
