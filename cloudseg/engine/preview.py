"""The quick-look PNG of one scene, gathered while its mask streams past the writer.

The writer never holds the scene: it keeps every ``k``-th row and column of the mask and of the
three false-colour bands (nearest-neighbour decimation, so the buffers are ``ceil(H / k) x
ceil(W / k)`` and nothing is averaged on the hot path). The picture is false colour (NIR, red,
green, as in the EDA report), percentile-stretched over the valid pixels of the preview itself,
clouds tinted semi-transparent cyan, shadows dark blue, no data black. The composite and
stretch are :mod:`cloudseg.quicklook`'s, shared with the EDA report.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from cloudseg.bands import BANDS
from cloudseg.engine.summary import CLOUD, NODATA, SHADOW
from cloudseg.quicklook import FALSE_COLOUR, stretch

#: Longest side of an automatic preview, in pixels (a Landsat scene: ~1,000 px at k = 8).
PREVIEW_MAX_SIDE = 1024
#: Clouds and shadows are tinted, not painted over, so the false colour under them still shows.
CLOUD_TINT = np.array([0.0, 255.0, 255.0])
SHADOW_TINT = np.array([0.0, 0.0, 160.0])
TINT_ALPHA = 0.5
#: Valid pixels of a preview made without bands (the mask alone): dark grey, clouds tinted.
PLAIN_GREY = 64


def preview_scale_for(height: int, width: int, max_side: int = PREVIEW_MAX_SIDE) -> int:
    """Smallest decimation ``k >= 1`` that keeps the preview's longest side <= ``max_side``."""
    return max(1, math.ceil(max(height, width) / max_side))


class PreviewBuffer:
    """Every ``scale``-th row and column of a scene's mask and false-colour bands.

    Attributes:
        scale: decimation factor ``k``.
        shape: ``(ceil(H / k), ceil(W / k))``, the preview's size in pixels.
        mask: ``shape`` uint8 decimated mask (0 clear, 1 cloud, 255 no data; 255 until written).
        bands: ``(3, *shape)`` decimated NIR, red, green rows in the dtype they arrived in, or
            ``None`` until band rows are first given.
    """

    def __init__(self, height: int, width: int, scale: int) -> None:
        if scale < 1:
            raise ValueError(f"preview scale must be a positive integer, got {scale}")
        self.scale = scale
        self.shape = (math.ceil(height / scale), math.ceil(width / scale))
        self.mask = np.full(self.shape, NODATA, dtype=np.uint8)
        self.bands: np.ndarray | None = None
        self._band_index = [BANDS.index(b) for b in FALSE_COLOUR]

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return self.mask.nbytes + (0 if self.bands is None else self.bands.nbytes)

    def add(self, row0: int, mask_rows: np.ndarray, band_rows: np.ndarray | None = None) -> None:
        """Keep the rows of a chunk that fall on the preview grid.

        Args:
            row0: scene row of the chunk's first row.
            mask_rows: ``(n, W)`` uint8 mask rows.
            band_rows: optional ``(4, n, W)`` raw band rows in contract order (red, green,
                blue, nir), any numeric dtype.
        """
        k = self.scale
        first = (-row0) % k  # first local row whose scene row is a multiple of k
        small = mask_rows[first::k, ::k]
        if small.shape[0] == 0:
            return
        top = (row0 + first) // k
        self.mask[top : top + small.shape[0]] = small
        if band_rows is None:
            return
        if self.bands is None:
            self.bands = np.zeros((len(self._band_index), *self.shape), dtype=band_rows.dtype)
        for out, i in enumerate(self._band_index):
            # Per-band slicing: fancy indexing the band axis would copy the whole chunk first.
            self.bands[out, top : top + small.shape[0]] = band_rows[i, first::k, ::k]

    def render(self) -> Image.Image:
        """The preview as an RGB image of ``shape`` (rows, cols)."""
        valid = self.mask != NODATA
        if self.bands is None:
            rgb = np.zeros((*self.shape, 3))
            rgb[valid] = PLAIN_GREY
        else:
            rgb = np.stack([stretch(band, valid) for band in self.bands], axis=-1).astype(float)
        for code, tint in ((CLOUD, CLOUD_TINT), (SHADOW, SHADOW_TINT)):
            hit = self.mask == code
            rgb[hit] = (1.0 - TINT_ALPHA) * rgb[hit] + TINT_ALPHA * tint
        rgb[~valid] = 0.0
        return Image.fromarray(np.rint(rgb).astype(np.uint8))
