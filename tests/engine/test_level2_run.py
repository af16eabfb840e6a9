"""Real products in, what users open out: a Collection 2 Level-2 scene through ukis-csmask's L2A
model with shadows and polygons, USGS's QA beside ours, and one-line refusals."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudseg.data.synthetic import SceneSpec, make_scene
from cloudseg.data.synthetic_level2 import write_level2_folder

REAL_L2 = (
    Path(__file__).resolve().parents[2].parent
    / "shared" / "data" / "landsat-real" / "LC08_L2SP_001062_20201031_20201106_02_T2"
)  # fmt: skip
RUN = Path(sys.executable).parent / "cloudseg-run"
EVAL = Path(sys.executable).parent / "cloudseg-eval"

pytestmark = pytest.mark.skipif(
    not (Path(sys.prefix) / "lib").exists() or shutil.which(str(RUN)) is None,
    reason="cloudseg-run is not installed",
)


def run(*args: object, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CLOUDSEG_HOME": str(home)}
    cmd = [str(RUN), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def ukis() -> None:
    pytest.importorskip("ukis_csmask")


def test_real_level2_scene_with_shadow_and_polygons(ukis, tmp_path) -> None:
    if not REAL_L2.is_dir():
        pytest.skip(f"real Level-2 product not found at {REAL_L2}")
    cog_validate = pytest.importorskip("rio_cogeo.cogeo").cog_validate
    pyogrio = pytest.importorskip("pyogrio")
    out = tmp_path / "out"
    done = run(REAL_L2, "--model", "ukis-l2a", "--shadow", "--vector", "--out", out, "-q",
               "--provider", "cpu", home=tmp_path / "home")  # fmt: skip
    assert done.returncode == 0, done.stderr
    sid = REAL_L2.name
    mask = out / f"{sid}_cloudmask.tif"
    assert cog_validate(str(mask), quiet=True) == (True, [], [])
    with rasterio.open(mask) as ds, rasterio.open(next(REAL_L2.glob("*_SR_B4.TIF"))) as src:
        values = ds.read(1)
        assert (ds.crs, ds.transform, ds.shape) == (src.crs, src.transform, src.shape)
        tags = ds.tags()
    assert set(np.unique(values)) == {0, 1, 2, 255}
    assert float(tags["USGS_CLOUD_COVER"]) == pytest.approx(99.94, abs=0.1)
    assert 0 <= float(tags["USGS_AGREEMENT"]) <= 100 and "SHADOW_COVER" in tags
    summary = json.loads((out / f"{sid}_summary.json").read_text())
    assert summary["usgs_qa"]["cloud_cover"] == pytest.approx(99.94, abs=0.1)
    assert summary["shadow_cover"] > 0 and summary["polygons"]["cloud"] > 0
    assert summary["card"]["extra"]["licence"] == "Apache-2.0"
    gpkg = out / f"{sid}_clouds.gpkg"
    assert pyogrio.read_info(gpkg)["crs"] == "EPSG:32620"


def test_a_level1_model_on_a_level2_scene_is_one_line_in_a_users_words(tmp_path, r34_run):
    if not REAL_L2.is_dir():
        pytest.skip(f"real Level-2 product not found at {REAL_L2}")
    done = run(REAL_L2, "--model", r34_run[1], "--out", tmp_path / "out", home=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: ") and "Traceback" not in done.stderr
    for words in (
        "was trained on Level-1 digital numbers",
        "Collection 2 Level-2 (surface reflectance) product",
        "--model ukis-l2a",
        "the scene's Level-1 product",
    ):
        assert words in line, words  # fmt: skip
    assert "()" not in line and "value_kind" not in line and "SceneError" not in line
    assert not (tmp_path / "out").exists()  # refused before any work


def test_a_truncated_band_is_one_line_on_stderr(tmp_path) -> None:
    synthetic = make_scene(SceneSpec(seed=2, height=300, width=300))
    folder = tmp_path / "scene"
    write_level2_folder(synthetic, folder)
    band = next(folder.glob("*_SR_B4.TIF"))
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
    done = run(folder, "--model", "ukis-l2a", "--out", tmp_path / "out", "--provider", "cpu",
               home=tmp_path / "home")  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()  # GDAL's own error stream stays off the terminal
    assert line.startswith(f"Error: {band}: cannot read pixels: the file is truncated or corrupt")
    info = subprocess.run([str(RUN.with_name("cloudseg-info")), str(folder)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert info.returncode == 1 and len(info.stderr.strip().splitlines()) == 1
    assert "truncated or corrupt" in info.stderr


def test_synthetic_level2_buffer_and_qa_scores(ukis, tmp_path) -> None:
    """A synthetic scene in the exact Level-2 layout: the buffer only adds cloud, and
    cloudseg-eval --truth qa reproduces the agreement the summary reports."""
    synthetic = make_scene(SceneSpec(seed=6, height=320, width=320, cloud_fraction=0.4))
    folder = tmp_path / "scene"
    write_level2_folder(synthetic, folder)
    plain, buffered = tmp_path / "plain", tmp_path / "buffered"
    for out, extra in ((plain, []), (buffered, ["--dilate", "3"])):
        done = run(folder, "--model", "ukis-l2a", "--out", out, "-q", "--provider", "cpu",
                   *extra, home=tmp_path / "home")  # fmt: skip
        assert done.returncode == 0, done.stderr
    masks = {}
    for out in (plain, buffered):
        with rasterio.open(next(out.glob("*_cloudmask.tif"))) as ds:
            masks[out.name] = ds.read(1)
    a, b = masks["plain"], masks["buffered"]
    assert ((a == 1) <= (b == 1)).all() and (b == 1).sum() > (a == 1).sum()
    assert ((a == 255) == (b == 255)).all()
    summary = json.loads(next(plain.glob("*_summary.json")).read_text())
    scores = subprocess.run(
        [str(EVAL), "scenes", str(next(plain.glob("*_cloudmask.tif"))), "--truth", "qa", "-q",
         "--out", str(tmp_path / "scores")], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert scores.returncode == 0, scores.stderr
    report = json.loads((tmp_path / "scores" / "scores.json").read_text())
    accuracy = report["pooled"]["accuracy"]
    assert 100 * accuracy == pytest.approx(summary["usgs_qa"]["agreement"], abs=1e-6)
