"""The ``graft`` command line: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import sys
import warnings

from graftkit.config import check_option
from graftkit.errors import GraftError

EPILOG = "Errors are one line on stderr with exit code 2; `graft COMMAND -h` shows each command's options."


def main(argv: list[str] | None = None) -> int:
    """Run the ``graft`` command; returns the exit code.

    Options are checked before TensorFlow is imported, so a mistake costs a moment, not a start-up.

    Example:
        >>> main(["bases", "--names"])  # doctest: +SKIP
    """
    from graftkit import log

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except _UsageError as error:
        listed = "commands" if hasattr(error.parser, "_graft_commands") else "options"
        print(f"{error.parser.prog}: error: {error} ('{error.parser.prog} --help' lists the {listed})", file=sys.stderr)
        return 2
    log.set_quiet(getattr(args, "quiet", False))
    # Pillow warns of damaged metadata in files it still reads ("Corrupt EXIF data", "Tag data
    # larger than file"); graftkit names each file it cannot read, so these are noise here.
    warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")  # a file name that is not UTF-8 prints as its own bytes
    try:
        return args.run(args) or 0
    except GraftError as error:
        print(f"graft: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graft: interrupted" + _resume_hint(args), file=sys.stderr)
        return 130
    except ModuleNotFoundError as error:  # on x86_64 TensorFlow comes from an extra (pyproject.toml)
        if error.name != "tensorflow":
            raise
        print("graft: error: TensorFlow is not installed: pip install 'graftkit[cpu]', or 'graftkit[gpu]' on a "
              "machine with an NVIDIA GPU", file=sys.stderr)
        return 2


class _UsageError(Exception):
    def __init__(self, parser, message: str):
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse, with no abbreviated flags and errors raised (printed as one line that points to ``--help``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, formatter_class=_Help, **kwargs)

    def error(self, message):
        raise _UsageError(self, message)


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        absent = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if "(default" in text or absent or not action.option_strings:
            return text
        return f"{text} (default: {str(default).replace('%', '%%')})"


def _parse(parser: argparse.ArgumentParser, argv: list[str]):
    """Parse ``argv``; an unknown command or flag names the nearest known one."""
    commands = parser._graft_commands
    if argv and not argv[0].startswith("-") and argv[0] not in commands:
        raise _UsageError(parser, f"unknown command '{argv[0]}'{_did_you_mean(argv[0], commands)}")
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = commands[argv[0]] if argv and argv[0] in commands else parser
        flags = [flag for action in command._actions for flag in action.option_strings]
        unknown = next((e for e in extras if e.startswith("-")), extras[0])
        name = unknown.split("=")[0]
        raise _UsageError(command, f"unknown option '{name}'{_did_you_mean(name, flags)}")
    return args


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f": did you mean {' or '.join(close)}?" if close else ""


def _heavy() -> None:
    """Import TensorFlow, its start-up chatter hidden: called once the options have been checked."""
    from graftkit.settings import import_tensorflow_quietly

    import_tensorflow_quietly()


def _not_retracing(record) -> bool:
    """Drop TensorFlow's "retracing" warning: one compiled forward pass per model is by design, and
    comparing several bases (``graft advise``) traces the same code once for each."""
    return "triggered tf.function retracing" not in record.getMessage()


def _resume_hint(args) -> str:
    """How to continue a training run that was interrupted, when one was under way."""
    if args.run is not _train:
        return ""
    from graftkit.training import checkpoint

    folder = checkpoint.started_here() or getattr(args, "resume", None)
    if folder and checkpoint.is_unfinished(folder):
        return f": continue with graft train --resume {folder}"
    return ""


def build_parser() -> argparse.ArgumentParser:
    """The ``graft`` argument parser; ``graft train``'s options come from :class:`graftkit.config.TrainConfig`."""
    parser = _Parser(prog="graft", description="Transfer learning for your own models on TensorFlow / Keras 3.",
                     epilog=EPILOG)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND", parser_class=_Parser)
    parser._graft_commands = commands.choices

    train = commands.add_parser("train", help="train a classifier on a folder of images or texts, or a label table",
                                description="Train a head on a frozen base, then fine-tune the top of the base.")
    _add_config_options(train)
    train.add_argument("--resume", metavar="RUN_DIR", default=argparse.SUPPRESS,
                       help="continue an interrupted run from its last completed epoch, with its own settings "
                            "(give no data and no other option)")
    train.add_argument("--quiet", action="store_true", help="no progress lines; warnings and errors still show")
    train.set_defaults(run=_train)
    predict = commands.add_parser("predict", help="classify images or texts with a trained model")
    predict.add_argument("model", help="run folder or model.keras")
    predict.add_argument("inputs", nargs="+", metavar="INPUT",
                         help="image files, folders of them, or label tables (.csv / .tsv: their path column); for a "
                              "text model: texts, .txt files (a text a line), folders of .txt files, tables (their "
                              "text column) or - (standard input, a text a line)")
    predict.add_argument("--top-k", type=int, default=3, help="how many labels each row lists, most likely first")
    predict.add_argument("--format", choices=["table", "csv", "json"],
                         help="table, csv or json (default: table on the terminal; for --output, from its "
                              "extension: .json is json, anything else csv)")
    predict.add_argument("--output", "-o", metavar="FILE",
                         help="write the predictions to FILE (atomically, row by row) instead of stdout")
    predict.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--tta", action="store_true",
                         help="test-time augmentation: average each image's outputs with its mirror image's "
                              "(images only; twice the work)")
    predict.add_argument("--strict", action="store_true", help="make a bad image file an error; by default it "
                                                               "is skipped with a warning")
    _add_config_options(predict, ["trust_model"])
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser("evaluate", help="score a trained model on a labelled folder")
    evaluate.add_argument("model", help="run folder or model.keras")
    evaluate.add_argument("data", help="folder of class subfolders (its val/ part when it is split), or a label "
                                       "table (its test rows when it has a split column with some, else all)")
    evaluate.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.add_argument("--tta", action="store_true",
                          help="test-time augmentation: average each image's outputs with its mirror image's "
                               "(images only; twice the work)")
    evaluate.add_argument("--strict", action="store_true", help="make a bad image file an error; by default it "
                                                                "is skipped with a warning")
    evaluate.add_argument("--report", metavar="PATH",
                          help="write the HTML report here (default: evaluation.html in the run folder)")
    evaluate.add_argument("--no-report", dest="write_report", action="store_false",
                          help="print the scores only, write no report")
    _add_config_options(evaluate, ["labels", "path_column", "label_column", "trust_model"])
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser("export", help="export a trained model, checked against the Keras model",
                                 description="Write a run's model as Keras, SavedModel, TFLite or ONNX (to "
                                             "RUN/exports/ by default), run it on validation images beside the "
                                             "Keras model, and keep it only when they agree.")
    export.add_argument("model", help="run folder or model.keras")
    export.add_argument("--format", default="tflite", choices=["keras", "savedmodel", "tflite", "onnx"],
                        help="the file format")
    export.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"],
                        help="TFLite quantization: float16 weights, dynamic (int8 weights), or int8 (full integer, "
                             "calibrated on training images; float input and output kept)")
    export.add_argument("--out", help="the exported file or folder (default RUN/exports/model[-QUANTIZE].EXT)")
    export.add_argument("--data", help="folder of images to check (and calibrate) on, instead of the run's data")
    export.add_argument("--check-images", type=int, default=64, help="images the check runs on")
    export.add_argument("--calibration-images", type=int, default=200,
                        help="training images that calibrate int8")
    export.add_argument("--min-agreement", type=float,
                        help="least top-1 agreement with the Keras model (default 0.99; float16 0.98, dynamic 0.97, "
                             "int8 0.9)")
    export.add_argument("--max-difference", type=float,
                        help="largest class-probability difference allowed (default 0.05 unquantized, else none)")
    export.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    export.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_options(export, ["trust_model"])
    export.set_defaults(run=_export)

    inspect = commands.add_parser("inspect", help="list a model's layers and mark where graftkit cuts")
    inspect.add_argument("model", help="a .keras/.h5/SavedModel path or a base name")
    inspect.add_argument("--cut", help="show this cut instead of the automatic one")
    inspect.add_argument("--trust-model", action="store_true", help="allow a model file that holds Python code (Lambda layers) or a SavedModel folder")
    inspect.set_defaults(run=_inspect)

    advise = commands.add_parser("advise", help="compare bases on your data and recommend a base and a freeze spec",
                                 description="Probe each base on a sample of your images (a cross-validated "
                                             "logistic regression on its frozen features, timed), then print the "
                                             "graft train command that fits: the base, and how much of it to "
                                             "fine-tune for the number of images you have.")
    advise.add_argument("data", help="folder with one subfolder per class (or train/ and val/ folders of them), "
                                     "or a label table")
    advise.add_argument("--bases", nargs="+", metavar="BASE",
                        help="base names or model files to compare (default: the small and mid-sized named bases "
                             "whose weights are on this machine)")
    advise.add_argument("--image-size", type=int, help="input size for every base (default: each base's own)")
    advise.add_argument("--per-class", type=int,
                        help="most images per class to probe on (default 150, fewer with over 10 classes: "
                             "about 1,500 in all, at least 10 a class)")
    advise.add_argument("--seed", type=int, default=0, help="seed of the split (as graft train's) and of the sample")
    advise.add_argument("--json", action="store_true", help="print the advice as JSON")
    advise.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_options(advise, ["trust_model", "task", "labels", "path_column", "label_column"])
    advise.set_defaults(run=_advise)

    lr_find = commands.add_parser(
        "lr-find", help="sweep the learning rate of the head and of fine-tuning, and suggest a rate for each",
        description="Build what graft train would build from the same options, then run fastai-style "
                    "learning-rate sweeps (1e-7 to 10, up to 100 steps, stopped when the loss blows up): the "
                    "head on the cached features, and, after training the head as graft train does, "
                    "fine-tuning through the model with --freeze applied (none with --freeze all). Prints the "
                    "suggested rates as graft train options, one a line, and writes the loss-against-rate "
                    "curves to lr_find.png. --lr defaults to auto here: the head is trained at its found rate "
                    "before fine-tuning is swept.")
    _add_config_options(lr_find)
    for action in lr_find._actions:
        if action.dest == "out":
            action.help = "the folder for lr_find.png and lr_find.json (default: runs/TIME-lr-find-BASE)"
        if action.dest == "lr":
            action.help = ("the head's learning rate while it is trained before fine-tuning is swept, or auto: the "
                           "rate its sweep suggests (default: auto)")
    lr_find.add_argument("--quiet", action="store_true", help="no progress lines; warnings and errors still show")
    lr_find.set_defaults(run=_lr_find)

    bases = commands.add_parser("bases", help="list the named bases and whether each is ready offline")
    bases.add_argument("--names", action="store_true", help="names only")
    bases.set_defaults(run=_bases)

    demo = commands.add_parser("demo", help="show transfer learning paying off, offline, in a few minutes")
    demo.add_argument("--out", default="demo-run", help="folder for the demo's files")
    demo.set_defaults(run=_demo)
    return parser


