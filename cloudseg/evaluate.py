"""Score mask GeoTIFFs against ground-truth rasters, block by block, without torch.

Masks are ``<id>_cloudmask.tif`` as ``cloudseg-run`` writes them (uint8: 0 clear, 1 cloud, 255 no
data). Two kinds of truth are understood, told apart by file name:

* the synthetic truth ``<id>_cloudmask_truth.TIF`` (0 clear, 1 cloud, 255 no data);
* 38-Cloud's ``Entire_scene_gts/edited_corrected_gts_<id>.TIF`` (0 clear, 1 or 255 cloud; no no-data
  value and no georeferencing, so it is compared with the mask by shape only).

Both rasters are read in bands of rows, so memory grows with scene width, not scene area. Pixels
that are no data (255) in the mask or in a synthetic truth are not counted. :func:`report` and
:func:`write_report` also serve the patch evaluation of trained runs
(:mod:`cloudseg.train.evaluate_patches`).
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from cloudseg.atomic import atomic_path, check_writable
from cloudseg.data.gdal_errors import describe
from cloudseg.engine.summary import CLEAR, CLOUD, NODATA, SHADOW
from cloudseg.errors import DataError, MissingFileError
from cloudseg.metrics import SCORES, Confusion, per_scene_mean, pooled

#: Name endings and prefixes of the files scored here (matched case-insensitively).
MASK_SUFFIX = "_cloudmask.tif"
TRUTH_SUFFIX = "_cloudmask_truth.tif"
SCENE_GT_PREFIX = "edited_corrected_gts_"

#: Values a mask may hold (shadow counts as not cloud when scored).
MASK_VALUES = {CLEAR, CLOUD, SHADOW, NODATA}

#: Rows read per block; 512 rows of a Landsat scene (~7700 px wide) is ~4 MB per raster.
CHUNK_ROWS = 512


def scene_id_of(mask: Path) -> str:
    """Scene id of a mask file: its name without ``_cloudmask.tif`` (any letter case)."""
    name = Path(mask).name
    if name.lower().endswith(MASK_SUFFIX):
        return name[: -len(MASK_SUFFIX)]
    return Path(mask).stem


def _truth_names(scene_id: str) -> set[str]:
    return {f"{scene_id}{TRUTH_SUFFIX}".lower(), f"{SCENE_GT_PREFIX}{scene_id}.tif".lower()}


def find_truth(truth: Path, scene_id: str) -> Path:
    """The truth raster of ``scene_id``: ``truth`` itself if a file, else searched below it.

    Raises:
        MissingFileError: nothing found (naming the names looked for).
        DataError: several candidates.
    """
    truth = Path(truth)
    if truth.is_file():
        return truth
    if not truth.is_dir():
        raise MissingFileError(f"{truth}: no such truth file or folder")
    wanted = _truth_names(scene_id)
    found = sorted(p for p in truth.rglob("*") if p.name.lower() in wanted and p.is_file())
    if not found:
        names = f"{scene_id}{TRUTH_SUFFIX[:-4]}.TIF or {SCENE_GT_PREFIX}{scene_id}.TIF"
        raise MissingFileError(f"{truth}: no truth for scene {scene_id} (looked for {names})")
    if len(found) > 1:
        raise DataError(
            f"{truth}: several truths for scene {scene_id}: {', '.join(map(str, found))}"
        )
    return found[0]


def is_scene_gt(path: Path) -> bool:
    """True for a 38-Cloud ``edited_corrected_gts_*`` file (cloud 1 or 255, no no-data)."""
    return Path(path).name.lower().startswith(SCENE_GT_PREFIX)


def _open(path: Path) -> rasterio.io.DatasetReader:
    if not Path(path).is_file():
        raise MissingFileError(f"{path} is missing")
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"{path}: not a readable raster ({describe(exc)})") from None
    if ds.count != 1:
        ds.close()
        raise DataError(f"{path}: {ds.count} bands, expected a one-band mask")
    return ds


def read_window(ds: rasterio.io.DatasetReader, path: Path, window: Window) -> np.ndarray:
    try:
        return ds.read(1, window=window)
    except RasterioIOError as exc:
        raise DataError(f"{path}: cannot read pixels: {describe(exc)}") from None


def _row_blocks(height: int, width: int, chunk_rows: int) -> Iterator[Window]:
    for row in range(0, height, chunk_rows):
        yield Window(0, row, width, min(chunk_rows, height - row))


def check_values(path: Path, block: np.ndarray, allowed: set[int], seen: set[int]) -> None:
    """Collect the values of ``block`` into ``seen``; DataError if one is not ``allowed``."""
    values = set(np.flatnonzero(np.bincount(block.ravel(), minlength=256)).tolist())
    seen |= values
    bad = sorted(values - allowed)
    if bad:
        expected = "/".join(map(str, sorted(allowed)))
        raise DataError(f"{path}: values {bad[:6]} are not {expected}")


def score_mask(
    mask: Path,
    truth: Path,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> Confusion:
    """Confusion counts of one mask against its truth, read ``chunk_rows`` rows at a time.

    Args:
        mask: uint8 ``(H, W)`` raster, 0 clear, 1 cloud, 2 cloud shadow (not cloud), 255 no
            data.
        truth: ``(H, W)`` synthetic truth (0/1/255) or 38-Cloud scene gt (0/1 or 0/255).
        chunk_rows: rows per block read from each file.
        progress: called with the number of rows done after each block.

    Raises:
        DataError: shapes differ (naming both files), or a file holds unexpected values.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    gt_kind = is_scene_gt(truth)
    with warnings.catch_warnings():
        # 38-Cloud gts carry no georeferencing by design; the warning would say nothing new.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with _open(mask) as mds, _open(truth) as tds:
            if mds.shape != tds.shape:
                raise DataError(
                    f"mask {mask} is {mds.height} x {mds.width} pixels but truth {truth} is "
                    f"{tds.height} x {tds.width}"
                )
            confusion = Confusion()
            truth_seen: set[int] = set()
            for window in _row_blocks(mds.height, mds.width, chunk_rows):
                m, t = read_window(mds, mask, window), read_window(tds, truth, window)
                check_values(mask, m, MASK_VALUES, set())
                if gt_kind:
                    # Cloud is 1 or 255 depending on the copy; both are "non-zero", and a file
                    # mixing the two is refused once all its values are known (below).
                    check_values(truth, t, {0, 1, 255}, truth_seen)
                    valid = m != NODATA
                else:
                    check_values(truth, t, {0, 1, NODATA}, truth_seen)
                    valid = (m != NODATA) & (t != NODATA)
                confusion.add(m == 1, t != 0 if gt_kind else t == 1, valid)
                if progress is not None:
                    progress(int(window.height))
    if gt_kind and {1, 255} <= truth_seen:
        raise DataError(f"{truth}: holds both 1 and 255; a scene gt is 0/1 or 0/255")
    return confusion


