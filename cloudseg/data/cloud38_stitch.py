"""Put a 38-Cloud scene's patches back together, cropped as the dataset's own evaluation does.

The evaluation places patches at ``(row - 1) * P``, ``(col - 1) * P`` of a zero-padded grid and
crops the centre; :func:`stitch` does the same for arrays in memory, :func:`stitch_scene` for a
scene on disk (one patch in memory at a time).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np

from cloudseg.data.cloud38 import (
    SPLITS,
    PatchId,
    find_split,
    list_patches,
    pad_offsets,
    scene_gt_path,
    scenes_of,
)
from cloudseg.data.cloud38_read import raster_shape, read_image, read_mask
from cloudseg.errors import DataError


def infer_grid(patches: Iterable[PatchId]) -> tuple[int, int]:
    """Rows and columns of a scene's patch grid, from the names of its patches.

    Rows are the largest row present; columns come from ``n = (row - 1) * ncols + col`` when a
    patch below the first row is present, else the largest column.
    """
    patches = list(patches)
    if not patches:
        raise DataError("no patches: cannot infer a patch grid")
    known = {p.ncols for p in patches if p.ncols is not None}
    if len(known) > 1:
        raise DataError(f"patch names of scene {patches[0].scene} disagree on ncols: {known}")
    ncols = known.pop() if known else max(p.col for p in patches)
    return max(p.row for p in patches), ncols


class _Canvas:
    """A scene-sized array that patches are placed into, cropped as the dataset's evaluation.

    The evaluation pads nothing itself: it places patches at ``(row - 1) * P``, ``(col - 1) * P``
    and crops the centre ``floor((padded - gt) / 2)``. Placing each patch straight into the
    cropped array gives the same result without holding the padded scene in memory.
    """

    def __init__(self, gt_shape: tuple[int, int], grid: tuple[int, int], sample: np.ndarray):
        self.size = sample.shape[-1]
        height, width = gt_shape
        self.grid = grid
        self.top, self.left = pad_offsets(
            height, width, grid[0] * self.size, grid[1] * self.size, self.size
        )
        if self.top < 0 or self.left < 0:
            raise DataError(
                f"a {grid[0]} x {grid[1]} grid of {self.size} px patches is smaller than the "
                f"{height} x {width} ground truth"
            )
        self.array = np.zeros((*sample.shape[:-2], height, width), dtype=sample.dtype)

    def place(self, pid: PatchId, patch: np.ndarray) -> None:
        if pid.row > self.grid[0] or pid.col > self.grid[1]:
            raise DataError(f"patch {pid.name} lies outside the {self.grid} grid")
        size = self.size
        if patch.shape[-2:] != (size, size) or patch.shape[:-2] != self.array.shape[:-2]:
            raise DataError(f"patch {pid.name} has shape {patch.shape}, unlike the others")
        height, width = self.array.shape[-2:]
        y0, x0 = (pid.row - 1) * size - self.top, (pid.col - 1) * size - self.left
        ys, ye, xs, xe = max(y0, 0), min(y0 + size, height), max(x0, 0), min(x0 + size, width)
        if ys < ye and xs < xe:
            self.array[..., ys:ye, xs:xe] = patch[..., ys - y0 : ye - y0, xs - x0 : xe - x0]


def stitch(
    patches: Mapping[PatchId, np.ndarray],
    gt_shape: tuple[int, int],
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Put a scene's patches together and crop the padding, as the dataset's evaluation does.

    Args:
        patches: ``(..., P, P)`` arrays of one scene, any dtype, by patch id; missing patches
            stay 0.
        gt_shape: ``(H, W)`` of the scene's ground truth.
        grid: ``(rows, cols)`` of the padded grid; inferred from the names by default.

    Returns:
        ``(..., H, W)`` array of the patches' dtype.
    """
    if not patches:
        raise DataError("no patches to stitch")
    if len(scenes_of(patches)) > 1:
        raise DataError(f"cannot stitch patches of several scenes: {scenes_of(patches)}")
    canvas = _Canvas(gt_shape, grid or infer_grid(patches), next(iter(patches.values())))
    for pid, patch in patches.items():
        canvas.place(pid, patch)
    return canvas.array


def stitch_scene(
    root: str | os.PathLike[str],
    split: str,
    scene: str,
    kind: Literal["mask", "image"] = "mask",
    gt_shape: tuple[int, int] | None = None,
    grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """Stitch every patch of ``scene`` listed in the split's CSV, one patch in memory at a time.

    Args:
        kind: ``"mask"`` for the patches' ground truth, ``"image"`` for their bands.
        gt_shape: ``(H, W)``; by default the size of the scene's ``Entire_scene_gts`` file.

    Returns:
        ``(H, W)`` bool for ``"mask"``; ``(4, H, W)`` uint16 for ``"image"``.
    """
    folder = find_split(root, split)
    if kind == "mask" and not SPLITS[split].has_gt:
        raise DataError(f"the {split} split has no patch ground truth to stitch")
    patches = [p for p in list_patches(folder, split, check=False) if p.scene == scene]
    if not patches:
        raise DataError(f"{folder / SPLITS[split].patches_csv} lists no patch of scene {scene}")
    if gt_shape is None:
        gt_shape = raster_shape(scene_gt_path(folder, scene))

    def read(pid: PatchId) -> np.ndarray:
        return read_mask(folder, split, pid) if kind == "mask" else read_image(folder, split, pid)

    first = read(patches[0])
    canvas = _Canvas(gt_shape, grid or infer_grid(patches), first)
    canvas.place(patches[0], first)
    for pid in patches[1:]:
        canvas.place(pid, read(pid))
    return canvas.array
