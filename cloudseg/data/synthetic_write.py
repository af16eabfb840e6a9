"""Write a synthetic scene as a Landsat 8 Collection 1 Level-1 folder, as USGS ships one.

Folder contents (``<id>`` is the product id, e.g. ``LC08_L1TP_044034_20160620_20170224_01_T1``):

- ``<id>_B2.TIF`` ... ``<id>_B5.TIF``: uint16 DN, one band each, tiled 256 x 256, DEFLATE, real
  UTM CRS (EPSG:326xx) and 30 m grid; no-data is 0 but, as in USGS files, not set as a tag.
- ``<id>_MTL.txt``: ODL metadata with the names of a real Collection 1 MTL (groups
  ``METADATA_FILE_INFO``, ``PRODUCT_METADATA``, ``IMAGE_ATTRIBUTES``, ``MIN_MAX_RADIANCE``,
  ``MIN_MAX_REFLECTANCE``, ``MIN_MAX_PIXEL_VALUE``, ``RADIOMETRIC_RESCALING``,
  ``PROJECTION_PARAMETERS``), listing only the bands written.
- ``<id>_cloudmask_truth.TIF``: uint8 truth on the same grid, 0 clear, 1 cloud, 255 no data
  (set as the nodata tag).
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from cloudseg.atomic import atomic_path
from cloudseg.bands import BANDS, LANDSAT8_BAND
from cloudseg.data.synthetic import (
    CLOUD,
    MASK_NODATA,
    REFLECTANCE_ADD,
    REFLECTANCE_MULT,
    SceneSpec,
    SyntheticScene,
    wrs_centre,
)

#: File name suffixes after ``<product id>``.
BAND_SUFFIX = "_B{n}.TIF"
MTL_SUFFIX = "_MTL.txt"
TRUTH_SUFFIX = "_cloudmask_truth.TIF"


def is_synthetic_folder(path: str | os.PathLike[str]) -> bool:
    """True for a scene folder written here: it holds the synthetic truth beside the bands."""
    folder = Path(path)
    return folder.is_dir() and any(folder.glob(f"*{TRUTH_SUFFIX}"))


# Effective solar irradiance per OLI band (W m-2 um-1), from RADIANCE_MULT / REFLECTANCE_MULT of a
# real Collection 1 MTL; used only so that radiance and reflectance rescaling agree.
_ESUN = {2: 2019.7, 3: 1861.0, 4: 1569.4, 5: 960.4}

#: OLI band numbers written, in file order (B2 ... B5).
_BAND_NUMBERS = sorted(LANDSAT8_BAND[b] for b in BANDS)

_BAND_PROFILE = {
    "driver": "GTiff",
    "count": 1,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
}


def scene_grid(spec: SceneSpec) -> tuple[CRS, Affine]:
    """UTM CRS and 30 m north-up transform of the scene, centred on its WRS-2 path/row.

    The upper-left corner sits on a 30 m grid offset by 15 m, as USGS Level-1 grids do.
    """
    lat, lon = wrs_centre(spec.wrs_path, spec.wrs_row)
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    # Southern rows keep a northern zone with negative northings, as USGS Level-1 products do.
    crs = CRS.from_epsg(32600 + zone)
    (x,), (y,) = warp_transform(CRS.from_epsg(4326), crs, [lon], [lat])
    size = spec.pixel_size
    ulx = round((x - spec.width * size / 2) / size) * size + size / 2
    uly = round((y + spec.height * size / 2) / size) * size + size / 2
    return crs, Affine(size, 0.0, ulx, 0.0, -size, uly)


def earth_sun_distance(day_of_year: int) -> float:
    """Earth-sun distance in astronomical units (MTL ``EARTH_SUN_DISTANCE``)."""
    return 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (day_of_year - 4)))


Group = tuple[str, list[tuple[str, str]]]


def mtl_text(scene: SyntheticScene, crs: CRS, transform: Affine) -> str:
    """The scene's ``_MTL.txt`` in Collection 1 ODL: nested ``GROUP = ...`` / ``END_GROUP``."""
    groups = [
        _file_info(scene.spec),
        _product_metadata(scene.spec, crs, transform),
        _image_attributes(scene),
        *_rescaling(scene.spec),
        _projection(scene.spec, crs),
    ]
    lines = ["GROUP = L1_METADATA_FILE"]
    for name, items in groups:
        lines.append(f"  GROUP = {name}")
        lines += [f"    {key} = {value}" for key, value in items]
        lines.append(f"  END_GROUP = {name}")
    lines += ["END_GROUP = L1_METADATA_FILE", "END", ""]
    return "\n".join(lines)


