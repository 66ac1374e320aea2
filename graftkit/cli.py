"""The ``graft`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from graftkit.config import DEFAULT_BASE
from graftkit.errors import GraftError

EPILOG = "Errors are one line on stderr with exit code 2; `graft COMMAND -h` shows each command's options."


def main(argv: list[str] | None = None) -> int:
    """Run the ``graft`` command; returns the exit code.

    Example:
        >>> main(["bases", "--names"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    from graftkit import log

    log.set_quiet(getattr(args, "quiet", False))
    try:
        return args.run(args) or 0
    except GraftError as error:
        print(f"graft: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graft: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graft", description="Transfer learning for your own models on TensorFlow / Keras 3.", epilog=EPILOG)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a classifier on a folder of images",
                                description="Train a head on a frozen base, then fine-tune the top of the base.")
    train.add_argument("data", help="folder of class subfolders, or of train/ and val/ folders of them")
    train.add_argument("--base", default=DEFAULT_BASE,
                       help=f"base name (see `graft bases`) or a .keras/.h5/SavedModel path (default {DEFAULT_BASE})")
    train.add_argument("--weights", default="imagenet",
                       help="imagenet (found offline first), a weights file, or none for random weights")
    train.add_argument("--cut", help="layer to cut the base at (see `graft inspect`)")
    train.add_argument("--freeze", default="last:30%",
                       help="what stays frozen while fine-tuning: all, none, last:N, last:P%%, from:LAYER "
                            "(default last:30%% = fine-tune the top 30%% of layers)")
    train.add_argument("--train-bn", action="store_true",
                       help="let BatchNorm layers update their statistics while fine-tuning (off: safer)")
    train.add_argument("--epochs", type=int, default=10, help="most epochs of the head stage (default 10)")
    train.add_argument("--fine-tune-epochs", type=int, default=10,
                       help="most epochs of fine-tuning; 0 skips it (default 10)")
    train.add_argument("--lr", type=float, default=1e-3, help="head-stage learning rate (default 0.001)")
    train.add_argument("--fine-tune-lr", type=float, help="fine-tuning learning rate (default lr / 10)")
    train.add_argument("--image-size", type=int, help="square input size (default: the base's own)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--hidden", type=int, nargs="*", default=[], metavar="UNITS",
                       help="hidden Dense layer sizes of the head (default none)")
    train.add_argument("--dropout", type=float, default=0.2)
    train.add_argument("--pooling", default="avg", choices=["avg", "max"])
    train.add_argument("--preprocess", dest="preprocessing",
                       help="override the base's preprocessing: none, unit, tf, lite, torch, caffe")
    train.add_argument("--no-augment", dest="augment", action="store_false",
                       help="turn off the light flip / rotation / zoom augmentation")
    train.add_argument("--val-split", type=float, default=0.2,
                       help="validation fraction when the data is not split already (default 0.2)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs")
    train.add_argument("--class-weights", default="auto", choices=["auto", "none"])
    train.add_argument("--trust-model", action="store_true",
                       help="allow a personal model that contains custom Python code (only if you trust it)")
    train.add_argument("--out", help="run folder (default runs/TIME-BASE)")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=_train)

    predict = commands.add_parser("predict", help="classify images with a trained model")
    predict.add_argument("model", help="run folder or model.keras")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--format", choices=["table", "csv", "json"], default="table")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="score a trained model on a labelled folder")
    evaluate.add_argument("model", help="run folder or model.keras")
    evaluate.add_argument("data", help="folder of class subfolders (its val/ part when it is split)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.set_defaults(run=_evaluate)

    inspect = commands.add_parser("inspect", help="list a model's layers and mark where graftkit cuts")
    inspect.add_argument("model", help="a .keras/.h5/SavedModel path or a base name")
    inspect.add_argument("--cut", help="show this cut instead of the automatic one")
    inspect.add_argument("--trust-model", action="store_true")
    inspect.set_defaults(run=_inspect)

    bases = commands.add_parser("bases", help="list the named bases and whether each is ready offline")
    bases.add_argument("--names", action="store_true", help="names only")
    bases.set_defaults(run=_bases)

    demo = commands.add_parser("demo", help="show transfer learning paying off, offline, in a few minutes")
    demo.add_argument("--out", default="demo-run", help="folder for the demo's files (default demo-run)")
    demo.set_defaults(run=_demo)
    return parser


def _train(args) -> int:
    from graftkit.api import train_config
    from graftkit.config import TrainConfig

    options = {k: v for k, v in vars(args).items() if k not in ("run", "quiet")}
    run = train_config(TrainConfig(**options).validated())
    print(json.dumps({"run_dir": str(run.run_dir), "accuracy": run.metrics["accuracy"]}))
    return 0


def _predict(args) -> int:
    from graftkit.data import list_images
    from graftkit.predict import predict_files
    from graftkit.runfiles import load_trained

    _positive("--top-k", args.top_k)
    _positive("--batch-size", args.batch_size)
    paths = list_images(args.inputs)
    model, class_names = load_trained(args.model)
    rows = predict_files(model, paths, class_names, top_k=args.top_k, batch_size=args.batch_size)
    if args.format == "json":
        print(json.dumps([row for row in rows], indent=2))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "label", "probability", "top_k"])
        for row in rows:
            writer.writerow([row["path"], row["label"], f"{row['probability']:.4f}",
                             ";".join(f"{name}:{p:.4f}" for name, p in row["top_k"])])
    else:
        for row in rows:
            others = "  ".join(f"{name} {p:.3f}" for name, p in row["top_k"][1:])
            print(f"{row['label']:<16} {row['probability']:.3f}  {row['path']}" + (f"   ({others})" if others else ""))
    return 0


