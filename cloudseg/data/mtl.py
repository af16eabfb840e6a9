"""Landsat ``_MTL`` metadata: parse it, and turn digital numbers into reflectance with it.

USGS ships the MTL as ODL text (``GROUP = X`` ... ``NAME = VALUE`` ... ``END_GROUP = X``, then
``END``) and, from Collection 2 on, also as JSON (``{"LANDSAT_METADATA_FILE": {group: {name:
"value"}}}``). Both are read into the same ``{group: {name: value}}`` form, values kept as text.

Keys are looked up by *group and name*, never by name alone: a Collection 2 Level-2 MTL carries
``REFLECTANCE_MULT_BAND_4`` twice, once for Level-1 top-of-atmosphere reflectance
(``LEVEL1_RADIOMETRIC_RESCALING``) and once for surface reflectance
(``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``), and ``LANDSAT_PRODUCT_ID`` twice too (the L2SP and
the L1TP product). A flat ``name -> value`` parse keeps whichever comes last, i.e. the wrong one.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudseg.bands import LANDSAT8_BAND, check_band
from cloudseg.errors import SceneError

#: Outermost group: Collection 2 (and its JSON root key), then Collection 1 / pre-collection.
ROOT_GROUPS = ("LANDSAT_METADATA_FILE", "L1_METADATA_FILE")

#: Where each value lives, as ``(group, name)`` candidates tried in order: Collection 2 first,
#: then Collection 1. The first product id of a Level-2 MTL is the L2SP one (``PRODUCT_CONTENTS``);
#: pre-collection MTLs have only ``LANDSAT_SCENE_ID``.
SCENE_ID_KEYS = (
    ("PRODUCT_CONTENTS", "LANDSAT_PRODUCT_ID"),
    ("METADATA_FILE_INFO", "LANDSAT_PRODUCT_ID"),
    ("METADATA_FILE_INFO", "LANDSAT_SCENE_ID"),
)
PROCESSING_LEVEL_KEYS = (
    ("PRODUCT_CONTENTS", "PROCESSING_LEVEL"),
    ("PRODUCT_METADATA", "DATA_TYPE"),
)
DATE_KEYS = (("IMAGE_ATTRIBUTES", "DATE_ACQUIRED"), ("PRODUCT_METADATA", "DATE_ACQUIRED"))
SUN_ELEVATION_KEYS = (("IMAGE_ATTRIBUTES", "SUN_ELEVATION"),)
SUN_AZIMUTH_KEYS = (("IMAGE_ATTRIBUTES", "SUN_AZIMUTH"),)
COLLECTION_KEYS = (
    ("PRODUCT_CONTENTS", "COLLECTION_NUMBER"),
    ("METADATA_FILE_INFO", "COLLECTION_NUMBER"),
)
#: USGS's own cloud cover of the scene (percent), from its CFMask quality band.
CLOUD_COVER_KEYS = (("IMAGE_ATTRIBUTES", "CLOUD_COVER"),)

#: Groups holding ``REFLECTANCE_MULT_BAND_n`` / ``REFLECTANCE_ADD_BAND_n`` for each product level.
TOA_GROUPS = ("LEVEL1_RADIOMETRIC_RESCALING", "RADIOMETRIC_RESCALING")
SR_GROUPS = ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS",)
#: Collection 2 Level-2 surface reflectance: USGS's valid DN range, reflectance 0.0 to 1.0. 0 is
#: fill. Below the lower bound reflectance is negative (atmospheric correction over dark water
#: and shadow), which no surface has: such DN are raised to the bound (reflectance 0). Above the
#: upper bound are real values, kept as they are: bright cloud and snow reach reflectance 1.2+
#: (DN up to about 52,000 in the real products of shared/data); clipping them there turned thick
#: cloud into "clear" for ukis-l2a (93.7 % cloud unclipped, 37.1 % clipped, on a real overcast
#: scene). A model that needs a clip declares it on its card; the reader does not clip.
SR_VALID_DN = (7273, 43636)
MULT_KEY = "REFLECTANCE_MULT_BAND_{n}"
ADD_KEY = "REFLECTANCE_ADD_BAND_{n}"

Groups = dict[str, dict[str, str]]


@dataclass(frozen=True)
class Mtl:
    """What the engine needs from one MTL file; everything else stays in ``groups``.

    ``toa`` and ``sr`` map a Landsat band number to ``(mult, add)``: Level-1 DN to
    top-of-atmosphere reflectance (before the sun-angle correction), and Level-2 DN to surface
    reflectance. A Level-2 MTL carries both; only ``sr`` applies to its band files.
    """

    path: Path
    scene_id: str | None
    processing_level: str | None
    date_acquired: datetime.date | None
    sun_elevation: float | None
    sun_azimuth: float | None
    collection: int | None = None  # 1 or 2; None for pre-collection (no COLLECTION_NUMBER)
    cloud_cover: float | None = None  # USGS's CLOUD_COVER, percent
    # Dicts are left out of the hash (not of equality) so that a scene holding an Mtl can be a
    # dict key or set member.
    toa: dict[int, tuple[float, float]] = field(default_factory=dict, hash=False)
    sr: dict[int, tuple[float, float]] = field(default_factory=dict, hash=False)
    groups: Groups = field(default_factory=dict, repr=False, hash=False)

    @property
    def is_level2(self) -> bool:
        """True for a Level-2 (surface reflectance) product's MTL."""
        return (self.processing_level or "").upper().startswith("L2")


