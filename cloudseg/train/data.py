"""Training data shared by both pipelines: patch lists split by scene, band stats, a torch Dataset.

Model input follows DESIGN.md's pixel contract: ``dn / 65535``, then per-band standardisation with
the mean and std of valid pixels of the training set (``band_stats.json`` from ``cloudseg-eda``, or
measured here on the training patches). The same numbers go into the model card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from cloudseg.bands import BANDS
from cloudseg.card import InputTransform
from cloudseg.data import cloud38, cloud38_read, cloud38_split
from cloudseg.data.cloud38 import PatchId
from cloudseg.errors import DataError
from cloudseg.train.augment import AugmentSpec, augment

DN_SCALE = 1.0 / 65535.0
Target = Literal["binary", "classes"]


@dataclass(frozen=True)
class TrainData:
    """Patches chosen for a run (training split of a 38-Cloud-layout folder), split by scene,
    and the normalisation they get."""

    root: Path
    train: list[PatchId]
    valid: list[PatchId]
    transform: InputTransform
    stats_source: str  # where the mean/std came from, for the card

    @property
    def train_scenes(self) -> list[str]:
        return cloud38.scenes_of(self.train)

    @property
    def valid_scenes(self) -> list[str]:
        return cloud38.scenes_of(self.valid)


def band_stats_transform(stats_path: Path) -> InputTransform:
    """Read ``band_stats.json`` (written by ``cloudseg-eda``) as an input transform."""
    try:
        stats = json.loads(Path(stats_path).read_text())
        if [b.lower() for b in stats["bands"]] != list(BANDS):
            raise DataError(f"{stats_path}: bands {stats['bands']} are not {list(BANDS)}")
        return InputTransform(float(stats["scale"]), 0.0, tuple(stats["mean"]), tuple(stats["std"]))
    except (OSError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{stats_path}: not a band_stats.json ({exc})") from None


def measure_transform(
    root: Path, patches: list[PatchId], split: str = "train", max_patches: int = 200
) -> InputTransform:
    """Per-band mean and std of valid pixels of ``dn / 65535`` over (up to) ``max_patches``."""
    total = np.zeros(len(BANDS))
    total_sq = np.zeros(len(BANDS))
    count = 0
    step = max(1, len(patches) // max_patches)
    for pid in patches[::step]:
        image = cloud38_read.read_image(root, split, pid)
        valid = np.any(image != 0, axis=0)
        if not valid.any():
            continue
        x = image[:, valid].astype(np.float64) * DN_SCALE
        total += x.sum(axis=1)
        total_sq += np.square(x).sum(axis=1)
        count += x.shape[1]
    if count == 0:
        raise DataError("every training patch is empty (all bands 0): nothing to measure")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return InputTransform(DN_SCALE, 0.0, tuple(mean.tolist()), tuple(std.tolist()))


class PatchDataset(Dataset):
    """38-Cloud patches as normalised tensors, optionally augmented and resized.

    Items are ``(x, y)``: ``x`` ``(4, size, size)`` float32; ``y`` ``(1, size, size)`` float32 0/1
    for ``target="binary"`` (BCE on one logit) or ``(size, size)`` int64 class ids for
    ``target="classes"`` (cross-entropy over clear/cloud).
    """

    def __init__(
        self,
        root: Path,
        patches: list[PatchId],
        transform: InputTransform,
        size: int,
        target: Target,
        augment_spec: AugmentSpec | None = None,
        seed: int = 0,
        cache: bool = False,
        split: str = "train",
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.patches = patches
        self.transform = transform
        self.size = size
        self.target = target
        self.augment_spec = augment_spec
        self.seed = seed
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.patches)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pid = self.patches[index]
        image, mask = cloud38_read.read_patch(self.root, self.split, pid)
        if mask is None:
            raise DataError(f"patch {pid.name} has no ground truth ({self.split} split)")
        if self._cache is not None:
            self._cache[index] = (image, mask)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self._load(index)
        t = self.transform
        scaled = image.astype(np.float32) * np.float32(t.scale) + np.float32(t.offset)
        if self.augment_spec is not None:
            # Seeded by (seed, epoch, index): the same run repeats exactly, whatever the workers.
            rng = np.random.default_rng((self.seed, self.epoch, index))
            scaled, mask = augment(scaled, mask, rng, self.augment_spec)
        x = t.standardise(scaled)
        x_t = torch.from_numpy(np.ascontiguousarray(x))
        y_t = torch.from_numpy(np.ascontiguousarray(mask)).float()[None]
        if self.size != x_t.shape[-1]:
            x_t = F.interpolate(x_t[None], size=(self.size, self.size), mode="area")[0]
            y_t = F.interpolate(y_t[None], size=(self.size, self.size), mode="nearest")[0]
        if self.target == "classes":
            return x_t, y_t[0].long()
        return x_t, y_t


def prepare_data(
    data_dir: Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    limit: int | None = None,
    nonempty: bool = False,
    stats: Path | None = None,
) -> TrainData:
    """List the training split, optionally subsample, split by scene, settle normalisation.

    Args:
        data_dir: 38-Cloud-layout root or its ``38-Cloud_training`` folder.
        val_fraction: share of scenes held out for validation.
        seed: drives the subsample and the scene split.
        limit: keep this many patches (a seeded sample across all scenes), for smoke runs.
        nonempty: use only the patches in the dataset's ``_nonempty`` list.
        stats: ``band_stats.json`` from ``cloudseg-eda``; measured on the training patches if None.
    """
    root = cloud38.find_split(data_dir, "train")
    patches = cloud38.list_patches(root, "train", nonempty=nonempty)
    if limit is not None and limit < len(patches):
        keep = np.random.default_rng(seed).choice(len(patches), size=limit, replace=False)
        patches = [patches[i] for i in sorted(keep)]
    split = cloud38_split.split_by_scene(patches, val_fraction, seed)
    if not split.train:
        raise DataError(f"{root}: no training patches left after the split")
    if val_fraction > 0 and not split.valid:
        raise DataError(
            f"{root}: validation needs patches of at least 2 scenes; found "
            f"{len(cloud38.scenes_of(patches))} scene(s)"
        )
    if stats is not None:
        transform, source = band_stats_transform(stats), str(stats)
    else:
        transform, source = measure_transform(root, split.train), "measured on training patches"
    return TrainData(root, split.train, split.valid, transform, source)
