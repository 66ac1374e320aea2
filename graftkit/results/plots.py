"""Pictures of a run, as PNG files under 2,000 pixels a side: training curves, and per task the confusion
matrix (single label), precision-recall curves (multi-label) or predicted against true values (regression)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(stages: list[dict], path: str | Path) -> Path:
    """Loss and the logged metric per epoch, train and validation, both stages on one time axis.

    The metric is ``accuracy`` when the history has it (single and multi-label), else ``mae``
    (regression), else the first other metric logged.

    Args:
        stages: dicts with ``name`` and ``history`` (Keras history lists), in order.
        path: the PNG to write (atomically).

    Example:
        >>> import tempfile, os
        >>> p = plot_curves([{"name": "head", "history": {"loss": [1, .5], "val_loss": [1, .6],
        ...     "accuracy": [.5, .8], "val_accuracy": [.5, .7]}}], os.path.join(tempfile.mkdtemp(), "c.png"))
        >>> p.stat().st_size > 0
        True
    """
    plt = _pyplot()
    metrics = ("loss", _logged_metric([stage["history"] for stage in stages]))
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    start = 0
    for stage in stages:
        history = stage["history"]
        epochs = range(start + 1, start + 1 + len(history.get("loss", [])))
        for axis, metric in zip(axes, metrics):
            for prefix, style in (("", "-"), ("val_", "--")):
                if metric and prefix + metric in history:
                    axis.plot(list(epochs), history[prefix + metric], style, marker="o", markersize=3,
                              label=f"{stage['name']} {'val' if prefix else 'train'}")
        if start:
            for axis in axes:
                axis.axvline(start + 0.5, color="grey", linewidth=0.8)
        start += len(history.get("loss", []))
    for axis, metric in zip(axes, metrics):
        axis.set_xlabel("epoch")
        axis.set_title({"mae": "mean absolute error"}.get(metric, metric or "no metric logged"))
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, plt, path)


def _logged_metric(histories: list[dict]) -> str | None:
    """The metric to draw beside the loss: accuracy, else MAE, else the first other one logged."""
    keys = [key.removeprefix("val_") for history in histories for key in history]
    for metric in ("accuracy", "mae", *keys):
        if metric in keys and metric not in ("loss", "learning_rate", "lr"):
            return metric
    return None


PLOT_CLASSES = 30
"""Most classes :func:`plot_confusion` draws; beyond, it draws the most-confused ones."""


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str | Path, *,
                   limit: int = PLOT_CLASSES) -> Path:
    """The confusion matrix as a heat map with counts (rows: true class, columns: predicted).

    The picture stays under 2,000 pixels a side: with more than ``limit`` classes it shows
    the ``limit`` most-confused ones (those in the largest off-diagonal cells, in class
    order), and its title says so. Long class names are shortened with an ellipsis; beyond ten
    classes, cells of zero are left blank.

    Args:
        matrix: counts, ``matrix[true][predicted]``.
        class_names: names of the classes, in matrix order.
        path: the PNG to write (atomically).
        limit: most classes drawn.

    Example:
        >>> import tempfile, os
        >>> p = plot_confusion([[5, 1], [2, 7]], ["cat", "dog"], os.path.join(tempfile.mkdtemp(), "m.png"))
        >>> p.stat().st_size > 0
        True
    """
    from graftkit.results.evaluate import shorten

    plt = _pyplot()
    values = np.asarray(matrix, dtype=np.int64).reshape(len(class_names), len(class_names))
    shown = _most_confused(values, limit) if len(class_names) > limit else np.arange(len(class_names))
    values = values[np.ix_(shown, shown)]
    names = [shorten(class_names[i], 24) for i in shown]
    size = min(19.5, max(4.0, 0.6 * len(names) + 2))  # inches at 100 dpi
    figure, axis = plt.subplots(figsize=(size, size))
    edges = np.arange(len(names) + 1) - 0.5  # cell centres on whole numbers, as imshow puts them
    axis.pcolormesh(edges, edges, values, cmap="Blues")  # imshow's resampling took ~60 MB at 1,950 px
    axis.set_aspect("equal")
    axis.set_xlim(edges[0], edges[-1])
    axis.set_ylim(edges[-1], edges[0])
    ticks = list(range(len(names)))
    axis.set_xticks(ticks, names, rotation=45, ha="right")
    axis.set_yticks(ticks, names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(shown) < len(class_names):
        axis.set_title(f"the {len(shown)} most-confused of {len(class_names)} classes "
                       "(the full matrix is in the JSON scores)")
    dark = values.max() / 2 if values.size else 0
    for (row, col), count in np.ndenumerate(values):
        if count or len(names) <= 10:  # on a large matrix, blank zeros let the mistakes stand out
            axis.text(col, row, str(count), ha="center", va="center", color="white" if count > dark else "black")
    figure.tight_layout()
    return _save(figure, plt, path)


def _most_confused(values, limit: int):
    """Indices of ``limit`` classes, in class order: those of the largest mistakes, then the first classes."""
    off = values.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))
    candidates = [int(c) for i in order for c in (rows[i], cols[i])] + list(range(len(off)))
    chosen = list(dict.fromkeys(candidates))[:limit]
    return np.array(sorted(chosen))


PLOT_LABELS = 20
"""Most labels :func:`plot_pr_curves` draws; beyond, the most frequent ones."""


def plot_pr_curves(labels, probabilities, names: list[str], path: str | Path, *, limit: int = PLOT_LABELS) -> Path:
    """One precision-recall curve per label, each named with its average precision (AP).

    With more than ``limit`` labels, the ``limit`` most frequent are drawn and the title says so;
    labels without a positive example have no curve. The picture is 1,100 x 650 pixels.

    Args:
        labels: 0/1 rows ``(n, k)``.
        probabilities: sigmoid outputs ``(n, k)``.
        names: the labels' names, in column order.
        path: the PNG to write (atomically).
        limit: most curves drawn.

    Example:
        >>> import tempfile, os
        >>> y = np.array([[1, 0], [0, 1], [1, 1]])
        >>> p = plot_pr_curves(y, np.array([[.9, .2], [.3, .8], [.7, .6]]), ["cat", "dog"],
        ...                    os.path.join(tempfile.mkdtemp(), "pr.png"))
        >>> p.stat().st_size > 0
        True
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    from graftkit.results.evaluate import shorten

    plt = _pyplot()
    truth = np.asarray(labels).reshape(len(labels), -1) > 0.5
    probabilities = np.asarray(probabilities, np.float64).reshape(len(probabilities), -1)
    support = truth.sum(axis=0)
    present = [int(i) for i in np.argsort(-support, kind="stable") if support[i] > 0]
    shown = present[:limit]
    figure, axis = plt.subplots(figsize=(11, 6.5))
    colors = plt.get_cmap("tab20")
    for n, i in enumerate(shown):
        precision, recall, _ = precision_recall_curve(truth[:, i], probabilities[:, i])
        ap = average_precision_score(truth[:, i], probabilities[:, i])
        axis.step(recall, precision, where="post", color=colors(n % 20), linewidth=1.4,
                  label=f"{shorten(names[i], 28)} (AP {ap:.2f}, {support[i]})")
    axis.set_xlim(0, 1.01)
    axis.set_ylim(0, 1.03)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.grid(alpha=0.3)
    if not shown:
        axis.text(0.5, 0.5, "no label has a positive example", ha="center", va="center")
    elif len(shown) < len(names):
        axis.set_title(f"the {len(shown)} most frequent of {len(names)} labels"
                       + (" (the others have no positive example)" if len(present) == len(shown) else ""))
    if shown:
        axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="label (AP, images)")
    figure.tight_layout()
    return _save(figure, plt, path)


