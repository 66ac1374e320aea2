"""A self-contained HTML report of a run: curves, the scores of its task, worst mistakes, config.

Single label: confusion matrix and per-class scores; multi-label: precision-recall curves and per-label
thresholds and scores; regression: predicted against true values, MAE, RMSE and R².

The report opens offline on its own: its pictures are embedded as data URIs (the plots
also lie beside it as PNG files), and it loads no script, font or style from anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path

import numpy as np

from graftkit.results.plots import LR_FIND_CAPTION, PLOT_CLASSES, PLOT_LABELS, TASK_PLOTS

TABLE_CLASSES = 20
"""Most classes shown as a full table of counts and an open per-class table."""

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;
color:#222}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
.summary{color:#555}table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td.name,th.name{text-align:left;max-width:28em;overflow-wrap:anywhere}
img.plot{max-width:100%;height:auto;border:1px solid #eee}
details summary{cursor:pointer;color:#246}
.mistakes{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0;width:150px;font-size:.85em}figure img{width:140px;height:140px;object-fit:contain;
background:#f4f4f4;border:2px solid #c33}figcaption{word-break:break-all}
pre{background:#f7f7f7;padding:.8em;overflow:auto}.muted{color:#777}
figure:has(blockquote.text){width:330px}blockquote.text{margin:0 0 .3em;padding:.4em .6em;border-left:3px solid #c33;
background:#f7f7f7;white-space:pre-wrap;overflow-wrap:anywhere;font-size:.95em}
"""


def confident_mistakes(paths, labels, probabilities, class_names: list[str], limit: int = 12, *,
                       task="single", thresholds=None) -> list[dict]:
    """The examples the model got most wrong, worst first.

    - single: the wrongly classified images the model was surest of, surest first; dicts with
      ``path``, ``true``, ``predicted`` and ``probability`` (of the predicted class).
    - multilabel: the images with the most wrong labels at ``thresholds``, and among as many, the
      surest (the largest probability of a wrong decision: ``p`` for a label wrongly predicted,
      ``1 - p`` for one missed); dicts with ``path``, ``true`` and ``predicted`` (``;``-joined label
      sets), ``missed``, ``extra``, ``wrong`` (how many labels are wrong) and ``probability``.
    - regression: the largest absolute errors; dicts with ``path``, ``true``, ``predicted`` and
      ``error`` (predicted minus true).

    Args:
        paths: image files.
        labels: true labels (class indices, 0/1 rows or targets, as for :func:`graftkit.results.evaluate.score`).
        probabilities: model outputs, one row per image.
        class_names: names of the outputs.
        limit: most mistakes returned.
        task: the model's task.
        thresholds: multilabel only: per-label thresholds (0.5 each when None).

    Example:
        >>> confident_mistakes(["a.png", "b.png"], [0, 1], np.array([[.9, .1], [.8, .2]]), ["ant", "bee"])
        [{'path': 'b.png', 'true': 'bee', 'predicted': 'ant', 'probability': 0.8}]
        >>> confident_mistakes(["a.png", "b.png"], [1.0, 2.0], np.array([[1.5], [2.1]]), ["size"],
        ...                    task="regression")[0]
        {'path': 'a.png', 'true': 1.0, 'predicted': 1.5, 'error': 0.5}
    """
    from graftkit.results.evaluate import task_kind, threshold_array

    probabilities = np.asarray(probabilities)
    if not len(probabilities):
        return []
    kind = task_kind(task)
    if kind == "regression":
        targets = np.asarray(labels, np.float64).reshape(-1)
        predicted = probabilities.astype(np.float64).reshape(-1)
        errors = predicted - targets
        order = np.argsort(-np.abs(errors), kind="stable")[:limit]
        return [{"path": str(paths[i]), "true": _value(targets[i]), "predicted": _value(predicted[i]),
                 "error": _value(errors[i])} for i in order if errors[i] != 0]
    if kind == "multilabel":
        truth = np.asarray(labels).reshape(len(probabilities), -1) > 0.5
        predicted = probabilities >= threshold_array(thresholds, class_names)
        wrong = truth != predicted
        counts = wrong.sum(axis=1)
        sureness = np.where(wrong, np.where(predicted, probabilities, 1 - probabilities), 0).max(axis=1)
        candidates = np.flatnonzero(counts)
        order = candidates[np.lexsort((-sureness[candidates], -counts[candidates]))][:limit]
        names = np.asarray(class_names, dtype=object)
        return [{"path": str(paths[i]), "true": ";".join(names[truth[i]]), "predicted": ";".join(names[predicted[i]]),
                 "missed": list(names[truth[i] & ~predicted[i]]), "extra": list(names[predicted[i] & ~truth[i]]),
                 "wrong": int(counts[i]), "probability": round(float(sureness[i]), 4)} for i in order]
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [{"path": str(paths[i]), "true": class_names[int(labels[i])], "predicted": class_names[int(predicted[i])],
             "probability": round(float(confidence[i]), 4)} for i in order]


