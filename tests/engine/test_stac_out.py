"""STAC out: an Item beside every mask, a Collection per run, read back with pystac and loaded
through a real STAC client (odc-stac) to the pixels of the mask files; and the masks explain
themselves to GDAL's own ``gdalinfo`` (colour table, class names)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
from click.testing import CliRunner

from cloudseg.engine.cli import main

BIOME = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "biome-l8"
SCENES = [BIOME / "LC08_L1TP_110010_20160101_20170101_01_T1",
          BIOME / "LC08_L1TP_101001_20160101_20170101_01_T1"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stac-run")
    args = [*map(str, SCENES), "--model", "ukis-l1c", "--provider", "cpu", "--out", str(out),
            "-q", "--probabilities"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out


def test_an_item_beside_every_mask(run_dir: Path) -> None:
    for scene in SCENES:
        item = pystac.Item.from_file(str(run_dir / f"{scene.name}_item.json"))
        summary = json.loads((run_dir / f"{scene.name}_summary.json").read_text())
        mask = item.assets["mask"]
        with rasterio.open(mask.get_absolute_href()) as ds:
            crs, shape, transform = ds.crs, [ds.height, ds.width], list(ds.transform)[:6]
        assert mask.href == f"./{scene.name}_cloudmask.tif" and mask.roles == ["data"]
        assert mask.media_type == pystac.MediaType.COG
        classes = {c["value"]: c["name"] for c in mask.extra_fields["classification:classes"]}
        assert classes == {0: "clear", 1: "cloud", 2: "cloud_shadow", 255: "no_data"}
        band = mask.extra_fields["raster:bands"][0]
        assert (band["nodata"], band["data_type"], band["spatial_resolution"]) == (255, "uint8", 30)
        assert item.properties["eo:cloud_cover"] == pytest.approx(summary["cloud_cover"], abs=1e-3)
        assert item.properties["proj:code"] == f"EPSG:{crs.to_epsg()}"
        assert item.properties["proj:shape"] == shape
        assert item.properties["proj:transform"] == transform
        assert item.properties["processing:software"]["cloudseg"]
        assert item.datetime.year == 2016  # acquisition date from the product id
        assert {k: a.roles for k, a in item.assets.items()} == {
            "mask": ["data"], "probability": ["data"], "preview": ["overview"],
            "summary": ["metadata"]}  # fmt: skip
        (source,) = item.get_links("derived_from")
        assert source.href == str(scene.resolve())
        west, south, east, north = item.bbox
        assert 14 < west < east < 16 and 35 < south < north < 37  # EPSG:32633 near 15 E


def test_odc_stac_loads_the_masks_from_the_collection(run_dir: Path) -> None:
    collection = pystac.Collection.from_file(str(run_dir / "collection.json"))
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == sorted(s.name for s in SCENES)
    seen = set()
    for item in items:
        loaded = odc.stac.load([item], bands=["mask"], chunks=None)
        with rasterio.open(item.assets["mask"].get_absolute_href()) as ds:
            want = ds.read(1)
        got = loaded["mask"].isel(time=0).values
        np.testing.assert_array_equal(got, want)
        seen |= set(np.unique(want).tolist())
    assert {0, 1} <= seen  # clear and cloud among the masks: equality above means something


def test_a_skip_existing_run_keeps_every_item_in_its_collection(run_dir: Path) -> None:
    (run_dir / "collection.json").unlink()  # so the one read below is this run's
    args = [*map(str, SCENES), "--model", "ukis-l1c", "--provider", "cpu", "--out",
            str(run_dir), "-q", "--probabilities", "--skip-existing"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    collection = pystac.Collection.from_file(str(run_dir / "collection.json"))
    assert len(list(collection.get_items())) == len(SCENES)


def test_gdalinfo_shows_the_mask_classes(run_dir: Path) -> None:
    gdalinfo = shutil.which("gdalinfo")
    if gdalinfo is None:
        if os.environ.get("CI"):
            pytest.fail("gdalinfo is missing: .ci/run installs Debian's gdal-bin")
        pytest.skip("gdalinfo not installed (Debian: gdal-bin)")
    mask = run_dir / f"{SCENES[0].name}_cloudmask.tif"
    info = subprocess.run([gdalinfo, str(mask)], capture_output=True, text=True, check=True,
                          timeout=60).stdout  # fmt: skip
    assert "ColorInterp=Palette" in info and "Color Table (RGB with 256 entries)" in info
    assert "    1: 255,255,255,255" in info  # cloud white
    assert "CLASS_0=clear" in info and "CLASS_1=cloud" in info and "CLASS_255=no data" in info