def plot_regression(targets, predictions, path: str | Path, *, name: str = "target") -> Path:
    """Predicted against true values with the diagonal (a perfect model), and the residuals
    (predicted minus true) against the predicted values: one 1,100 x 500 pixel PNG, two panels.

    Args:
        targets: true values ``(n,)``.
        predictions: the model's outputs ``(n,)`` or ``(n, 1)``, in the target's units.
        path: the PNG to write (atomically).
        name: the target's name, for the axes.

    Example:
        >>> import tempfile, os
        >>> p = plot_regression([0.0, 1.0, 2.0], [0.1, 0.9, 2.3], os.path.join(tempfile.mkdtemp(), "r.png"))
        >>> p.stat().st_size > 0
        True
    """
    from graftkit.results.evaluate import shorten

    plt = _pyplot()
    targets = np.asarray(targets, np.float64).reshape(-1)
    predictions = np.asarray(predictions, np.float64).reshape(-1)
    residuals = predictions - targets
    name = shorten(name, 40)
    size = 12 if len(targets) > 2000 else 20
    alpha = 0.3 if len(targets) > 500 else 0.6
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 5))
    left.scatter(targets, predictions, s=size, alpha=alpha, edgecolors="none")
    if len(targets):
        low = float(min(targets.min(), predictions.min()))
        high = float(max(targets.max(), predictions.max()))
        left.plot([low, high], [low, high], color="grey", linewidth=1, label="predicted = true")
        left.legend(fontsize=8, loc="upper left")
    left.set_xlabel(f"true {name}")
    left.set_ylabel(f"predicted {name}")
    left.set_title("predicted against true")
    right.scatter(predictions, residuals, s=size, alpha=alpha, edgecolors="none")
    right.axhline(0, color="grey", linewidth=1)
    right.set_xlabel(f"predicted {name}")
    right.set_ylabel("residual (predicted - true)")
    right.set_title("residuals")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, plt, path)