def _evaluate(args) -> int:
    from graftkit.data import labelled_images
    from graftkit.evaluate import evaluate_images, format_scores
    from graftkit.runfiles import load_trained

    _positive("--batch-size", args.batch_size)
    model, class_names = load_trained(args.model)
    images = labelled_images(args.data, class_names)
    scores, _ = evaluate_images(model, images, batch_size=args.batch_size)
    print(json.dumps(scores, indent=2) if args.json else format_scores(scores))
    return 0


def _inspect(args) -> int:
    from graftkit.bases.loader import is_model_file
    from graftkit.bases.personal import find_cut, load_personal
    from graftkit.surgery import describe_layers

    if is_model_file(args.model):
        model = load_personal(args.model, trust=args.trust_model)
        cut = args.cut or find_cut(model)
    else:
        from graftkit.bases.registry import get_spec

        spec = get_spec(args.model)
        model = spec.build(include_top=False, input_shape=(spec.default_size, spec.default_size, 3))
        cut = args.cut or model.layers[-1].name
    rows = describe_layers(model, cut)
    width = max(len(r["name"]) for r in rows)
    type_width = max(len(r["type"]) for r in rows)
    print(f"   {'layer':<{width}}  {'type':<{type_width}}  {'output shape':<22} {'params':>10}  trainable")
    for row in rows:
        mark = "=>" if row["is_cut"] else "  "
        print(f"{mark} {row['name']:<{width}}  {row['type']:<{type_width}}  {str(row['output_shape']):<22} "
              f"{row['params']:>10,}  {'yes' if row['trainable'] else 'no'}")
    print(f"\ncut: '{cut}' (marked =>); everything after it is replaced by the new head")
    return 0


def _bases(args) -> int:
    from graftkit.bases.registry import list_bases
    from graftkit.bases.weights import is_ready_offline

    specs = list_bases()
    if args.names:
        print("\n".join(s.name for s in specs))
        return 0
    width = max(len(s.name) for s in specs)
    print(f"{'base':<{width}}  {'size':>4}  {'preprocess':<10}  offline  description")
    for spec in specs:
        ready = "ready" if is_ready_offline(spec) else "-"
        print(f"{spec.name:<{width}}  {spec.default_size:>4}  {spec.preprocessing:<10}  {ready:<7}  {spec.description}")
    print("\nready: ImageNet weights found on this machine ($GRAFT_WEIGHTS_DIR, ~/.keras/models or a package); "
          "others download on first use")
    return 0


def _demo(args) -> int:
    from graftkit.demo import run_demo

    run_demo(args.out)
    return 0


def _positive(option: str, value: int) -> None:
    if value < 1:
        raise GraftError(f"{option} {value} is out of range: use 1 or more")


if __name__ == "__main__":
    sys.exit(main())
