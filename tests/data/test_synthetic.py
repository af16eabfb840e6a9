"""Synthetic scenes, their scene-folder and 38-Cloud writers, and ``cloudseg-synth``.

Level ranges below come from the real 38-Cloud patches in ``/work/shared/data/38cloud-sample``:
clear land medians 7,000-14,000 DN in the visible and 9,000-20,000 in NIR, cloud medians
16,000-27,000 DN, water NIR near 5,500-6,500 DN (reflectance ~0).
"""

from __future__ import annotations

import dataclasses
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning

from cloudseg.bands import BANDS, valid_pixels
from cloudseg.data import cloud38
from cloudseg.data.synthetic import (
    CLOUD,
    MASK_NODATA,
    REFLECTANCE_ADD,
    REFLECTANCE_MULT,
    SceneSpec,
    make_scene,
    random_spec,
)
from cloudseg.data.synthetic_cli import main
from cloudseg.data.synthetic_dataset import (
    NONEMPTY_MAX_NODATA,
    dataset_specs,
    nodata_share,
    write_38cloud_dataset,
)
from cloudseg.data.synthetic_write import write_scene_folder
from cloudseg.errors import OutputExistsError

# Not square, so a swapped height and width cannot pass.
SPEC = SceneSpec(seed=11, height=640, width=600, cloud_fraction=0.35, water_fraction=0.08)
DATASET = {"train_scenes": 2, "test_scenes": 1, "size": 600, "seed": 5, "patch_size": 96}


@pytest.fixture(scope="session")
def scene():
    return make_scene(SPEC)


@pytest.fixture(scope="session")
def scene_files(scene, tmp_path_factory):
    return write_scene_folder(scene, tmp_path_factory.mktemp("scene") / "folder")


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset") / "38cloud"
    return root, write_38cloud_dataset(root, **DATASET)


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)


def _land(scene) -> np.ndarray:
    """Clear, valid pixels of plain land: not water, snow or sand."""
    layers = scene.layers
    return (scene.mask == 0) & ~layers["water"] & ~layers["snow"] & ~layers["sand"]


# --- generator -------------------------------------------------------------------------------


def test_same_seed_same_scene_other_seed_other_scene():
    spec = SceneSpec(seed=3, height=160, width=200)
    a, b = make_scene(spec), make_scene(spec)
    c = make_scene(dataclasses.replace(spec, seed=4))
    assert np.array_equal(a.bands, b.bands) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.bands, c.bands)
    assert not np.array_equal(a.mask, c.mask)
    assert random_spec(5) == random_spec(5) != random_spec(6)


def test_cloud_fraction_changes_only_the_clouds():
    spec = SceneSpec(seed=3, height=160, width=200)
    clear = make_scene(dataclasses.replace(spec, cloud_fraction=0.0))
    cloudy = make_scene(dataclasses.replace(spec, cloud_fraction=0.6))
    assert np.array_equal(clear.layers["water"], cloudy.layers["water"])
    assert np.array_equal(clear.mask == MASK_NODATA, cloudy.mask == MASK_NODATA)


def test_dtypes_and_band_ranges(scene):
    assert scene.bands.shape == (4, 640, 600) and scene.bands.dtype == np.uint16
    assert scene.mask.shape == (640, 600) and scene.mask.dtype == np.uint8
    assert set(np.unique(scene.mask)) <= {0, 1, 255}
    valid = scene.mask != MASK_NODATA
    assert scene.bands[:, valid].min() >= 1  # Level-1 QUANTIZE_CAL_MIN
    land, cloud = _land(scene), scene.mask == CLOUD
    # (low, high) bounds for the median DN of plain land and of cloud, per band.
    land_range = {"red": (6000, 16000), "green": (6500, 16000), "blue": (7500, 16000)}
    land_range["nir"] = (9000, 25000)
    for i, band in enumerate(BANDS):
        lo, hi = land_range[band]
        assert lo < np.median(scene.bands[i][land]) < hi, band
        assert 15000 < np.median(scene.bands[i][cloud]) < 40000, band
        assert np.percentile(scene.bands[i][cloud], 99) < 60000, band
    # Blue above red over clear land: the atmosphere's path radiance, as in the real patches.
    assert np.median(scene.bands[2][land]) > np.median(scene.bands[0][land])


