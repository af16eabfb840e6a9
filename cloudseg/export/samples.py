"""Patches for the export checks: real ones from a 38-Cloud-layout folder, or synthetic ones.

Real patches are split by scene (:func:`cloudseg.data.cloud38_split.split_by_scene`): int8
calibration reads patches of some scenes, and every variant's agreement with fp32 is measured on
patches of the other scenes, so no variant is judged on what it was calibrated on. Neighbouring
patches of a scene are strongly correlated; a folder of one scene is split by patch instead.
Patches with no valid pixel (every band 0) are skipped. Without a folder, synthetic
Landsat-8-like scenes (:mod:`cloudseg.data.synthetic`) stand in for fp16's held-out patches.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudseg.bands import BANDS
from cloudseg.data import cloud38, cloud38_read, cloud38_split
from cloudseg.data.cloud38 import PatchId
from cloudseg.data.synthetic import make_scene, random_spec
from cloudseg.errors import DataError, MissingFileError

#: Share of the folder's scenes kept out of calibration, for the agreement check.
HELD_OUT_SHARE = 0.25


@dataclass(frozen=True)
class PatchSet:
    """Raw patches and where they came from."""

    raw: np.ndarray  # (N, 4, S, S) uint16 Level-1 DN, band order red, green, blue, nir
    names: tuple[str, ...]
    source: str  # e.g. "held-out patches of /data/38-Cloud_training"

    def __len__(self) -> int:
        return len(self.raw)


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """``(4, H, W)`` -> ``(4, size, size)``: centre crop, and zero (no-data) padding if smaller."""
    out = np.zeros((image.shape[0], size, size), dtype=image.dtype)
    h, w = min(size, image.shape[1]), min(size, image.shape[2])
    src = image[:, (image.shape[1] - h) // 2 :, (image.shape[2] - w) // 2 :][:, :h, :w]
    top, left = (size - h) // 2, (size - w) // 2
    out[:, top : top + h, left : left + w] = src
    return out


def dataset_patches(
    data_dir: Path, size: int, calib_count: int, held_out_count: int, seed: int = 0
) -> tuple[PatchSet, PatchSet]:
    """Calibration and held-out patches of a 38-Cloud-layout folder, from disjoint scenes.

    Args:
        data_dir: dataset root or split folder; the training split is used, else the test split.
        size: side the patches are cropped or padded to (a multiple of 32).
        calib_count, held_out_count: at most this many non-empty patches of each kind.
        seed: drives the scene split and the patch order.

    Raises:
        MissingFileError: ``data_dir`` holds neither split.
        DataError: no non-empty held-out patch.
    """
    split, folder = _find_split(Path(data_dir))
    patches = cloud38.list_patches(folder, split)
    parts = cloud38_split.split_by_scene(patches, HELD_OUT_SHARE, seed)
    calib, held = parts.train, parts.valid
    if not held:  # one scene: alternate patches instead
        calib, held = patches[::2], patches[1::2]
    rng = np.random.default_rng(seed)
    calib = [calib[i] for i in rng.permutation(len(calib))]
    held = [held[i] for i in rng.permutation(len(held))]
    out = (
        _read(folder, split, calib, calib_count, size, f"calibration patches of {folder}"),
        _read(folder, split, held, held_out_count, size, f"held-out patches of {folder}"),
    )
    if not len(out[1]):
        raise DataError(f"{folder}: no held-out patch with valid pixels to check variants on")
    return out


def _find_split(data_dir: Path) -> tuple[str, Path]:
    for split in ("train", "test"):
        try:
            return split, cloud38.find_split(data_dir, split)
        except MissingFileError:
            continue
    raise MissingFileError(f"{data_dir}: not a 38-Cloud-layout folder (no training or test split)")


def _read(
    folder: Path, split: str, patches: Iterable[PatchId], count: int, size: int, source: str
) -> PatchSet:
    images, names = [], []
    for pid in patches:
        if len(images) >= count:
            break
        image = cloud38_read.read_image(folder, split, pid)
        if not cloud38_read.is_empty(image):
            images.append(fit(image, size))
            names.append(pid.name)
    raw = np.stack(images) if images else np.zeros((0, len(BANDS), size, size), np.uint16)
    return PatchSet(raw, tuple(names), source)


def synthetic_patches(count: int, size: int, seed: int = 0) -> PatchSet:
    """``count`` non-empty patches cut 2 x 2 from synthetic scenes of side ``2 * size``."""
    images, names = [], []
    scene_seed = seed
    while len(images) < count:
        scene = make_scene(random_spec(scene_seed, height=2 * size))
        for r in range(2):
            for c in range(2):
                patch = scene.bands[:, r * size : (r + 1) * size, c * size : (c + 1) * size]
                if len(images) < count and not cloud38_read.is_empty(patch):
                    images.append(patch)
                    names.append(f"synthetic_{scene_seed}_{r}_{c}")
        scene_seed += 1
    return PatchSet(np.stack(images), tuple(names), "synthetic patches")
