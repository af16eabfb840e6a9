"""Cloud (and shadow) polygons of a finished mask, as a GeoPackage in the scene's CRS.

GDAL's polygonizer (``rasterio.features.shapes`` on the mask's band, not on an array) walks the
mask one scanline at a time, so memory grows with the polygons, not the scene; each polygon is
simplified (Douglas-Peucker, preserving topology) to a tolerance of one pixel, which removes the
staircase of pixel edges but no feature a pixel wide. The layer ``clouds`` holds one feature per
polygon with its class (``cloud``, ``cloud_shadow``) and area in square metres (square CRS units).

Needs shapely and pyogrio (the ``[vector]`` extra; ``make install`` adds it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import shapes

from cloudseg.engine.summary import CLOUD, SHADOW
from cloudseg.errors import ProviderError

LAYER = "clouds"
CLASSES = {CLOUD: "cloud", SHADOW: "cloud_shadow"}


def _libraries() -> tuple:
    try:
        import pyogrio.raw
        import shapely
        import shapely.geometry
    except ImportError as exc:
        raise ProviderError(
            f"--vector needs {exc.name}: pip install 'cloudseg[vector]' (shapely, pyogrio)"
        ) from None
    return shapely, pyogrio


def write_polygons(mask: Path, out: Path) -> dict[str, int]:
    """Polygonize the cloud and shadow codes of ``mask`` into the GeoPackage ``out``.

    Returns:
        Polygons written per class name.
    """
    shapely, pyogrio = _libraries()
    geoms, names, areas = [], [], []
    with rasterio.open(mask) as ds:
        tolerance = abs(ds.transform.a)
        # Every value is polygonized (GDAL has no "only these values"); two classes are kept.
        for geom, value in shapes(rasterio.band(ds, 1), connectivity=4, transform=ds.transform):
            code = int(value)
            if code not in CLASSES:
                continue
            poly = shapely.geometry.shape(geom).simplify(tolerance, preserve_topology=True)
            if poly.is_empty:
                continue
            geoms.append(poly)
            names.append(CLASSES[code])
            areas.append(poly.area)
        crs = ds.crs.to_wkt() if ds.crs else None
    counts = {name: names.count(name) for name in CLASSES.values()}
    pyogrio.raw.write(
        str(out),
        geometry=shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([], object),
        field_data=[np.array(names, dtype=object), np.array(areas, dtype=np.float64)],
        fields=["class", "area_m2"],
        layer=LAYER,
        driver="GPKG",
        geometry_type="Polygon",
        crs=crs,
    )
    return counts
