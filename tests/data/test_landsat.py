"""Landsat scene reader and MTL parser, on tiny fake scenes that mirror USGS's real layout.

Every fake band is a 64 x 48 uint16 GeoTIFF in UTM zone 10N (EPSG:32610) on a 30 m grid, tiled in
16 x 16 blocks, holding ``band_number * 10000 + row * 64 + col`` (so a value names its band and
its pixel) with a no-data margin of zeros: the top 3 rows and the right 5 columns.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cloudseg.bands import BANDS, LANDSAT8_BAND
from cloudseg.data.landsat import open_scene
from cloudseg.data.mtl import read_mtl, surface_reflectance, toa_reflectance
from cloudseg.errors import MissingBandError, SceneError

WIDTH, HEIGHT, BLOCK = 64, 48, 16
CRS = "EPSG:32610"
TRANSFORM = Affine(30.0, 0.0, 553_785.0, 0.0, -30.0, 4_195_215.0)  # 30 m, north up
MARGIN_ROWS, MARGIN_COLS = 3, 5

C1_L1 = "LC08_L1TP_044034_20160612_20170324_01_T1"
C2_L1 = "LC08_L1TP_044034_20160612_20200906_02_T1"
C2_L2 = "LC08_L2SP_044034_20160612_20200906_02_T1"
L9_L1 = "LC09_L1TP_044034_20220410_20230424_02_T1"

# Collection 1 Level-1 MTL, cut to the groups and keys the reader uses plus their neighbours.
C1_MTL = f"""GROUP = L1_METADATA_FILE
  GROUP = METADATA_FILE_INFO
    ORIGIN = "Image courtesy of the U.S. Geological Survey"
    REQUEST_ID = "0501703243382_00011"
    LANDSAT_SCENE_ID = "LC80440342016164LGN01"
    LANDSAT_PRODUCT_ID = "{C1_L1}"
    COLLECTION_NUMBER = 01
    FILE_DATE = 2017-03-24T08:55:08Z
    STATION_ID = "LGN"
    PROCESSING_SOFTWARE_VERSION = "LPGS_2.7.0"
  END_GROUP = METADATA_FILE_INFO
  GROUP = PRODUCT_METADATA
    DATA_TYPE = "L1TP"
    COLLECTION_CATEGORY = "T1"
    SPACECRAFT_ID = "LANDSAT_8"
    SENSOR_ID = "OLI_TIRS"
    WRS_PATH = 44
    WRS_ROW = 34
    DATE_ACQUIRED = 2016-06-12
    SCENE_CENTER_TIME = "18:46:21.2616730Z"
    FILE_NAME_BAND_4 = "{C1_L1}_B4.TIF"
    FILE_NAME_BAND_QUALITY = "{C1_L1}_BQA.TIF"
  END_GROUP = PRODUCT_METADATA
  GROUP = IMAGE_ATTRIBUTES
    CLOUD_COVER = 12.34
    CLOUD_COVER_LAND = 12.30
    SUN_AZIMUTH = 127.46706232
    SUN_ELEVATION = 66.36487542
    EARTH_SUN_DISTANCE = 1.0154870
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = RADIOMETRIC_RESCALING
    RADIANCE_MULT_BAND_4 = 9.9012E-03
    RADIANCE_ADD_BAND_4 = -49.50602
    REFLECTANCE_MULT_BAND_2 = 2.0000E-05
    REFLECTANCE_MULT_BAND_3 = 2.0000E-05
    REFLECTANCE_MULT_BAND_4 = 2.0000E-05
    REFLECTANCE_MULT_BAND_5 = 2.0000E-05
    REFLECTANCE_ADD_BAND_2 = -0.100000
    REFLECTANCE_ADD_BAND_3 = -0.100000
    REFLECTANCE_ADD_BAND_4 = -0.100000
    REFLECTANCE_ADD_BAND_5 = -0.100000
  END_GROUP = RADIOMETRIC_RESCALING
  GROUP = PROJECTION_PARAMETERS
    MAP_PROJECTION = "UTM"
    DATUM = "WGS84"
    UTM_ZONE = 10
    GRID_CELL_SIZE_REFLECTIVE = 30.00
  END_GROUP = PROJECTION_PARAMETERS
