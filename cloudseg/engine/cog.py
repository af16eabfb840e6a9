"""Finished GeoTIFFs: overviews, tags and band description, then rewritten as a COG.

The engine streams each output as a tiled GeoTIFF (GDAL's COG driver cannot be written window by
window without holding the whole raster in memory), then, once the scene is done, builds the
overviews, sets the tags, and copies the file once through GDAL's COG driver (``OVERVIEWS=AUTO``
reuses the overviews already built with the right resampling). GDAL reads the file window by
window for that copy, so memory stays flat; the result is a Cloud Optimized GeoTIFF (IFDs and
overviews first, tiled, DEFLATE), still under its temporary name until the scene completes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.enums import Resampling

BLOCK = 256
#: GDAL COG driver options; ``AUTO`` reuses the overviews already built with the right resampling.
COG_OPTIONS = {
    "compress": "DEFLATE",
    "blocksize": BLOCK,
    "bigtiff": "IF_SAFER",
    "overviews": "AUTO",
}


def overview_factors(width: int, height: int, block: int = BLOCK) -> list[int]:
    """Factors 2, 4, 8, ... until the smallest overview fits in one ``block``-pixel tile."""
    factors, side = [], max(width, height)
    while math.ceil(side / (factors[-1] if factors else 1)) > block:
        factors.append(2 * factors[-1] if factors else 2)
    return factors


def finish_geotiff(
    path: Path,
    resampling: Resampling,
    tags: Mapping[str, str],
    description: str,
    scale: float | None = None,
    classes: Mapping[int, tuple[str, tuple[int, int, int, int]]] | None = None,
) -> None:
    """Overviews, tags and description on the closed GeoTIFF ``path``, then make it a COG.

    The COG driver drops the ``rio_overview`` tag domain, so the resampling is also kept as the
    ``OVERVIEW_RESAMPLING`` tag. ``classes`` (code -> (name, RGBA)) become the band's colour
    table and ``CLASS_<code>`` band tags, so GIS tools show the classes by name and colour.
    """
    with rasterio.open(path, "r+") as ds:
        if classes:
            ds.write_colormap(1, {code: rgba for code, (_, rgba) in classes.items()})
            ds.update_tags(1, **{f"CLASS_{code}": name for code, (name, _) in classes.items()})
        factors = overview_factors(ds.width, ds.height)
        if factors:
            ds.build_overviews(factors, resampling)
        ds.update_tags(ns="rio_overview", resampling=resampling.name)
        ds.update_tags(**tags, OVERVIEW_RESAMPLING=resampling.name.upper())
        ds.set_band_description(1, description)
        if scale is not None:
            ds.scales = (scale,)
    rewrite_as_cog(path, resampling)


def rewrite_as_cog(path: Path, resampling: Resampling) -> None:
    """Replace the GeoTIFF at ``path`` by a COG copy of it (existing overviews reused)."""
    cog = path.with_name(path.name + ".cog")
    try:
        rasterio.shutil.copy(
            path, cog, driver="COG", resampling=resampling.name.upper(), **COG_OPTIONS
        )
        os.replace(cog, path)
    finally:
        cog.unlink(missing_ok=True)
