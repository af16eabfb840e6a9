"""Reading 38-Cloud patches: the four bands, the patch mask, a scene's whole ground truth.

Every file is checked as it is read (one band, the dtype and size the layout says) and a bad
one is a :class:`~cloudseg.errors.DataError` naming it. Names and paths come from
:mod:`cloudseg.data.cloud38`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from cloudseg.bands import BANDS
from cloudseg.data.cloud38 import (
    GT_BAND,
    PATCH_SIZE,
    SPLITS,
    PatchId,
    band_path,
    find_split,
    parse_patch_name,
    scene_gt_path,
)
from cloudseg.data.gdal_errors import describe
from cloudseg.errors import DataError, MissingFileError


def _describe(count: int, dtype: str, shape: tuple[int, int] | None) -> str:
    size = "any size" if shape is None else f"{shape[0]} x {shape[1]}"
    return f"{size} {dtype}, {count} band{'s' if count != 1 else ''}"


def _rasterio_reason(path: Path, exc: RasterioIOError) -> str:
    # GDAL's message repeats the path the caller already names; keep one line, without it.
    why = describe(exc)
    return why.replace(f"'{path}'", "").replace(str(path), "").strip(" :.") or type(exc).__name__


def _read_single_band(path: Path, dtype: str, shape: tuple[int, int] | None) -> np.ndarray:
    if not path.is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        # 38-Cloud patches carry no georeferencing; the warning would repeat once per file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                if src.count != 1 or src.dtypes[0] != dtype or shape not in (None, src.shape):
                    found = _describe(src.count, src.dtypes[0], src.shape)
                    raise DataError(f"{path}: {found}, expected {_describe(1, dtype, shape)}")
                return src.read(1)
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable TIFF ({_rasterio_reason(path, exc)})") from None


def read_image(root: str | os.PathLike[str], split: str, patch: str | PatchId) -> np.ndarray:
    """The four bands of a patch.

    Returns:
        ``(4, P, P)`` uint16 digital numbers in :data:`cloudseg.bands.BANDS` order; P is 384 in
        38-Cloud and 95-Cloud (synthetic datasets may use other sizes; bands must agree).
    """
    folder = find_split(root, split)
    name = patch.name if isinstance(patch, PatchId) else parse_patch_name(patch).name
    first = _read_single_band(band_path(folder, split, BANDS[0], name), "uint16", None)
    image = np.empty((len(BANDS), *first.shape), dtype=np.uint16)
    image[0] = first
    for i, band in enumerate(BANDS[1:], start=1):
        image[i] = _read_single_band(band_path(folder, split, band, name), "uint16", first.shape)
    return image


def read_mask(
    root: str | os.PathLike[str],
    split: str,
    patch: str | PatchId,
    shape: tuple[int, int] | None = (PATCH_SIZE, PATCH_SIZE),
) -> np.ndarray | None:
    """A patch's cloud mask, ``(P, P)`` bool (gt == 255), or None if the split has no gt.

    ``shape`` is the size the gt must have (the bands' size); None accepts any.
    """
    folder = find_split(root, split)
    if not SPLITS[split].has_gt:
        return None
    name = patch.name if isinstance(patch, PatchId) else parse_patch_name(patch).name
    gt = _read_single_band(band_path(folder, split, GT_BAND, name), "uint8", shape)
    return gt == 255


def read_patch(
    root: str | os.PathLike[str], split: str, patch: str | PatchId
) -> tuple[np.ndarray, np.ndarray | None]:
    """A patch's bands and cloud mask.

    Returns:
        ``image`` ``(4, P, P)`` uint16 in band order red, green, blue, nir; ``mask`` ``(P, P)``
        bool (cloud where gt == 255), or None for a split without patch gt.

    Raises:
        DataError: a file is missing, not a TIFF, or of the wrong size or dtype (names the file).
    """
    image = read_image(root, split, patch)
    return image, read_mask(root, split, patch, image.shape[-2:])


def is_empty(image: np.ndarray) -> bool:
    """True if ``image`` ``(B, H, W)`` is no-data everywhere (every band 0)."""
    return not np.any(image)


def raster_shape(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise MissingFileError(f"{path} is missing (pass the scene size to do without it)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                return src.shape
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable TIFF ({_rasterio_reason(path, exc)})") from None


def read_scene_gt(root: str | os.PathLike[str], split: str, scene: str) -> np.ndarray:
    """A scene's whole ground truth, ``Entire_scene_gts/edited_corrected_gts_<scene>.TIF``.

    Returns:
        ``(H, W)`` bool, True for cloud; the file may hold 0/255 or 0/1.
    """
    path = scene_gt_path(find_split(root, split), scene)
    gt = _read_single_band(path, "uint8", None)
    counts = np.bincount(gt.ravel(), minlength=256)
    present = set(np.flatnonzero(counts).tolist())
    if present <= {0, 1}:
        return gt == 1
    if present <= {0, 255}:
        return gt == 255
    raise DataError(f"{path}: values {sorted(present)[:6]} are not 0/255 (or 0/1)")
