"""STAC out: an Item beside every mask, a Collection for every run.

A catalogue-aware tool (odc-stac, stackstac, QGIS's STAC browser, a STAC API) finds a scene's
mask, preview and summary from ``<scene_id>_item.json`` alone: the assets carry their roles and
media types, the mask its class codes (the classification extension) and its band (the raster
extension: uint8, no data 255, resolution), the item its cloud cover (``eo:cloud_cover``), its
grid (the projection extension, from the mask file itself), what made it
(``processing:software``) and what it was made from (a ``derived_from`` link to the source item,
or the scene's folder or file). Asset hrefs are relative to the item, so a folder of outputs can
be moved or served as it is. The run's ``collection.json`` links every item the run wrote or
kept, with their spatial and temporal extent.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pystac
import rasterio
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.warp import transform_bounds, transform_geom

from cloudseg import __version__
from cloudseg.atomic import atomic_path
from cloudseg.data.landsat_files import acquired_on
from cloudseg.engine.summary import MASK_CODES, NODATA

__all__ = ["COLLECTION", "ITEM_SUFFIX", "item_for", "write_collection", "write_item"]

ITEM_SUFFIX = "_item.json"
COLLECTION = "collection.json"
PROCESSING_SCHEMA = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
GEOTIFF = pystac.MediaType.COG


def _acquired(scene_id: str, fallback: dt.datetime) -> dt.datetime:
    """Midnight UTC of the acquisition date the product id carries, else ``fallback``."""
    day = acquired_on(scene_id)
    return fallback if day is None else dt.datetime.combine(day, dt.time(), dt.timezone.utc)


def _footprint(mask: Path) -> tuple[dict[str, Any] | None, list[float] | None, dict[str, Any]]:
    """WGS84 geometry and bbox of the mask's grid, and its projection fields."""
    with rasterio.open(mask) as ds:
        crs, bounds, transform, shape = ds.crs, ds.bounds, ds.transform, (ds.height, ds.width)
        resolution = abs(transform.a)
    proj = {"shape": list(shape), "transform": list(transform)[:6], "resolution": resolution,
            "code": None if crs is None else (f"EPSG:{crs.to_epsg()}" if crs.to_epsg() else None),
            "wkt2": None if crs is None or crs.to_epsg() else crs.to_wkt()}  # fmt: skip
    if crs is None:
        return None, None, proj
    left, bottom, right, top = bounds
    ring = [[left, bottom], [right, bottom], [right, top], [left, top], [left, bottom]]
    geometry = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
    bbox = list(transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21))
    return geometry, bbox, proj