def _add_config_options(parser: argparse.ArgumentParser, names=None) -> None:
    """Options of :class:`graftkit.config.TrainConfig` (all, or ``names``), each with its one flag, help and default.

    ``graft train`` takes them all; other commands take the few they share (``--trust-model``, ``--labels``...),
    under the same name and with the same help.
    """
    from graftkit.config import FIELDS, flag_of

    for name in names or FIELDS:
        field = FIELDS[name]
        meta = field.metadata
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = meta["shown"] if meta["shown"] is not None else default
        kwargs = dict(meta["argparse"])
        if field.type == "bool":
            kwargs["action"] = "store_false" if default else "store_true"
            help_text = meta["help"]
        else:
            kwargs.setdefault("type", int if "int" in field.type else float if "float" in field.type else str)
            help_text = f"{meta['help']} (default: {str(shown).replace('%', '%%')})"
        if meta["flag"] == "":
            parser.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=meta["help"], **kwargs)
        elif names is None:
            parser.add_argument(flag_of(name), dest=name, default=argparse.SUPPRESS, help=help_text, **kwargs)
        else:
            parser.add_argument(flag_of(name), dest=name, default=default, help=help_text, **kwargs)


def _train(args) -> int:
    from graftkit.config import FIELDS, TrainConfig, flag_of

    given = {name: value for name, value in vars(args).items() if name in FIELDS}
    if hasattr(args, "resume"):
        if given:
            what = "the data folder" if "data" in given else flag_of(next(iter(given)))
            raise GraftError(f"--resume continues a run with its own settings: drop {what} "
                             "(start a new run to change them)")
        _heavy()
        from graftkit.api import resume

        run = resume(args.resume)
    elif "data" not in given:
        raise GraftError("graft train needs a data folder (or --resume RUN_DIR to continue an interrupted run)")
    else:
        config = TrainConfig.from_options(**given).validated()
        from graftkit.training.distribute import check

        check(config.distribute, tensorboard=config.tensorboard)  # TF_CONFIG too, before TensorFlow loads
        _heavy()
        from graftkit.training.pipeline import train_config

        run = train_config(config)
    metrics = run.metrics
    print(json.dumps({"run_dir": str(run.run_dir), "task": metrics["task"]["kind"],
                      metrics["headline_name"]: metrics["headline"]}))
    return 0


