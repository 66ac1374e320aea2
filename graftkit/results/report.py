"""A self-contained HTML report of a run: curves, confusion matrix, per-class scores, worst mistakes, config.

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

from graftkit.results.plots import PLOT_CLASSES

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
"""


def confident_mistakes(paths, labels, probabilities, class_names: list[str], limit: int = 12) -> list[dict]:
    """The wrongly classified images the model was surest of, surest first.

    Args:
        paths: image files.
        labels: true class index of each image.
        probabilities: model outputs, one row per image.
        class_names: names of the classes, in output order.
        limit: most mistakes returned.

    Returns:
        Dicts with ``path``, ``true``, ``predicted`` and ``probability`` (of the predicted class).

    Example:
        >>> confident_mistakes(["a.png", "b.png"], [0, 1], np.array([[.9, .1], [.8, .2]]), ["ant", "bee"])
        [{'path': 'b.png', 'true': 'bee', 'predicted': 'ant', 'probability': 0.8}]
    """
    probabilities = np.asarray(probabilities)
    if not len(probabilities):
        return []
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    return [{"path": str(paths[i]), "true": class_names[int(labels[i])], "predicted": class_names[int(predicted[i])],
             "probability": round(float(confidence[i]), 4)} for i in order]


def write_report(path: str | Path, *, title: str, scores: dict, plots: dict[str, Path] | None = None,
                 stages: dict | None = None, config: dict | None = None, base: dict | None = None,
                 mistakes: list[dict] = (), note: str = "", links: list[Path] = ()) -> Path:
    """Write the HTML report to ``path`` (atomically).

    Args:
        path: the ``.html`` file to write.
        title: the page heading.
        scores: :func:`graftkit.evaluate.score` output (accuracy, per_class, confusion_matrix, class_names).
        plots: caption -> PNG file; each is embedded, and linked when it lies in the report's folder.
        stages: stage name -> summary (best_epoch, val_accuracy, best_val_loss, seconds, ...), from metrics.json.
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
    """The report page as one HTML string (see :func:`write_report`)."""
    e = html.escape
    names = scores["class_names"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="summary">accuracy <b id="accuracy">{scores["accuracy"]:.4f}</b> on {scores["count"]} images, '
        f"{len(names)} classes{' &middot; ' + e(note) if note else ''}</p>",
    ]
    plots = dict(plots)
    if "Training curves" in plots:
        parts.append(_plot_section("Training curves", Path(plots.pop("Training curves")), folder))
    if stages:
        parts.append(_stages_table(stages))
    if "Confusion matrix" in plots:
        shown = (f"the {PLOT_CLASSES} most-confused of the {len(names)} classes: all counts are in the JSON scores"
                 if len(names) > PLOT_CLASSES else "")
        parts.append(_plot_section("Confusion matrix", Path(plots.pop("Confusion matrix")), folder, shown))
    parts.append(_confusion_table(scores) if len(names) <= TABLE_CLASSES else _top_confusions_table(scores))
    parts.append(_per_class_table(scores))
    parts.append(_mistakes_section(mistakes))
    for caption, png in plots.items():
        parts.append(_plot_section(caption, Path(png), folder))
    if base or config:
        parts.append(_model_section(base, config))
    parts.append(_links(links, folder))
    parts.append(f'<p class="muted">written by graftkit on {e(time.strftime("%Y-%m-%d %H:%M"))}</p></body></html>')
    return "\n".join(parts) + "\n"


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
    e = html.escape
    rows = []
    for name, s in stages.items():
        accuracy = s.get("val_accuracy")
        loss = s.get("best_val_loss")
        rows.append(
            f'<tr><td class="name">{e(name)}</td><td>{s.get("best_epoch", "")}</td>'
            f"<td>{'' if accuracy is None else f'{accuracy:.4f}'}</td>"
            f"<td>{'' if loss is None else f'{loss:.4f}'}</td><td>{s.get('seconds', '')}</td>"
            f"<td>{s.get('trainable_params', 0):,}</td><td>{'yes' if s.get('kept', True) else 'no (reverted)'}</td></tr>")
    return ('<section id="stages"><h2>Training stages</h2><table><tr><th class="name">stage</th>'
            "<th>best epoch</th><th>val accuracy</th><th>val loss</th><th>seconds</th>"
            f"<th>trainable params</th><th>kept</th></tr>{''.join(rows)}</table></section>")


def _per_class_table(scores: dict) -> str:
    """One row per class; beyond :data:`TABLE_CLASSES` classes, folded away and worst F1 first."""
    e = html.escape
    items = list(scores["per_class"].items())
    many = len(items) > TABLE_CLASSES
    if many:
        items.sort(key=lambda item: (item[1]["f1"], item[0]))
    rows = "".join(
        f'<tr><td class="name">{e(name)}</td><td>{row["precision"]:.4f}</td><td>{row["recall"]:.4f}</td>'
        f'<td>{row["f1"]:.4f}</td><td>{row["support"]}</td></tr>'
        for name, row in items)
    table = ('<table><tr><th class="name">class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>'
             f"</tr>{rows}</table>")
    if many:
        table = f"<details><summary>all {len(items)} classes, lowest F1 first</summary>{table}</details>"
    return f'<section id="per-class"><h2>Per-class precision, recall and F1</h2>{table}</section>'


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


def _mistakes_section(mistakes: list[dict]) -> str:
    e = html.escape
    if not mistakes:
        return '<section id="mistakes"><h2>Most confident mistakes</h2><p>No mistakes.</p></section>'
    figures = []
    for m in mistakes:
        thumb = _thumbnail(m["path"])
        image = f'<img alt="{e(Path(m["path"]).name)}" src="{thumb}">' if thumb else "<p>(unreadable)</p>"
        figures.append(f'<figure>{image}<figcaption>true <b>{e(m["true"])}</b>, predicted <b>{e(m["predicted"])}'
                       f'</b> ({m["probability"]:.2f})<br><span class="muted">{e(Path(m["path"]).name)}</span>'
                       "</figcaption></figure>")
    return ('<section id="mistakes"><h2>Most confident mistakes</h2>'
            f'<div class="mistakes">{"".join(figures)}</div></section>')


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

    Example:
        >>> write_run_report("runs/ants", metrics=run.metrics, config=config)  # doctest: +SKIP
        PosixPath('runs/ants/report.html')
    """
    folder = Path(folder)
    plots = {caption: folder / name for caption, name in
             (("Training curves", "curves.png"), ("Confusion matrix", "confusion.png")) if (folder / name).is_file()}
    try:  # how to load the model in plain Keras (safe_mode=False for a Lambda) is in inputs.json
        load = json.loads((folder / "inputs.json").read_text()).get("load")
    except (OSError, ValueError):
        load = None
    return write_report(
        folder / "report.html", title=f"graftkit run {folder.name}", scores=metrics, plots=plots,
        stages=metrics.get("stages"), config=config, base={**(metrics.get("base") or {}), "load": load},
        mistakes=mistakes, note=f"validation images of {config.get('data', '?')}",
        links=[folder / n for n in ("metrics.json", "config.json", "history.json", "classes.json", "inputs.json")])