def _file_info(spec: SceneSpec) -> Group:
    doy = spec.acquired.timetuple().tm_yday
    scene_id = f"LC8{spec.wrs_path:03d}{spec.wrs_row:03d}{spec.acquired.year}{doy:03d}LGN00"
    return (
        "METADATA_FILE_INFO",
        [
            ("ORIGIN", _q("Image courtesy of the U.S. Geological Survey")),
            ("REQUEST_ID", _q(f"0501{spec.processed:%y%m%d}{spec.seed % 1000:03d}_00001")),
            ("LANDSAT_SCENE_ID", _q(scene_id)),
            ("LANDSAT_PRODUCT_ID", _q(spec.product_id)),
            ("COLLECTION_NUMBER", "01"),
            ("FILE_DATE", f"{spec.processed.isoformat()}T10:11:12Z"),
            ("STATION_ID", _q("LGN")),
            ("PROCESSING_SOFTWARE_VERSION", _q("LPGS_2.7.0")),
        ],
    )


def _product_metadata(spec: SceneSpec, crs: CRS, transform: Affine) -> Group:
    pid = spec.product_id
    _, lon = wrs_centre(spec.wrs_path, spec.wrs_row)
    hours = (10.2 - lon / 15.0) % 24.0  # about 10:12 local solar time, in UTC
    centre_time = (dt.datetime(2000, 1, 1) + dt.timedelta(hours=hours)).strftime("%H:%M:%S.%f")
    # Corners are pixel centres, in geographic and in map coordinates.
    h, w = spec.shape
    names, cols, rows = ("UL", "UR", "LL", "LR"), (0, w - 1, 0, w - 1), (0, 0, h - 1, h - 1)
    xs = [transform.c + (c + 0.5) * transform.a for c in cols]
    ys = [transform.f + (r + 0.5) * transform.e for r in rows]
    lons, lats = warp_transform(crs, CRS.from_epsg(4326), xs, ys)
    corners = [
        item
        for i, n in enumerate(names)
        for item in (
            (f"CORNER_{n}_LAT_PRODUCT", f"{lats[i]:.5f}"),
            (f"CORNER_{n}_LON_PRODUCT", f"{lons[i]:.5f}"),
        )
    ] + [
        item
        for i, n in enumerate(names)
        for item in (
            (f"CORNER_{n}_PROJECTION_X_PRODUCT", f"{xs[i]:.3f}"),
            (f"CORNER_{n}_PROJECTION_Y_PRODUCT", f"{ys[i]:.3f}"),
        )
    ]
    return (
        "PRODUCT_METADATA",
        [
            ("DATA_TYPE", _q("L1TP")),
            ("COLLECTION_CATEGORY", _q("T1")),
            ("ELEVATION_SOURCE", _q("GLS2000")),
            ("OUTPUT_FORMAT", _q("GEOTIFF")),
            ("SPACECRAFT_ID", _q("LANDSAT_8")),
            ("SENSOR_ID", _q("OLI_TIRS")),
            ("WRS_PATH", str(spec.wrs_path)),
            ("WRS_ROW", str(spec.wrs_row)),
            ("NADIR_OFFNADIR", _q("NADIR")),
            ("TARGET_WRS_PATH", str(spec.wrs_path)),
            ("TARGET_WRS_ROW", str(spec.wrs_row)),
            ("DATE_ACQUIRED", spec.acquired.isoformat()),
            ("SCENE_CENTER_TIME", _q(f"{centre_time}0Z")),
            *corners,
            ("REFLECTIVE_LINES", str(h)),
            ("REFLECTIVE_SAMPLES", str(w)),
            *[(f"FILE_NAME_BAND_{n}", _q(pid + BAND_SUFFIX.format(n=n))) for n in _BAND_NUMBERS],
            ("METADATA_FILE_NAME", _q(pid + MTL_SUFFIX)),
        ],
    )


def _image_attributes(scene: SyntheticScene) -> Group:
    spec = scene.spec
    land = (scene.mask != MASK_NODATA) & ~scene.layers["water"]
    land_cover = 100.0 * np.count_nonzero(land & (scene.mask == CLOUD)) / max(land.sum(), 1)
    index = {LANDSAT8_BAND[b]: i for i, b in enumerate(BANDS)}
    doy = spec.acquired.timetuple().tm_yday
    return (
        "IMAGE_ATTRIBUTES",
        [
            ("CLOUD_COVER", f"{scene.cloud_cover:.2f}"),
            ("CLOUD_COVER_LAND", f"{land_cover:.2f}"),
            ("IMAGE_QUALITY_OLI", "9"),
            ("ROLL_ANGLE", "-0.001"),
            ("SUN_AZIMUTH", f"{spec.sun_azimuth:.8f}"),
            ("SUN_ELEVATION", f"{spec.sun_elevation:.8f}"),
            ("EARTH_SUN_DISTANCE", f"{earth_sun_distance(doy):.7f}"),
            *[
                (f"SATURATION_BAND_{n}", _q("Y" if (scene.bands[index[n]] == 65535).any() else "N"))
                for n in _BAND_NUMBERS
            ],
        ],
    )