def _lr_find(args) -> int:
    from graftkit.config import AUTO, FIELDS, TrainConfig

    given = {name: value for name, value in vars(args).items() if name in FIELDS}
    if "data" not in given:
        raise GraftError("graft lr-find needs a data folder (the one you would pass to graft train)")
    config = TrainConfig.from_options(**{"lr": AUTO, **given}).validated()
    _heavy()
    from graftkit.training.find_rates import lr_find_config

    found = lr_find_config(config)
    print("\n".join(found.lines()))
    return 0


def _predict(args) -> int:
    import time
    from pathlib import Path

    from graftkit import log
    from graftkit.data.check import check_images
    from graftkit.data.layout import list_images
    from graftkit.files import temporary_beside
    from graftkit.results.predict import predict_files, write_predictions
    from graftkit.results.trained import load

    _positive("--top-k", args.top_k)
    check_option("batch_size", args.batch_size)
    text = _is_text_run(args.model)
    from graftkit.model.infer import check_tta

    check_tta(args.tta, "text" if text else "image")
    if text:
        from graftkit.data.text import list_texts

        paths = list_texts(args.inputs)
    else:
        paths, _ = check_images(list_images(args.inputs), strict=args.strict)
    _heavy()
    run = load(args.model, trust_model=args.trust_model)
    output = Path(args.output) if args.output else None
    format = args.format or ("table" if output is None else "json" if output.suffix.lower() == ".json" else "csv")
    # The bar goes to stderr; on a terminal it would break up a table printed there.
    bar = log.progress(len(paths), "predict", unit="texts" if text else "images") \
        if output or not sys.stdout.isatty() else None
    started = time.perf_counter()
    if text:
        from graftkit.results.texts import predict_texts

        rows = predict_texts(run.model, paths, run.run_dir, run.class_names, task=run.task, top_k=args.top_k,
                             thresholds=run.thresholds, progress=bar.update if bar else None)
    else:
        rows = predict_files(run.model, paths, run.class_names, top_k=args.top_k, batch_size=args.batch_size,
                             progress=bar.update if bar else None, task=run.task, thresholds=run.thresholds,
                             tta=args.tta)
    if output is None:
        count = write_predictions(rows, sys.stdout, format)
    else:
        if not output.parent.is_dir():
            raise GraftError(f"--output '{output}': folder '{output.parent}' does not exist")
        with temporary_beside(output, suffix=".part") as tmp, \
                open(tmp, "w", newline="", errors="surrogateescape") as stream:
            count = write_predictions(rows, stream, format)
    seconds = time.perf_counter() - started
    noun = "texts" if text else "images"
    summary = (f"predict: {count} {noun} in {seconds:.1f} s ({log.rate(count, seconds)} {noun}/s)"
               + (f", written to {output}" if output else ""))
    if bar:
        bar.close(summary)
    else:
        log.info(summary)
    return 0