def write_evaluation_report(path: str | Path, *, scores: dict, mistakes: list[dict], data: str,
                            run_dir: str | Path | None = None) -> Path:
    """An evaluation report at ``path`` (``.html``), with its scores and plots beside it.

    Beside ``path`` go ``<stem>.json`` (the scores) and ``<stem>-confusion.png``; when
    ``run_dir`` is a graftkit run folder, its training curves (``<stem>-curves.png``),
    stages, base and configuration are shown too.

    Example:
        >>> write_evaluation_report("runs/ants/evaluation.html", scores=s, mistakes=[],
        ...                         data="test/", run_dir="runs/ants")  # doctest: +SKIP
    """
    from graftkit.files import atomic_write_json
    from graftkit.results.plots import plot_confusion, plot_curves

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
    plots["Confusion matrix"] = plot_confusion(scores["confusion_matrix"], scores["class_names"],
                                               f"{stem}-confusion.png")
    atomic_write_json(f"{stem}.json", scores)
    return write_report(
        path, title=f"graftkit evaluation of {run_dir.name if run_dir else 'a model'} on {Path(data).name}",
        scores=scores, plots=plots, stages=metrics.get("stages"), config=config, base=metrics.get("base"),
        mistakes=mistakes, note=f"images of {data}", links=[Path(f"{stem}.json")])


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