def evaluate_masks(
    masks: Iterable[Path],
    truth: Path,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Confusion]:
    """Confusion counts per scene id of each mask against its truth (see :func:`find_truth`).

    Raises:
        DataError: two masks of one scene, or one truth file for several masks.
    """
    masks = [Path(m) for m in masks]
    if not masks:
        raise DataError("no masks to score")
    if Path(truth).is_file() and len(masks) > 1:
        raise DataError(
            f"truth {truth} is one file but {len(masks)} masks were given; pass a folder"
        )
    pairs: dict[str, tuple[Path, Path]] = {}
    for mask in masks:
        sid = scene_id_of(mask)
        if sid in pairs:
            raise DataError(f"masks {pairs[sid][0]} and {mask} are both of scene {sid}")
        pairs[sid] = (mask, find_truth(truth, sid))  # find all truths before reading pixels
    return {sid: score_mask(m, t, chunk_rows, progress) for sid, (m, t) in pairs.items()}


def mask_rows(masks: Iterable[Path]) -> int:
    """Total rows of ``masks`` (for a progress bar); 0 for files that cannot be opened."""
    total = 0
    for mask in masks:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(mask) as ds:
                    total += ds.height
        except (RasterioIOError, OSError):
            pass  # the scoring itself reports the file with a proper message
    return total


def report(confusions: dict[str, Confusion]) -> dict[str, Any]:
    """Scores per scene, mean over scenes and pooled, with the counts behind them."""
    return {
        "per_scene": {
            scene: {**c.scores(), "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
            for scene, c in confusions.items()
        },
        "mean_over_scenes": per_scene_mean(confusions),
        "pooled": pooled(confusions),
    }


REPORT_FILES = ("scores.json", "scores.csv")


def check_report(out_dir: str | os.PathLike[str], overwrite: bool) -> None:
    """Refuse, before any work, to replace an earlier ``scores.json``/``.csv`` unless
    ``overwrite``."""
    for name in REPORT_FILES:
        check_writable(Path(out_dir) / name, overwrite)


def write_report(result: dict[str, Any], out_dir: str | os.PathLike[str]) -> None:
    """``scores.json`` and ``scores.csv`` (one row per scene, then ``mean`` and ``pooled``),
    each written whole under a temporary name and renamed into place."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "scores.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with (
        atomic_path(out_dir / "scores.csv", overwrite=True) as tmp,
        open(tmp, "w", newline="") as fh,
    ):
        writer = csv.writer(fh)
        writer.writerow(["scene", *SCORES])
        rows = [
            *result["per_scene"].items(),
            ("mean", result["mean_over_scenes"]),
            ("pooled", result["pooled"]),
        ]
        for scene, scores in rows:
            writer.writerow([scene, *(f"{scores[k]:.6f}" for k in SCORES)])