def read_mtl(path: str | Path) -> Mtl:
    """Read a ``*_MTL.txt`` (ODL) or ``*_MTL.json`` file; raise :class:`SceneError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM from Windows editors
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"cannot read MTL file {path}: {exc}") from exc
    return parse_mtl(text, path)


def parse_mtl(text: str, path: str | Path) -> Mtl:
    """Parse MTL text (ODL, or JSON when ``path`` ends in ``.json`` or the text is an object).

    Args:
        text: the file's contents (read locally, or fetched over HTTP for a STAC item).
        path: where it came from, for messages and :attr:`Mtl.path`.
    """
    path = Path(str(path))
    is_json = path.suffix.lower() == ".json" or text.lstrip().startswith("{")
    groups = _parse_json(text, path) if is_json else _parse_odl(text, path)
    return _mtl_from_groups(groups, path)


def _parse_odl(text: str, path: Path) -> Groups:
    # Nested groups are flattened to the innermost name: group names are unique within an MTL,
    # and the root group only wraps the others.
    groups: Groups = {}
    stack: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line == "END":
            break
        name, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not name:
            raise SceneError(f"MTL file {path} line {number} is not NAME = VALUE: {line[:60]!r}")
        if name == "GROUP":
            if not stack and value not in ROOT_GROUPS:
                raise SceneError(f"{path} is not a Landsat MTL file: it starts with group {value}")
            stack.append(value)
            groups.setdefault(value, {})
        elif name == "END_GROUP":
            if not stack or stack.pop() != value:
                raise SceneError(f"MTL file {path} line {number}: END_GROUP {value} is unmatched")
        elif not stack:
            raise SceneError(f"MTL file {path} line {number}: {name} is outside any GROUP")
        else:
            groups[stack[-1]][name] = value.strip('"')
    if not groups:
        raise SceneError(f"{path} is not a Landsat MTL file: it has no GROUP")
    return groups


def _parse_json(text: str, path: Path) -> Groups:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SceneError(f"MTL file {path} is not valid JSON: {exc}") from exc
    root_name = next((g for g in ROOT_GROUPS if isinstance(doc, dict) and g in doc), None)
    if root_name is None or not isinstance(doc[root_name], dict):
        raise SceneError(f"{path} is not a Landsat MTL file: no {ROOT_GROUPS[0]} object")
    groups: Groups = {root_name: {}}
    for name, value in doc[root_name].items():
        if isinstance(value, dict):
            groups[name] = {k: str(v) for k, v in value.items()}
        else:
            groups[root_name][name] = str(value)
    return groups


def _lookup(groups: Groups, keys: Sequence[tuple[str, str]]) -> str | None:
    for group, name in keys:
        if name in groups.get(group, {}):
            return groups[group][name]
    return None


def _number(groups: Groups, keys: Sequence[tuple[str, str]], path: Path) -> float | None:
    text = _lookup(groups, keys)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise SceneError(f"MTL file {path}: {keys[0][1]} = {text!r} is not a number") from None


def _integer(groups: Groups, keys: Sequence[tuple[str, str]], path: Path) -> int | None:
    value = _number(groups, keys, path)
    return None if value is None else int(value)


def _coefficients(
    groups: Groups, names: Sequence[str], path: Path
) -> dict[int, tuple[float, float]]:
    group = next((g for g in names if g in groups), None)
    out: dict[int, tuple[float, float]] = {}
    if group is None:
        return out
    for n in range(1, 12):
        mult = _number(groups, [(group, MULT_KEY.format(n=n))], path)
        add = _number(groups, [(group, ADD_KEY.format(n=n))], path)
        if mult is not None and add is not None:
            out[n] = (mult, add)
    return out


def _mtl_from_groups(groups: Groups, path: Path) -> Mtl:
    date_text = _lookup(groups, DATE_KEYS)
    try:
        date = datetime.date.fromisoformat(date_text) if date_text else None
    except ValueError:
        raise SceneError(f"MTL file {path}: DATE_ACQUIRED = {date_text!r} is not a date") from None
    return Mtl(
        path=path,
        scene_id=_lookup(groups, SCENE_ID_KEYS),
        processing_level=_lookup(groups, PROCESSING_LEVEL_KEYS),
        date_acquired=date,
        sun_elevation=_number(groups, SUN_ELEVATION_KEYS, path),
        sun_azimuth=_number(groups, SUN_AZIMUTH_KEYS, path),
        collection=_integer(groups, COLLECTION_KEYS, path),
        cloud_cover=_number(groups, CLOUD_COVER_KEYS, path),
        toa=_coefficients(groups, TOA_GROUPS, path),
        sr=_coefficients(groups, SR_GROUPS, path),
        groups=groups,
    )


def _rescale(
    dn: np.ndarray,
    bands: Sequence[str],
    table: dict[int, tuple[float, float]],
    mtl: Mtl,
    divisor: float,
    nodata: float,
) -> np.ndarray:
    if dn.ndim != 3 or dn.shape[0] != len(bands):
        raise ValueError(f"dn has shape {dn.shape}; expected ({len(bands)}, h, w) for {bands}")
    out = np.empty(dn.shape, np.float32)
    for i, band in enumerate(bands):
        n = LANDSAT8_BAND[check_band(band)]
        if n not in table:
            raise SceneError(f"MTL file {mtl.path} has no {MULT_KEY.format(n=n)} for {band}")
        mult, add = table[n]
        np.multiply(dn[i], np.float32(mult / divisor), out=out[i], dtype=np.float32)
        out[i] += np.float32(add / divisor)
    # DN 0 is fill in every Landsat product (QUANTIZE_CAL_MIN is 1), so it has no reflectance.
    out[dn == 0] = nodata
    return out


def toa_reflectance(
    dn: np.ndarray, bands: Sequence[str], mtl: Mtl, nodata: float = 0.0
) -> np.ndarray:
    """Level-1 DN to top-of-atmosphere reflectance, ``(M * dn + A) / sin(sun_elevation)``.

    No-data (``dn == 0``) becomes ``nodata``, 0.0 by default rather than NaN: a model fed an edge
    tile would spread NaN through its convolutions into valid pixels. Track validity with
    :func:`cloudseg.bands.valid_pixels` on the DNs; pass ``nodata=np.nan`` to mark it in-band.

    Args:
        dn: ``(B, h, w)`` uint16 Level-1 digital numbers.
        bands: contract band names of ``dn``'s first axis, e.g. :data:`cloudseg.bands.BANDS`.
        mtl: the scene's MTL (Level-1 coefficients and sun elevation).
        nodata: value written where ``dn == 0``.

    Returns:
        ``(B, h, w)`` float32 reflectance (unitless, about 0..1.2 for Level-1 products).
    """
    if mtl.is_level2:
        raise SceneError(
            f"{mtl.path} is a Level-2 MTL: its band files hold surface reflectance, not Level-1 "
            "digital numbers, so they have no top-of-atmosphere reflectance"
        )
    if mtl.sun_elevation is None:
        raise SceneError(f"MTL file {mtl.path} has no SUN_ELEVATION")
    sin_elevation = math.sin(math.radians(mtl.sun_elevation))
    return _rescale(dn, bands, mtl.toa, mtl, sin_elevation, nodata)


def surface_reflectance(
    dn: np.ndarray, bands: Sequence[str], mtl: Mtl, nodata: float = 0.0
) -> np.ndarray:
    """Level-2 DN to surface reflectance, ``M * dn + A`` (no sun-angle term: already applied).

    Fill (0) becomes ``nodata``; DN below USGS's lower bound are raised to it (reflectance 0);
    bright values above 1.0 are kept (:data:`SR_VALID_DN`).

    Args:
        dn: ``(B, h, w)`` uint16 Level-2 ``_SR_B<n>`` digital numbers.
        bands: contract band names of ``dn``'s first axis.
        mtl: the scene's Level-2 MTL (``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``).
        nodata: value written where ``dn == 0``, as in :func:`toa_reflectance`.

    Returns:
        ``(B, h, w)`` float32 surface reflectance, >= 0 where valid, unbounded above.
    """
    if not mtl.sr:
        raise SceneError(f"MTL file {mtl.path} has no LEVEL2_SURFACE_REFLECTANCE_PARAMETERS")
    low = np.asarray(SR_VALID_DN[0], dn.dtype)
    dn = np.where((dn > 0) & (dn < low), low, dn)
    return _rescale(dn, bands, mtl.sr, mtl, 1.0, nodata)
