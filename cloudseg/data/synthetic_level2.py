"""Write a synthetic scene as a Landsat 8 Collection 2 Level-2 (L2SP) folder, as USGS ships one.

Folder contents (``<id>`` is ``LC08_L2SP_<path><row>_<acquired>_<processed>_02_T1``):

- ``<id>_SR_B2.TIF`` ... ``<id>_SR_B5.TIF``: uint16 surface reflectance, ``DN = (rho + 0.2) /
  2.75e-5`` (the Collection 2 Level-2 scaling), 0 = fill, tiled 256 x 256, DEFLATE, the scene's
  UTM grid.
- ``<id>_QA_PIXEL.TIF``: uint16 Collection 2 pixel quality (bit 0 fill, 3 cloud, 4 cloud
  shadow, 6 clear; bits 8-9 / 10-11 cloud / shadow confidence), from the synthetic truth.
- ``<id>_MTL.txt`` and ``<id>_MTL.json``: the Collection 2 metadata groups the readers use
  (``PRODUCT_CONTENTS``, ``IMAGE_ATTRIBUTES``, ``LEVEL2_SURFACE_REFLECTANCE_PARAMETERS``,
  ``LEVEL1_RADIOMETRIC_RESCALING``), with their real names.
- ``<id>_cloudmask_truth.TIF``: the truth, as in the Level-1 folder.

Surface reflectance here is the scene's top-of-atmosphere reflectance less the path reflectance
the generator added: a stand-in for atmospheric correction, enough to test the layout and the
scaling, not a model of it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import rasterio

from cloudseg.atomic import atomic_path
from cloudseg.bands import BANDS, LANDSAT8_BAND
from cloudseg.data.synthetic import (
    CLOUD,
    MASK_NODATA,
    REFLECTANCE_ADD,
    REFLECTANCE_MULT,
    SyntheticScene,
)
from cloudseg.data.synthetic_write import TRUTH_SUFFIX, scene_grid

#: Collection 2 Level-2 surface reflectance scaling (the same for every OLI band).
SR_MULT, SR_ADD = 2.75e-5, -0.2
#: Mean path reflectance removed per band (red, green, blue, nir), as the generator adds it.
_PATH = (0.030, 0.045, 0.075, 0.010)
#: Two-way atmospheric transmittance per band (red, green, blue, nir). Atmospheric correction
#: inverts ``toa = path + T * sr``, so it divides by ``T``: bright cloud and snow come out of it
#: above their top-of-atmosphere reflectance, above 1.0 for thick cloud, as in real Level-2
#: products (tests/data/test_synthetic_brightness.py holds the generator to them).
_TRANSMITTANCE = (0.80, 0.74, 0.66, 0.88)
#: QA_PIXEL bits.
FILL, CLOUD_BIT, SHADOW_BIT, CLEAR_BIT = 1 << 0, 1 << 3, 1 << 4, 1 << 6
HIGH_CLOUD, HIGH_SHADOW, LOW_CLOUD = 3 << 8, 3 << 10, 1 << 8
#: Shadow opacity from which the QA band says cloud shadow.
SHADOW_OPACITY = 0.3

_PROFILE = {
    "driver": "GTiff",
    "count": 1,
    "tiled": True,
    "blockxsize": 256,
    "blockysize": 256,
    "compress": "deflate",
}


def level2_product_id(scene: SyntheticScene) -> str:
    """The Level-2 twin of the scene's Level-1 product id: ``L2SP``, collection 02."""
    spec = scene.spec
    return (
        f"LC08_L2SP_{spec.wrs_path:03d}{spec.wrs_row:03d}_{spec.acquired:%Y%m%d}"
        f"_{spec.processed:%Y%m%d}_02_T1"
    )


def surface_dn(scene: SyntheticScene) -> np.ndarray:
    """``(4, H, W)`` uint16 Level-2 DN in contract order; 0 outside the footprint."""
    sin_e = math.sin(math.radians(scene.spec.sun_elevation))
    valid = scene.mask != MASK_NODATA
    out = np.zeros(scene.bands.shape, np.uint16)
    for b in range(len(BANDS)):
        toa = (scene.bands[b] * REFLECTANCE_MULT + REFLECTANCE_ADD) / sin_e
        sr = np.clip((toa - _PATH[b]) / _TRANSMITTANCE[b], -0.2, 1.6)
        dn = np.clip(np.rint((sr - SR_ADD) / SR_MULT), 1, 65535).astype(np.uint16)
        out[b] = np.where(valid, dn, 0)
    return out


def qa_pixel(scene: SyntheticScene) -> np.ndarray:
    """``(H, W)`` uint16 Collection 2 QA_PIXEL from the truth and the shadow layer."""
    cloud = scene.mask == CLOUD
    shadow = (scene.layers["shadow"] > SHADOW_OPACITY) & ~cloud
    qa = np.full(scene.mask.shape, CLEAR_BIT | LOW_CLOUD, np.uint16)
    qa[cloud] = CLOUD_BIT | HIGH_CLOUD
    qa[shadow] = SHADOW_BIT | HIGH_SHADOW | LOW_CLOUD
    qa[scene.mask == MASK_NODATA] = FILL
    return qa


