"""Quick-look colour: the false-colour composite and contrast stretch every picture shares.

The EDA report's sample sheets, training's validation-batch figure and the engine's scene preview
all draw Landsat bands the same way: false colour (NIR, red, green as R, G, B: vegetation red,
cloud white, water dark), each band stretched between its 2nd and 98th percentile over valid
pixels. Part of the floor every layer may import; numpy only.
"""

from __future__ import annotations

import numpy as np

from cloudseg.bands import BANDS, valid_pixels

#: False colour: NIR, red, green as R, G, B.
FALSE_COLOUR = ("nir", "red", "green")
#: Percentiles of valid pixels mapped to 0 and 255.
STRETCH_PERCENTILES = (2.0, 98.0)


def stretch(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Percentile stretch of ``(H, W)`` values over ``valid`` pixels to ``(H, W)`` uint8."""
    if not valid.any():
        return np.zeros(band.shape, dtype=np.uint8)
    lo, hi = np.percentile(band[valid], STRETCH_PERCENTILES)
    scaled = (band.astype(np.float64) - lo) / max(hi - lo, 1e-9)
    return np.where(valid, np.clip(scaled, 0.0, 1.0) * 255.0, 0.0).astype(np.uint8)


def false_colour_rgb(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``(4, H, W)`` values in band order -> ``(H, W, 3)`` uint8 NIR/red/green, stretched.

    Args:
        image: raw values in :data:`cloudseg.bands.BANDS` order, any numeric dtype.
        valid: ``(H, W)`` bool; default: any band non-zero. Invalid pixels are black.
    """
    valid = valid_pixels(image) if valid is None else valid
    return np.stack([stretch(image[BANDS.index(b)], valid) for b in FALSE_COLOUR], axis=-1)
