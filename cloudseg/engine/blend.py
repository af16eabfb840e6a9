"""Overlap blending: tiles' probabilities averaged with a smooth weight, rows freed as they finish.

Probabilities have ``channels`` planes (cloud, and cloud shadow when the model has it), blended
with the same weights. Each tile's probabilities are multiplied by :func:`weight_window` and
accumulated into a band of rows; a row is divided by the sum of the weights over it (summed
from the tiles placed, not held) and handed on once no future tile can touch it. Because the
weighted mean of equal values is that value, a model whose output is a per-pixel function of
its input is reconstructed exactly whatever the weights.

Row-major contract: tiles arrive one tile row after another (as :func:`tile_grid` lists them).
Within a row, and across the current and the next tile row, any order is fine (batches finish out
of order); once :meth:`RowBlender.finished` has been told the next tile row's ``row_off``, every
row above it is final and no tile may land there again.

    blender = RowBlender(scene.height, scene.width, spec)
    for row_off, tiles in rows_of_tiles:              # grid rows, top to bottom
        yield from blender.finished(row_off)          # rows above this tile row are final
        for tile, prob in predict(tiles):             # any order within the row
            blender.add(tile, prob)
    yield from blender.flush()
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from cloudseg.engine.tiling import Tile, TileSpec, unpad_tile

__all__ = ["RAMP_FLOOR", "RowBlender", "weight_window"]

#: Smallest weight: a tile's outermost pixel still counts a little, so a pixel that (against the
#: grid's design) only one tile covers gets that tile's value instead of 0 / 0.
RAMP_FLOOR = 1e-3


@lru_cache(maxsize=64)
def _profile(tile: int, overlap: int, low_border: bool, high_border: bool) -> np.ndarray:
    """``(tile,)`` float64 weights along one axis: raised-cosine ramps on non-border edges."""
    profile = np.ones(tile)
    if overlap == 0:
        return profile
    # Sample at pixel centres so the ramp is symmetric and neither end is exactly 0 or 1.
    x = (np.arange(overlap) + 0.5) / overlap
    ramp = RAMP_FLOOR + (1.0 - RAMP_FLOOR) * 0.5 * (1.0 - np.cos(np.pi * x))
    if not low_border:
        profile[:overlap] = ramp
    if not high_border:
        profile[tile - overlap :] = ramp[::-1]
    return profile


@lru_cache(maxsize=64)
def _window(spec: TileSpec, border: tuple[bool, bool, bool, bool]) -> np.ndarray:
    top, bottom, left, right = border
    rows = _profile(spec.tile, spec.overlap, top, bottom)
    cols = _profile(spec.tile, spec.overlap, left, right)
    weights = np.outer(rows, cols).astype(np.float32)
    weights.flags.writeable = False  # shared by every tile with the same borders
    return weights


def weight_window(tile: Tile, spec: TileSpec) -> np.ndarray:
    """Blend weights of one tile, separable: ``rows[:, None] * cols[None, :]``.

    Along each axis the weight is 1 in the centre and ramps down (raised cosine, from
    :data:`RAMP_FLOOR`) over the outer ``spec.overlap`` pixels of each edge that lies inside the
    scene; an edge on the scene's border keeps weight 1 right up to it, since no neighbour
    covers those pixels. With ``overlap == 0`` every weight is 1.

    Args:
        tile: the tile (only its ``border`` flags matter).
        spec: tile size and overlap.

    Returns:
        ``(spec.tile, spec.tile)`` float32 in ``(0, 1]``, read-only (cached and shared).
    """
    return _window(spec, tile.border)


class RowBlender:
    """Weighted accumulation of tile probabilities over a band of rows that moves down the scene.

    Memory is ``channels * band_rows * width`` float32 plus one tile of scratch, with
    ``band_rows = min(height, tile + stride)``: the rows of the tile row being added plus those of
    the next one, so a pipeline may add the next row's first tiles before it has finished the
    current row. It does not depend on the scene's height.

    Args:
        height: scene rows.
        width: scene columns.
        spec: the tile size and overlap the grid was made with.
        channels: probability planes per tile (1: cloud; 2: cloud and cloud shadow).
        ahead: hold the next tile row too (``tile + stride`` rows), so that its first tiles may
            be added before the current row is finished; without it the band is ``tile`` rows.
    """

    def __init__(
        self, height: int, width: int, spec: TileSpec, channels: int = 1, ahead: bool = True
    ) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"scene size {height} x {width} must be positive")
        self.height, self.width, self.spec, self.channels = height, width, spec, channels
        # ahead=False: the caller finishes each tile row before adding the next one's tiles
        # (the pipeline does), so the band is one tile deep, not tile + stride.
        self.band_rows = min(height, spec.tile + (spec.stride if ahead else 0))
        self._acc = np.zeros((channels, self.band_rows, width), np.float32)
        # The weights' sum is not held as a band: it is a function of the tiles placed, summed
        # again for each piece handed on (in the order they were added, so to the same float32
        # values), which keeps the band at one plane a channel instead of channels + 1.
        self._placed: list[tuple[int, int, int, np.ndarray]] = []  # row0, row1, col0, weights
        self._scratch = np.empty((channels, spec.tile, spec.tile), np.float32)
        self._base = 0  # scene row held in band row 0: every row above it has been handed on
        self._handing_on = False  # finished()'s pieces are still being taken

    @property
    def nbytes(self) -> int:
        """Bytes held by the accumulators and scratch."""
        return self._acc.nbytes + self._scratch.nbytes

    def add(self, tile: Tile, prob: np.ndarray) -> None:
        """Accumulate one tile's probabilities.

        Args:
            tile: the tile of the grid the prediction belongs to.
            prob: ``(channels, spec.tile, spec.tile)`` float32 probabilities of the padded model
                tile (the reflected padding, ``tile.pad``, is dropped here), or of the trimmed
                part of a cut tile (``spec.tile`` less ``tile.cut`` on each axis).

        Raises:
            ValueError: wrong shape, a tile outside the scene, a tile above rows already handed
                on, or one further down than the band reaches (call :meth:`finished` first).
        """
        self._check_taken()
        size = self.spec.tile
        prob = np.asarray(prob, dtype=np.float32)
        top, bottom, left, right = tile.cut
        shape = (self.channels, size - top - bottom, size - left - right)
        if prob.shape != shape:
            want = " x ".join(map(str, shape))
            raise ValueError(f"tile {tile.index}: probabilities {prob.shape} are not {want}")
        inside = 0 <= tile.row_off and tile.row_end <= self.height
        if not (inside and 0 <= tile.col_off and tile.col_end <= self.width):
            raise ValueError(f"tile {tile.index} {tile.window} is outside the scene")
        if tile.row_off < self._base:
            raise ValueError(
                f"tile {tile.index} starts at row {tile.row_off}, above row {self._base}: rows "
                "above it were already handed on (tile rows must arrive top to bottom)"
            )
        r0, r1 = tile.row_off - self._base, tile.row_end - self._base
        if r1 > self.band_rows:
            raise ValueError(
                f"tile {tile.index} reaches row {tile.row_end}, past the {self.band_rows}-row band "
                f"starting at row {self._base}: call finished() with its tile row's row_off first"
            )
        # A trimmed tile (cut) keeps the weights of its part of the whole tile; it is never
        # padded, and a padded tile is never cut, so one of the two unpads is a no-op.
        weights = unpad_tile(unpad_tile(weight_window(tile, self.spec), tile.pad), tile.cut)
        prob = unpad_tile(prob, tile.pad)
        h, w = weights.shape
        weighted = self._scratch[:, :h, :w]
        np.multiply(weights, prob, out=weighted)
        rows, cols = slice(r0 + top, r1 - bottom), slice(tile.col_off + left, tile.col_end - right)
        self._acc[:, rows, cols] += weighted
        # the weights are a view of the shared, read-only window: nothing is copied
        self._placed.append((tile.row_off + top, tile.row_end - bottom, cols.start, weights))

    def finished(
        self, next_row_off: int, piece_rows: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Hand on every row above ``next_row_off``, where the next tile row starts.

        Rows are divided out one piece at a time as the caller iterates, so a piece may be
        written before the next is made: memory holds one piece, not the whole tile row of the
        scene's width. The band moves on once the last piece is taken: iterate the result to
        the end before adding tiles or asking for rows again (either raises until then).

        Args:
            next_row_off: ``row_off`` of the next tile row to be added (``height`` at the end).
                Rows above it are final; a value at or above the rows already handed on is a
                no-op.
            piece_rows: most rows a piece holds (default: the band's height).

        Returns:
            ``(row0, probs)`` pieces, top to bottom, none if no row is final yet: ``probs`` is
            ``(channels, n, width)`` float32, the blended probabilities of scene rows ``row0 ..
            row0 + n - 1``, a new array the caller may keep. Pixels no tile covered (every tile
            over them skipped as no data) are NaN.

        Raises:
            RuntimeError: the rows handed on by an earlier call were not all taken.
        """
        self._check_taken()
        stop = min(next_row_off, self.height)
        n = stop - self._base
        if n <= 0:
            return iter(())
        self._handing_on = True
        return self._hand_on(n, stop, max(1, piece_rows or self.band_rows))

    def _hand_on(self, n: int, stop: int, step: int) -> Iterator[tuple[int, np.ndarray]]:
        held, row0 = min(n, self.band_rows), self._base
        for start in range(0, held, step):
            rows = slice(start, min(start + step, held))
            acc, wsum = self._acc[:, rows], self._weight_sum(row0 + rows.start, row0 + rows.stop)
            probs = np.full(acc.shape, np.nan, np.float32)
            np.divide(acc, wsum, out=probs, where=np.broadcast_to(wsum > 0, probs.shape))
            yield row0 + start, probs
        self._advance(n)
        self._handing_on = False
        # Rows below the band were never touched (a run of skipped tile rows): NaN, made one
        # piece at a time as the caller iterates, so even a huge gap costs no more memory.
        for piece0 in range(row0 + held, stop, step):
            yield piece0, np.full((self.channels, min(step, stop - piece0), self.width),
                                  np.nan, np.float32)  # fmt: skip

    def _weight_sum(self, row0: int, row1: int) -> np.ndarray:
        """``(row1 - row0, width)`` float32 sum of the placed tiles' weights over those rows."""
        wsum = np.zeros((row1 - row0, self.width), np.float32)
        for top, bottom, col0, weights in self._placed:
            r0, r1 = max(top, row0), min(bottom, row1)
            if r0 < r1:
                wsum[r0 - row0 : r1 - row0, col0 : col0 + weights.shape[1]] += weights[
                    r0 - top : r1 - top
                ]
        return wsum

    def _check_taken(self) -> None:
        if self._handing_on:
            raise RuntimeError(
                "rows handed on by finished() were not all taken: iterate its result to the end"
            )

    def flush(self, piece_rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Hand on all remaining rows, down to the scene's last; see :meth:`finished`."""
        return self.finished(self.height, piece_rows)

    def _advance(self, n: int) -> None:
        """Drop the first ``n`` band rows: move the live rows up and zero the freed ones."""
        keep = self.band_rows - n
        self._placed = [p for p in self._placed if p[1] > self._base + n]
        for buf in self._acc:
            # Copy in chunks of at most n rows: source and target never overlap, so numpy
            # makes no temporary band-sized copy.
            for dst in range(0, keep, n):
                m = min(n, keep - dst)
                buf[dst : dst + m] = buf[dst + n : dst + n + m]
            buf[max(keep, 0) :] = 0.0
        self._base += n
