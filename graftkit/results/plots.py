"""Pictures of a run: training curves and the confusion matrix, as PNG files."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(stages: list[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch, train and validation, both stages on one time axis.

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
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    start = 0
    for stage in stages:
        history = stage["history"]
        epochs = range(start + 1, start + 1 + len(history.get("loss", [])))
        for axis, metric in zip(axes, ("loss", "accuracy")):
            for prefix, style in (("", "-"), ("val_", "--")):
                if prefix + metric in history:
                    axis.plot(list(epochs), history[prefix + metric], style, marker="o", markersize=3,
                              label=f"{stage['name']} {'val' if prefix else 'train'}")
        if start:
            for axis in axes:
                axis.axvline(start + 0.5, color="grey", linewidth=0.8)
        start += len(history.get("loss", []))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, plt, path)


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
    import numpy as np

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
    import numpy as np

    off = values.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    order = np.lexsort((cols, rows, -off[rows, cols]))
    candidates = [int(c) for i in order for c in (rows[i], cols[i])] + list(range(len(off)))
    chosen = list(dict.fromkeys(candidates))[:limit]
    return np.array(sorted(chosen))


def _save(figure, plt, path) -> Path:
    from graftkit.files import temporary_beside

    path = Path(path)
    with temporary_beside(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path
