"""Score a trained run on a 38-Cloud-layout folder with :mod:`cloudseg.metrics`.

Two protocols, by what the split holds:

* ``train`` (or ``train95``): patches with their own ground truth; counts accumulate per scene.
* ``test``: no patch ground truth; as the dataset's own evaluation does, a scene's predicted
  patches are stitched (row-major, centred crop of the padding) and compared with
  ``Entire_scene_gts``.

Scores are given per scene, as the mean over scenes (the 38-Cloud papers' protocol) and pooled.
No-data pixels (all bands 0) are left out of the counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cloudseg.bands import valid_pixels
from cloudseg.card import ModelCard
from cloudseg.data import cloud38, cloud38_read, cloud38_stitch
from cloudseg.data.cloud38 import PatchId
from cloudseg.errors import DataError
from cloudseg.evaluate import report, write_report
from cloudseg.metrics import Confusion
from cloudseg.train.predict import predict

__all__ = ["evaluate", "model_predictor", "report", "write_report"]

Predictor = Callable[[np.ndarray], np.ndarray]  # (N, 4, H, W) uint16 -> (N, H, W) probability


def evaluate(
    data_dir: Path,
    split: str,
    predictor: Predictor,
    threshold: float,
    scenes: Iterable[str] | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, Confusion]:
    """Confusion counts per scene of ``predictor`` on a split."""
    root = cloud38.find_split(data_dir, split)
    patches = cloud38.list_patches(root, split)
    wanted = set(scenes) if scenes is not None else None
    by_scene: dict[str, list[PatchId]] = {}
    for pid in patches:
        if wanted is None or pid.scene in wanted:
            by_scene.setdefault(pid.scene, []).append(pid)
    if not by_scene:
        raise DataError(f"{root}: no patches to evaluate")
    has_gt = cloud38.split_layout(split).has_gt
    bar = tqdm(total=sum(map(len, by_scene.values())), unit="patch", disable=not progress)
    out = {}
    for scene, pids in sorted(by_scene.items()):
        confusion, probs, images = Confusion(), {}, {}
        for start in range(0, len(pids), batch_size):
            chunk = pids[start : start + batch_size]
            raw = np.stack([cloud38_read.read_image(root, split, p) for p in chunk])
            prob = predictor(raw)
            for pid, image, p in zip(chunk, raw, prob, strict=True):
                if has_gt:
                    truth = cloud38_read.read_mask(root, split, pid, image.shape[-2:])
                    confusion.add(p > threshold, truth, valid_pixels(image))
                else:
                    probs[pid], images[pid] = p, valid_pixels(image)
            bar.update(len(chunk))
        if not has_gt:
            truth = cloud38_read.read_scene_gt(root, split, scene)
            pred = cloud38_stitch.stitch(probs, truth.shape) > threshold
            confusion.add(pred, truth, cloud38_stitch.stitch(images, truth.shape))
        out[scene] = confusion
    bar.close()
    return out


def model_predictor(model: Any, card: ModelCard, batch_size: int = 4) -> Predictor:
    """A :data:`Predictor` running a PyTorch model as its card says."""
    return lambda raw: predict(model, card, raw, batch_size=batch_size)
