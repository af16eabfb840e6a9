"""USGS pixel quality bands decoded into one set of flags: fill, cloud, shadow, and the rest.

Three bit layouts ship with Landsat 8/9 products (USGS Landsat 8 Data Format Control Books, and
the Collection 1 / Collection 2 quality assessment band pages):

* Collection 2 ``QA_PIXEL``: bit 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow,
  5 snow, 6 clear, 7 water; bits 8-15 confidences (not used: the flag bits are CFMask's call).
* Collection 1 ``BQA``: bit 0 fill, 1 terrain occlusion, 2-3 radiometric saturation, 4 cloud,
  5-6 cloud confidence, 7-8 cloud shadow confidence, 9-10 snow/ice confidence, 11-12 cirrus
  confidence (2 bits each: 0 not determined, 1 low, 2 medium, 3 high). Shadow, snow and cirrus
  are flagged at high confidence.
* Pre-collection ``BQA``: bit 0 designated fill, 1 dropped frame, 2 terrain occlusion, 4-5 water,
  8-9 vegetation, 10-11 snow/ice, 12-13 cirrus, 14-15 cloud (2-bit confidences); a flag is set
  at high confidence. No shadow.

:func:`decode` turns any of them into :data:`FLAGS` (one uint8 per pixel), so the rest of
cloudseg never sees a bit layout. USGS's cloud, for cover and agreement, is :data:`CLOUD`, the
cloud bit alone (not cirrus, not the dilated buffer): it is what the MTL's ``CLOUD_COVER`` counts
(checked on a real Collection 2 Level-2 and a real Collection 1 Level-1 product, the tests'
real fixtures: 99.94 % and 26.67 % of valid pixels against ``CLOUD_COVER`` 99.94 and 26.70).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cloudseg.errors import SceneError

#: cloudseg's own QA flags, one bit each, in a uint8.
FILL, CLOUD, DILATED, CIRRUS, SHADOW, SNOW, WATER, CLEAR = (1 << i for i in range(8))
FLAGS = {
    "fill": FILL,
    "cloud": CLOUD,
    "dilated_cloud": DILATED,
    "cirrus": CIRRUS,
    "cloud_shadow": SHADOW,
    "snow": SNOW,
    "water": WATER,
    "clear": CLEAR,
}
#: What counts as cloud when USGS's call is compared with a cloud mask (see the module docs).
USGS_CLOUD = CLOUD

#: Bit layouts: Collection 2 QA_PIXEL, Collection 1 BQA, pre-collection BQA.
LAYOUTS = ("c2_qa_pixel", "c1_bqa", "pre_bqa")

#: Collection 2 single-bit flags, bit -> our flag.
_C2_BITS = {0: FILL, 1: DILATED, 2: CIRRUS, 3: CLOUD, 4: SHADOW, 5: SNOW, 6: CLEAR, 7: WATER}
#: Collection 1: single bits, then 2-bit confidences counted as set at high (3).
_C1_BITS = {0: FILL, 4: CLOUD}
_C1_HIGH = {7: SHADOW, 9: SNOW, 11: CIRRUS}
#: Pre-collection: fill bit, then 2-bit confidences counted as set at high (3).
_PRE_BITS = {0: FILL}
_PRE_HIGH = {4: WATER, 10: SNOW, 12: CIRRUS, 14: CLOUD}


def layout_for(path: str | Path, collection: int | None) -> str:
    """The bit layout of a quality band file, from its name and the product's collection."""
    name = Path(str(path).split("?")[0]).name
    if re.search(r"_QA_PIXEL\.TIFF?$", name, re.I):
        return "c2_qa_pixel"
    if re.search(r"_BQA\.TIFF?$", name, re.I):
        return "pre_bqa" if collection == 0 else "c1_bqa"
    raise SceneError(f"{path}: not a Landsat QA_PIXEL or BQA quality band")


def _set(out: np.ndarray, hit: np.ndarray, flag: int) -> None:
    out |= np.where(hit, np.uint8(flag), np.uint8(0))


def decode(raw: np.ndarray, layout: str) -> np.ndarray:
    """``(h, w)`` uint16 quality band values -> ``(h, w)`` uint8 :data:`FLAGS`.

    Raises:
        SceneError: unknown layout.
    """
    raw = np.asarray(raw).astype(np.uint16, copy=False)
    out = np.zeros(raw.shape, np.uint8)
    if layout == "c2_qa_pixel":
        for bit, flag in _C2_BITS.items():
            _set(out, (raw >> bit) & 1 == 1, flag)
        return out
    if layout == "c1_bqa":
        bits, high = _C1_BITS, _C1_HIGH
    elif layout == "pre_bqa":
        bits, high = _PRE_BITS, _PRE_HIGH
    else:
        raise SceneError(f"unknown quality band layout {layout!r}; expected one of {LAYOUTS}")
    for bit, flag in bits.items():
        _set(out, (raw >> bit) & 1 == 1, flag)
    for bit, flag in high.items():
        _set(out, (raw >> bit) & 3 == 3, flag)
    # Collection 1 and pre-collection have no clear bit: clear is valid and flagged nothing.
    _set(out, out & (FILL | CLOUD | CIRRUS | SHADOW | SNOW) == 0, CLEAR)
    return out


def is_fill(raw: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: the fill bit (bit 0, the same in every layout) is set."""
    return (np.asarray(raw) & 1) == 1


def usgs_cloud(flags: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: USGS calls the pixel cloud (:data:`USGS_CLOUD`) and it is not fill."""
    return (flags & USGS_CLOUD != 0) & (flags & FILL == 0)


def usgs_shadow(flags: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: USGS calls the pixel cloud shadow (and not cloud, not fill)."""
    return (flags & SHADOW != 0) & ~usgs_cloud(flags) & (flags & FILL == 0)