def item_for(summary: Mapping[str, Any], item_path: Path) -> pystac.Item:
    """The STAC Item of one scene's outputs, from its summary (hrefs relative to ``item_path``).

    Args:
        summary: the scene's ``_summary.json`` content (its ``outputs`` name the files).
        item_path: where the item will be written.
    """
    outputs = [Path(p) for p in summary["outputs"]]
    by_suffix = {p.name[len(summary["scene_id"]) :]: p for p in outputs}
    mask = by_suffix["_cloudmask.tif"]
    geometry, bbox, proj = _footprint(mask)
    now = dt.datetime.now(dt.timezone.utc)
    item = pystac.Item(
        id=summary["scene_id"], geometry=geometry, bbox=bbox,
        datetime=_acquired(summary["scene_id"], now), properties={},
    )  # fmt: skip
    item.stac_extensions.append(PROCESSING_SCHEMA)
    item.properties.update({
        "processing:software": {"cloudseg": __version__},
        "processing:datetime": now.isoformat(),
        "cloudseg:model": summary["card"]["name"],
        "cloudseg:provider": (summary.get("provider") or [None])[0],
    })  # fmt: skip
    EOExtension.ext(item, add_if_missing=True).cloud_cover = round(summary["cloud_cover"], 3)
    projection = ProjectionExtension.ext(item, add_if_missing=True)
    projection.code, projection.wkt2 = proj["code"], proj["wkt2"]
    projection.shape, projection.transform = proj["shape"], proj["transform"]

    def href(path: Path) -> str:
        return f"./{path.name}" if path.parent == item_path.parent else str(path.resolve())

    codes = ", ".join(f"{code} {name}" for code, name in MASK_CODES.items())
    mask_asset = pystac.Asset(href(mask), "cloud mask", description=codes, media_type=GEOTIFF,
                              roles=["data"])  # fmt: skip
    item.add_asset("mask", mask_asset)
    ClassificationExtension.ext(mask_asset, add_if_missing=True).classes = [
        Classification.create(
            value=code, name=name.replace(" ", "_"), description=name, nodata=code == NODATA
        )  # fmt: skip
        for code, name in MASK_CODES.items()
    ]
    RasterExtension.ext(mask_asset, add_if_missing=True).bands = [
        RasterBand.create(
            nodata=NODATA, data_type=DataType.UINT8, spatial_resolution=proj["resolution"]
        )  # fmt: skip
    ]
    if (prob := by_suffix.get("_cloudprob.tif")) is not None:
        asset = pystac.Asset(href(prob), "cloud probability, percent", media_type=GEOTIFF,
                             roles=["data"])  # fmt: skip
        item.add_asset("probability", asset)
        RasterExtension.ext(asset, add_if_missing=True).bands = [
            RasterBand.create(
                nodata=NODATA,
                data_type=DataType.UINT8,
                unit="percent",
                spatial_resolution=proj["resolution"],
            )  # fmt: skip
        ]
    for key, suffix, media, role, title in (
        ("preview", "_preview.png", pystac.MediaType.PNG, "overview", "preview"),
        ("summary", "_summary.json", pystac.MediaType.JSON, "metadata", "run summary"),
        ("polygons", "_clouds.gpkg", pystac.MediaType.GEOPACKAGE, "data", "cloud polygons"),
    ):
        if (path := by_suffix.get(suffix)) is not None:
            item.add_asset(key, pystac.Asset(href(path), title, media_type=media, roles=[role]))
    source = str(summary["scene"])
    is_item = source.endswith(".json") or source.startswith(("http://", "https://"))
    target = source if "://" in source else str(Path(source).resolve())
    item.add_link(pystac.Link("derived_from", target,
                              media_type=pystac.MediaType.GEOJSON if is_item else None,
                              title=summary.get("product")))  # fmt: skip
    return item


def write_item(summary: Mapping[str, Any], item_path: Path) -> Path:
    """Write the scene's item atomically beside its mask; returns its path."""
    return _write_json(item_path, item_for(summary, item_path).to_dict(include_self_link=False))


def write_collection(folder: Path, item_paths: Iterable[Path]) -> Path | None:
    """``collection.json`` in ``folder`` linking ``item_paths`` (relative where they are in
    ``folder``), with their extent; None (nothing written) when there is no item."""
    items = [(p, pystac.Item.from_file(str(p))) for p in item_paths if p.is_file()]
    if not items:
        return None
    boxes = [i.bbox for _, i in items if i.bbox]
    bbox = ([min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
             max(b[3] for b in boxes)] if boxes else [-180.0, -90.0, 180.0, 90.0])  # fmt: skip
    times = sorted(i.datetime for _, i in items if i.datetime)
    collection = pystac.Collection(
        id=f"cloudseg-{folder.resolve().name}",
        description="Cloud masks made by cloudseg: one item per scene (mask, preview, summary).",
        extent=pystac.Extent(
            pystac.SpatialExtent([bbox]),
            pystac.TemporalExtent([[times[0], times[-1]] if times else [None, None]]),
        ),  # fmt: skip
        license="other",
    )
    for path, item in items:
        rel = f"./{path.name}" if path.parent.resolve() == folder.resolve() else str(path.resolve())
        collection.add_link(pystac.Link("item", rel, media_type=pystac.MediaType.GEOJSON,
                                        title=item.id))  # fmt: skip
    return _write_json(folder / COLLECTION, collection.to_dict(include_self_link=False))


def _write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Indented JSON, written atomically (an item or collection appears whole or not at all)."""
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path