def _rescaling(spec: SceneSpec) -> list[Group]:
    """Radiance and reflectance ranges and rescaling; radiance follows from reflectance."""
    d2 = earth_sun_distance(spec.acquired.timetuple().tm_yday) ** 2
    gain = {n: _ESUN[n] / (math.pi * d2) for n in _BAND_NUMBERS}
    mult, add = REFLECTANCE_MULT, REFLECTANCE_ADD
    bands = _BAND_NUMBERS
    return [
        (
            "MIN_MAX_RADIANCE",
            [
                item
                for n in bands
                for item in (
                    (f"RADIANCE_MAXIMUM_BAND_{n}", f"{(65535 * mult + add) * gain[n]:.5f}"),
                    (f"RADIANCE_MINIMUM_BAND_{n}", f"{(mult + add) * gain[n]:.5f}"),
                )
            ],
        ),
        (
            "MIN_MAX_REFLECTANCE",
            [
                item
                for n in bands
                for item in (
                    (f"REFLECTANCE_MAXIMUM_BAND_{n}", f"{65535 * mult + add:.6f}"),
                    (f"REFLECTANCE_MINIMUM_BAND_{n}", f"{mult + add:.6f}"),
                )
            ],
        ),
        (
            "MIN_MAX_PIXEL_VALUE",
            [
                item
                for n in bands
                for item in (
                    (f"QUANTIZE_CAL_MAX_BAND_{n}", "65535"),
                    (f"QUANTIZE_CAL_MIN_BAND_{n}", "1"),
                )
            ],
        ),
        (
            "RADIOMETRIC_RESCALING",
            [(f"RADIANCE_MULT_BAND_{n}", f"{mult * gain[n]:.4E}") for n in bands]
            + [(f"RADIANCE_ADD_BAND_{n}", f"{add * gain[n]:.5f}") for n in bands]
            + [(f"REFLECTANCE_MULT_BAND_{n}", f"{mult:.4E}") for n in bands]
            + [(f"REFLECTANCE_ADD_BAND_{n}", f"{add:.6f}") for n in bands],
        ),
    ]


def _projection(spec: SceneSpec, crs: CRS) -> Group:
    return (
        "PROJECTION_PARAMETERS",
        [
            ("MAP_PROJECTION", _q("UTM")),
            ("DATUM", _q("WGS84")),
            ("ELLIPSOID", _q("WGS84")),
            ("UTM_ZONE", str(crs.to_epsg() - 32600)),
            ("GRID_CELL_SIZE_REFLECTIVE", f"{spec.pixel_size:.2f}"),
            ("ORIENTATION", _q("NORTH_UP")),
            ("RESAMPLING_OPTION", _q("CUBIC_CONVOLUTION")),
        ],
    )


def write_scene_folder(
    scene: SyntheticScene, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[str, Path]:
    """Write ``scene`` as a Collection 1 Level-1 folder at ``out_dir`` (the folder itself).

    The folder appears whole or not at all; an existing one is refused unless ``overwrite``.

    Returns:
        Final paths by kind: ``"B2"`` ... ``"B5"``, ``"MTL"``, ``"truth"``.
    """
    spec = scene.spec
    pid = spec.product_id
    crs, transform = scene_grid(spec)
    profile = dict(
        _BAND_PROFILE, height=spec.height, width=spec.width, crs=crs, transform=transform
    )
    names = {f"B{LANDSAT8_BAND[b]}": pid + BAND_SUFFIX.format(n=LANDSAT8_BAND[b]) for b in BANDS}
    names.update(MTL=pid + MTL_SUFFIX, truth=pid + TRUTH_SUFFIX)
    final = Path(out_dir)
    with atomic_path(final, overwrite=overwrite) as tmp:
        tmp.mkdir()
        for i, band in enumerate(BANDS):
            key = f"B{LANDSAT8_BAND[band]}"
            with rasterio.open(tmp / names[key], "w", dtype="uint16", **profile) as dst:
                dst.write(scene.bands[i], 1)
        with rasterio.open(
            tmp / names["truth"], "w", dtype="uint8", nodata=MASK_NODATA, **profile
        ) as dst:
            dst.write(scene.mask, 1)
        (tmp / names["MTL"]).write_text(mtl_text(scene, crs, transform))
    return {key: final / name for key, name in names.items()}


def _q(text: str) -> str:
    """An ODL string value: double-quoted."""
    return f'"{text}"'
