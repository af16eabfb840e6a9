"""Files both pipelines write into a run folder, written the same way.

``log.csv`` has one row per epoch over both stages with :data:`LOG_COLUMNS`; ``best.pth`` is a
``state_dict`` of CPU tensors; both are replaced atomically, so Ctrl-C or a crash mid-write never
leaves a half-written file, only the previous complete one.
"""

from __future__ import annotations

import csv
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cloudseg.atomic import atomic_path
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.train.data import PatchDataset
from cloudseg.train.plots import plot_batch

LOG_COLUMNS = (
    "stage", "epoch", "size", "lr", "train_loss", "valid_loss",
    "train_accuracy", "valid_accuracy", "valid_dice", "valid_jaccard",
)  # fmt: skip
HISTORY_PLOT = "history.png"
BATCH_PLOT = "valid_batch.png"
BATCH_PATCHES = 4


def write_log(rows: list[dict[str, Any]], path: Path) -> None:
    """``log.csv`` with :data:`LOG_COLUMNS`, rewritten whole after every epoch."""
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def save_weights(model: nn.Module, path: Path) -> None:
    """The model's ``state_dict`` as CPU tensors, so the file loads on any machine."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A ``state_dict`` saved by :func:`save_weights`; tensors only, nothing unpickled.

    Raises:
        MissingFileError: no file there.
        ModelError: not a file of tensors, in one line. (torch's own message suggests loading
            with ``weights_only=False``, which runs any code the file holds: never shown.)
    """
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no checkpoint there") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        if "weights_only" in first or "Weights only" in first:
            first = "it holds more than tensors"
        raise ModelError(
            f"{path}: not a PyTorch checkpoint of tensors (a state_dict saved by cloudseg-train): "
            f"{first}"
        ) from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    return state


def plot_valid_batch(
    model: nn.Module,
    dataset: PatchDataset,
    path: Path,
    cloud_probability: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """Up to :data:`BATCH_PATCHES` validation patches, spread over the set, with predictions.

    Args:
        model: the model to show (put in eval mode here).
        dataset: un-augmented validation patches at the size to show.
        path: PNG to write.
        cloud_probability: ``(N, C, H, W)`` logits -> ``(N, H, W)`` cloud probability.
    """
    n = min(BATCH_PATCHES, len(dataset))
    picks = np.unique(np.linspace(0, len(dataset) - 1, n).round().astype(int))
    xs, ys = zip(*(dataset[int(i)] for i in picks), strict=True)
    x, y = torch.stack(xs), torch.stack(ys)
    model.eval()
    with torch.no_grad():
        prob = cloud_probability(model(x.to(next(model.parameters()).device))).float().cpu()
    t = dataset.transform
    # Undo the standardisation so the picture shows scaled values, with no-data at 0 again.
    images = x.numpy() * np.asarray(t.std)[:, None, None] + np.asarray(t.mean)[:, None, None]
    images = np.where(np.abs(images) < 1e-6, 0.0, images)
    truth = y[:, 0] if y.ndim == 4 else y  # (N, 1, H, W) binary or (N, H, W) class ids
    plot_batch(images, truth.numpy(), prob.numpy(), path)