TASK_PLOTS = {"single": ("Confusion matrix", "confusion.png"),
              "multilabel": ("Precision-recall curves", "pr_curves.png"),
              "regression": ("Predicted and true values", "regression.png")}
"""Each task's picture of its scores: the report's caption and the file name in a run folder."""


def plot_scores(scores: dict, labels, probabilities, stem: str | Path) -> dict[str, Path]:
    """The picture of ``scores`` for their task, written to ``<stem><file>`` (see :data:`TASK_PLOTS`).

    Args:
        scores: :func:`graftkit.results.evaluate.score` output.
        labels: the true labels the scores are of (unused for single-label scores).
        probabilities: the model's outputs (unused for single-label scores).
        stem: a folder (``runs/ants``, the file goes in it) or a file name's start (``runs/ants/evaluation-``).

    Returns:
        ``{caption: path}``, as :func:`graftkit.results.report.write_report` takes it.

    Example:
        >>> import tempfile
        >>> s = {"task": "regression", "class_names": ["size"]}
        >>> list(plot_scores(s, [1.0, 2.0], [[1.1], [1.8]], tempfile.mkdtemp()))
        ['Predicted and true values']
    """
    from graftkit.results.evaluate import task_kind

    kind = task_kind(scores.get("task"))
    caption, name = TASK_PLOTS[kind]
    path = Path(stem) / name if Path(stem).is_dir() else Path(f"{stem}{name}")
    if kind == "single":
        plot_confusion(scores["confusion_matrix"], scores["class_names"], path)
    elif kind == "multilabel":
        plot_pr_curves(labels, probabilities, scores["class_names"], path)
    else:
        plot_regression(labels, probabilities, path, name=scores["class_names"][0])
    return {caption: path}


LR_FIND_CAPTION = "Learning rate finder"
"""The report's caption of ``lr_find.png`` (:func:`plot_lr_find`)."""


def plot_lr_find(sweeps: dict[str, dict], path: str | Path) -> Path:
    """Training loss against learning rate (log scale) of each learning-rate sweep, one panel each, the
    suggested rate marked (:mod:`graftkit.training.lr_find`).

    Args:
        sweeps: title -> a sweep as a dict: ``lrs``, ``losses`` (smoothed), ``raw`` (each step's loss),
            ``suggestion`` and ``rule``.
        path: the PNG to write (atomically).

    Example:
        >>> import tempfile, os
        >>> sweep = {"lrs": [1e-4, 1e-3, 1e-2, 1e-1], "losses": [1.0, 0.8, 0.5, 2.0], "raw": [1.0, 0.7, 0.4, 3.0],
        ...          "suggestion": 1e-3, "rule": "valley"}
        >>> plot_lr_find({"head": sweep}, os.path.join(tempfile.mkdtemp(), "lr.png")).stat().st_size > 0
        True
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, max(1, len(sweeps)), figsize=(5 * max(1, len(sweeps)), 4), squeeze=False)
    for axis, (title, sweep) in zip(axes[0], sweeps.items()):
        lrs = sweep["lrs"]
        smooth = [np.nan if v is None else v for v in sweep["losses"]]
        raw = np.asarray([np.nan if v is None else v for v in sweep.get("raw", [])], float)
        if len(raw):
            axis.plot(lrs[:len(raw)], raw, color="grey", alpha=0.4, linewidth=0.8, label="loss of each step")
        axis.plot(lrs, smooth, "-", color="C0", label="smoothed loss")
        axis.axvline(sweep["suggestion"], color="C3", linestyle="--", linewidth=1,
                     label=f"suggested {sweep['suggestion']:.3g} ({sweep.get('rule', '')})")
        finite = [v for v in smooth if np.isfinite(v)]
        if finite:  # the blow-up at the end would squash the curve: show the smoothed loss, up to 4x its least
            low, high = min(finite), min(max(finite), min(finite) * 4)
            axis.set_ylim(low - 0.05 * (high - low) - 1e-6, high + 0.1 * (high - low) + 1e-6)
        axis.set_xscale("log")
        axis.set_xlabel("learning rate")
        axis.set_ylabel("training loss")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure, plt, path) -> Path:
    from graftkit.files import temporary_beside

    path = Path(path)
    with temporary_beside(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path