def _is_text_run(model: str) -> bool:
    """Whether a run folder (or the folder of a model file) holds a text model, read from its inputs.json."""
    from pathlib import Path

    from graftkit.results.modelfile import read_json
    from graftkit.runfolder import INPUTS_FILE

    folder = Path(model) if Path(model).is_dir() else Path(model).parent
    return (read_json(folder / INPUTS_FILE) or {}).get("kind") == "text"


def _evaluate(args) -> int:
    from graftkit.results.evaluate import format_scores
    from graftkit.results.trained import load

    check_option("batch_size", args.batch_size)
    from graftkit.model.infer import check_tta

    check_tta(args.tta, "text" if _is_text_run(args.model) else "image")  # before the model loads
    _heavy()
    run = load(args.model, trust_model=args.trust_model)
    scores, images, outputs = run.evaluate_outputs(args.data, batch_size=args.batch_size, strict=args.strict,
                                                   labels=args.labels, path_column=args.path_column,
                                                   label_column=args.label_column, tta=args.tta)
    print(json.dumps(scores, indent=2) if args.json else format_scores(scores, unit=run.modality + "s"))
    _evaluation_report(args, scores, images, outputs, run)
    return 0


def _evaluation_report(args, scores, images, outputs, run) -> None:
    """The HTML report of ``graft evaluate``: in the run folder, or at ``--report PATH``."""
    from pathlib import Path

    from graftkit import log
    from graftkit.results.report import confident_mistakes, write_evaluation_report

    model = Path(args.model)
    folder = model if model.is_dir() else model.parent
    run_dir = folder if (folder / "config.json").is_file() else None
    if not args.write_report or (args.report is None and not model.is_dir()):
        return
    path = Path(args.report) if args.report else folder / "evaluation.html"
    mistakes = confident_mistakes(images.paths, images.labels, outputs, images.class_names, task=run.task,
                                  thresholds=run.thresholds)
    path = write_evaluation_report(path, scores=scores, mistakes=mistakes, data=args.data, run_dir=run_dir,
                                   labels=images.labels, outputs=outputs)
    log.info(f"report: {path}")


