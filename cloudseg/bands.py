"""The band contract: every model input is ``(red, green, blue, nir)``.

These are Landsat 8 OLI bands B4, B3, B2 and B5, in the order of 38-Cloud's folders. Every reader
returns this order and nothing downstream reorders; foreign models that want another order say so
in their model card and the engine permutes once, by name, with :func:`reorder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Model channel order, by name.
BANDS: tuple[str, ...] = ("red", "green", "blue", "nir")

#: Landsat 8 OLI band number of each contract band.
LANDSAT8_BAND: dict[str, int] = {"red": 4, "green": 3, "blue": 2, "nir": 5}

#: No-data value of Level-1 digital numbers (and of 38-Cloud patches).
NODATA_DN = 0


def check_band(name: str) -> str:
    """Return ``name`` lower-cased if it is a contract band, else raise ``ValueError``."""
    key = name.lower()
    if key not in LANDSAT8_BAND:
        raise ValueError(f"unknown band {name!r}; expected one of {', '.join(BANDS)}")
    return key


def reorder(array: np.ndarray, source: Sequence[str], target: Sequence[str] = BANDS) -> np.ndarray:
    """Permute the leading (band) axis of ``array`` from ``source`` order to ``target`` order.

    Args:
        array: ``(len(source), ...)`` array of any dtype.
        source: band names of ``array``'s first axis.
        target: band names wanted, a subset or permutation of ``source``.

    Returns:
        ``(len(target), ...)`` array (a copy when the order changes, else ``array`` itself).
    """
    src = [check_band(b) for b in source]
    if array.shape[0] != len(src):
        raise ValueError(f"array has {array.shape[0]} bands but {len(src)} names were given")
    index = [src.index(check_band(b)) for b in target]
    if index == list(range(len(src))):
        return array
    return array[index]


def valid_pixels(bands: np.ndarray) -> np.ndarray:
    """Validity of ``(B, H, W)`` digital numbers: a pixel is valid where any band is non-zero.

    Landsat Level-1 products and 38-Cloud patches mark no-data as 0 in every band.

    Returns:
        ``(H, W)`` bool array.
    """
    return np.any(bands != NODATA_DN, axis=0)
