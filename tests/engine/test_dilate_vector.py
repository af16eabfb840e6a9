"""The cloud buffer (row-streamed, square window) and the cloud polygons."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from cloudseg.engine import dilate
from cloudseg.engine.summary import CLEAR, CLOUD, NODATA, SHADOW


def brute_force(cloud: np.ndarray, n: int) -> np.ndarray:
    h, w = cloud.shape
    out = np.zeros_like(cloud)
    for r, c in zip(*np.nonzero(cloud), strict=True):
        out[max(0, r - n) : r + n + 1, max(0, c - n) : c + n + 1] = True
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 6), h=st.integers(1, 40), w=st.integers(1, 40))
def test_grow_is_a_square_dilation(seed: int, n: int, h: int, w: int) -> None:
    cloud = np.random.default_rng(seed).random((h, w)) < 0.05
    np.testing.assert_array_equal(dilate.grow(cloud, n), brute_force(cloud, n))


def write_mask(path, mask: np.ndarray) -> None:
    profile = dict(driver="GTiff", height=mask.shape[0], width=mask.shape[1], count=1,
                   dtype="uint8", nodata=NODATA, crs="EPSG:32633",
                   transform=from_origin(500000, 4600000, 30, 30), tiled=True,
                   blockxsize=256, blockysize=256)  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(mask, 1)


def test_buffer_file_streamed_in_bands_equals_the_whole_array(tmp_path, monkeypatch) -> None:
    """Bands of 64 rows with n rows of context give the whole-array dilation exactly; the buffer
    turns clear and shadow into cloud and never touches no data."""
    rng = np.random.default_rng(3)
    mask = rng.choice([CLEAR, SHADOW], size=(300, 170), p=[0.9, 0.1]).astype(np.uint8)
    mask[rng.random(mask.shape) < 0.01] = CLOUD
    mask[:, :20] = NODATA
    write_mask(tmp_path / "in.tif", mask)
    monkeypatch.setattr(dilate, "BAND_ROWS", 64)
    rows_seen = []
    counts = dilate.dilate_file(tmp_path / "in.tif", tmp_path / "out.tif", 5,
                                lambda r0, rows: rows_seen.append((r0, rows.shape)))  # fmt: skip
    with rasterio.open(tmp_path / "out.tif") as ds:
        got = ds.read(1)
        assert ds.crs.to_epsg() == 32633 and ds.nodata == NODATA
    want = mask.copy()
    want[brute_force(mask == CLOUD, 5) & (mask != NODATA)] = CLOUD
    np.testing.assert_array_equal(got, want)
    assert counts == ((want == CLOUD).sum(), (want == SHADOW).sum())
    assert [r for r, _ in rows_seen] == list(range(0, 300, 64))
    assert (got[:, :20] == NODATA).all()


def test_polygons_cover_the_cloud_and_shadow_in_the_scene_crs(tmp_path) -> None:
    pyogrio = pytest.importorskip("pyogrio")
    from cloudseg.engine.vector import LAYER, write_polygons

    mask = np.zeros((200, 200), np.uint8)
    mask[20:80, 30:90] = CLOUD  # a 60 x 60 px square: 3.24 km2 at 30 m
    mask[120:140, 120:180] = SHADOW
    mask[150:160, 10:20] = CLOUD
    mask[:, 195:] = NODATA
    write_mask(tmp_path / "mask.tif", mask)
    counts = write_polygons(tmp_path / "mask.tif", tmp_path / "clouds.gpkg")
    assert counts == {"cloud": 2, "cloud_shadow": 1}
    info = pyogrio.read_info(tmp_path / "clouds.gpkg", layer=LAYER)
    assert info["crs"] == "EPSG:32633" and info["geometry_type"] == "Polygon"
    _, _, geometry, fields = pyogrio.raw.read(tmp_path / "clouds.gpkg", layer=LAYER)
    classes, areas = fields
    by_class = {c: sorted(a for k, a in zip(classes, areas, strict=True) if k == c)
                for c in ("cloud", "cloud_shadow")}  # fmt: skip
    assert by_class["cloud"] == pytest.approx([100 * 900, 3600 * 900], rel=1e-6)
    assert by_class["cloud_shadow"] == pytest.approx([1200 * 900], rel=1e-6)
