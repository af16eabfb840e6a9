"""Outputs of one scene: mask and probability GeoTIFFs, preview PNG, summary JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from cloudseg.bands import valid_pixels
from cloudseg.data.landsat import open_scene
from cloudseg.data.synthetic import SceneSpec, make_scene
from cloudseg.data.synthetic_write import write_scene_folder
from cloudseg.engine.outputs import BLOCK, OutputPaths, SceneWriter
from cloudseg.engine.summary import write_summary
from cloudseg.errors import OutputExistsError

H, W = 530, 700
THRESHOLD = 0.5
#: Uneven chunks, one crossing a tile row boundary, one a single row: sum to H.
CHUNKS = (1, 37, 300, 5, 100, 87)


@pytest.fixture(scope="session")
def scene(tmp_path_factory):
    """A real synthetic Level-1 folder (UTM, 30 m), its pixels and a probability field."""
    synthetic = make_scene(SceneSpec(seed=3, height=H, width=W))
    folder = tmp_path_factory.mktemp("scene") / synthetic.spec.product_id
    write_scene_folder(synthetic, folder)
    landsat = open_scene(folder)
    bands = synthetic.bands
    prob = np.random.default_rng(0).random((H, W), dtype=np.float32)
    return landsat, bands, valid_pixels(bands), prob


def _write(out_dir: Path, scene, chunks=CHUNKS, tags=None, **kwargs) -> SceneWriter:
    landsat, bands, valid, prob = scene
    paths = OutputPaths.for_scene(out_dir, landsat.scene_id)
    with SceneWriter(paths, landsat.profile(), **kwargs) as writer:
        row = 0
        for n in chunks:
            rows = slice(row, row + n)
            writer.write_rows(row, prob[rows], valid[rows], THRESHOLD, bands[:, rows])
            row += n
        writer.finish(tags or {"MODEL": "r18", "MODEL_VERSION": "1"})
    return writer


@pytest.fixture(scope="session")
def written(scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    writer = _write(out, scene, probabilities=True, preview_scale=4)
    return out, writer


def _expected_mask(scene) -> np.ndarray:
    _, _, valid, prob = scene
    return np.where(valid, (prob > THRESHOLD).astype(np.uint8), np.uint8(255))


def test_paths_named_from_scene_id(tmp_path):
    paths = OutputPaths.for_scene(tmp_path, "LC08_X")
    names = [p.name for p in paths.files(probabilities=True)]
    assert names == [
        "LC08_X_cloudmask.tif",
        "LC08_X_cloudprob.tif",
        "LC08_X_preview.png",
        "LC08_X_summary.json",
        "LC08_X_item.json",
    ]
    assert paths.prob not in paths.files(probabilities=False)


def test_mask_keeps_grid_and_format(scene, written):
    landsat, _, valid, _ = scene
    out, writer = written
    with rasterio.open(writer.paths.mask) as ds:
        assert ds.crs == landsat.crs and ds.crs.to_epsg() // 100 == 326
        assert ds.transform == landsat.transform
        assert (ds.width, ds.height, ds.count) == (W, H, 1)
        assert ds.dtypes == ("uint8",) and ds.nodata == 255
        assert ds.block_shapes == [(BLOCK, BLOCK)]
        assert ds.compression.name == "deflate"
        assert ds.overviews(1) == [2, 4]  # 700 -> 350 -> 175 px: the last fits in one tile
        assert ds.tags()["OVERVIEW_RESAMPLING"] == "NEAREST"  # the COG driver drops rio_overview
        mask = ds.read(1)
        tags = ds.tags()
    expected = _expected_mask(scene)
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask)) == {0, 1, 255}
    np.testing.assert_array_equal(mask == 255, ~valid)
    cover = 100.0 * np.count_nonzero(expected == 1) / np.count_nonzero(valid)
    assert float(tags["CLOUD_COVER"]) == pytest.approx(cover, abs=1e-6)
    assert float(tags["NODATA_PERCENT"]) == pytest.approx(100 * (1 - valid.mean()), abs=1e-6)
    assert int(tags["VALID_PIXELS"]) == np.count_nonzero(valid)
    assert float(tags["THRESHOLD"]) == THRESHOLD
    assert tags["MODEL"] == "r18" and tags["MODEL_VERSION"] == "1"
    assert tags["SOFTWARE"].startswith("cloudseg ")
    assert writer.stats.cloud_cover == pytest.approx(cover)
    # Nothing but the final files: no temporaries, no .aux.xml sidecars.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in writer.paths.files(probabilities=True)[:-2]
    )  # the summary and the STAC item are the run's (scene_task.finish), not the writer's


def test_probability_file_in_percent(scene, written):
    _, _, valid, prob = scene
    _, writer = written
    with rasterio.open(writer.paths.prob) as ds:
        assert ds.dtypes == ("uint8",) and ds.nodata == 255 and ds.scales == (0.01,)
        assert ds.overviews(1) == [2, 4]
        assert ds.tags()["OVERVIEW_RESAMPLING"] == "AVERAGE"
        assert ds.tags()["CLOUD_COVER"] == rasterio.open(writer.paths.mask).tags()["CLOUD_COVER"]
        values = ds.read(1)
    np.testing.assert_array_equal(values == 255, ~valid)
    np.testing.assert_allclose(values[valid] / 100, prob[valid], atol=0.005 + 1e-6)


def test_preview_is_false_colour_with_tinted_clouds(scene, written):
    _, _, valid, _ = scene
    _, writer = written
    picture = np.asarray(Image.open(writer.paths.preview))
    assert picture.shape == (math.ceil(H / 4), math.ceil(W / 4), 3)
    small_mask = _expected_mask(scene)[::4, ::4]
    assert (picture[small_mask == 255] == 0).all()
    cloud = picture[small_mask == 1].astype(int)
    # Half-cyan tint: green and blue at least half of full scale, red at most half.
    assert (cloud[:, 1] >= 127).all() and (cloud[:, 2] >= 127).all()
    assert (cloud[:, 0] <= 128).all()
    clear = picture[small_mask == 0]
    assert clear.std() > 10  # real false colour, not a flat fill


def test_summary_json(written, tmp_path):
    _, writer = written
    path = write_summary(
        tmp_path / "s.json", {"stats": writer.stats.as_dict(), "mp_s": np.float32(1.5)}
    )
    data = json.loads(path.read_text())
    assert data["stats"]["valid_pixels"] == writer.stats.valid_pixels
    assert data["mp_s"] == 1.5
    assert list(tmp_path.iterdir()) == [path]
    with pytest.raises(ValueError):
        write_summary(tmp_path / "nan.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == [path]


def test_existing_output_refused_before_any_work(scene, tmp_path):
    landsat = scene[0]
    paths = OutputPaths.for_scene(tmp_path, landsat.scene_id)
    paths.preview.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        paths.check(overwrite=False, probabilities=False)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _write(tmp_path, scene)
    assert list(tmp_path.iterdir()) == [paths.preview]
    assert paths.preview.read_bytes() == b"old"


def test_failure_inside_with_keeps_old_outputs(scene, tmp_path):
    _write(tmp_path, scene, probabilities=True)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    paths = OutputPaths.for_scene(tmp_path, scene[0].scene_id)
    with (
        pytest.raises(KeyboardInterrupt),
        SceneWriter(paths, scene[0].profile(), True, overwrite=True) as writer,
    ):
        writer.write_rows(0, scene[3][:300], scene[2][:300], THRESHOLD)
        raise KeyboardInterrupt  # Ctrl-C mid-scene
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_incomplete_scene_is_not_published(scene, tmp_path):
    with pytest.raises(RuntimeError, match="incomplete: 38 of 530"):
        _write(tmp_path, scene, chunks=(1, 37))
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_outputs(scene, tmp_path):
    _write(tmp_path, scene)
    paths = OutputPaths.for_scene(tmp_path, scene[0].scene_id)
    paths.mask.write_bytes(b"stale")
    _write(tmp_path, scene, chunks=(H,), overwrite=True)
    with rasterio.open(paths.mask) as ds:
        np.testing.assert_array_equal(ds.read(1), _expected_mask(scene))
    assert len(list(tmp_path.iterdir())) == 2  # mask and preview: the summary is the caller's


def test_rows_must_arrive_in_order_with_one_threshold(scene, tmp_path):
    landsat, _, valid, prob = scene
    paths = OutputPaths.for_scene(tmp_path, landsat.scene_id)
    with pytest.raises(ValueError, match="expected row 10, got 20"):
        with SceneWriter(paths, landsat.profile()) as writer:
            writer.write_rows(0, prob[:10], valid[:10], THRESHOLD)
            writer.write_rows(20, prob[20:30], valid[20:30], THRESHOLD)
    with pytest.raises(ValueError, match="threshold changed"):
        with SceneWriter(paths, landsat.profile()) as writer:
            writer.write_rows(0, prob[:10], valid[:10], THRESHOLD)
            writer.write_rows(10, prob[10:20], valid[10:20], 0.3)
    assert list(tmp_path.iterdir()) == []


def test_outputs_are_valid_cogs_with_overviews_and_tags(scene, tmp_path):
    """The mask and probabilities pass rio-cogeo's COG validator (GDAL's rules: tiled, IFDs and
    overviews before the image data) with neither errors nor warnings."""
    cog_validate = pytest.importorskip("rio_cogeo.cogeo").cog_validate
    writer = _write(tmp_path, scene, probabilities=True)
    for path in (writer.paths.mask, writer.paths.prob):
        assert cog_validate(str(path), quiet=True) == (True, [], [])
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.overviews(1) == [2, 4] and ds.block_shapes == [(BLOCK, BLOCK)]
            assert ds.nodata == 255 and ds.crs == scene[0].crs
            assert "CLOUD_COVER" in ds.tags() and ds.tags()["OVERVIEW_RESAMPLING"]
            if path == writer.paths.mask:
                np.testing.assert_array_equal(ds.read(1), _expected_mask(scene))
    assert len(list(tmp_path.iterdir())) == 3


def _hand_profile(height: int, width: int) -> dict:
    # What rasterio reports for a plain uint16 strip GeoTIFF in UTM 33N at 30 m.
    return {
        "driver": "GTiff", "dtype": "uint16", "nodata": None, "width": width, "height": height,
        "count": 4, "crs": CRS.from_epsg(32633), "interleave": "pixel", "tiled": False,
        "transform": Affine(30.0, 0.0, 399960.0, 0.0, -30.0, 4500000.0), "photometric": "RGB",
        "blockxsize": width, "blockysize": 1,
    }  # fmt: skip


def test_tall_scene_holds_no_scene_sized_array(tmp_path):
    height, width, k = 6000, 96, 8
    paths = OutputPaths.for_scene(tmp_path, "tall")
    rng = np.random.default_rng(1)
    with SceneWriter(paths, _hand_profile(height, width), preview_scale=k) as writer:
        for row in range(0, height, 384):
            n = min(384, height - row)
            prob = rng.random((n, width), dtype=np.float32)
            bands = rng.integers(1, 30000, (4, n, width), dtype=np.uint16)
            writer.write_rows(row, prob, np.ones((n, width), bool), THRESHOLD, bands)
    preview = writer.preview
    assert preview.mask.shape == (height // k, width // k)
    assert preview.bands.shape == (3, height // k, width // k)
    assert preview.nbytes == 7 * (height // k) * (width // k)  # uint8 mask + 3 uint16 bands
    # Every array the writer holds: one tile row of the mask (256 x W) and the preview's
    # decimated buffers; together under a sixth of the scene's mask, and independent of H but
    # for the (H / k) x (W / k) preview.
    held = [*vars(writer).values(), *writer._rows.values(), *vars(preview).values()]
    shapes = sorted(a.shape for a in held if isinstance(a, np.ndarray))
    assert shapes == [(3, height // k, width // k), (BLOCK, width), (height // k, width // k)]
    assert preview.nbytes + BLOCK * width < height * width / 6
    with rasterio.open(paths.mask) as ds:
        assert ds.crs.to_epsg() == 32633 and ds.overviews(1) == [2, 4, 8, 16, 32]
        assert float(ds.tags()["NODATA_PERCENT"]) == 0.0


def test_scene_without_valid_pixels(tmp_path):
    paths = OutputPaths.for_scene(tmp_path, "empty")
    with SceneWriter(paths, _hand_profile(40, 50)) as writer:
        writer.write_rows(0, np.ones((40, 50), np.float32), np.zeros((40, 50), bool), THRESHOLD)
    assert writer.stats.cloud_cover is None
    with rasterio.open(paths.mask) as ds:
        assert (ds.read(1) == 255).all() and ds.overviews(1) == []
        assert "CLOUD_COVER" not in ds.tags() and ds.tags()["NODATA_PERCENT"] == "100.000000"
    assert not np.asarray(Image.open(paths.preview)).any()


def test_the_mask_names_and_colours_its_classes(written) -> None:
    """A colour table and class names inside the mask GeoTIFF (after the COG rewrite), so QGIS
    and gdalinfo show clear, cloud and no data without a style file; no shadow class in a mask
    made without --shadow."""
    out, writer = written
    with rasterio.open(writer.paths.mask) as ds:
        colours, tags = ds.colormap(1), ds.tags(1)
        assert ds.colorinterp[0] == rasterio.enums.ColorInterp.palette
    assert colours[1] == (255, 255, 255, 255) and colours[255][3] == 0  # cloud white, no data clear
    assert colours[0] != colours[1]
    assert {k: v for k, v in tags.items() if k.startswith("CLASS_")} == {
        "CLASS_0": "clear", "CLASS_1": "cloud", "CLASS_255": "no data"}  # fmt: skip