END_GROUP = L1_METADATA_FILE
END
"""

# Collection 2 Level-2 MTL: LANDSAT_PRODUCT_ID and REFLECTANCE_MULT_BAND_n each appear twice (the
# L2SP product and its L1TP parent; surface and top-of-atmosphere reflectance), as in real files.
C2_L2_MTL = f"""GROUP = LANDSAT_METADATA_FILE
  GROUP = PRODUCT_CONTENTS
    ORIGIN = "Image courtesy of the U.S. Geological Survey"
    DIGITAL_OBJECT_IDENTIFIER = "https://doi.org/10.5066/P9OGBGM6"
    LANDSAT_PRODUCT_ID = "{C2_L2}"
    PROCESSING_LEVEL = "L2SP"
    COLLECTION_NUMBER = 02
    COLLECTION_CATEGORY = "T1"
    OUTPUT_FORMAT = "GEOTIFF"
    FILE_NAME_BAND_4 = "{C2_L2}_SR_B4.TIF"
  END_GROUP = PRODUCT_CONTENTS
  GROUP = IMAGE_ATTRIBUTES
    SPACECRAFT_ID = "LANDSAT_8"
    SENSOR_ID = "OLI_TIRS"
    WRS_PATH = 44
    WRS_ROW = 34
    DATE_ACQUIRED = 2016-06-12
    SCENE_CENTER_TIME = "18:46:21.2616730Z"
    CLOUD_COVER = 12.41
    SUN_AZIMUTH = 127.47013921
    SUN_ELEVATION = 66.36162318
    EARTH_SUN_DISTANCE = 1.0154870
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
    REFLECTANCE_MAXIMUM_BAND_4 = 1.602213
    REFLECTANCE_MINIMUM_BAND_4 = -0.199972
    REFLECTANCE_MULT_BAND_2 = 2.75e-05
    REFLECTANCE_MULT_BAND_3 = 2.75e-05
    REFLECTANCE_MULT_BAND_4 = 2.75e-05
    REFLECTANCE_MULT_BAND_5 = 2.75e-05
    REFLECTANCE_ADD_BAND_2 = -0.2
    REFLECTANCE_ADD_BAND_3 = -0.2
    REFLECTANCE_ADD_BAND_4 = -0.2
    REFLECTANCE_ADD_BAND_5 = -0.2
  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
  GROUP = LEVEL1_PROCESSING_RECORD
    LANDSAT_SCENE_ID = "LC80440342016164LGN02"
    LANDSAT_PRODUCT_ID = "{C2_L1}"
    PROCESSING_LEVEL = "L1TP"
  END_GROUP = LEVEL1_PROCESSING_RECORD
  GROUP = LEVEL1_RADIOMETRIC_RESCALING
    REFLECTANCE_MULT_BAND_2 = 2.0000E-05
    REFLECTANCE_MULT_BAND_3 = 2.0000E-05
    REFLECTANCE_MULT_BAND_4 = 2.0000E-05
    REFLECTANCE_MULT_BAND_5 = 2.0000E-05
    REFLECTANCE_ADD_BAND_2 = -0.100000
    REFLECTANCE_ADD_BAND_3 = -0.100000
    REFLECTANCE_ADD_BAND_4 = -0.100000
    REFLECTANCE_ADD_BAND_5 = -0.100000
  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING
