"""The tile grid: model-sized windows that overlap and together cover every pixel of a scene.

Every tile is exactly ``spec.tile`` pixels square when it reaches the model, so a backend sees one
input shape (CUDA's cuDNN autotuning and TensorRT engines are per shape). Along a dimension where
the scene is at least a tile long, tiles step by ``stride = tile - 2 * overlap`` and the last one
is shifted inward to end on the scene's edge: real pixels beat padding. Along a dimension where
the scene is shorter than a tile, one tile reads the whole extent and :func:`pad_tile` reflects it
up to the tile size (centred, so the scene sits where the model sees most context).

    spec = TileSpec(tile=384, overlap=32)
    for tile in tile_grid(scene.height, scene.width, spec):
        dn = reader.read(tile.window)          # (4, tile.height, tile.width)
        batch_item = pad_tile(dn, spec.tile)   # (4, 384, 384)

The grid is row-major (a whole row of tiles, then the next row down), the order in which
:class:`cloudseg.engine.blend.RowBlender` frees finished rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.windows import Window

from cloudseg.card import DEFAULT_OVERLAP, DEFAULT_TILE
from cloudseg.errors import ModelError

__all__ = ["Tile", "TileSpec", "pad_tile", "tile_grid", "trim", "unpad_tile"]


@dataclass(frozen=True)
class TileSpec:
    """Tile size and overlap, in pixels.

    Which tile sizes a model takes is its card's to say
    (:meth:`cloudseg.card.ModelCard.check_tile`); the grid only needs a positive tile and an
    overlap under half of it.

    Attributes:
        tile: side of the square the model sees.
        overlap: pixels each tile shares with its neighbour on each side; neighbouring tiles
            overlap by ``2 * overlap`` and the blender fades each tile out over its outer
            ``overlap`` pixels, so a tile's least trusted margin (the model's receptive field
            runs off its edge there) counts least.
    """

    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if self.tile <= 0:
            raise ModelError(f"tile size {self.tile} must be positive")
        if self.overlap < 0 or 2 * self.overlap >= self.tile:
            raise ModelError(
                f"overlap {self.overlap} must be >= 0 and less than half the tile size {self.tile}"
            )

    @property
    def stride(self) -> int:
        """Step between neighbouring tiles' offsets (the last tile may step less)."""
        return self.tile - 2 * self.overlap


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: the window read from the scene and how it becomes a model tile.

    Attributes:
        index: position in the grid's row-major order.
        row_off: first scene row of the read window.
        col_off: first scene column of the read window.
        height: rows of the read window (``spec.tile``, or the scene height if smaller).
        width: columns of the read window (``spec.tile``, or the scene width if smaller).
        pad: ``(top, bottom, left, right)`` reflected pixels that bring the window up to the tile
            size; all 0 unless the scene is smaller than a tile in that dimension.
        border: ``(top, bottom, left, right)``: whether that edge of the window is the scene's edge
            (there the blend weight stays 1: no neighbour exists to fade into).
        cut: ``(top, bottom, left, right)`` pixels trimmed off a full-size tile whose valid
            pixels lie in part of it (:func:`trim`): the model sees only the rest. All 0 unless
            trimmed; the grid position (``row_off`` ...) stays the whole tile's.
    """

    index: int
    row_off: int
    col_off: int
    height: int
    width: int
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)
    border: tuple[bool, bool, bool, bool] = (False, False, False, False)
    cut: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def window(self) -> Window:
        """The read window in scene pixels (always inside the scene)."""
        return Window(self.col_off, self.row_off, self.width, self.height)

    @property
    def row_end(self) -> int:
        """One past the last scene row the tile covers."""
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        """One past the last scene column the tile covers."""
        return self.col_off + self.width


def _offsets(size: int, tile: int, stride: int) -> list[int]:
    """Window offsets along one dimension: as few as cover ``size`` with steps <= ``stride``."""
    if size <= tile:
        return [0]
    count = -(-(size - tile) // stride) + 1  # ceil: the last regular offset may overshoot...
    return [min(i * stride, size - tile) for i in range(count)]  # ...so it is pulled inward


def _split(missing: int) -> tuple[int, int]:
    """Padding before and after a short extent, centred (the extra pixel goes after)."""
    return missing // 2, missing - missing // 2


def tile_grid(height: int, width: int, spec: TileSpec) -> list[Tile]:
    """Tiles covering a ``height x width`` scene, in row-major order.

    Args:
        height: scene rows (> 0).
        width: scene columns (> 0).
        spec: tile size and overlap.

    Returns:
        Tiles whose windows lie inside the scene and together cover every pixel; no two share a
        window. Tiles on one grid row share ``row_off``.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"scene size {height} x {width} must be positive")
    rows = _offsets(height, spec.tile, spec.stride)
    cols = _offsets(width, spec.tile, spec.stride)
    h, w = min(height, spec.tile), min(width, spec.tile)
    pad = (*_split(spec.tile - h), *_split(spec.tile - w))
    tiles = []
    for row_off in rows:
        for col_off in cols:
            border = (row_off == 0, row_off + h == height, col_off == 0, col_off + w == width)
            tiles.append(Tile(len(tiles), row_off, col_off, h, w, pad, border))
    return tiles


