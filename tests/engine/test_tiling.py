"""The tile grid covers every pixel with in-scene, model-sized windows; padding round-trips."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cloudseg.engine.tiling import Tile, TileSpec, pad_tile, tile_grid, unpad_tile
from cloudseg.errors import CloudsegError, ModelError

SPECS = [TileSpec(64, 0), TileSpec(64, 8), TileSpec(96, 16), TileSpec(384, 32)]
spec_st = st.sampled_from(SPECS)
size_st = st.integers(1, 1200)


def _check_grid(height: int, width: int, spec: TileSpec) -> list[Tile]:
    tiles = tile_grid(height, width, spec)
    covered = np.zeros((height, width), np.int32)
    for i, t in enumerate(tiles):
        assert t.index == i
        # Inside the scene, and exactly a tile unless the scene is smaller.
        assert 0 <= t.row_off and t.row_end <= height and 0 <= t.col_off and t.col_end <= width
        assert t.height == min(height, spec.tile) and t.width == min(width, spec.tile)
        top, bottom, left, right = t.pad
        assert t.height + top + bottom == spec.tile and t.width + left + right == spec.tile
        assert t.border == (t.row_off == 0, t.row_end == height, t.col_off == 0, t.col_end == width)
        w = t.window
        assert (w.row_off, w.col_off, w.height, w.width) == (
            t.row_off,
            t.col_off,
            t.height,
            t.width,
        )
        covered[t.row_off : t.row_end, t.col_off : t.col_end] += 1
    assert covered.min() >= 1, "a pixel no tile covers"
    # No two tiles share a window, and the order is row-major.
    positions = [(t.row_off, t.col_off) for t in tiles]
    assert len(set(positions)) == len(positions)
    assert positions == sorted(positions)
    return tiles


@settings(max_examples=150, deadline=None)
@given(height=size_st, width=size_st, spec=spec_st)
@example(height=1, width=1, spec=SPECS[3])
@example(height=384, width=384, spec=SPECS[3])
@example(height=385, width=385, spec=SPECS[3])
@example(height=383, width=1, spec=SPECS[3])
@example(height=64, width=65, spec=SPECS[0])
def test_grid_covers_every_pixel_inside_the_scene(height: int, width: int, spec: TileSpec) -> None:
    _check_grid(height, width, spec)


@settings(max_examples=150, deadline=None)
@given(size=size_st, spec=spec_st)
def test_grid_count_is_minimal_and_steps_stay_within_stride(size: int, spec: TileSpec) -> None:
    tiles = tile_grid(size, 7, spec)
    offsets = [t.row_off for t in tiles]
    if size <= spec.tile:
        assert offsets == [0]
        return
    # As few tiles as a stride of tile - 2 * overlap allows; the last one ends on the edge.
    assert len(offsets) == -(-(size - spec.tile) // spec.stride) + 1
    assert offsets[-1] == size - spec.tile
    steps = np.diff(offsets)
    assert (steps > 0).all() and (steps <= spec.stride).all()
    # Neighbours always share at least 2 * overlap pixels, so blending has room to fade.
    assert (spec.tile - steps >= 2 * spec.overlap).all()


def test_grid_shifts_the_last_tile_inward() -> None:
    spec = TileSpec(384, 32)
    tiles = tile_grid(385, 1000, spec)
    assert sorted({t.row_off for t in tiles}) == [0, 1]
    assert sorted({t.col_off for t in tiles}) == [0, 320, 616]
    assert all(t.pad == (0, 0, 0, 0) for t in tiles)
    assert tiles[0].border == (True, False, True, False)
    assert tiles[-1].border == (False, True, False, True)


def test_small_scene_is_one_centred_padded_tile() -> None:
    (tile,) = tile_grid(100, 31, TileSpec(128, 16))
    assert (tile.row_off, tile.col_off, tile.height, tile.width) == (0, 0, 100, 31)
    assert tile.pad == (14, 14, 48, 49)
    assert tile.border == (True, True, True, True)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tile": 0}, "tile size 0 must be positive"),
        ({"overlap": -1}, "overlap -1"),
        ({"tile": 64, "overlap": 32}, "less than half"),
    ],
)
def test_spec_refuses_bad_sizes_in_one_line(kwargs: dict, words: str) -> None:
    with pytest.raises(ModelError, match=words) as info:
        TileSpec(**kwargs)
    assert isinstance(info.value, CloudsegError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 64), w=st.integers(1, 64), bands=st.integers(1, 4))
@example(h=1, w=1, bands=1)
@example(h=1, w=64, bands=4)
def test_pad_tile_reflects_and_unpad_returns_the_window(h: int, w: int, bands: int) -> None:
    spec = TileSpec(64, 8)
    rng = np.random.default_rng(h * 1000 + w)
    window = rng.integers(1, 65535, (bands, h, w)).astype(np.uint16)
    (tile,) = tile_grid(h, w, spec)
    padded = pad_tile(window, spec.tile)
    assert padded.shape == (bands, 64, 64) and padded.dtype == np.uint16
    np.testing.assert_array_equal(unpad_tile(padded, tile.pad), window)
    # Reflection invents no values (zeros would read as no data).
    assert set(np.unique(padded)) <= set(np.unique(window))


def test_pad_tile_mirrors_about_the_edge_pixel() -> None:
    padded = pad_tile(np.arange(1.0, 4.0)[None, None, :].repeat(32, axis=1), 32)
    row = padded[0, 0]
    left = (32 - 3) // 2
    np.testing.assert_array_equal(row[left - 2 : left + 5], [3, 2, 1, 2, 3, 2, 1])
    assert pad_tile(np.ones((2, 32, 32)), 32).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="larger than"):
        pad_tile(np.ones((33, 2)), 32)


@given(first=st.integers(0, 383), length=st.integers(1, 384), multiple=st.sampled_from([1, 8, 32]))
@settings(max_examples=200, deadline=None)
def test_a_trimmed_tile_keeps_every_valid_pixel_in_whole_multiples(first, length, multiple):
    from cloudseg.engine.tiling import trim

    end = min(384, first + length)
    tile = Tile(0, 0, 0, 384, 384)
    cut = trim(tile, (first, end, 0, 384), 384, multiple, least_saving=0).cut
    top, bottom = cut[:2]
    kept = 384 - top - bottom
    assert top <= first and 384 - bottom >= end  # the valid span stays inside
    assert kept % multiple == 0 or kept == 384
    assert kept - (end - first) < multiple  # and no more than rounding adds
    assert cut[2:] == (0, 0)


def test_a_tile_that_would_save_little_or_is_padded_is_not_trimmed():
    from cloudseg.engine.tiling import trim

    full = Tile(0, 0, 0, 384, 384)
    assert trim(full, (0, 384, 0, 370), 384, 32).cut == (0, 0, 0, 0)  # saves 0 %: as it is
    assert trim(full, (0, 384, 0, 200), 384, 32).cut == (0, 0, 0, 160)
    padded = Tile(0, 0, 0, 200, 384, pad=(92, 92, 0, 0))
    assert trim(padded, (0, 200, 0, 100), 384, 32) is padded


def test_the_tile_plan_counts_what_trimming_saves_on_a_turned_footprint(tmp_path):
    """A WRS-2-like footprint (turned 13 degrees in a no-data collar): with edge tiles trimmed
    (CPU providers, a model of any size) the plan computes fewer pixels per valid pixel than
    with whole tiles, and only fixed-shape providers plan whole tiles."""
    import rasterio
    from onnx_models import card_for
    from rasterio.transform import from_origin

    from cloudseg.data.landsat import open_scene
    from cloudseg.engine.tile_plan import plan_tiles

    size = 1600
    rows, cols = np.mgrid[:size, :size] - size / 2
    angle = np.deg2rad(13)
    inside = (np.abs(rows * np.cos(angle) - cols * np.sin(angle)) < 0.36 * size) & (
        np.abs(rows * np.sin(angle) + cols * np.cos(angle)) < 0.33 * size
    )
    dn = np.where(inside, 9000, 0).astype(np.uint16)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=from_origin(500000, 4600000, 30, 30))  # fmt: skip
    with rasterio.open(tmp_path / "stack.tif", "w", **profile) as ds:
        ds.write(np.stack([dn] * 4))
    scene = open_scene(tmp_path / "stack.tif")
    card = card_for(tile=384)
    trimmed = plan_tiles(card, scene, "cpu", 1)
    whole = plan_tiles(card, scene, "cpu", 1, trimmed=False)
    print(f"computed / valid: trimmed {trimmed.ratio:.3f} at {trimmed.tile} px, "
          f"whole tiles {whole.ratio:.3f} at {whole.tile} px")  # fmt: skip
    assert trimmed.ratio < whole.ratio - 0.1
    gpu = plan_tiles(card, scene, "tensorrt", 1)
    assert gpu.candidates == plan_tiles(card, scene, "tensorrt", 1, trimmed=False).candidates
    assert gpu.candidates[trimmed.tile] == whole.candidates[trimmed.tile]