def mtl_groups(scene: SyntheticScene, product_id: str) -> dict[str, dict[str, str]]:
    """The Collection 2 Level-2 MTL as ``{group: {name: value}}`` (values as USGS writes them)."""
    spec = scene.spec
    files = {
        f"FILE_NAME_BAND_{LANDSAT8_BAND[b]}": f"{product_id}_SR_B{LANDSAT8_BAND[b]}.TIF"
        for b in BANDS
    }
    numbers = sorted(LANDSAT8_BAND[b] for b in BANDS)
    return {
        "PRODUCT_CONTENTS": {
            "ORIGIN": "Image courtesy of the U.S. Geological Survey",
            "LANDSAT_PRODUCT_ID": product_id,
            "PROCESSING_LEVEL": "L2SP",
            "COLLECTION_NUMBER": "02",
            "COLLECTION_CATEGORY": "T1",
            "OUTPUT_FORMAT": "GEOTIFF",
            **files,
            "FILE_NAME_QUALITY_L1_PIXEL": f"{product_id}_QA_PIXEL.TIF",
            "FILE_NAME_METADATA_ODL": f"{product_id}_MTL.txt",
            "FILE_NAME_METADATA_JSON": f"{product_id}_MTL.json",
        },
        "IMAGE_ATTRIBUTES": {
            "SPACECRAFT_ID": "LANDSAT_8",
            "SENSOR_ID": "OLI_TIRS",
            "WRS_PATH": str(spec.wrs_path),
            "WRS_ROW": str(spec.wrs_row),
            "DATE_ACQUIRED": spec.acquired.isoformat(),
            "CLOUD_COVER": f"{scene.cloud_cover:.2f}",
            "SUN_AZIMUTH": f"{spec.sun_azimuth:.8f}",
            "SUN_ELEVATION": f"{spec.sun_elevation:.8f}",
        },
        "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": {
            **{f"REFLECTANCE_MAXIMUM_BAND_{n}": "1.602213" for n in numbers},
            **{f"REFLECTANCE_MINIMUM_BAND_{n}": "-0.199972" for n in numbers},
            **{f"QUANTIZE_CAL_MAX_BAND_{n}": "65535" for n in numbers},
            **{f"QUANTIZE_CAL_MIN_BAND_{n}": "1" for n in numbers},
            **{f"REFLECTANCE_MULT_BAND_{n}": f"{SR_MULT:.2e}" for n in numbers},
            **{f"REFLECTANCE_ADD_BAND_{n}": f"{SR_ADD}" for n in numbers},
        },
        "LEVEL1_RADIOMETRIC_RESCALING": {
            **{f"REFLECTANCE_MULT_BAND_{n}": f"{REFLECTANCE_MULT:.4E}" for n in numbers},
            **{f"REFLECTANCE_ADD_BAND_{n}": f"{REFLECTANCE_ADD:.6f}" for n in numbers},
        },
    }


def mtl_odl(groups: dict[str, dict[str, str]]) -> str:
    """Groups as Collection 2 ODL text (strings quoted, numbers bare, as USGS writes them)."""
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for group, items in groups.items():
        lines.append(f"  GROUP = {group}")
        for key, value in items.items():
            bare = _is_number(value) or key.startswith("DATE_")
            lines.append(f"    {key} = {value if bare else json.dumps(value)}")
        lines.append(f"  END_GROUP = {group}")
    lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END", ""]
    return "\n".join(lines)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_level2_folder(
    scene: SyntheticScene, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[str, Path]:
    """Write ``scene`` as a Collection 2 Level-2 folder at ``out_dir`` (whole or not at all).

    Returns:
        Final paths by kind: ``"SR_B2"`` ... ``"SR_B5"``, ``"QA_PIXEL"``, ``"MTL"``,
        ``"MTL_JSON"``, ``"truth"``.
    """
    pid = level2_product_id(scene)
    crs, transform = scene_grid(scene.spec)
    profile = dict(_PROFILE, height=scene.spec.height, width=scene.spec.width, crs=crs,
                   transform=transform)  # fmt: skip
    names = {f"SR_B{LANDSAT8_BAND[b]}": f"{pid}_SR_B{LANDSAT8_BAND[b]}.TIF" for b in BANDS}
    names |= {"QA_PIXEL": f"{pid}_QA_PIXEL.TIF", "MTL": f"{pid}_MTL.txt",
              "MTL_JSON": f"{pid}_MTL.json", "truth": pid + TRUTH_SUFFIX}  # fmt: skip
    dn, groups = surface_dn(scene), mtl_groups(scene, pid)
    final = Path(out_dir)
    with atomic_path(final, overwrite=overwrite) as tmp:
        tmp.mkdir()
        for i, band in enumerate(BANDS):
            path = tmp / names[f"SR_B{LANDSAT8_BAND[band]}"]
            with rasterio.open(path, "w", dtype="uint16", nodata=0, **profile) as dst:
                dst.write(dn[i], 1)
        with rasterio.open(
            tmp / names["QA_PIXEL"], "w", dtype="uint16", nodata=1, **profile
        ) as dst:
            dst.write(qa_pixel(scene), 1)
        with rasterio.open(
            tmp / names["truth"], "w", dtype="uint8", nodata=MASK_NODATA, **profile
        ) as dst:
            dst.write(scene.mask, 1)
        (tmp / names["MTL"]).write_text(mtl_odl(groups))
        doc = {"LANDSAT_METADATA_FILE": groups}
        (tmp / names["MTL_JSON"]).write_text(json.dumps(doc, indent=2) + "\n")
    return {key: final / name for key, name in names.items()}