END_GROUP = LANDSAT_METADATA_FILE
END
"""

# Collection 2 Level-1 MTL.json: the same groups as the text file, every value a string.
C2_L1_MTL_JSON = {
    "LANDSAT_METADATA_FILE": {
        "PRODUCT_CONTENTS": {
            "LANDSAT_PRODUCT_ID": C2_L1,
            "PROCESSING_LEVEL": "L1TP",
            "COLLECTION_NUMBER": "02",
        },
        "IMAGE_ATTRIBUTES": {
            "DATE_ACQUIRED": "2016-06-12",
            "SUN_AZIMUTH": "127.47013921",
            "SUN_ELEVATION": "66.36162318",
        },
        "LEVEL1_RADIOMETRIC_RESCALING": {
            **{f"REFLECTANCE_MULT_BAND_{n}": "2.0000E-05" for n in range(1, 10)},
            **{f"REFLECTANCE_ADD_BAND_{n}": "-0.100000" for n in range(1, 10)},
        },
    }
}


def band_dn(number: int) -> np.ndarray:
    """``(HEIGHT, WIDTH)`` uint16 values of Landsat band ``number``, margin 0."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    dn = (number * 10000 + rows * WIDTH + cols).astype(np.uint16)
    dn[:MARGIN_ROWS] = 0
    dn[:, WIDTH - MARGIN_COLS :] = 0
    return dn


def expected_dn() -> np.ndarray:
    """``(4, HEIGHT, WIDTH)`` uint16: what a reader must return, in contract order."""
    return np.stack([band_dn(n) for n in (LANDSAT8_BAND[b] for b in BANDS)])


def write_tif(path: Path, data: np.ndarray, crs=CRS, transform=TRANSFORM, descriptions=None):
    data = data[None] if data.ndim == 2 else data
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=len(data))
    profile.update(dtype=data.dtype, crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, tiled=True, blockxsize=BLOCK, blockysize=BLOCK) as ds:
        ds.write(data)
        for i, text in enumerate(descriptions or [], start=1):
            ds.set_band_description(i, text)


def make_scene(root: Path, product: str, sr: bool = False, lower: bool = False, mtl: str = ""):
    """Write a scene folder: bands 2-5 named as USGS names them, and the MTL text if given."""
    folder = root / product
    folder.mkdir(parents=True)
    for n in (2, 3, 4, 5):
        name = f"{product}_{'SR_' if sr else ''}B{n}.TIF"
        write_tif(folder / (name.lower() if lower else name), band_dn(n))
    if mtl:
        name = f"{product}_MTL.txt"
        (folder / (name.lower() if lower else name)).write_text(mtl)
    return folder


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenes")
    stack = root / "stack.tif"
    write_tif(stack, expected_dn())
    return {
        "c1_l1": make_scene(root, C1_L1, mtl=C1_MTL),
        "c2_l1": make_scene(root, C2_L1),
        "c2_l2": make_scene(root, C2_L2, sr=True, mtl=C2_L2_MTL),
        "lower": make_scene(root / "lower", C1_L1, lower=True, mtl=C1_MTL),
        "l9": make_scene(root, L9_L1),
        "stack": stack,
    }


# -- opening: layouts, names, ids --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind", "scene_id", "suffix"),
    [
        ("c1_l1", "L1", C1_L1, "_B4.TIF"),
        ("c2_l1", "L1", C2_L1, "_B4.TIF"),
        ("c2_l2", "L2", C2_L2, "_SR_B4.TIF"),
        ("lower", "L1", C1_L1, "_b4.tif"),
        ("l9", "L1", L9_L1, "_B4.TIF"),
        ("stack", "stack", "stack", ".tif"),
    ],
)
def test_open_scene_layouts(scenes, key, kind, scene_id, suffix):
    scene = open_scene(scenes[key])
    assert (scene.kind, scene.scene_id) == (kind, scene_id)
    assert (scene.width, scene.height, scene.shape) == (WIDTH, HEIGHT, (HEIGHT, WIDTH))
    assert scene.crs.to_epsg() == 32610
    assert scene.transform.almost_equals(TRANSFORM)
    assert scene.block_shape == (BLOCK, BLOCK)
    assert Path(scene.band_paths["red"]).name.endswith(suffix)
    assert (scene.mtl is not None) == (key in ("c1_l1", "c2_l2", "lower"))


