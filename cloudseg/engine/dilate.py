"""A cloud buffer: the mask's cloud grown by N pixels (Fmask's ``--dcloud``), row by row.

Pixels within ``n`` pixels of a cloud pixel (a square window, ``2n + 1`` a side, as Fmask's
``imdilate`` with ``strel('square', 2n + 1)``) become cloud, unless they are no data; shadow and
clear under the buffer become cloud too. The buffer is drawn from one file to another in bands of
rows read with ``n`` rows of context above and below, so memory is a band of rows, not the scene.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudseg.engine.summary import CLOUD, NODATA, SHADOW

#: Rows written per band (the read adds 2n of context).
BAND_ROWS = 512


def grow(cloud: np.ndarray, n: int) -> np.ndarray:
    """``(h, w)`` bool: true within ``n`` pixels (square window) of a true pixel of ``cloud``.

    Separable: a running OR along columns, then along rows; ``2n`` in-place passes each.
    """
    out = cloud.copy()
    for axis in (0, 1):
        src = out.copy()
        for k in range(1, n + 1):
            if k >= src.shape[axis]:
                break
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(k, None), slice(None, -k)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def dilate_file(
    src: Path,
    dst: Path,
    n: int,
    on_rows: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[int, int]:
    """Write ``src``'s mask to ``dst`` with cloud grown by ``n`` pixels; same profile.

    Args:
        src: the mask GeoTIFF (0 clear, 1 cloud, 2 shadow, 255 no data).
        dst: where the buffered mask goes (a new file).
        n: buffer in pixels (0 copies).
        on_rows: called with ``(row0, rows)`` of each band written (counts, the preview).

    Returns:
        Cloud and cloud-shadow pixels of the buffered mask.
    """
    cloud_pixels = shadow_pixels = 0
    with rasterio.open(src) as ds:
        profile = ds.profile
        height, width = ds.height, ds.width
        with rasterio.open(dst, "w", **profile) as out:
            for row0 in range(0, height, BAND_ROWS):
                row1 = min(height, row0 + BAND_ROWS)
                top, bottom = max(0, row0 - n), min(height, row1 + n)
                block = ds.read(1, window=Window(0, top, width, bottom - top))
                grown = grow(block == CLOUD, n)[row0 - top : row1 - top]
                rows = block[row0 - top : row1 - top].copy()
                rows[grown & (rows != NODATA)] = CLOUD
                out.write(rows, 1, window=Window(0, row0, width, row1 - row0))
                cloud_pixels += int(np.count_nonzero(rows == CLOUD))
                shadow_pixels += int(np.count_nonzero(rows == SHADOW))
                if on_rows is not None:
                    on_rows(row0, rows)
    return cloud_pixels, shadow_pixels
