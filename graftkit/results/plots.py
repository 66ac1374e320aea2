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


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: str | Path) -> Path:
    """The confusion matrix as a heat map with counts (rows: true class, columns: predicted)."""
    import numpy as np

    plt = _pyplot()
    values = np.asarray(matrix)
    size = max(4.0, 0.6 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(values, cmap="Blues")
    ticks = range(len(class_names))
    axis.set_xticks(list(ticks), class_names, rotation=45, ha="right")
    axis.set_yticks(list(ticks), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    limit = values.max() / 2 if values.size else 0
    for (row, col), count in np.ndenumerate(values):
        axis.text(col, row, str(count), ha="center", va="center",
                  color="white" if count > limit else "black")
    figure.tight_layout()
    return _save(figure, plt, path)


def _save(figure, plt, path) -> Path:
    from graftkit.files import temporary_beside

    path = Path(path)
    with temporary_beside(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return path