def test_scene_id_from_lower_case_file_names_is_the_upper_case_product_id(tmp_path):
    scene = open_scene(make_scene(tmp_path, C2_L1, lower=True))
    assert scene.mtl is None and scene.scene_id == C2_L1
    assert Path(scene.band_paths["nir"]).name == f"{C2_L1}_B5.TIF".lower()


def test_band_files_are_red_green_blue_nir(scenes):
    scene = open_scene(scenes["c2_l2"])
    assert [p[-6:] for p in scene.band_files] == ["B4.TIF", "B3.TIF", "B2.TIF", "B5.TIF"]


# -- reading -----------------------------------------------------------------------------------

FULL = Window(0, 0, WIDTH, HEIGHT)


@pytest.mark.parametrize("key", ["c1_l1", "c2_l2", "lower", "stack"])
def test_read_returns_contract_band_order(scenes, key):
    with open_scene(scenes[key]).open() as reader:
        dn = reader.read(FULL)
    assert dn.dtype == np.uint16 and dn.shape == (4, HEIGHT, WIDTH)
    np.testing.assert_array_equal(dn, expected_dn())
    valid = dn[0] > 0
    assert [int(np.unique(b[valid] // 10000)[0]) for b in dn] == [4, 3, 2, 5]


@pytest.mark.parametrize("key", ["c1_l1", "stack"])
@pytest.mark.parametrize(
    "window", [Window(10, 7, 20, 13), Window(48, 32, 16, 16), Window(0, 0, 1, 1)]
)
def test_windowed_read_equals_slice_of_full_array(scenes, key, window):
    full = expected_dn()
    with open_scene(scenes[key]).open() as reader:
        dn = reader.read(window)
    r, c = int(window.row_off), int(window.col_off)
    np.testing.assert_array_equal(dn, full[:, r : r + window.height, c : c + window.width])


@pytest.mark.parametrize("key", ["c2_l1", "stack"])
def test_boundless_edge_reads_fill_outside_with_zero(scenes, key):
    full = expected_dn()
    with open_scene(scenes[key]).open() as reader:
        corner = reader.read(Window(-8, -4, 32, 32), boundless=True)
        edge = reader.read(Window(48, 40, 32, 32), boundless=True)
        outside = reader.read(Window(200, 200, 8, 8), boundless=True)
        with pytest.raises(ValueError, match="boundless=True"):
            reader.read(Window(48, 40, 32, 32))
    assert corner.shape == edge.shape == (4, 32, 32)
    np.testing.assert_array_equal(corner[:, 4:, 8:], full[:, :28, :24])
    assert not corner[:, :4].any() and not corner[:, :, :8].any()
    np.testing.assert_array_equal(edge[:, :8, :16], full[:, 40:, 48:])
    assert not edge[:, 8:].any() and not edge[:, :, 16:].any()
    assert outside.shape == (4, 8, 8) and not outside.any()


def test_valid_is_any_band_non_zero(scenes):
    with open_scene(scenes["c1_l1"]).open() as reader:
        valid = reader.valid(FULL)
        edge = reader.valid(Window(56, -2, 16, 8), boundless=True)
    assert valid.dtype == bool and valid.shape == (HEIGHT, WIDTH)
    assert valid.sum() == (HEIGHT - MARGIN_ROWS) * (WIDTH - MARGIN_COLS)
    assert not valid[:MARGIN_ROWS].any() and not valid[:, WIDTH - MARGIN_COLS :].any()
    assert edge.shape == (8, 16) and edge.sum() == 3 * 3  # rows 3..5, cols 56..58


def test_reads_are_windowed_never_whole_scene(scenes, monkeypatch):
    """open_scene reads no pixels, and a read asks GDAL for exactly its window, per band file.

    This is the "never loads the whole scene" contract: a spy on rasterio's read records every
    window requested from the files.
    """
    calls: list[Window] = []
    real_read = DatasetReader.read

    def spy(self, indexes=None, **kwargs):
        calls.append(kwargs.get("window"))
        return real_read(self, indexes, **kwargs)

    monkeypatch.setattr(DatasetReader, "read", spy)
    scene = open_scene(scenes["c1_l1"])
    assert calls == []
    with scene.open() as reader:
        dn = reader.read(Window(16, 16, 16, 8))
    assert dn.shape == (4, 8, 16)
    assert calls == [Window(16, 16, 16, 8)] * 4  # one per band file, none wider


def test_readers_in_threads_each_hold_their_own_handles(scenes):
    scene = open_scene(scenes["c2_l1"])
    windows = [Window(c, r, 16, 16) for r in range(0, HEIGHT, 16) for c in range(0, WIDTH, 16)]

    def work(part: list[Window]) -> list[np.ndarray]:
        with scene.open() as reader:  # one reader per thread, as the engine does
            return [reader.read(w) for w in part]

    with ThreadPoolExecutor(4) as pool:
        results = [a for part in pool.map(work, [windows[i::4] for i in range(4)]) for a in part]
    full = expected_dn()
    for w, dn in zip([w for i in range(4) for w in windows[i::4]], results, strict=True):
        np.testing.assert_array_equal(dn, full[:, w.toslices()[0], w.toslices()[1]])


def test_reader_closes_its_datasets(scenes):
    with open_scene(scenes["c1_l1"]).open() as reader:
        handles = list(reader._datasets.values())
        assert len(handles) == 4 and not any(ds.closed for ds in handles)
    assert all(ds.closed for ds in handles)
    reader.close()  # twice is fine


def test_scene_is_hashable_and_pickles_for_worker_processes(scenes):
    scene = open_scene(scenes["c2_l2"])
    assert pickle.loads(pickle.dumps(scene)) == scene
    assert {scene: 1}[open_scene(scenes["c2_l2"])] == 1


def test_profile_is_copied_from_the_red_band(scenes):
    scene = open_scene(scenes["c2_l2"])
    profile = scene.profile()
    assert type(profile) is dict
    assert (profile["width"], profile["height"], profile["count"]) == (WIDTH, HEIGHT, 1)
    assert profile["dtype"] == "uint16" and profile["crs"].to_epsg() == 32610
    assert profile["transform"] == scene.transform and profile["blockxsize"] == BLOCK
    profile["count"] = 3
    assert scene.profile()["count"] == 1


# -- 4-band stacks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "descriptions",
    [["NIR", "Blue", "Red", "Green"], ["B5", "B2", "B4", "B3"], ["nir ", "blue", "red", "green"]],
)
def test_stack_reordered_by_band_descriptions(tmp_path, descriptions):
    full = expected_dn()
    path = tmp_path / "LC08_L1TP_044034_20160612_20170324_01_T1.tif"
    write_tif(path, full[[3, 2, 0, 1]], descriptions=descriptions)  # nir, blue, red, green
    scene = open_scene(path)
    assert scene.band_indexes == (3, 4, 2, 1) and scene.scene_id == C1_L1
    with scene.open() as reader:
        np.testing.assert_array_equal(reader.read(FULL), full)


def test_stack_without_band_names_is_taken_in_contract_order(tmp_path):
    path = tmp_path / "scene.tif"
    write_tif(path, expected_dn(), descriptions=["Band 1", "Band 2", "", "Band 4"])
    assert open_scene(path).band_indexes == (1, 2, 3, 4)


def test_stack_with_a_band_named_twice_is_refused(tmp_path):
    path = tmp_path / "scene.tif"
    write_tif(path, expected_dn(), descriptions=["red", "red", "blue", "nir"])
    with pytest.raises(SceneError, match=r"scene\.tif band descriptions .* must name each"):
        open_scene(path)


def test_stack_with_three_bands_is_refused(tmp_path):
    path = tmp_path / "rgb.tif"
    write_tif(path, expected_dn()[:3])
    with pytest.raises(SceneError, match=r"rgb\.tif has 3 band\(s\); a scene file needs 4"):
        open_scene(path)


def test_one_band_file_points_to_its_folder(scenes):
    with pytest.raises(SceneError, match="_B4.TIF has 1 band.*pass its scene folder"):
        open_scene(open_scene(scenes["c2_l1"]).band_paths["red"])


# -- MTL ---------------------------------------------------------------------------------------


def test_mtl_collection1_text(scenes):
    mtl = open_scene(scenes["c1_l1"]).mtl
    assert mtl.scene_id == C1_L1 and mtl.processing_level == "L1TP" and not mtl.is_level2
    assert mtl.date_acquired == datetime.date(2016, 6, 12)
    assert mtl.sun_elevation == pytest.approx(66.36487542)
    assert mtl.sun_azimuth == pytest.approx(127.46706232)
    assert mtl.toa == {n: (pytest.approx(2e-5), pytest.approx(-0.1)) for n in (2, 3, 4, 5)}
    assert mtl.sr == {}
    assert mtl.groups["IMAGE_ATTRIBUTES"]["CLOUD_COVER"] == "12.34"


def test_mtl_collection2_level2_keeps_surface_and_toa_coefficients_apart(scenes):
    mtl = open_scene(scenes["c2_l2"]).mtl
    assert mtl.scene_id == C2_L2  # not the L1TP parent named later in the file
    assert mtl.processing_level == "L2SP" and mtl.is_level2
    assert mtl.sun_elevation == pytest.approx(66.36162318)
    assert mtl.sr[4] == (pytest.approx(2.75e-5), pytest.approx(-0.2))
    assert mtl.toa[4] == (pytest.approx(2e-5), pytest.approx(-0.1))


def test_mtl_collection2_json(tmp_path):
    path = tmp_path / f"{C2_L1}_MTL.json"
    path.write_text(json.dumps(C2_L1_MTL_JSON))
    mtl = read_mtl(path)
    assert (mtl.scene_id, mtl.processing_level) == (C2_L1, "L1TP")
    assert mtl.date_acquired == datetime.date(2016, 6, 12)
    assert mtl.sun_elevation == pytest.approx(66.36162318)
    assert sorted(mtl.toa) == list(range(1, 10)) and mtl.toa[5][1] == pytest.approx(-0.1)


def test_folder_prefers_mtl_text_and_finds_json_alone(tmp_path):
    folder = make_scene(tmp_path, C2_L1)
    (folder / f"{C2_L1}_MTL.json").write_text(json.dumps(C2_L1_MTL_JSON))
    assert open_scene(folder).mtl.path.suffix == ".json"
    (folder / f"{C2_L1}_MTL.txt").write_text(C1_MTL)
    assert open_scene(folder).mtl.path.suffix == ".txt"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("GROUP = SOMETHING_ELSE\nEND_GROUP = SOMETHING_ELSE\nEND\n", "not a Landsat MTL"),
        ("GROUP = L1_METADATA_FILE\n  SUN_ELEVATION 45\nEND\n", "line 2 is not NAME = VALUE"),
        ("GROUP = L1_METADATA_FILE\nEND_GROUP = OTHER\nEND\n", "END_GROUP OTHER is unmatched"),
        (C1_MTL.replace("66.36487542", "high"), "SUN_ELEVATION = 'high' is not a number"),
        ("", "has no GROUP"),
    ],
)
def test_malformed_mtl_names_the_file(tmp_path, text, message):
    path = tmp_path / f"{C1_L1}_MTL.txt"
    path.write_text(text)
    with pytest.raises(SceneError, match=message) as info:
        read_mtl(path)
    assert str(path) in str(info.value)