def _export(args) -> int:
    from graftkit import log
    from graftkit.results.export import describe, export_run

    _heavy()
    export = export_run(args.model, args.format, quantize=args.quantize, out=args.out, data=args.data,
                        check_count=args.check_images, calibration_count=args.calibration_images,
                        batch_size=args.batch_size, min_agreement=args.min_agreement,
                        max_difference=args.max_difference, trust_model=args.trust_model)
    log.info(describe(export))
    print(json.dumps(export.to_dict()))
    return 0


def _inspect(args) -> int:
    from graftkit.bases.loader import check_source, is_model_file, is_savedmodel

    check_source(args.model)
    from graftkit.bases.text import is_text_base

    if is_text_base(args.model):
        return _inspect_text(args)
    _heavy()
    from graftkit.bases.preprocess import MODE_HELP
    from graftkit.model.graph import describe_layers

    groups, refusal, notes = (), None, []
    if is_model_file(args.model):
        from graftkit.bases.loader import personal_base
        from graftkit.bases.personal import load_personal

        model = load_personal(args.model, trust_model=args.trust_model)
        try:  # what graft train does with it: the same checks, cut and preprocessing
            base = personal_base(model, args.model, cut=args.cut)
        except GraftError as error:
            base, refusal = None, str(error)
        if base is not None:
            notes = list(base.notes)
            if is_savedmodel(args.model):
                notes.insert(0, "a SavedModel can be run, not fine-tuned: graft train needs --freeze all for it")
    else:
        from graftkit.bases.loader import Base
        from graftkit.bases.registry import get_spec
        from graftkit.model.cut import cut_at

        spec = get_spec(args.model)
        model = spec.build(include_top=False, input_shape=(spec.default_size, spec.default_size, 3))
        cut = args.cut or model.layers[-1].name
        base = Base(model=cut_at(model, cut), source=spec.name, preprocessing=spec.preprocessing,
                    image_size=spec.default_size, cut=cut, weights="", preprocessing_why=f"base '{spec.name}' was "
                    "trained on it")
        groups = spec.layer_groups
    rows = describe_layers(model, base.cut if base else None)
    width = max(len(r["name"]) for r in rows)
    type_width = max(len(r["type"]) for r in rows)
    block = _block_of(groups)
    print(f"   {'layer':<{width}}  {'type':<{type_width}}  {'output shape':<22} {'params':>10}  trainable"
          + ("  block" if groups else ""))
    for row in rows:
        mark = "=>" if row["is_cut"] else "  "
        print(f"{mark} {row['name']:<{width}}  {row['type']:<{type_width}}  {str(row['output_shape']):<22} "
              f"{row['params']:>10,}  {'yes' if row['trainable'] else 'no ':<9}" + block(row["name"]))
    if groups:
        print(f"\nblocks: {len(groups)}, stem first; --freeze blocks:N fine-tunes the last N (the layers from the "
              "first of block N counted from the end)")
    print(f"\ninput: {tuple(model.inputs[0].shape)}")
    if refusal:
        print(f"graft: error: graft train would refuse this model: {refusal}", file=sys.stderr)
        return 2
    kind = "grayscale (1 channel)" if base.channels == 1 else "RGB"
    print(f"train feeds: {kind} images of {base.image_size}x{base.image_size}, pixels 0..255")
    print(f"preprocessing: '{base.preprocessing}' ({MODE_HELP[base.preprocessing]}): {base.preprocessing_why}")
    print(f"cut: '{base.cut}' (marked =>; pass it back with --cut), features {base.feature_shape}; everything "
          "after it is replaced by the new head")
    for note in notes:
        print(f"note: {note}")
    return 0