def test_collar_is_no_data_in_every_band_and_marked_255(scene):
    h, w = scene.mask.shape
    for ys, xs in [(slice(0, 8), slice(0, 8)), (slice(0, 8), slice(w - 8, w))]:
        assert not scene.bands[:, ys, xs].any()
    for ys, xs in [(slice(h - 8, h), slice(0, 8)), (slice(h - 8, h), slice(w - 8, w))]:
        assert not scene.bands[:, ys, xs].any()
    assert scene.bands[:, h // 2 - 4 : h // 2 + 4, w // 2 - 4 : w // 2 + 4].all()
    valid = valid_pixels(scene.bands)
    assert np.array_equal(scene.mask == MASK_NODATA, ~valid)
    assert 0.6 < valid.mean() < 0.9  # a WRS-2 footprint fills about 3/4 of its raster


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_cloud_fraction_as_requested(fraction):
    # The generator cuts its cloud field at a quantile of valid pixels, so the fraction is exact
    # up to ties; 1 percentage point of tolerance.
    synthetic = make_scene(SceneSpec(seed=2, height=200, width=200, cloud_fraction=fraction))
    assert synthetic.cloud_cover / 100 == pytest.approx(fraction, abs=0.01)


def test_clouds_brighter_than_clear_land_in_every_band(scene):
    clear, cloud = scene.mask == 0, scene.mask == CLOUD
    for i, band in enumerate(BANDS):
        assert scene.bands[i][cloud].mean() > 1.3 * scene.bands[i][clear].mean(), band


def test_water_darker_than_land_in_nir_and_red(scene):
    water = scene.layers["water"] & (scene.mask == 0) & (scene.layers["shadow"] < 0.05)
    land = _land(scene)
    assert water.sum() > 100
    nir, red = scene.bands[3].astype(float), scene.bands[0].astype(float)
    assert nir[water].mean() < 0.6 * nir[land].mean()
    assert red[water].mean() < red[land].mean()
    # Water reflects almost nothing in NIR: within 0.03 reflectance of zero.
    sin_el = np.sin(np.radians(SPEC.sun_elevation))
    assert np.median(nir[water] * REFLECTANCE_MULT + REFLECTANCE_ADD) / sin_el < 0.03


def test_shadows_darker_than_surroundings_and_than_unshadowed_ground(scene):
    shadowed = _land(scene) & (scene.layers["shadow"] > 0.5) & (scene.layers["tau"] < 0.01)
    lit = _land(scene) & (scene.layers["shadow"] < 0.01) & (scene.layers["tau"] < 0.01)
    assert shadowed.sum() > 100
    # The same scene with clouds so high that their shadows fall off the raster.
    unshadowed = make_scene(dataclasses.replace(SPEC, cloud_height_m=1e7))
    for i, band in enumerate(BANDS):
        # Compare reflectance, not DN: DN carry a constant offset (REFLECTANCE_ADD) of 5000.
        rho = scene.bands[i] * REFLECTANCE_MULT + REFLECTANCE_ADD
        rho_unshadowed = unshadowed.bands[i] * REFLECTANCE_MULT + REFLECTANCE_ADD
        assert rho[shadowed].mean() < 0.8 * rho[lit].mean(), band
        # Blue darkens least: bluish sky light and path radiance still reach a shadow.
        depth = 0.9 if band == "blue" else 0.75
        assert rho[shadowed].mean() < depth * rho_unshadowed[shadowed].mean(), band


def test_full_size_scene_generates():
    start = time.perf_counter()
    big = make_scene(random_spec(1, 2000, cloud_fraction=0.3))
    print(f"2000 x 2000 scene: {time.perf_counter() - start:.2f} s")
    assert big.bands.shape == (4, 2000, 2000)
    assert big.cloud_cover == pytest.approx(30.0, abs=1.0)


# --- scene folder ----------------------------------------------------------------------------


def test_scene_folder_opens_as_landsat_level1(scene, scene_files):
    pid = SPEC.product_id
    assert re.fullmatch(r"LC08_L1TP_\d{6}_\d{8}_\d{8}_01_T1", pid)
    folder = scene_files["MTL"].parent
    expected = {f"{pid}_B{n}.TIF" for n in (2, 3, 4, 5)} | {f"{pid}_MTL.txt"}
    assert {p.name for p in folder.iterdir()} == expected | {f"{pid}_cloudmask_truth.TIF"}
    for band, key in zip(BANDS, ("B4", "B3", "B2", "B5"), strict=True):
        with rasterio.open(scene_files[key]) as src:
            assert 32601 <= src.crs.to_epsg() <= 32660  # WGS 84 / UTM north
            assert src.res == (30.0, 30.0)
            assert (src.height, src.width) == (640, 600)
            assert src.dtypes == ("uint16",) and src.nodata is None
            assert src.block_shapes == [(256, 256)] and src.compression.value == "DEFLATE"
            assert 100_000 < src.transform.c < 900_000 and 0 < src.transform.f < 9_400_000
            assert np.array_equal(src.read(1), scene.bands[BANDS.index(band)])
            grid = (src.crs, src.transform)
    with rasterio.open(scene_files["truth"]) as src:
        assert (src.crs, src.transform) == grid
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert np.array_equal(src.read(1), scene.mask)


def test_mtl_is_collection1_odl_with_the_scene_values(scene, scene_files):
    text = scene_files["MTL"].read_text()
    assert text.startswith("GROUP = L1_METADATA_FILE\n") and text.endswith("END\n")
    stack = []
    for line in text.splitlines():
        if m := re.fullmatch(r"\s*GROUP = (\w+)", line):
            stack.append(m[1])
        elif m := re.fullmatch(r"\s*END_GROUP = (\w+)", line):
            assert stack.pop() == m[1]
    assert stack == []

    def value(key: str) -> str:
        match = re.search(rf"^\s*{key} = (.+)$", text, re.MULTILINE)
        assert match, key
        return match[1].strip('"')

    for group in ("METADATA_FILE_INFO", "PRODUCT_METADATA", "IMAGE_ATTRIBUTES"):
        assert f"GROUP = {group}" in text
    assert value("LANDSAT_PRODUCT_ID") == SPEC.product_id
    assert value("COLLECTION_NUMBER") == "01"
    assert float(value("SUN_AZIMUTH")) == pytest.approx(SPEC.sun_azimuth, abs=1e-6)
    assert float(value("SUN_ELEVATION")) == pytest.approx(SPEC.sun_elevation, abs=1e-6)
    assert float(value("CLOUD_COVER")) == pytest.approx(scene.cloud_cover, abs=0.01)
    for n in (2, 3, 4, 5):
        assert value(f"REFLECTANCE_MULT_BAND_{n}") == "2.0000E-05"
        assert value(f"REFLECTANCE_ADD_BAND_{n}") == "-0.100000"
        assert (scene_files["MTL"].parent / value(f"FILE_NAME_BAND_{n}")).is_file()
    with rasterio.open(scene_files["B4"]) as src:
        assert int(value("UTM_ZONE")) == src.crs.to_epsg() - 32600
    # The MTL's rescaling turns cloud DN back into cloud-like TOA reflectance.
    sin_el = np.sin(np.radians(float(value("SUN_ELEVATION"))))
    rho = (scene.bands[0][scene.mask == CLOUD] * 2e-5 - 0.1) / sin_el
    assert 0.3 < np.median(rho) < 0.9


def test_scene_folder_refused_unless_overwrite(scene, tmp_path):
    out = tmp_path / "scene"
    write_scene_folder(scene, out)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_scene_folder(scene, out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    write_scene_folder(scene, out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)


# --- 38-Cloud dataset ------------------------------------------------------------------------


def _csv(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == cloud38.CSV_COLUMN
    return lines[1:]


def _listed(root: Path, split: str, band: str) -> set[str]:
    folder = cloud38.band_file(root, split, band, "x").parent
    prefix = f"{band}_"
    return {p.name[len(prefix) : -len(".TIF")] for p in folder.iterdir()}


def test_dataset_csvs_match_files_and_grid(dataset):
    root, summary = dataset
    rows, cols = cloud38.grid_shape(600, 600, 96)
    assert summary.patches == {"train": 2 * rows * cols, "test": rows * cols}
    for split, folder in cloud38.SPLIT_DIRS.items():
        names = _csv(root / folder / cloud38.PATCHES_CSV[split])
        assert len(names) == len(set(names)) == summary.patches[split]
        bands = [*BANDS, "gt"] if split == "train" else list(BANDS)
        for band in bands:
            assert _listed(root, split, band) == set(names), (split, band)
        assert not cloud38.band_file(root, "test", "gt", "x").parent.exists()
        scenes = _csv(root / folder / cloud38.SCENES_CSV[split])
        assert scenes == summary.scenes[split]
        for scene_id in scenes:
            ids = [cloud38.PATCH_NAME_RE.match(n) for n in names if n.endswith(scene_id)]
            cells = {(int(m["row"]), int(m["col"])) for m in ids}
            assert cells == {(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)}
            assert all(int(m["n"]) == (int(m["row"]) - 1) * cols + int(m["col"]) for m in ids)
    assert not set(summary.scenes["train"]) & set(summary.scenes["test"])


def test_dataset_patches_are_38cloud_files(dataset):
    root, summary = dataset
    names = _csv(root / cloud38.SPLIT_DIRS["train"] / cloud38.PATCHES_CSV["train"])
    for name in names[:: max(1, len(names) // 20)]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(cloud38.band_file(root, "train", "red", name)) as src:
                assert src.crs is None and src.compression.value == "PACKBITS"
                assert src.dtypes == ("uint16",) and src.shape == (96, 96)
        gt = _read(cloud38.band_file(root, "train", "gt", name))
        assert gt.dtype == np.uint8 and gt.shape == (96, 96)
        assert set(np.unique(gt)) <= {0, 255}


def test_nonempty_csv_lists_informative_patches_only(dataset):
    root, _ = dataset
    names = _csv(root / cloud38.SPLIT_DIRS["train"] / cloud38.PATCHES_CSV["train"])
    nonempty = _csv(root / cloud38.NONEMPTY_CSV["train"])
    shares = {
        n: nodata_share(np.stack([_read(cloud38.band_file(root, "train", b, n)) for b in BANDS]))
        for n in names
    }
    assert set(nonempty) == {n for n, s in shares.items() if s < NONEMPTY_MAX_NODATA}
    empty = {n for n, s in shares.items() if s == 1.0}
    assert empty and not empty & set(nonempty)


def _stitch(root: Path, split: str, band: str, scene_id: str, shape: tuple[int, int]):
    p = DATASET["patch_size"]
    rows, cols = cloud38.grid_shape(*shape, p)
    full = np.zeros((rows * p, cols * p), np.uint16 if band != "gt" else np.uint8)
    for r in range(rows):
        for c in range(cols):
            name = cloud38.patch_name(r + 1, c + 1, cols, scene_id)
            patch = _read(cloud38.band_file(root, split, band, name))
            full[r * p : (r + 1) * p, c * p : (c + 1) * p] = patch
    # The 38-Cloud evaluation's crop: centred, at floor((padded - size) / 2).
    top, left = (full.shape[0] - shape[0]) // 2, (full.shape[1] - shape[1]) // 2
    return full[top : top + shape[0], left : left + shape[1]]


def test_stitched_patches_give_back_the_scene_and_its_truth(dataset):
    root, summary = dataset
    counts = DATASET["train_scenes"], DATASET["test_scenes"], DATASET["size"], DATASET["seed"]
    specs = {spec.product_id: spec for _, spec in dataset_specs(*counts)}
    test_id = summary.scenes["test"][0]
    truth = make_scene(specs[test_id])
    gt = _read(cloud38.entire_scene_gt_file(root, "test", test_id))
    assert gt.shape == (600, 600) and gt.dtype == np.uint8
    assert np.array_equal(gt, (truth.mask == CLOUD).astype(np.uint8))  # 0 clear, 1 cloud
    for i, band in enumerate(BANDS):
        assert np.array_equal(_stitch(root, "test", band, test_id, (600, 600)), truth.bands[i])
    train_id = summary.scenes["train"][0]
    stitched_gt = _stitch(root, "train", "gt", train_id, (600, 600))
    train_gt = _read(cloud38.entire_scene_gt_file(root, "train", train_id))
    assert np.array_equal(stitched_gt // 255, train_gt)


def test_dataset_spans_clear_to_cloudy_scenes():
    fractions = [spec.cloud_fraction for split, spec in dataset_specs(6, 2, 64, 0)]
    assert min(fractions[:6]) < 0.08 and max(fractions[:6]) > 0.92
    assert len({spec.product_id for _, spec in dataset_specs(6, 2, 64, 0)}) == 8


# --- command line ----------------------------------------------------------------------------


def test_cli_scene_writes_then_refuses_without_overwrite(tmp_path):
    out = tmp_path / "scene"
    args = ["scene", str(out), "--size", "128", "--seed", "1", "--cloud-fraction", "0.3", "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert len(list(out.iterdir())) == 6 and "cloud cover 30.0 %" in result.stdout
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--overwrite" in lines[0] and str(out) in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0


def test_cli_dataset_writes_the_layout(tmp_path):
    out = tmp_path / "ds"
    args = ["dataset", str(out), "--train-scenes", "1", "--test-scenes", "1"]
    result = CliRunner().invoke(main, [*args, "--size", "192", "--patch-size", "64", "-q"])
    assert result.exit_code == 0, result.output
    assert (out / "38-Cloud_training" / "training_patches_38-Cloud.csv").is_file()
    assert len(_csv(out / "38-Cloud_test" / "test_patches_38-Cloud.csv")) == 9
    assert str(out) in result.stdout


@pytest.mark.parametrize("command", [[], ["scene"], ["dataset"]])
def test_cli_help_has_an_example(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and "cloudseg-synth" in result.output