# -- reflectance -------------------------------------------------------------------------------


def test_toa_reflectance_matches_hand_computation(scenes):
    mtl = open_scene(scenes["c1_l1"]).mtl
    # Distinct coefficients per band prove each band gets its own (B4 red first, B5 nir last).
    toa = {4: (2.0e-5, -0.1), 3: (2.1e-5, -0.11), 2: (2.2e-5, -0.12), 5: (2.3e-5, -0.13)}
    mtl = dataclasses.replace(mtl, toa=toa)
    dn = np.array([[[0, 10000, 20000]]] * 4, np.uint16)  # (4, 1, 3)
    out = toa_reflectance(dn, BANDS, mtl)
    sin_e = math.sin(math.radians(66.36487542))
    for i, n in enumerate((4, 3, 2, 5)):
        m, a = toa[n]
        expected = [0.0, (m * 10000 + a) / sin_e, (m * 20000 + a) / sin_e]
        np.testing.assert_allclose(out[i, 0], expected, rtol=1e-6, atol=1e-7)
    assert out.dtype == np.float32
    assert (out[:, 0, 2] > 0.3).all()  # 0.3 / sin(66.4 deg) is about 0.327 for red
    assert np.isnan(toa_reflectance(dn, BANDS, mtl, nodata=np.nan)[:, 0, 0]).all()