def _inspect_text(args) -> int:
    """``graft inspect`` of a text encoder: its layers by transformer block, what it takes and gives."""
    _heavy()
    from graftkit.bases.text import load_text_base
    from graftkit.model.graph import describe_layers

    base = load_text_base(args.model)
    model = base.model
    groups = model._graft_layer_groups
    rows = describe_layers(model, None)
    width = max(len(r["name"]) for r in rows)
    type_width = max(len(r["type"]) for r in rows)
    block = _block_of(groups)
    print(f"   {'layer':<{width}}  {'type':<{type_width}}  {'output shape':<22} {'params':>10}  block")
    for row in rows:
        print(f"   {row['name']:<{width}}  {row['type']:<{type_width}}  {str(row['output_shape']):<22} "
              f"{row['params']:>10,}  " + block(row["name"]))
    print(f"\n{base.architecture} encoder, {base.blocks} transformer blocks (block 1 is the last, the embeddings "
          f"count as block {len(groups)}); --freeze last:N fine-tunes the top N blocks, last:P% the top P% of them")
    print(f"input: token ids (0 = padding) from {base.preprocessing}; at most {base.max_positions} tokens a text")
    print(f"features: {base.feature_shape}, the {base.cut}; the head is put on them")
    print(f"weights: {base.weights}")
    for note in base.notes:
        print(f"note: {note}")
    return 0


