"""What one scene's outputs say: the mask codes, the scene's counts, and the summary JSON.

The mask codes are the output contract every consumer reads (``cloudseg-eval``, GIS users, the
tests): 0 clear, 1 cloud, 2 cloud shadow (only when the model has a shadow class and it was asked
for), 255 no data. :class:`SceneStats` counts pixels as the writer streams rows past it (for the
GeoTIFF tags and the summary), and :func:`write_summary` writes ``<id>_summary.json`` atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.atomic import atomic_path
from cloudseg.metrics import Confusion

#: Mask values, as written in ``<id>_cloudmask.tif``.
CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255
#: Meaning of each code, for band descriptions and docs/run.md.
MASK_CODES = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "cloud shadow", NODATA: "no data"}
#: The mask's colour table (RGBA), so GIS tools show the classes without a style file: cloud
#: white, shadow dark grey, clear green, no data transparent.
MASK_COLOURS = {
    CLEAR: (46, 139, 87, 255),
    CLOUD: (255, 255, 255, 255),
    SHADOW: (80, 80, 80, 255),
    NODATA: (0, 0, 0, 0),
}


def mask_codes(
    cloud_prob: np.ndarray, shadow_prob: np.ndarray | None, valid: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mask codes of probability rows: the one rule the writer and in-memory answers share.

    Args:
        cloud_prob: ``(..., W)`` float32 cloud probability.
        shadow_prob: same shape, cloud-shadow probability, or None (no shadow class asked).
        valid: same shape, bool: pixels with data.
        threshold: cloud where ``cloud_prob > threshold``.

    Returns:
        ``(codes, cloud, shade)``: uint8 codes (:data:`MASK_CODES`), and the cloud and shadow
        decisions before no data is applied (``shade`` None without a shadow plane).
    """
    cloud = cloud_prob > threshold
    codes = cloud.astype(np.uint8) * np.uint8(CLOUD)
    shade = None
    if shadow_prob is not None:
        # Shadow where it is the likeliest of clear, cloud and shadow (the classes sum to 1),
        # and the pixel is not cloud: the model's own call, as ukis-csmask's argmax.
        clear = 1.0 - cloud_prob - shadow_prob
        shade = ~cloud & (shadow_prob > clear) & (shadow_prob >= cloud_prob)
        codes[shade] = SHADOW
    return np.where(valid, codes, np.uint8(NODATA)), cloud, shade


@dataclass(frozen=True)
class SceneStats:
    """Counts of one written mask; percentages derive from them."""

    width: int
    height: int
    valid_pixels: int
    cloud_pixels: int
    threshold: float | None
    shadow_pixels: int | None = None  # None: the mask has no shadow class
    qa: Confusion | None = None  # our cloud vs USGS's QA cloud, where the scene has a QA band

    @property
    def cloud_cover(self) -> float | None:
        """Cloud share of valid pixels in percent; ``None`` when no pixel is valid."""
        return _percent(self.cloud_pixels, self.valid_pixels)

    @property
    def shadow_cover(self) -> float | None:
        """Cloud-shadow share of valid pixels in percent; ``None`` without a shadow class."""
        if self.shadow_pixels is None:
            return None
        return _percent(self.shadow_pixels, self.valid_pixels)

    @property
    def usgs_cloud_cover(self) -> float | None:
        """USGS's cloud share (QA band cloud bit) of the valid pixels it covers, in percent."""
        if self.qa is None:
            return None
        return _percent(self.qa.tp + self.qa.fn, self.qa.total)

    @property
    def usgs_agreement(self) -> float | None:
        """Share of those pixels on which our cloud/clear call equals USGS's, in percent."""
        if self.qa is None:
            return None
        return _percent(self.qa.tp + self.qa.tn, self.qa.total)

    @property
    def nodata_percent(self) -> float:
        """Share of all pixels that are no data, in percent."""
        return 100.0 * (1.0 - self.valid_pixels / (self.width * self.height))

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready numbers for the summary."""
        keys = ("width", "height", "valid_pixels", "cloud_pixels", "threshold")
        out = {k: getattr(self, k) for k in keys} | {
            "cloud_cover": self.cloud_cover,
            "nodata_percent": self.nodata_percent,
        }
        if self.shadow_pixels is not None:
            out |= {"shadow_pixels": self.shadow_pixels, "shadow_cover": self.shadow_cover}
        if self.qa is not None:
            out["usgs_qa"] = {
                "cloud_cover": self.usgs_cloud_cover,
                "agreement": self.usgs_agreement,
                "pixels": self.qa.total,
                "confusion": {"tp": self.qa.tp, "fp": self.qa.fp, "fn": self.qa.fn,
                              "tn": self.qa.tn},
                "truth": "QA band cloud bit (CFMask); cloudseg cloud is the prediction",
            }  # fmt: skip
        return out

    def tags(self) -> dict[str, str]:
        """GeoTIFF tags; covers are left out when undefined (no valid pixel)."""
        tags = {
            "NODATA_PERCENT": f"{self.nodata_percent:.6f}",
            "VALID_PIXELS": str(self.valid_pixels),
            "CLOUD_PIXELS": str(self.cloud_pixels),
        }
        if self.cloud_cover is not None:
            tags["CLOUD_COVER"] = f"{self.cloud_cover:.6f}"
        if self.shadow_pixels is not None:
            tags["SHADOW_PIXELS"] = str(self.shadow_pixels)
            if self.shadow_cover is not None:
                tags["SHADOW_COVER"] = f"{self.shadow_cover:.6f}"
        if self.usgs_cloud_cover is not None:
            tags["USGS_CLOUD_COVER"] = f"{self.usgs_cloud_cover:.6f}"
            tags["USGS_AGREEMENT"] = f"{self.usgs_agreement:.6f}"
        if self.threshold is not None:
            tags["THRESHOLD"] = repr(self.threshold)
        return tags


def _percent(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def summary_json(summary: Mapping[str, Any]) -> str:
    """``summary`` as strict, indented JSON (numpy scalars and paths converted, NaN refused)."""
    return json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n"


def write_summary(
    path: str | os.PathLike[str], summary: Mapping[str, Any], *, overwrite: bool = True
) -> Path:
    """Write ``summary`` as indented JSON, atomically.

    ``overwrite`` defaults to true because :meth:`OutputPaths.check` refused existing outputs
    before the run began.
    """
    text = summary_json(summary)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)