def test_toa_reflectance_refuses_level2_and_missing_coefficients(scenes):
    l2 = open_scene(scenes["c2_l2"]).mtl
    dn = np.ones((4, 2, 2), np.uint16)
    with pytest.raises(SceneError, match="Level-2 MTL.*surface reflectance.*no top-of-atmos"):
        toa_reflectance(dn, BANDS, l2)
    sr = surface_reflectance(dn * 20000, BANDS, l2)
    np.testing.assert_allclose(sr, 2.75e-5 * 20000 - 0.2, rtol=1e-6)
    l1 = dataclasses.replace(open_scene(scenes["c1_l1"]).mtl, toa={4: (2e-5, -0.1)})
    with pytest.raises(SceneError, match="no REFLECTANCE_MULT_BAND_3 for green"):
        toa_reflectance(dn, BANDS, l1)
    with pytest.raises(ValueError, match=r"expected \(4, h, w\)"):
        toa_reflectance(dn[0], BANDS, l1)


# -- bad input ---------------------------------------------------------------------------------


def test_missing_band_names_folder_band_and_expected_file(tmp_path):
    folder = make_scene(tmp_path, C2_L1)
    (folder / f"{C2_L1}_B5.TIF").unlink()
    with pytest.raises(MissingBandError) as info:
        open_scene(folder)
    assert isinstance(info.value, SceneError) and isinstance(info.value, FileNotFoundError)
    assert str(info.value) == (
        f"scene folder {folder} has no band B5 (nir): expected a file ending _B5.TIF"
    )


