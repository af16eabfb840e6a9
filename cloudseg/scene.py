"""The scene contract: what every reader of imagery gives the engine.

A :class:`Scene` is one image on one pixel grid (a Landsat 8/9 scene folder, a 4-band GeoTIFF
stack, a 38-Cloud test scene stitched from its patches, a STAC item or a COG over HTTP). It holds
no open file handle, so it can be shared between threads and pickled to other processes; pixels
are read through :meth:`Scene.open`, one :class:`SceneReader` per thread, because a GDAL dataset
handle must never be used by two threads at once::

    scene = open_any("LC08_L1TP_044034_20160612_20170324_01_T1/")
    with scene.open() as reader:                   # in each reader thread
        raw = reader.read(Window(0, 0, 512, 512))  # (4, 512, 512) uint16: red, green, blue, nir
        x = scene.to_values(raw, "toa_reflectance")

Contract (every implementation, tested in ``tests/test_scene_contract.py``):

* ``read(window)`` returns ``(4, h, w)`` raw values in :data:`cloudseg.bands.BANDS` order, the
  dtype of the product (uint16 for Landsat); 0 in every band is no data, and a reader whose scene
  has a quality band with a fill flag returns fill pixels as 0 too, so that validity is always
  :func:`cloudseg.bands.valid_pixels` of what ``read`` returned.
* ``to_values(raw, kind)`` turns raw values into what a model card's ``value_kind`` names, or
  raises :class:`~cloudseg.errors.SceneError` when the scene cannot give that kind;
  :attr:`Scene.value_kinds` lists the kinds it can give, so the engine refuses a model before any
  work (:func:`check_value_kind`).
* ``read_qa(window)`` returns the scene's own quality classes (:mod:`cloudseg.data.qa` codes) or
  None when the product ships no quality band; ``read_coarse(factor)`` a decimated look at the
  whole scene (planning, never masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from cloudseg.card import VALUE_KIND_WORDS, ModelCard
from cloudseg.errors import SceneError

__all__ = [
    "Scene", "SceneReader", "cell_centres", "check_value_kind", "clip_window", "whole_pixels",
]  # fmt: skip


@runtime_checkable
class SceneReader(Protocol):
    """Windowed reads of one scene through handles owned by the calling thread."""

    def read(self, window: Window, boundless: bool = False) -> np.ndarray:
        """``(4, window.height, window.width)`` raw values in band order (see module docs).

        Args:
            window: whole-pixel window in scene coordinates.
            boundless: allow the window to extend past the scene, the outside filled with 0
                (no data); otherwise such a window raises ``ValueError``.
        """
        ...

    def read_qa(self, window: Window) -> np.ndarray | None:
        """``(h, w)`` uint8 quality classes of the product's own QA band, or None."""
        ...

    def read_coarse(self, factor: int) -> np.ndarray:
        """``(4, ceil(H / factor), ceil(W / factor))`` raw values, every ``factor``-th pixel of
        the whole scene (overviews where the files have them): a cheap look, e.g. at validity."""
        ...

    def close(self) -> None:
        """Release every handle (safe to call twice)."""
        ...

    def __enter__(self) -> SceneReader: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Scene(Protocol):
    """One image on one pixel grid; see the module docstring for the contract."""

    @property
    def scene_id(self) -> str:
        """Names the outputs: ``<scene_id>_cloudmask.tif``."""
        ...

    @property
    def source(self) -> str:
        """Where the scene was read from (a path or URL), for messages and the summary."""
        ...

    @property
    def product(self) -> str:
        """What the scene is, in a user's words (``Landsat Collection 2 Level-2 ...``)."""
        ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def crs(self) -> CRS | None: ...

    @property
    def transform(self) -> Affine: ...

    @property
    def value_kinds(self) -> tuple[str, ...]:
        """The card value kinds :meth:`to_values` can give."""
        ...

    @property
    def local_dir(self) -> Path | None:
        """The folder a local scene lives in (outputs default to beside it); None if remote."""
        ...

    def open(self) -> SceneReader:
        """A reader with its own handles; use it from one thread, then close it."""
        ...

    def profile(self) -> dict[str, Any]:
        """A rasterio profile of the scene's grid (one band), for writers to copy and update."""
        ...

    def to_values(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """``(4, h, w)`` raw values from :meth:`SceneReader.read` as ``kind``, float32 or raw."""
        ...


def check_value_kind(card: ModelCard, scene: Scene) -> None:
    """Refuse, in one line in the user's words, a model whose value kind the scene cannot give.

    Raises:
        SceneError: naming the scene, the model's value kind, the scene's product, and what to
            use instead.
    """
    if card.value_kind in scene.value_kinds:
        return
    wants = VALUE_KIND_WORDS.get(card.value_kind, card.value_kind)
    if scene.value_kinds:
        gives = " or ".join(VALUE_KIND_WORDS.get(k, k) for k in scene.value_kinds)
        instead = f"use a model trained on {gives}"
    else:
        instead = "this product has no values a cloudseg model reads"
    hint = _instead_hint(card.value_kind, scene)
    raise SceneError(
        f"{scene.source}: model {card.name} was trained on {wants}, but this scene is "
        f"{scene.product}; {instead}{hint}"
    )


def _instead_hint(kind: str, scene: Scene) -> str:
    if "surface_reflectance" in scene.value_kinds:
        return " (for example --model ukis-l2a), or the scene's Level-1 product"
    if kind == "surface_reflectance":
        return " (for example --model ukis-l1c), or the scene's Level-2 product"
    if kind == "toa_reflectance":
        return ", or give the scene with its _MTL.txt / _MTL.json (reflectance coefficients)"
    return ""


def cell_centres(size: int, factor: int) -> np.ndarray:
    """Indexes ``read_coarse`` samples along an axis of ``size`` pixels: the centre of each
    ``factor``-pixel cell, or its last pixel where the axis ends mid-cell."""
    return np.minimum(np.arange(0, size, factor) + factor // 2, size - 1)


def whole_pixels(window: Window) -> tuple[int, int, int, int]:
    """``(col, row, width, height)`` of a window with whole-pixel offsets and positive size."""
    values = np.array([window.col_off, window.row_off, window.width, window.height], float)
    ints = np.rint(values).astype(int)
    if np.abs(values - ints).max() > 1e-6 or min(ints[2:]) <= 0:
        raise ValueError(f"window {window} must have whole-pixel offsets and positive size")
    col, row, width, height = (int(v) for v in ints)
    return col, row, width, height


def clip_window(
    window: Window, width: int, height: int, boundless: bool
) -> tuple[tuple[int, int, int, int], Window | None]:
    """A read window checked against a ``width x height`` scene, the way every reader needs.

    Returns:
        ``((col, row, w, h), inside)``: the whole-pixel request, and the part of it inside the
        scene (``None`` if it misses the scene entirely).

    Raises:
        ValueError: the window extends past the scene and ``boundless`` is false (rasterio would
            silently return a smaller array; the engine needs the shape it asked for).
    """
    col, row, w, h = whole_pixels(window)
    c0, r0 = max(col, 0), max(row, 0)
    c1, r1 = min(col + w, width), min(row + h, height)
    if (c0, r0, c1, r1) != (col, row, col + w, row + h) and not boundless:
        raise ValueError(
            f"window {window} extends past the {width} x {height} scene; "
            "pass boundless=True to fill the outside with 0"
        )
    inside = Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None
    return (col, row, w, h), inside


def paste(out: np.ndarray, request: Sequence[int], inside: Window, data: np.ndarray) -> None:
    """Put ``data`` (the ``inside`` part) into ``out`` (the whole ``request``), in place."""
    col, row = request[0], request[1]
    r0, c0 = int(inside.row_off) - row, int(inside.col_off) - col
    out[..., r0 : r0 + data.shape[-2], c0 : c0 + data.shape[-1]] = data