def _value(x) -> float:
    return float(f"{float(x):.6g}")


def write_report(path: str | Path, *, title: str, scores: dict, plots: dict[str, Path] | None = None,
                 stages: dict | None = None, config: dict | None = None, base: dict | None = None,
                 mistakes: list[dict] = (), note: str = "", links: list[Path] = ()) -> Path:
    """Write the HTML report to ``path`` (atomically).

    Args:
        path: the ``.html`` file to write.
        title: the page heading.
        scores: :func:`graftkit.results.evaluate.score` output, of any task (without ``task``: single label).
        plots: caption -> PNG file; each is embedded, and linked when it lies in the report's folder.
        stages: stage name -> summary (best_epoch, val_accuracy or val_mae, best_val_loss, seconds, ...),
            from metrics.json.
        config: the run's configuration (config.json).
        base: what the base was: source, cut, feature shape, preprocessing, weights.
        mistakes: from :func:`confident_mistakes`; shown as embedded thumbnails.
        note: one line under the title (what data the scores are on).
        links: files to link at the end (relative to the report's folder); those missing are left out.

    Example:
        >>> import tempfile
        >>> s = {"accuracy": 1.0, "count": 1, "class_names": ["a", "b"], "confusion_matrix": [[1, 0], [0, 0]],
        ...      "per_class": {"a": {"precision": 1, "recall": 1, "f1": 1, "support": 1},
        ...                    "b": {"precision": 0, "recall": 0, "f1": 0, "support": 0}}}
        >>> write_report(tempfile.mkdtemp() + "/report.html", title="demo", scores=s).name
        'report.html'
    """
    from graftkit.files import atomic_write_text

    path = Path(path)
    page = render(title=title, scores=scores, plots=plots or {}, stages=stages or {}, config=config or {},
                  base=base or {}, mistakes=list(mistakes), note=note, folder=path.parent, links=list(links))
    atomic_write_text(path, page)
    return path