def test_missing_level2_bands_are_listed_with_their_sr_names(tmp_path):
    folder = make_scene(tmp_path, C2_L2, sr=True)
    for n in (3, 5):
        (folder / f"{C2_L2}_SR_B{n}.TIF").unlink()
    with pytest.raises(MissingBandError, match=r"no bands B3 \(green\), B5 \(nir\): .*_SR_B3"):
        open_scene(folder)


def test_two_candidates_for_one_band(tmp_path):
    folder = make_scene(tmp_path, C2_L1)
    write_tif(folder / f"{C2_L1}_SR_B4.TIF", band_dn(4))
    with pytest.raises(SceneError, match=r"2 files for band B4 \(red\): .*_B4.TIF, .*_SR_B4.TIF"):
        open_scene(folder)


def test_band_files_of_different_products(tmp_path):
    folder = make_scene(tmp_path, C2_L1)
    (folder / f"{C2_L1}_B2.TIF").rename(folder / f"{C1_L1}_B2.TIF")
    with pytest.raises(SceneError, match=f"mixes band files of different products: .*{C1_L1}"):
        open_scene(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(data=band_dn(5)[:40]), r"band B5 \(nir\) \(.*_B5.TIF\) is 64 x 40 pixels but B4 "),
        (dict(crs="EPSG:32611"), r"B5 \(nir\) .* has CRS EPSG:32611 but B4 \(red\) has EPSG:326"),
        (
            dict(transform=Affine(30.0, 0.0, 553_800.0, 0.0, -30.0, 4_195_215.0)),
            r"B5 \(nir\) .* has transform \(30.0, 0.0, 553800.0.* but B4 \(red\) has \(30.0",
        ),
    ],
)
def test_bands_on_different_grids(tmp_path, change, message):
    folder = make_scene(tmp_path, C2_L1)
    write_tif(folder / f"{C2_L1}_B5.TIF", **{"data": band_dn(5), **change})
    with pytest.raises(SceneError, match=message):
        open_scene(folder)


