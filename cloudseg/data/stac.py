"""Landsat 8/9 Collection 2 STAC items (a local JSON file or an http(s) URL) as scenes.

Band assets are found by their band's common name (red, green, blue, nir08), whichever way the
catalogue says it:

* ``eo:bands`` inside the asset (STAC 1.0: USGS's stac-server, Earth Search, Planetary
  Computer): ``[{"name": "OLI_B4", "common_name": "red", ...}]``;
* ``bands`` with ``eo:common_name`` inside the asset (STAC 1.1);
* ``eo:bands`` as integer indexes into the item's ``properties["eo:bands"]`` (older USGS items,
  STAC 0.7: ``"SR_B4.TIF": {"eo:bands": [3]}``).

The MTL is the metadata asset whose file ends ``_MTL.txt`` (else ``_MTL.json``; keys ``MTL.txt``,
``mtl.txt``, ... as the catalogues spell them) and the quality band the asset whose file ends
``_QA_PIXEL.TIF`` or ``_BQA.TIF`` (keys ``qa_pixel`` or ``QA_PIXEL.TIF``, roles ``cloud``...).
The level comes from the band files (``_SR_B4``: Level-2) and ``landsat:correction``. Outputs
are named by the item's id. pystac reads the item (and migrates old versions); its HTTP goes
through :func:`cloudseg.data.remote.read_text` (pystac's own has no timeout), with retries, so a
dead server is one line, not a hang.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from cloudseg.bands import BANDS
from cloudseg.data import landsat_files as files
from cloudseg.data import remote
from cloudseg.data.landsat import LandsatScene
from cloudseg.data.mtl import parse_mtl
from cloudseg.errors import SceneError

#: Common names of the contract bands in STAC (Landsat's NIR is ``nir08``).
COMMON_NAMES = {"red": ("red",), "green": ("green",), "blue": ("blue",), "nir": ("nir08", "nir")}
MTL_RE = re.compile(r"_MTL\.(txt|json)$", re.I)
QA_RE = re.compile(r"_(QA_PIXEL|BQA)\.TIFF?$", re.I)


def is_item(spec: str | os.PathLike[str]) -> bool:
    """A path or URL of a STAC item: it ends in ``.json`` (an item's only form)."""
    return str(spec).split("?")[0].lower().endswith(".json")


def read_item(spec: str) -> Any:
    """The pystac Item at ``spec``, asset hrefs made absolute.

    Raises:
        SceneError: not readable, not JSON, or not a STAC item (one line naming it).
    """
    import pystac

    text = remote.read_text(spec)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SceneError(f"{spec}: not a STAC item: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("type") != "Feature" or "assets" not in data:
        raise SceneError(f"{spec}: not a STAC item (no Feature with assets)")
    try:
        item = pystac.Item.from_dict(data, href=spec, migrate=True, preserve_dict=False)
    except (pystac.STACError, KeyError, TypeError, ValueError) as exc:
        raise SceneError(f"{spec}: not a readable STAC item ({exc})") from None
    item.set_self_href(spec if remote.is_url(spec) else str(Path(spec).resolve()))
    item.make_asset_hrefs_absolute()
    return item


def _common_names(asset: Any, item: Any) -> list[str]:
    """Common names of the bands an asset holds, read every way catalogues write them."""
    fields = asset.extra_fields
    names = []
    for band in fields.get("eo:bands") or []:
        if isinstance(band, int):  # STAC 0.7: an index into the item's eo:bands
            listed = item.properties.get("eo:bands") or []
            band = listed[band] if 0 <= band < len(listed) else {}
        if isinstance(band, dict) and band.get("common_name"):
            names.append(str(band["common_name"]).lower())
    for band in fields.get("bands") or []:  # STAC 1.1
        if isinstance(band, dict) and band.get("eo:common_name"):
            names.append(str(band["eo:common_name"]).lower())
    return names


def band_assets(item: Any) -> dict[str, str]:
    """Href of each contract band's asset (one band per asset), by contract band name.

    Raises:
        SceneError: a band is missing or named by two assets (says which).
    """
    found: dict[str, list[str]] = {b: [] for b in BANDS}
    for key, asset in item.assets.items():
        names = _common_names(asset, item)
        if len(names) != 1:
            continue
        for band, wanted in COMMON_NAMES.items():
            if names[0] in wanted:
                found[band].append(key)
    missing = [b for b, keys in found.items() if not keys]
    if missing:
        raise SceneError(
            f"STAC item {item.id}: no asset for band(s) "
            f"{', '.join(f'{b} ({COMMON_NAMES[b][0]})' for b in missing)} (by eo:bands common_name)"
        )
    two = {b: keys for b, keys in found.items() if len(keys) > 1}
    if two:
        raise SceneError(f"STAC item {item.id}: several assets for one band: {two}")
    return {b: item.assets[keys[0]].get_absolute_href() for b, keys in found.items()}


def _asset_href(item: Any, pattern: re.Pattern[str], prefer: str | None = None) -> str | None:
    hrefs = sorted(
        (a.get_absolute_href() for a in item.assets.values() if pattern.search(a.href or "")),
        key=lambda h: (prefer is not None and not h.lower().endswith(prefer), h),
    )
    return hrefs[0] if hrefs else None


def _level(band_hrefs: dict[str, str], item: Any) -> str:
    correction = str(item.properties.get("landsat:correction", "")).upper()
    if "_SR_B" in band_hrefs["red"].upper() or correction.startswith("L2"):
        return "L2"
    return "L1"


def open_item(spec: str) -> LandsatScene:
    """Open the STAC item ``spec``: find its assets, read their headers (and the MTL), no pixels.

    Raises:
        SceneError: the item or an asset cannot be read, or the bands do not share one grid.
    """
    item = read_item(spec)
    bands = band_assets(item)
    names = [remote.gdal_name(bands[b]) for b in BANDS]
    headers = [files.read_header(n) for n in names]
    labels = [files.band_label(BANDS[0])] + [f"band {files.band_label(b)}" for b in BANDS[1:]]
    files.check_same_grid(f"STAC item {item.id}", headers, labels)
    mtl_href = _asset_href(item, MTL_RE, prefer=".txt")
    mtl = parse_mtl(remote.read_text(mtl_href), mtl_href) if mtl_href else None
    qa_href = _asset_href(item, QA_RE)
    qa_name = remote.gdal_name(qa_href) if qa_href else None
    if qa_name is not None:
        files.check_same_grid(
            f"STAC item {item.id}", [headers[0], files.read_header(qa_name)],
            [files.band_label(BANDS[0]), "quality band"],
        )  # fmt: skip
    collection = item.properties.get("landsat:collection_number")
    ref = headers[0]
    return LandsatScene(
        source=spec,
        scene_id=item.id,
        kind=_level(bands, item),
        width=ref.width,
        height=ref.height,
        crs=ref.crs,
        transform=ref.transform,
        band_files=tuple(names),
        band_indexes=(1,) * len(BANDS),
        block_shape=ref.block_shape,
        mtl=mtl,
        qa_file=qa_name,
        collection=int(collection) if collection else (mtl.collection if mtl else 2),
        remote=remote.is_url(spec) or any(remote.is_url(h) for h in bands.values()),
    )
