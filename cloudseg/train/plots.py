"""Training figures: loss and accuracy per epoch, and one validation batch with its predictions.

matplotlib's object API (``Figure``, no pyplot) so nothing depends on a display or global state.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cloudseg.quicklook import false_colour_rgb


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of a training ``log.csv`` with numeric cells as floats."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: _num(v) for k, v in row.items()} for row in rows]


def _num(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def plot_history(rows: Sequence[dict[str, float]], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, training against validation, as one PNG.

    ``rows`` need ``epoch``, ``train_loss``, ``valid_loss`` and, where measured,
    ``train_accuracy``, ``valid_accuracy``.
    """
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for side, style in (("train", "o-"), ("valid", "s--")):
            key = f"{side}_{metric}"
            values = [r.get(key, float("nan")) for r in rows]
            if np.isfinite(values).any():
                ax.plot(epochs, values, style, label=side)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)


def plot_batch(
    images: np.ndarray, truth: np.ndarray, prob: np.ndarray, path: Path, threshold: float = 0.5
) -> None:
    """One row per patch: false-colour input, ground truth, predicted probability and mask.

    Args:
        images: ``(N, 4, H, W)`` raw or scaled values (only relative brightness matters).
        truth: ``(N, H, W)`` 0/1.
        prob: ``(N, H, W)`` cloud probability in ``[0, 1]``.
        path: PNG to write.
    """
    n = len(images)
    fig = Figure(figsize=(12, 3 * n), dpi=80)
    FigureCanvasAgg(fig)
    axes = np.atleast_2d(fig.subplots(n, 4))
    titles = ("input (NIR, red, green)", "ground truth", "cloud probability", "predicted mask")
    for i in range(n):
        panels = (false_colour_rgb(images[i]), truth[i], prob[i], prob[i] > threshold)
        for j, (ax, panel) in enumerate(zip(axes[i], panels, strict=True)):
            ax.imshow(
                panel, cmap=None if j == 0 else "gray", vmin=0, vmax=1, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j])
    fig.tight_layout()
    fig.savefig(path)