def png_bytes(tmp_path: Path) -> bytes:
    """A valid image that GDAL would open with its PNG driver if it were not told GTiff only."""
    path = tmp_path / "image.png"
    with rasterio.open(path, "w", driver="PNG", width=4, height=4, count=1, dtype="uint16") as ds:
        ds.write(np.ones((1, 4, 4), np.uint16))
    return path.read_bytes()


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
@pytest.mark.parametrize(
    "content",
    [b"this is not a TIFF\n", b"II*\x00\x08\x00\x00\x00truncated", png_bytes],
    ids=["text", "corrupt", "png"],
)
def test_unreadable_band_file_is_named(tmp_path, content):
    folder = make_scene(tmp_path, C2_L1)
    bad = folder / f"{C2_L1}_B3.TIF"
    bad.write_bytes(content if isinstance(content, bytes) else content(tmp_path))
    with pytest.raises(SceneError, match=f"{bad} is not a readable GeoTIFF"):
        open_scene(folder)


def test_band_file_of_another_dtype(tmp_path):
    folder = make_scene(tmp_path, C2_L1)
    write_tif(folder / f"{C2_L1}_B2.TIF", band_dn(2).astype(np.float32))
    with pytest.raises(
        SceneError, match="_B2.TIF holds float32 pixels; Landsat DN files are uint16"
    ):
        open_scene(folder)


def test_nonexistent_scene(tmp_path):
    with pytest.raises(SceneError, match="does not exist"):
        open_scene(tmp_path / "nowhere")


def test_window_must_be_whole_pixels(scenes):
    with open_scene(scenes["c1_l1"]).open() as reader, pytest.raises(ValueError, match="whole"):
        reader.read(Window(0.5, 0, 8, 8))


@pytest.mark.parametrize("key", ["c1_l1", "stack"])
@pytest.mark.parametrize("factor", [3, 8, 32])
def test_coarse_read_takes_each_cells_centre(scenes, key, factor, monkeypatch):
    """Every cell of the coarse map is its centre pixel (its last row or column where the scene
    ends mid-cell), read in bands of rows that do not line up with the cells."""
    import cloudseg.data.landsat as landsat

    monkeypatch.setattr(landsat, "COARSE_ROWS", 7)  # several bands, and a short last one
    scene = open_scene(scenes[key])
    with scene.open() as reader:
        coarse = reader.read_coarse(factor)
    whole = expected_dn()
    rows = np.minimum(np.arange(0, HEIGHT, factor) + factor // 2, HEIGHT - 1)
    cols = np.minimum(np.arange(0, WIDTH, factor) + factor // 2, WIDTH - 1)
    np.testing.assert_array_equal(coarse, whole[:, rows][:, :, cols])


@pytest.mark.parametrize(
    ("scene_id", "day"),
    [
        ("LC08_L1TP_044034_20160612_20170324_01_T1", datetime.date(2016, 6, 12)),
        ("LC80440342016164LGN01", datetime.date(2016, 6, 12)),  # year, day of year 164
        ("scene", None),
    ],
)
def test_acquisition_date_from_the_id(scene_id: str, day: datetime.date | None) -> None:
    from cloudseg.data.landsat_files import acquired_on

    assert acquired_on(scene_id) == day
