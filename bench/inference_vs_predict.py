"""Inference speed: graftkit's compiled forward pass over its tf.data pipeline vs Keras ``model.predict``.

Run from the project root, with the shared folder beside it::

    python bench/inference_vs_predict.py --data hymenoptera --base mobilenet_v2_0.5 --rounds 5

On the same model (preprocess + base + a new head, as ``graft predict`` and ``graft evaluate``
run it), the same images and the same batch size, each round runs every arm once, in
turn, and the medians over rounds are printed as images per second:

- ``files``: image files to class probabilities: :func:`graftkit.infer.predict_dataset` vs
  ``model.predict`` on the same :func:`graftkit.data.pipeline.make_dataset` pipeline;
- ``files, autotune on``: the same with tf.data's autotuning turned back on (graftkit's
  pipeline runs without it: with it, a pass sometimes ran at half speed on these machines);
- ``features``: image files to base features: :func:`graftkit.features.extract.extract_features`
  (no cache) vs ``model.predict`` of a preprocess + base model on the same pipeline;
- ``memory``: decoded batches already in memory: the compiled forward pass vs ``model.predict``;
- ``decode``: the pipeline alone, and the share of graftkit's ``files`` time spent waiting
  for it (``starved``): near 0 means the pipeline keeps the base busy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graftkit  # noqa: E402,F401  (TensorFlow's start-up options first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="hymenoptera", help="a data set under $GRAFT_SHARED/data, or a folder")
    parser.add_argument("--base", default="mobilenet_v2_0.5")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=400, help="most images per arm and round")
    parser.add_argument("--memory-batches", type=int, default=4)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from graftkit import log
    from graftkit.bases.loader import load_base
    from graftkit.data.layout import load_split
    from graftkit.data.pipeline import make_dataset
    from graftkit.features.extract import extract_features
    from graftkit.model.head import assemble, build_head
    from graftkit.model.infer import compiled_forward, predict_dataset
    from graftkit.settings import shared_dir

    log.set_quiet(True)
    os.environ.setdefault("GRAFT_WEIGHTS_DIR", str(shared_dir() / "weights"))
    folder = Path(args.data) if Path(args.data).is_dir() else shared_dir() / "data" / args.data
    split = load_split(folder)
    paths = (split.train.paths + split.val.paths)[: args.limit]
    base = load_base(args.base, image_size=args.size)
    model = assemble(base, build_head(base.feature_shape, len(split.class_names)))
    inputs = keras.Input((args.size, args.size, 3))
    extractor = keras.Model(inputs, base.model(base.preprocessing_layer()(inputs), training=False))
    batches = [x.numpy() for x in make_dataset(paths[: args.batch * args.memory_batches], image_size=args.size,
                                               batch_size=args.batch)]
    in_memory = np.concatenate(batches)
    forward = compiled_forward(model)

    def pipeline(autotune=False):
        dataset = make_dataset(paths, image_size=args.size, batch_size=args.batch)
        if autotune:
            options = tf.data.Options()
            options.autotune.enabled = True
            dataset = dataset.with_options(options)
        return dataset

    waited = []

    def graft_files():
        iterator, wait = iter(pipeline()), 0.0
        forward_ = compiled_forward(model)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            wait += time.perf_counter() - start
            forward_(batch).numpy()
        waited.append(wait)

    arms = {
        ("files", "graftkit"): (len(paths), lambda: predict_dataset(model, pipeline())),
        ("files", "keras"): (len(paths), lambda: model.predict(pipeline(), verbose=0)),
        ("files, autotune on", "graftkit"): (len(paths), lambda: predict_dataset(model, pipeline(autotune=True))),
        ("files, autotune on", "keras"): (len(paths), lambda: model.predict(pipeline(autotune=True), verbose=0)),
        ("features", "graftkit"): (len(paths), lambda: extract_features(base, paths, batch_size=args.batch,
                                                                        feature_cache="memory")),
        ("features", "keras"): (len(paths), lambda: extractor.predict(pipeline(), verbose=0)),
        ("memory", "graftkit"): (len(in_memory), lambda: [forward(b).numpy() for b in batches]),
        ("memory", "keras"): (len(in_memory), lambda: model.predict(in_memory, batch_size=args.batch, verbose=0)),
        ("decode", "pipeline"): (len(paths), lambda: [None for _ in pipeline()]),
        ("starved", "graftkit"): (len(paths), graft_files),
    }
    for _, run in arms.values():  # warm-up: traces, file cache
        run()
    waited.clear()
    rates = {name: [] for name in arms}
    seconds = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name, (count, run) in arms.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
            rates[name].append(count / seconds[name][-1])

    med = {name: statistics.median(values) for name, values in rates.items()}
    starved = statistics.median(w / s for w, s in zip(waited, seconds[("starved", "graftkit")]))
    print(f"{folder.name}, {args.base} at {args.size} px, batch {args.batch}, {len(paths)} images, medians of "
          f"{args.rounds} rounds (load average {os.getloadavg()[0]:.2f})")
    print(f"{'what':20s} {'graftkit img/s':>15s} {'keras img/s':>12s} {'ratio':>6s}")
    for what in ("files", "files, autotune on", "features", "memory"):
        graft, keras_ = med[(what, "graftkit")], med[(what, "keras")]
        print(f"{what:20s} {graft:15.1f} {keras_:12.1f} {graft / keras_:6.2f}")
    print(f"decode alone {med[('decode', 'pipeline')]:.1f} img/s; graftkit waited for the pipeline "
          f"{100 * starved:.1f}% of its time")


if __name__ == "__main__":
    main()
