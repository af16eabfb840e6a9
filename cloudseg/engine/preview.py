"""Small summaries of one scene, gathered while its mask streams past the writer.

:class:`SceneStats` counts pixels (for GeoTIFF tags and the summary JSON, written by
:func:`write_summary`); :class:`PreviewBuffer` builds the quick-look PNG.

The writer never holds the scene: it keeps every ``k``-th row and column of the mask and of the
three false-colour bands (nearest-neighbour decimation, so the buffers are ``ceil(H / k) x
ceil(W / k)`` and nothing is averaged on the hot path). The picture is false colour (NIR, red,
green, as in the EDA report), percentile-stretched over the valid pixels of the preview itself,
clouds tinted semi-transparent cyan, no data black.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cloudseg.atomic import atomic_path
from cloudseg.bands import BANDS
from cloudseg.eda_plots import FALSE_COLOUR, stretch

#: Longest side of an automatic preview, in pixels (a Landsat scene: ~1,000 px at k = 8).
PREVIEW_MAX_SIDE = 1024
#: Mask values, as in the mask GeoTIFF.
CLEAR, CLOUD, NODATA = 0, 1, 255
#: Clouds are tinted, not painted over, so the false colour under them still shows.
CLOUD_TINT = np.array([0.0, 255.0, 255.0])
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
        cloud = self.mask == CLOUD
        rgb[cloud] = (1.0 - TINT_ALPHA) * rgb[cloud] + TINT_ALPHA * CLOUD_TINT
        rgb[~valid] = 0.0
        return Image.fromarray(np.rint(rgb).astype(np.uint8))


@dataclass(frozen=True)
class SceneStats:
    """Counts of one written mask; percentages derive from them."""

    width: int
    height: int
    valid_pixels: int
    cloud_pixels: int
    threshold: float | None

    @property
    def cloud_cover(self) -> float | None:
        """Cloud share of valid pixels in percent; ``None`` when no pixel is valid."""
        return 100.0 * self.cloud_pixels / self.valid_pixels if self.valid_pixels else None

    @property
    def nodata_percent(self) -> float:
        """Share of all pixels that are no data, in percent."""
        return 100.0 * (1.0 - self.valid_pixels / (self.width * self.height))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers for the summary."""
        keys = ("width", "height", "valid_pixels", "cloud_pixels", "threshold")
        return {k: getattr(self, k) for k in keys} | {
            "cloud_cover": self.cloud_cover,
            "nodata_percent": self.nodata_percent,
        }

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags; ``CLOUD_COVER`` is left out when undefined (no valid pixel)."""
        tags = {
            "NODATA_PERCENT": f"{self.nodata_percent:.6f}",
            "VALID_PIXELS": str(self.valid_pixels),
            "CLOUD_PIXELS": str(self.cloud_pixels),
        }
        if self.cloud_cover is not None:
            tags["CLOUD_COVER"] = f"{self.cloud_cover:.6f}"
        if self.threshold is not None:
            tags["THRESHOLD"] = repr(self.threshold)
        return tags


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_summary(
    path: str | os.PathLike[str], summary: Mapping[str, Any], *, overwrite: bool = True
) -> Path:
    """Write ``summary`` as indented JSON, atomically (numpy scalars and paths converted).

    ``overwrite`` defaults to true because :meth:`OutputPaths.check` refused existing outputs
    before the run began; NaN is refused so that the file is strict JSON.
    """
    text = json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n"
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
