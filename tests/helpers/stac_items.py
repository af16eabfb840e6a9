"""STAC items for synthetic scene folders, in the three shapes the catalogues write them.

Modelled on real Landsat Collection 2 items (fields and asset keys as they appear there):

* ``stac-1.0``: USGS stac-server / Earth Search / Planetary Computer: band assets keyed by common
  name (``red``, ``nir08``, ...) with ``eo:bands: [{"name": "B4", "common_name": "red"}]``,
  ``MTL.txt`` with role ``metadata``, ``qa_pixel`` with roles ``cloud``...;
* ``stac-1.1``: the same with STAC 1.1 ``bands: [{"name": "B4", "eo:common_name": "red"}]``;
* ``stac-0.7``: the older USGS items: assets keyed by file suffix (``SR_B4.TIF``) whose
  ``eo:bands`` are integer indexes into ``properties["eo:bands"]``, no roles.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import rasterio
import rasterio.shutil

COMMON = {2: "blue", 3: "green", 4: "red", 5: "nir08", 6: "swir16"}
BAND_RE = re.compile(r"_(SR_)?B(\d)\.TIF$", re.I)


def to_cogs(folder: Path) -> None:
    """Rewrite every GeoTIFF of ``folder`` as a COG (tiled, overviews), in place."""
    for path in sorted(folder.glob("*.TIF")):
        tmp = path.with_name(path.name + ".cog")
        with rasterio.open(path) as src:
            overviews = [2, 4] if max(src.width, src.height) > 512 else []
        if overviews:
            with rasterio.open(path, "r+") as ds:
                ds.build_overviews(overviews)
        rasterio.shutil.copy(path, tmp, driver="COG", blocksize=256, compress="DEFLATE")
        tmp.replace(path)


def item(folder: Path, base: str, flavour: str = "stac-1.0", item_id: str | None = None) -> dict:
    """The STAC item of a scene folder served at ``base`` (``http://.../<folder name>``)."""
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    scene = folder.name
    level2 = any("_SR_B" in n for n in names)
    bands = {int(m[2]): n for n in names if (m := BAND_RE.search(n))}
    assets: dict[str, dict] = {}
    index = {n: i for i, n in enumerate(sorted(bands))}
    for number, name in sorted(bands.items()):
        href = f"{base}/{name}"
        if flavour == "stac-0.7":
            key = f"{'SR_' if level2 else ''}B{number}.TIF"
            assets[key] = {"href": href, "type": "image/vnd.stac.geotiff; cloud-optimized=true",
                           "eo:bands": [index[number]]}  # fmt: skip
            continue
        band = {"name": f"B{number}", "common_name": COMMON[number]}
        if flavour == "stac-1.1":
            band = {"name": f"B{number}", "eo:common_name": COMMON[number]}
        assets[COMMON[number]] = {
            "href": href,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data", "reflectance"],
            ("bands" if flavour == "stac-1.1" else "eo:bands"): [band],
        }
    for name in names:
        href = f"{base}/{name}"
        if name.endswith("_MTL.txt"):
            key = "MTL.txt" if flavour != "stac-1.1" else "mtl.txt"
            assets[key] = {"href": href, "type": "text/plain", "roles": ["metadata"]}
        elif name.endswith("_MTL.json"):
            assets["MTL.json"] = {"href": href, "type": "application/json", "roles": ["metadata"]}
        elif name.upper().endswith("_QA_PIXEL.TIF"):
            key = "QA_PIXEL.TIF" if flavour == "stac-0.7" else "qa_pixel"
            roles = ["cloud", "cloud-shadow", "snow-ice", "water-mask"]
            assets[key] = {"href": href, "type": "image/tiff; application=geotiff", "roles": roles}
    with rasterio.open(folder / bands[4]) as ds:
        left, bottom, right, top = ds.bounds
    doc: dict = {
        "type": "Feature",
        "stac_version": {"stac-0.7": "0.7.0", "stac-1.1": "1.1.0"}.get(flavour, "1.0.0"),
        "id": item_id or scene,
        "bbox": [left, bottom, right, top],
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
            ],
        },  # fmt: skip
        "properties": {
            "datetime": dt.datetime(2016, 6, 20, 18, 46, tzinfo=dt.timezone.utc).isoformat(),
            "landsat:correction": "L2SP" if level2 else "L1TP",
            "landsat:collection_number": "02" if level2 else "01",
        },
        "links": [],
        "assets": assets,
    }
    if flavour == "stac-0.7":
        doc["stac_extensions"] = ["eo"]
        doc["properties"]["eo:bands"] = [
            {"name": f"{'SR_' if level2 else ''}B{n}", "common_name": COMMON[n]}
            for n in sorted(bands)
        ]
    else:
        doc["stac_extensions"] = ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"]
    return doc


def write_item(folder: Path, base: str, path: Path, flavour: str = "stac-1.0", **kw) -> Path:
    path.write_text(json.dumps(item(folder, base, flavour, **kw), indent=2))
    return path