def render(*, title: str, scores: dict, plots: dict, stages: dict, config: dict, base: dict,
           mistakes: list[dict], note: str, folder: Path, links: list[Path] = ()) -> str:
    """The report page as one HTML string (see :func:`write_report`).

    The scores' task decides the sections: the confusion matrix and per-class table (single
    label); precision-recall curves, per-label thresholds and scores (multi-label); the
    predicted-against-true plot and MAE / RMSE / R² (regression).
    """
    from graftkit.results.evaluate import task_kind

    e = html.escape
    kind = task_kind(scores.get("task"))
    unit = _unit(base)
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="summary">{_summary(scores, kind, unit)}{" &middot; " + e(note) if note else ""}</p>',
    ]
    plots = dict(plots)
    if "Training curves" in plots:
        parts.append(_plot_section("Training curves", Path(plots.pop("Training curves")), folder))
    if LR_FIND_CAPTION in plots:
        parts.append(_plot_section(LR_FIND_CAPTION, Path(plots.pop(LR_FIND_CAPTION)), folder,
                                   _lr_find_note(scores.get("learning_rates"))))
    if stages:
        parts.append(_stages_table(stages))
    if kind == "single":
        names = scores["class_names"]
        if "Confusion matrix" in plots:
            shown = (f"the {PLOT_CLASSES} most-confused of the {len(names)} classes: all counts are in the JSON "
                     "scores" if len(names) > PLOT_CLASSES else "")
            parts.append(_plot_section("Confusion matrix", Path(plots.pop("Confusion matrix")), folder, shown))
        parts.append(_confusion_table(scores) if len(names) <= TABLE_CLASSES else _top_confusions_table(scores))
        parts.append(_per_class_table(scores))
    elif kind == "multilabel":
        caption = TASK_PLOTS["multilabel"][0]
        parts.append(_multilabel_table(scores))
        if caption in plots:
            shown = (f"the {PLOT_LABELS} most frequent of the {len(scores['class_names'])} labels"
                     if len(scores["class_names"]) > PLOT_LABELS else "")
            parts.append(_plot_section(caption, Path(plots.pop(caption)), folder, shown))
        parts.append(_per_label_table(scores))
    else:
        caption = TASK_PLOTS["regression"][0]
        parts.append(_regression_table(scores))
        if caption in plots:
            parts.append(_plot_section(caption, Path(plots.pop(caption)), folder,
                                       "left: each image's prediction against its true value, the line where they "
                                       "agree; right: the error (predicted - true) against the prediction"))
    parts.append(_mistakes_section(mistakes, kind, text=(base or {}).get("modality") == "text"))
    for caption, png in plots.items():
        parts.append(_plot_section(caption, Path(png), folder))
    if base or config:
        parts.append(_model_section(base, config))
    parts.append(_links(links, folder))
    parts.append(f'<p class="muted">written by graftkit on {e(time.strftime("%Y-%m-%d %H:%M"))}</p></body></html>')
    return "\n".join(parts) + "\n"


def _unit(base: dict | None) -> str:
    """What a run's examples are called: ``texts`` for a text base (``metrics["base"]["modality"]``), else ``images``."""
    return "texts" if (base or {}).get("modality") == "text" else "images"


def _summary(scores: dict, kind: str, unit: str = "images") -> str:
    """The line under the title: the headline number in bold, with what it is of (``unit``: images or texts)."""
    return _summary_in_images(scores, kind).replace(" images", f" {unit}", 1)


def _summary_in_images(scores: dict, kind: str) -> str:
    count = scores["count"]
    if kind == "single":
        return (f'accuracy <b id="accuracy">{scores["accuracy"]:.4f}</b> on {count} images, '
                f'{len(scores["class_names"])} classes')
    if kind == "multilabel":
        return (f'mean average precision <b id="map">{_cell(scores["mean_average_precision"])}</b> on {count} '
                f'images, {len(scores["class_names"])} labels')
    name = html.escape(scores["class_names"][0]) if scores.get("class_names") else "the target"
    return f'mean absolute error <b id="mae">{_cell(scores["mae"], "g")}</b> on {count} images, target {name}'


def _cell(value, style: str = "f") -> str:
    """A number for a table cell: 4 decimals (``f``) or 4 significant digits (``g``); n/a for None."""
    if value is None:
        return "n/a"
    return f"{value:.4f}" if style == "f" else f"{value:.4g}"


def _multilabel_table(scores: dict) -> str:
    rows = [("mean average precision (mAP)", scores["mean_average_precision"]),
            ("micro F1", scores["micro_f1"]), ("macro F1 (labels present)", scores["macro_f1"]),
            ("exact match (every label of an image right)", scores["exact_match"]),
            ("label decisions right", scores["label_accuracy"])]
    body = "".join(f'<tr><th class="name">{html.escape(k)}</th><td>{_cell(v)}</td></tr>' for k, v in rows)
    return f'<section id="scores"><h2>Scores</h2><table>{body}</table></section>'


