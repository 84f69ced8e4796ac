"""PNG figures for the evaluation report. matplotlib is imported inside each function, so the
rest of the evaluation path works where it is not installed (the ONNX runtime)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _new_figure(width: float, height: float):
    # A bare Figure, not pyplot: no global figure registry, no GUI backend, safe in threads.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_confusion_matrix(counts: Sequence[Sequence[int]], class_names: Sequence[str], path: Path | str) -> Path:
    """Row-normalised heat map (rows = true class) annotated with the raw counts."""
    matrix = np.asarray(counts, dtype=np.float64)
    row_totals = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, row_totals, out=np.zeros_like(matrix), where=row_totals > 0)
    size = 2.5 + 0.6 * len(class_names)
    figure = _new_figure(size + 1.0, size)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            colour = "white" if fractions[row, column] > 0.5 else "black"
            axes.text(column, row, f"{int(matrix[row, column])}", ha="center", va="center", color=colour, fontsize=8)
    axes.set_title("Confusion matrix")
    figure.savefig(path)
    return Path(path)


def plot_reliability(panels: Mapping[str, Sequence[Mapping[str, float | None]]], path: Path | str) -> Path:
    """One reliability diagram per panel: title -> bins as in the report (lower, upper, count,
    mean_confidence, accuracy; None for empty bins). Bars show the observed frequency per bin,
    the diagonal is perfect calibration."""
    figure = _new_figure(4.5 * len(panels), 4.5)
    for index, (title, bins) in enumerate(panels.items(), start=1):
        axes = figure.add_subplot(1, len(panels), index)
        occupied = [b for b in bins if b["count"]]
        lowers = [b["lower"] for b in occupied]
        widths = [b["upper"] - b["lower"] for b in occupied]
        axes.bar(lowers, [b["accuracy"] for b in occupied], width=widths, align="edge",
                 edgecolor="black", linewidth=0.5, label="observed")
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
        axes.scatter([b["mean_confidence"] for b in occupied], [b["accuracy"] for b in occupied],
                     color="black", s=10, zorder=3, label="bin: mean predicted vs observed")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("predicted probability")
        axes.set_ylabel("observed frequency")
        axes.set_title(title)
        axes.legend(loc="upper left", fontsize=8)
    figure.savefig(path)
    return Path(path)