def _block_of(groups):
    """``layer name -> ' block K'`` for a named base's layer groups (K counted from the end, 1 = last)."""
    import re

    patterns = [re.compile(g) for g in groups]

    def block(name: str) -> str:
        hits = [i for i, pattern in enumerate(patterns) if pattern.search(name)]
        return f"  {len(patterns) - hits[-1]:>5}" if hits else ""

    return block


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
    from graftkit.bases.spec import TFIDF
    from graftkit.bases.text import list_text_bases

    texts = list_text_bases()
    width = max([len(TFIDF)] + [len(t["name"]) for t in texts])
    print(f"\n{'text base':<{width}}  offline  description")
    for text in texts:
        print(f"{text['name']:<{width}}  {'ready' if text['ready'] else '-':<7}  {text['description']}")
    print(f"{TFIDF:<{width}}  {'ready':<7}  character 2-5-gram TF-IDF and a linear model, fitted on your texts in "
          "seconds (the baseline a transformer must beat)")
    print("any Hugging Face encoder folder (config.json, model.safetensors, tokenizer) is a text base too: "
          "--base FOLDER")
    return 0


_WELL_KNOWN = ("resnet50", "efficientnet_b0", "mobilenet_v2", "mobilenet_v3_large", "xception", "densenet121")


def _advise(args) -> int:
    from graftkit.advice import LARGER, NOT_HERE, advise

    check_option("image_size", args.image_size)
    check_option("seed", args.seed)
    _heavy()
    logging.getLogger("tensorflow").addFilter(_not_retracing)  # once: the same function is not added twice
    advice = advise(args.data, args.bases, image_size=args.image_size, per_class=args.per_class, seed=args.seed,
                    trust_model=args.trust_model, task=args.task, labels=args.labels, path_column=args.path_column,
                    label_column=args.label_column)
    if args.json:
        print(json.dumps(advice.to_dict(), indent=2))
        return 0
    probed = [c for c in advice.candidates if c.accuracy is not None]
    width = max(len("base"), *(len(c.base) for c in probed))
    text = advice.modality == "text"
    noun = "texts" if text else "images"
    print(f"{'base':<{width}}  {'' if text else 'size':>4}  {'probe ' + advice.metric:>16}  {noun + '/s':>8}  "
          f"{'parameters':>10}")
    for c in probed:
        size = "" if c.image_size is None else c.image_size
        parameters = "-" if c.parameters is None else f"{c.parameters / 1e6:.2f}M"
        print(f"{c.base:<{width}}  {size:>4}  {c.accuracy:>7.3f} +- {c.spread:.3f}  "
              f"{c.images_per_second:>8.0f}  {parameters:>10}")
    print()
    for c in advice.candidates:
        if c.accuracy is None and c.note not in (NOT_HERE, LARGER):
            print(f"not probed: {c.base}: {c.note}")
    for note, what in ((NOT_HERE, "their ImageNet weights are not on this machine"),
                       (LARGER, "larger bases, probed only when named")):
        names = [c.base for c in advice.candidates if c.accuracy is None and c.note == note]
        if names:
            examples = [name for name in _WELL_KNOWN if name in names] + [n for n in names if n not in _WELL_KNOWN]
            print(f"not probed, {what}: {len(names)} named bases, e.g. {', '.join(examples[:5])} "
                  "(graft bases lists them; --bases NAME ... probes them, downloading their weights)")
    from graftkit.advice import PROBES

    print(f"\nprobe: {advice.probed_images} {noun}, {advice.folds}-fold cross-validated {PROBES[advice.task][0]} "
          "on the frozen base's pooled features" + (" (tfidf: its own model, cross-validated)" if text else ""))
    print("advice:\n" + "\n".join(f"  - {reason}" for reason in advice.reasons))
    print(f"\n{advice.command}")
    return 0


def _demo(args) -> int:
    _heavy()
    from graftkit.demo import run_demo

    run_demo(args.out)
    return 0


def _positive(option: str, value: int) -> None:
    if value < 1:
        raise GraftError(f"{option} {value} is out of range: use 1 or more")


if __name__ == "__main__":
    sys.exit(main())