def _regression_table(scores: dict) -> str:
    rows = [("mean absolute error (MAE)", _cell(scores["mae"], "g")),
            ("root mean squared error (RMSE)", _cell(scores["rmse"], "g")),
            ("R² (1 = perfect, 0 = no better than the mean)", _cell(scores["r2"])),
            ("images", str(scores["count"])), ("mean target", _cell(scores["mean_target"], "g")),
            ("standard deviation of the target", _cell(scores["std_target"], "g")),
            ("mean prediction", _cell(scores["mean_prediction"], "g"))]
    body = "".join(f'<tr><th class="name">{html.escape(k)}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<section id="scores"><h2>Scores</h2><table>{body}</table></section>'


def _per_label_table(scores: dict) -> str:
    """One row per label with its threshold; beyond :data:`TABLE_CLASSES` labels, folded, worst F1 first."""
    table = _rows_table(scores, "label", [("threshold", lambda r: f'{r["threshold"]:.4f}'),
                                          ("AP", lambda r: _cell(r["average_precision"]))])
    return ('<section id="per-label"><h2>Per-label thresholds, precision, recall and F1</h2>'
            '<p class="muted">a label is predicted when its probability is at least its threshold (thresholds.json '
            "beside the model); AP: average precision over all thresholds; support: images with the label</p>"
            f"{table}</section>")


def _rows_table(scores: dict, what: str, extra: list) -> str:
    """The per-class (or per-label) table: ``extra`` columns, then precision, recall, F1 and support; beyond
    :data:`TABLE_CLASSES` rows, folded away and worst F1 first."""
    e = html.escape
    items = list(scores["per_class"].items())
    many = len(items) > TABLE_CLASSES
    if many:
        items.sort(key=lambda item: (item[1]["f1"], item[0]))
    columns = [*extra, ("precision", lambda r: f'{r["precision"]:.4f}'), ("recall", lambda r: f'{r["recall"]:.4f}'),
               ("F1", lambda r: f'{r["f1"]:.4f}'), ("support", lambda r: str(r["support"]))]
    head = f'<tr><th class="name">{what}</th>' + "".join(f"<th>{name}</th>" for name, _ in columns) + "</tr>"
    rows = "".join(f'<tr><td class="name">{e(name)}</td>' + "".join(f"<td>{cell(row)}</td>" for _, cell in columns)
                   + "</tr>" for name, row in items)
    table = f"<table>{head}{rows}</table>"
    if many:
        table = (f"<details><summary>all {len(items)} {'classes' if what == 'class' else 'labels'}, lowest F1 first"
                 f"</summary>{table}</details>")
    return table


def _lr_find_note(rates: dict | None) -> str:
    """Which learning rates a run used and how they were chosen (``--lr auto``: metrics' ``learning_rates``).

    Example:
        >>> _lr_find_note({"head": {"lr": 0.01, "how": "found by lr-find (valley)"}})
        'head: 0.01, found by lr-find (valley)'
    """
    names = {"head": "head", "fine_tune": "fine-tuning"}
    parts = []
    for stage, value in (rates or {}).items():
        rate = "none" if value.get("lr") is None else f"{value['lr']:g}"
        parts.append(f"{names.get(stage, stage)}: {rate}, {value.get('how', '')}")
    return "; ".join(parts)


def _plot_section(caption: str, png: Path, folder: Path, note: str = "") -> str:
    e = html.escape
    ident = "".join(c if c.isalnum() else "-" for c in caption.lower())
    link = ""
    if png.parent.resolve() == folder.resolve():
        link = f'<p class="muted">also as <a href="{e(png.name)}">{e(png.name)}</a></p>'
    note = f'<p class="muted">{e(note)}</p>' if note else ""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return (f'<section id="{ident}"><h2>{e(caption)}</h2>{note}<img class="plot" alt="{e(caption)}" '
            f'src="data:image/png;base64,{data}">{link}</section>')


def _stages_table(stages: dict) -> str:
    """Each stage's best epoch, its validation metric (accuracy, or MAE for regression) and loss, and cost."""
    e = html.escape
    mae = any("val_mae" in s and "val_accuracy" not in s for s in stages.values())
    key, heading = ("val_mae", "val MAE") if mae else ("val_accuracy", "val accuracy")
    rows = []
    for name, s in stages.items():
        value = s.get(key)
        loss = s.get("best_val_loss")
        rows.append(
            f'<tr><td class="name">{e(name)}</td><td>{s.get("best_epoch", "")}</td>'
            f"<td>{'' if value is None else _cell(value, 'g' if mae else 'f')}</td>"
            f"<td>{'' if loss is None else f'{loss:.4f}'}</td><td>{s.get('seconds', '')}</td>"
            f"<td>{s.get('trainable_params', 0):,}</td><td>{'yes' if s.get('kept', True) else 'no (reverted)'}</td></tr>")
    return ('<section id="stages"><h2>Training stages</h2><table><tr><th class="name">stage</th>'
            f"<th>best epoch</th><th>{heading}</th><th>val loss</th><th>seconds</th>"
            f"<th>trainable params</th><th>kept</th></tr>{''.join(rows)}</table></section>")


def _per_class_table(scores: dict) -> str:
    """One row per class; beyond :data:`TABLE_CLASSES` classes, folded away and worst F1 first."""
    return f'<section id="per-class"><h2>Per-class precision, recall and F1</h2>{_rows_table(scores, "class", [])}</section>'


def _confusion_table(scores: dict) -> str:
    """The full matrix; columns are numbered so that long class names cannot widen the page."""
    e = html.escape
    names = scores["class_names"]
    head = "".join(f'<th title="{e(n)}">{i}</th>' for i, n in enumerate(names))
    rows = "".join(f'<tr><th class="name">{i} {e(n)}</th>' + "".join(f"<td>{v}</td>" for v in row) + "</tr>"
                   for i, (n, row) in enumerate(zip(names, scores["confusion_matrix"])))
    return ('<section id="confusion-counts"><h3>Counts</h3>'
            '<p class="muted">rows: true class, columns: predicted class (by number)</p>'
            f'<table><tr><th class="name">true \\ predicted</th>{head}</tr>{rows}</table></section>')


def _top_confusions_table(scores: dict, limit: int = 25) -> str:
    """The most frequent mistakes, for a matrix too large to read as a table."""
    from graftkit.results.evaluate import top_confusions

    e = html.escape
    top = top_confusions(scores, limit)
    if not top:
        body = f"<p>No mistakes among the {len(scores['class_names'])} classes.</p>"
    else:
        rows = "".join(f'<tr><td class="name">{e(p["true"])}</td><td class="name">{e(p["predicted"])}</td>'
                       f'<td>{p["count"]}</td><td>{p["share"]:.1%}</td></tr>' for p in top)
        body = ('<table><tr><th class="name">true class</th><th class="name">predicted as</th><th>images</th>'
                f"<th>share of the true class</th></tr>{rows}</table>")
    return ('<section id="top-confusions"><h3>Most frequent mistakes</h3>'
            f'<p class="muted">{len(scores["class_names"])} classes are too many for a table of counts: the full '
            f"matrix is confusion_matrix in the JSON scores</p>{body}</section>")


TEXT_SHOWN = 400  # characters of a mistaken text shown in the report


def _mistakes_section(mistakes: list[dict], kind: str = "single", *, text: bool = False) -> str:
    """The mistakes as thumbnails with their labels, or, for a text model (``text``), as the texts themselves."""
    e = html.escape
    heading = {"single": "Most confident mistakes", "multilabel": "Images with the most wrong labels",
               "regression": "Largest errors"}[kind]
    heading = heading.replace("Images", "Texts") if text else heading
    ident = "mistakes"
    if not mistakes:
        return f'<section id="{ident}"><h2>{heading}</h2><p>No mistakes.</p></section>'
    figures = []
    for m in mistakes:
        if text:
            shown = m["path"] if len(m["path"]) <= TEXT_SHOWN else m["path"][:TEXT_SHOWN - 1] + "\u2026"
            image = f'<blockquote class="text">{e(shown)}</blockquote>'
        else:
            thumb = _thumbnail(m["path"])
            image = f'<img alt="{e(Path(m["path"]).name)}" src="{thumb}">' if thumb else "<p>(unreadable)</p>"
        if kind == "regression":
            caption = (f'true <b>{m["true"]:.4g}</b>, predicted <b>{m["predicted"]:.4g}</b> '
                       f'(error {m["error"]:+.3g})')
        elif kind == "multilabel":
            caption = (f'true <b>{e(m["true"] or "(none)")}</b>, predicted <b>{e(m["predicted"] or "(none)")}</b> '
                       f'({m["wrong"]} wrong: {e(_wrong_labels(m))})')
        else:
            caption = f'true <b>{e(m["true"])}</b>, predicted <b>{e(m["predicted"])}</b> ({m["probability"]:.2f})'
        name = "" if text else f'<br><span class="muted">{e(Path(m["path"]).name)}</span>'
        figures.append(f'<figure>{image}<figcaption>{caption}{name}</figcaption></figure>')
    note = {"single": "", "multilabel": '<p class="muted">most wrong labels first, then the surest</p>',
            "regression": '<p class="muted">largest absolute error first</p>'}[kind]
    return (f'<section id="{ident}"><h2>{heading}</h2>{note}'
            f'<div class="mistakes">{"".join(figures)}</div></section>')


def _wrong_labels(mistake: dict) -> str:
    parts = ([f"missed {', '.join(mistake['missed'])}"] if mistake.get("missed") else []) + (
        [f"extra {', '.join(mistake['extra'])}"] if mistake.get("extra") else [])
    return "; ".join(parts)


def _thumbnail(path: str, size: int = 140) -> str | None:
    """The image as a small embedded JPEG data URI, or None when it cannot be read."""
    from graftkit.data.decode import read_image
    from graftkit.errors import GraftError

    try:
        from PIL import Image

        with Image.open(path) as img:
            width, height = img.size
        scale = size / max(width, height, 1)
        pixels = read_image(path, 2 * size)  # EXIF rotation, palette and alpha handled as for training
        image = Image.fromarray(pixels).resize((max(1, round(width * scale)), max(1, round(height * scale))))
    except (GraftError, OSError, ValueError):
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _model_section(base: dict, config: dict) -> str:
    e = html.escape
    rows = []
    if base:
        rows += [("base", base.get("source")), ("cut at layer", base.get("cut")),
                 ("features", base.get("feature_shape")), ("preprocessing", base.get("preprocessing")),
                 ("weights", base.get("weights")), ("load in Keras with", base.get("load"))]
    if config:
        rows.append(("freeze while fine-tuning", config.get("freeze")))
    table = "".join(f'<tr><th class="name">{e(k)}</th><td class="name">{e(str(v))}</td></tr>'
                    for k, v in rows if v is not None)
    full = (f"<h3>Full configuration</h3><pre>{e(json.dumps(config, indent=2))}</pre>" if config else "")
    return f'<section id="model"><h2>Model and configuration</h2><table>{table}</table>{full}</section>'


def _links(links: list[Path], folder: Path) -> str:
    e = html.escape
    present = [Path(p) for p in links if Path(p).is_file() and Path(p).parent.resolve() == folder.resolve()]
    if not present:
        return ""
    items = "".join(f'<li><a href="{e(p.name)}">{e(p.name)}</a></li>' for p in present)
    return f'<section id="files"><h2>Files</h2><ul>{items}</ul></section>'


def write_run_report(folder: str | Path, *, metrics: dict, config: dict, mistakes: list[dict] = ()) -> Path:
    """The training report ``report.html`` of a run folder that already holds its plots and JSON files.

    The plots are found by name: ``curves.png`` and the task's picture (``confusion.png``,
    ``pr_curves.png`` or ``regression.png``, see :func:`graftkit.results.plots.plot_scores`).

    Example:
        >>> write_run_report("runs/ants", metrics=run.metrics, config=config)  # doctest: +SKIP
        PosixPath('runs/ants/report.html')
    """
    from graftkit.results.evaluate import task_kind

    folder = Path(folder)
    names = (("Training curves", "curves.png"), (LR_FIND_CAPTION, "lr_find.png"),
             TASK_PLOTS[task_kind(metrics.get("task"))])
    plots = {caption: folder / name for caption, name in names if (folder / name).is_file()}
    try:  # how to load the model in plain Keras (safe_mode=False for a Lambda) is in inputs.json
        load = json.loads((folder / "inputs.json").read_text()).get("load")
    except (OSError, ValueError):
        load = None
    return write_report(
        folder / "report.html", title=f"graftkit run {folder.name}", scores=metrics, plots=plots,
        stages=metrics.get("stages"), config=config, base={**(metrics.get("base") or {}), "load": load},
        mistakes=mistakes, note=f"validation {_unit(metrics.get('base'))} of {config.get('data', '?')}",
        links=[folder / n for n in ("metrics.json", "config.json", "history.json", "classes.json", "inputs.json",
                                    "thresholds.json")])


def write_evaluation_report(path: str | Path, *, scores: dict, mistakes: list[dict], data: str,
                            run_dir: str | Path | None = None, labels=None, outputs=None) -> Path:
    """An evaluation report at ``path`` (``.html``), with its scores and plots beside it.

    Beside ``path`` go ``<stem>.json`` (the scores) and the task's picture: ``<stem>-confusion.png``
    (single label), ``<stem>-pr_curves.png`` (multi-label) or ``<stem>-regression.png``; the last
    two are drawn from ``labels`` and the model's ``outputs`` and left out without them. When ``run_dir``
    is a graftkit run folder, its training curves (``<stem>-curves.png``), stages, base and
    configuration are shown too.

    Example:
        >>> write_evaluation_report("runs/ants/evaluation.html", scores=s, mistakes=[],
        ...                         data="test/", run_dir="runs/ants")  # doctest: +SKIP
    """
    from graftkit.files import atomic_write_json
    from graftkit.results.evaluate import TTA_NOTE, task_kind
    from graftkit.results.plots import plot_curves, plot_scores

    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path.with_suffix(".html")
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.parent / path.stem
    plots = {}
    config, metrics = {}, {}
    if run_dir is not None:
        run_dir = Path(run_dir)
        config = _read_json(run_dir / "config.json") or {}
        metrics = _read_json(run_dir / "metrics.json") or {}
        history = _read_json(run_dir / "history.json")
        if history:
            plots["Training curves"] = plot_curves([{"name": n, "history": h} for n, h in history.items()],
                                                   f"{stem}-curves.png")
    if task_kind(scores.get("task")) == "single" or (labels is not None and outputs is not None):
        plots.update(plot_scores(scores, labels, outputs, f"{stem}-"))
    atomic_write_json(f"{stem}.json", scores)
    return write_report(
        path, title=f"graftkit evaluation of {run_dir.name if run_dir else 'a model'} on {Path(data).name}",
        scores=scores, plots=plots, stages=metrics.get("stages"), config=config, base=metrics.get("base"),
        mistakes=mistakes, note=f"images of {data}" + (f", {TTA_NOTE}" if scores.get("tta") else ""),
        links=[Path(f"{stem}.json")])


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