def trim_span(first: int, end: int, size: int, multiple: int) -> tuple[int, int]:
    """``(before, after)`` pixels one axis of a ``size`` px tile can lose when its valid pixels
    span ``[first, end)``: what lies outside the span once it is rounded up to ``multiple``."""
    length = min(size, -(-(end - first) // multiple) * multiple)
    lo = max(0, min(first, size - length))
    return lo, size - (lo + length)


def trim(
    tile: Tile, span: tuple[int, int, int, int], size: int, multiple: int,
    least_saving: float = 0.05,
) -> Tile:  # fmt: skip
    """``tile`` cut down to its valid pixels, for a model that takes any multiple of
    ``multiple``: the rows and columns outside ``span`` (``(row0, row1, col0, col1)`` of the
    valid pixels, window coordinates) are trimmed, the rest rounded up to ``multiple``. A padded
    (small-scene) tile, or one that would lose under ``least_saving`` of its area (each new
    shape costs the runtime a plan of its own), is returned as it is.

    Every valid pixel of the tile keeps the weight the whole tile gave it, so the blend is
    unchanged wherever two tiles meet; what differs is only that the model no longer sees the
    no-data beyond the valid pixels (a constant, like the zero padding at a tile's edge).
    """
    if any(tile.pad) or (tile.height, tile.width) != (size, size):
        return tile
    top, bottom = trim_span(span[0], span[1], size, multiple)
    left, right = trim_span(span[2], span[3], size, multiple)
    kept = (size - top - bottom) * (size - left - right)
    if kept > (1 - least_saving) * size * size:
        return tile
    return Tile(tile.index, tile.row_off, tile.col_off, tile.height, tile.width, tile.pad,
                tile.border, (top, bottom, left, right))  # fmt: skip


def pad_tile(array: np.ndarray, tile: int) -> np.ndarray:
    """Reflect a window smaller than the tile up to ``tile x tile``, centred as :class:`Tile` says.

    Args:
        array: ``(..., h, w)`` any dtype, ``h`` and ``w`` at most ``tile``.
        tile: side of the model's tile.

    Returns:
        ``(..., tile, tile)`` of the same dtype; ``array`` itself when it already fits. Reflection
        (not zeros) keeps the padding looking like land and cloud rather than no data; a 1-pixel
        extent has nothing to reflect about and is repeated instead.
    """
    h, w = array.shape[-2:]
    if h > tile or w > tile:
        raise ValueError(f"window {h} x {w} is larger than the {tile} px tile")
    lead = [(0, 0)] * (array.ndim - 2)
    for axis, size in ((-2, h), (-1, w)):
        if size == tile:
            continue
        widths = list(lead) + [(0, 0), (0, 0)]
        widths[axis] = _split(tile - size)
        array = np.pad(array, widths, mode="symmetric" if size == 1 else "reflect")
    return array


def unpad_tile(array: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """Inverse of :func:`pad_tile`: the window's own pixels of a model tile.

    Args:
        array: ``(..., tile, tile)`` model output (or input).
        pad: ``Tile.pad``, ``(top, bottom, left, right)``.

    Returns:
        ``(..., tile - top - bottom, tile - left - right)``, a view of ``array``.
    """
    top, bottom, left, right = pad
    h, w = array.shape[-2:]
    return array[..., top : h - bottom, left : w - right]
