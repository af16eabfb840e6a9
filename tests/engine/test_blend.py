"""Blending reconstructs a per-pixel function exactly, fades smoothly, and holds only a band."""

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudseg.engine.blend import RAMP_FLOOR, RowBlender, weight_window
from cloudseg.engine.tiling import Tile, TileSpec, pad_tile, tile_grid, unpad_tile


def _model(x: np.ndarray) -> np.ndarray:
    """A known per-pixel 'model': (B, tile, tile) float32 input -> (tile, tile) probability."""
    return (1.0 / (1.0 + np.exp(-(x[0] - 0.3 * x[1])))).astype(np.float32)


def _scene(height: int, width: int) -> np.ndarray:
    """(2, H, W) float32: a smooth field and noise, so seams and misplaced tiles both show."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    smooth = np.sin(rows / 37.0) * np.cos(cols / 23.0) * 3.0
    noise = np.random.default_rng(height * 7 + width).normal(size=(height, width))
    return np.stack([smooth, noise.astype(np.float32)])


def _blend(
    height: int,
    width: int,
    spec: TileSpec,
    predict: Callable[[Tile], np.ndarray],
    shuffle: np.random.Generator | None = None,
) -> np.ndarray:
    """Run a grid through a RowBlender as the pipeline does; return the (H, W) result.

    Tiles of a grid row are added in shuffled order when ``shuffle`` is given, and rows are
    handed on only when the next grid row starts, which checks the chunks arrive in order.
    """
    tiles = tile_grid(height, width, spec)
    blender = RowBlender(height, width, spec)
    out = np.full((height, width), -1.0, np.float32)
    next_row = 0

    def take(chunks) -> None:
        nonlocal next_row
        for row0, probs in chunks:
            assert probs.shape[0] == 1 and probs.shape[2] == width and probs.dtype == np.float32
            assert row0 == next_row
            out[row0 : row0 + probs.shape[1]] = probs[0]
            next_row += probs.shape[1]

    for row_off in sorted({t.row_off for t in tiles}):
        take(blender.finished(row_off))
        row = [t for t in tiles if t.row_off == row_off]
        order = shuffle.permutation(len(row)) if shuffle is not None else range(len(row))
        for i in order:
            blender.add(row[i], predict(row[i])[None])
    take(blender.flush())
    assert next_row == height
    return out


def _reconstruct(height: int, width: int, spec: TileSpec, shuffle: bool = False) -> None:
    scene = _scene(height, width)

    def predict(tile: Tile) -> np.ndarray:
        x = scene[:, tile.row_off : tile.row_end, tile.col_off : tile.col_end]  # the read window
        return _model(pad_tile(x, spec.tile))

    rng = np.random.default_rng(0) if shuffle else None
    got = _blend(height, width, spec, predict, rng)
    np.testing.assert_allclose(got, _model(scene), rtol=0, atol=1e-6)


@pytest.mark.parametrize("overlap", [0, 8, 32])
@pytest.mark.parametrize(
    ("height", "width"),
    [(1, 1), (37, 201), (128, 128), (129, 333), (700, 515), (1001, 97), (257, 1)],
)
def test_blending_reconstructs_a_per_pixel_function_exactly(
    height: int, width: int, overlap: int
) -> None:
    _reconstruct(height, width, TileSpec(128, overlap), shuffle=True)


@pytest.mark.parametrize("spec", [TileSpec(384, 32), TileSpec(256, 8), TileSpec(96, 0)])
def test_blending_reconstructs_with_other_tile_sizes(spec: TileSpec) -> None:
    _reconstruct(901, 383, spec)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 400),
    width=st.integers(1, 400),
    spec=st.sampled_from([TileSpec(64, 0), TileSpec(64, 8), TileSpec(96, 16)]),
)
def test_blending_reconstructs_for_any_size(height: int, width: int, spec: TileSpec) -> None:
    _reconstruct(height, width, spec)


@pytest.mark.parametrize("spec", [TileSpec(384, 32), TileSpec(64, 8), TileSpec(64, 0)])
def test_weights_are_symmetric_positive_and_full_at_scene_borders(spec: TileSpec) -> None:
    t = spec.tile
    inner = weight_window(Tile(0, 100, 100, t, t), spec)
    assert inner.shape == (t, t) and inner.dtype == np.float32
    assert inner.min() > 0 and inner.max() == 1.0
    np.testing.assert_array_equal(inner, inner.T)
    np.testing.assert_array_equal(inner, inner[::-1])
    np.testing.assert_array_equal(inner, inner[:, ::-1])
    o = spec.overlap
    assert (inner[o : t - o, o : t - o] == 1.0).all()  # flat centre
    if o:
        assert inner[0, t // 2] == pytest.approx(RAMP_FLOOR, abs=0.01)
        assert (np.diff(inner[: o + 1, t // 2]) > 0).all()  # rising ramp
    # A tile on the top-left corner of the scene keeps full weight along those two edges.
    corner = weight_window(Tile(0, 0, 0, t, t, border=(True, False, True, False)), spec)
    assert (corner[: t - o, : t - o] == 1.0).all()
    np.testing.assert_array_equal(corner[t - o :, t // 2], inner[t - o :, t // 2])
    everywhere = weight_window(Tile(0, 0, 0, t, t, border=(True,) * 4), spec)
    assert (everywhere == 1.0).all()


def test_ramp_blends_two_tiles_smoothly() -> None:
    """Left tile says 0, right tile says 1: the overlap fades between them, without a step."""
    spec = TileSpec(64, 8)
    tiles = tile_grid(64, 64 + spec.stride, spec)
    assert [t.col_off for t in tiles] == [0, spec.stride]
    got = _blend(64, 64 + spec.stride, spec, lambda t: np.full((64, 64), float(t.col_off > 0)))
    profile = got[10]
    np.testing.assert_array_equal(got, np.broadcast_to(profile, got.shape))
    zone = slice(spec.stride, spec.tile)  # the 2 * overlap columns both tiles cover
    assert (profile[: zone.start] == 0).all() and (profile[zone.stop :] == 1).all()
    inside = profile[zone]
    assert ((inside > 0) & (inside < 1)).all()
    assert (np.diff(profile) >= 0).all()
    # Symmetric fade (0.5 at the zone's middle) and no jump bigger than the ramp's steepest step.
    np.testing.assert_allclose(inside + inside[::-1], 1.0, atol=1e-6)
    assert np.abs(np.diff(profile)).max() < np.pi / (2 * spec.overlap)
    # Without overlap the same two tiles meet in a hard step.
    hard = TileSpec(64, 0)
    step = _blend(64, 128, hard, lambda t: np.full((64, 64), float(t.col_off > 0)))[0]
    assert np.abs(np.diff(step)).max() == 1.0


def test_uncovered_pixels_are_nan() -> None:
    spec = TileSpec(64, 8)
    got = _blend(300, 100, spec, lambda t: np.full((64, 64), 0.25))
    assert not np.isnan(got).any()
    blender = RowBlender(300, 100, spec)
    tiles = tile_grid(300, 100, spec)
    for t in tiles[:2]:  # only the first tile row; the rest "skipped as no data"
        blender.add(t, np.full((1, 64, 64), 0.25, np.float32))
    chunks = list(blender.flush())
    got = np.concatenate([p[0] for _, p in chunks])
    assert got.shape == (300, 100) and max(p.shape[1] for _, p in chunks) <= blender.band_rows
    assert (got[:64] == 0.25).all() and np.isnan(got[64:]).all()


def test_add_refuses_tiles_out_of_order_or_shape() -> None:
    spec = TileSpec(64, 8)
    tiles = tile_grid(500, 64, spec)
    blender = RowBlender(500, 64, spec)
    prob = np.zeros((1, 64, 64), np.float32)
    blender.add(tiles[0], prob)
    with pytest.raises(ValueError, match="not 1 x 64 x 64"):
        blender.add(tiles[1], prob[:, :32])
    with pytest.raises(ValueError, match="past the .*band"):
        blender.add(tiles[2], prob)  # two tile rows below the unflushed first row
    list(blender.finished(tiles[2].row_off))
    blender.add(tiles[2], prob)
    with pytest.raises(ValueError, match="already handed on"):
        blender.add(tiles[1], prob)
    with pytest.raises(ValueError, match="outside the scene"):
        blender.add(Tile(9, 480, 0, 64, 64), prob)
    assert list(blender.finished(0)) == []  # rows already gone: a no-op


def _blend_streaming(height: int, width: int, spec: TileSpec) -> tuple[int, int]:
    """Blend predictions made on the fly (no scene array); return (buffer bytes, traced peak)."""
    tiles = tile_grid(height, width, spec)
    tracemalloc.start()
    blender = RowBlender(height, width, spec)
    ramp = np.linspace(0, 1, spec.tile, dtype=np.float32)
    for row_off in sorted({t.row_off for t in tiles}):
        for _, probs in blender.finished(row_off):
            assert np.isfinite(probs).all()
        for t in (t for t in tiles if t.row_off == row_off):
            blender.add(t, (ramp[:, None] * ramp[None, :])[None])
    for _, probs in blender.flush():
        assert np.isfinite(probs).all()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return blender.nbytes, peak


def test_memory_does_not_grow_with_scene_height() -> None:
    spec = TileSpec(64, 8)
    short_bytes, short_peak = _blend_streaming(500, 300, spec)
    tall_bytes, tall_peak = _blend_streaming(5000, 300, spec)
    assert tall_bytes == short_bytes == (64 + 48) * 300 * 4 + 64 * 64 * 4  # acc, scratch
    assert tall_peak <= 1.1 * short_peak, (short_peak, tall_peak)


def test_two_channels_blend_with_the_same_weights() -> None:
    """Cloud and shadow planes are blended alike: each plane reconstructs its own function."""
    spec = TileSpec(64, 8)
    tiles = tile_grid(150, 170, spec)
    rows, cols = np.mgrid[0:150, 0:170].astype(np.float32)
    truth = np.stack([np.sin(rows / 9) ** 2, np.cos(cols / 13) ** 2]).astype(np.float32)
    blender = RowBlender(150, 170, spec, channels=2)
    out = np.full((2, 150, 170), -1.0, np.float32)
    for row_off in sorted({t.row_off for t in tiles}):
        for row0, probs in blender.finished(row_off):
            out[:, row0 : row0 + probs.shape[1]] = probs
        for t in (t for t in tiles if t.row_off == row_off):
            blender.add(t, pad_tile(truth[:, t.row_off : t.row_end, t.col_off : t.col_end], 64))
    for row0, probs in blender.flush():
        out[:, row0 : row0 + probs.shape[1]] = probs
    np.testing.assert_allclose(out, truth, atol=1e-6)


def test_unpad_inverts_pad_for_blender_input() -> None:
    spec = TileSpec(64, 8)
    (tile,) = tile_grid(10, 20, spec)
    assert unpad_tile(weight_window(tile, spec), tile.pad).shape == (10, 20)


def test_rows_are_handed_on_in_pieces_of_the_asked_height() -> None:
    """A tile row as wide as the scene goes out in pieces (each a new array, made as the caller
    takes it), equal to the rows handed on whole; the band moves once the last is taken."""
    spec = TileSpec(64, 8)
    tiles = tile_grid(200, 300, spec)
    rows, cols = np.mgrid[0:200, 0:300].astype(np.float32)
    truth = (np.sin(rows / 7) * np.cos(cols / 11)) ** 2

    def blender_after_first_row() -> RowBlender:
        blender = RowBlender(200, 300, spec, ahead=False)
        for t in tiles[: len({t.col_off for t in tiles})]:
            blender.add(t, pad_tile(truth[None, t.row_off : t.row_end, t.col_off : t.col_end], 64))
        return blender

    second_row = tiles[len({t.col_off for t in tiles})]
    nxt, zeros = second_row.row_off, np.zeros((1, 64, 64), np.float32)
    whole = list(blender_after_first_row().finished(nxt))
    pieced = blender_after_first_row()
    pieces = pieced.finished(nxt, piece_rows=10)
    row0, first = next(pieces)
    assert (row0, first.shape) == (0, (1, 10, 300))
    with pytest.raises(RuntimeError, match="not all taken"):
        pieced.add(second_row, zeros)
    with pytest.raises(RuntimeError, match="not all taken"):
        pieced.finished(nxt)
    rest = list(pieces)
    assert [r for r, _ in rest] == list(range(10, nxt, 10))
    assert max(p.shape[1] for _, p in rest) <= 10
    np.testing.assert_array_equal(np.concatenate([first, *(p for _, p in rest)], axis=1),
                                  np.concatenate([p for _, p in whole], axis=1))  # fmt: skip
    assert sum(p.shape[1] for _, p in whole) == nxt
    pieced.add(second_row, zeros)  # the band moved on
