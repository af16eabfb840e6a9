"""A scene held in memory: a ``(4, H, W)`` array in band order, for :func:`cloudseg.predict`.

The engine reads scenes window by window through the :mod:`cloudseg.scene` contract; an array
the caller already holds (from rioxarray, odc-stac, a notebook) goes through the same road by
this reader, so ``predict`` on an array tiles, normalises, blends and thresholds exactly as
``cloudseg-run`` does on a file. Windows are views of the caller's array; only a window's worth
is ever copied (no-data zeroed, values cast), so the array is never duplicated.

No data: NaN in any band, the caller's ``nodata`` value in every band, or 0 in every band (the
Landsat convention every reader keeps). Such pixels are read as 0 in every band, so validity is
:func:`cloudseg.bands.valid_pixels` of what ``read`` returns, as the contract says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from cloudseg.bands import BANDS
from cloudseg.card import VALUE_KIND_WORDS
from cloudseg.errors import SceneError
from cloudseg.scene import cell_centres, clip_window, paste

__all__ = ["ArrayReader", "ArrayScene"]


@dataclass(frozen=True, eq=False)
class ArrayScene:
    """A ``(4, H, W)`` array of ``values`` (a card value kind) in :data:`BANDS` order.

    Args:
        data: red, green, blue, nir; any real dtype (integers for DN, floats for reflectance).
        values: what the array holds: ``dn``, ``toa_reflectance`` or ``surface_reflectance``.
        crs, transform: its grid, when known (kept on outputs; the engine needs neither).
        nodata: a value that marks no data when every band holds it, besides NaN and 0.
        scene_id: names the scene in messages.
        band_index: where red, green, blue and nir are along the first axis, when the array
            holds other bands too or another order (default: the first four, in order).
    """

    data: np.ndarray
    values: str
    crs: CRS | None = None
    transform: Affine = Affine.identity()
    nodata: float | None = None
    scene_id: str = "array"
    band_index: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.data.ndim != 3 or (self.band_index is None and self.data.shape[0] != len(BANDS)):
            raise SceneError(
                f"{self.scene_id}: an array of shape {tuple(self.data.shape)} is not "
                f"({len(BANDS)}, height, width) in band order {', '.join(BANDS)}"
            )
        kind = np.dtype(self.data.dtype).kind
        if kind not in "iuf":
            raise SceneError(f"{self.scene_id}: array values of type {self.data.dtype} are not "
                             "numbers")  # fmt: skip
        if self.values not in VALUE_KIND_WORDS:
            kinds = ", ".join(VALUE_KIND_WORDS)
            raise SceneError(f"{self.scene_id}: values={self.values!r} is not one of {kinds}")

    @property
    def source(self) -> str:
        return f"{self.scene_id} (a {self.height} x {self.width} array)"

    @property
    def product(self) -> str:
        return f"an array of {VALUE_KIND_WORDS[self.values]}"

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def value_kinds(self) -> tuple[str, ...]:
        return (self.values,)

    @property
    def local_dir(self) -> None:
        return None

    def open(self) -> ArrayReader:
        return ArrayReader(self)

    def profile(self) -> dict[str, Any]:
        return {"driver": "GTiff", "width": self.width, "height": self.height, "count": 1,
                "crs": self.crs, "transform": self.transform}  # fmt: skip

    def to_values(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """The array's own values: it holds one kind, converted by whoever made it."""
        if kind != self.values:
            raise SceneError(f"{self.source} holds {self.values} values, not {kind}")
        return raw.astype(np.float32, copy=False) if kind != "dn" else raw


class ArrayReader:
    """Windows of an :class:`ArrayScene`, no data zeroed; safe to use from several threads."""

    def __init__(self, scene: ArrayScene) -> None:
        self.scene = scene

    def _bands(self, rows: slice, cols: slice) -> np.ndarray:
        """The four bands of a window, in order: a copy of the window only (the caller's array,
        or a lazy one such as dask's, is indexed, never copied whole)."""
        index = self.scene.band_index
        if index is None:
            return self.scene.data[:, rows, cols]
        return np.stack([np.asarray(self.scene.data[i, rows, cols]) for i in index])

    def _clean(self, block: np.ndarray) -> np.ndarray:
        """A copy of ``block`` with every no-data pixel 0 in all bands."""
        out = np.array(block)
        invalid = np.zeros(out.shape[1:], bool)
        if np.issubdtype(out.dtype, np.floating):
            invalid |= np.isnan(out).any(axis=0)
        if self.scene.nodata is not None:
            invalid |= (out == self.scene.nodata).all(axis=0)
        out[:, invalid] = 0
        return out

    def read(self, window: Window, boundless: bool = False) -> np.ndarray:
        request, inside = clip_window(window, self.scene.width, self.scene.height, boundless)
        col, row, w, h = request
        out = np.zeros((len(BANDS), h, w), self.scene.data.dtype)
        if inside is not None:
            r0, c0 = int(inside.row_off), int(inside.col_off)
            rows, cols = slice(r0, r0 + int(inside.height)), slice(c0, c0 + int(inside.width))
            paste(out, request, inside, self._clean(self._bands(rows, cols)))
        return out

    def read_coarse(self, factor: int) -> np.ndarray:
        """Every ``factor``-th pixel at each cell's centre, as Landsat's local reader samples."""
        rows = cell_centres(self.scene.height, factor)
        cols = cell_centres(self.scene.width, factor)
        bands = self.scene.band_index or range(len(BANDS))
        return self._clean(np.stack([np.asarray(self.scene.data[i][rows][:, cols]) for i in bands]))

    def read_qa(self, window: Window) -> None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> ArrayReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
