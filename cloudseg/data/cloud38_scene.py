"""A 38-Cloud scene read from its patch folder as if it were one Landsat scene.

:class:`Cloud38Scene` implements the scene contract (:class:`cloudseg.scene.Scene`) over a
scene's patches, stitched as the dataset's own evaluation does
(:func:`cloud38_stitch.stitch_scene`):
patch ``(row, col)`` sits at ``((row - 1) * P, (col - 1) * P)`` of the padded grid, and the scene
is the centred crop of that grid to the size of the scene's ``Entire_scene_gts`` file (or the whole
padded grid when that file is absent). Only the patches a window touches are read.

A scene is named by its split folder and scene id, in either of two spellings::

    open_cloud38_scene(Path("38-Cloud/38-Cloud_test"), "LC08_L1TP_003052_20160120_20170405_01_T1")
    open_cloud38_scene(Path("38-Cloud/38-Cloud_test::LC08_L1TP_003052_20160120_20170405_01_T1"))

The folder may be the dataset root (holding ``38-Cloud_test``) or the split folder itself; the
test split is looked for first, then the training split. The scene id may be left out when the
split holds one scene only.
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from cloudseg.bands import BANDS, valid_pixels
from cloudseg.data import cloud38, cloud38_read, cloud38_stitch
from cloudseg.errors import DataError, MissingFileError, SceneError
from cloudseg.scene import clip_window

__all__ = ["SCENE_SEPARATOR", "Cloud38Reader", "Cloud38Scene", "open_cloud38_scene"]

#: Separates split folder and scene id in one path: ``38-Cloud_test::LC08_...``.
SCENE_SEPARATOR = "::"

#: Splits tried, in order, when opening a folder.
SPLITS = ("test", "train")


@dataclass(frozen=True)
class Cloud38Scene:
    """One 38-Cloud scene's grid and patches; holds no open handle (shareable, picklable).

    The scene holds Level-1 digital numbers only (38-Cloud ships no MTL, so no reflectance),
    has no CRS (38-Cloud files carry no georeferencing), an identity transform and no quality
    band.
    """

    path: Path  # the split folder
    scene_id: str
    split: str
    width: int
    height: int
    patch_size: int
    grid: tuple[int, int]  # (rows, cols) of the padded patch grid
    offset: tuple[int, int]  # (top, left): scene pixel (0, 0) in padded grid pixels
    patches: frozenset[tuple[int, int]]  # 1-based (row, col) of the patches the CSV lists
    crs: None = None
    transform: Affine = Affine.identity()
    value_kinds: tuple[str, ...] = ("dn",)

    @property
    def source(self) -> str:
        """``<split folder>::<scene id>``, as given on the command line."""
        return f"{self.path}{SCENE_SEPARATOR}{self.scene_id}"

    @property
    def product(self) -> str:
        """What the scene is, for messages."""
        return "a 38-Cloud scene (Landsat 8 Level-1 digital numbers, stitched from patches)"

    @property
    def local_dir(self) -> Path:
        """The dataset folder holding the split: outputs default to beside it."""
        return self.path.parent

    def to_values(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """Raw DN: the one kind a 38-Cloud scene has."""
        if kind != "dn":
            raise SceneError(f"{self.source}: {self.product} cannot give {kind} values")
        return raw

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.height, self.width

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the natural read unit: one patch."""
        return self.patch_size, self.patch_size

    def open(self, cache_patches: int | None = None) -> Cloud38Reader:
        """A reader for one thread; see :class:`Cloud38Reader`."""
        return Cloud38Reader(self, cache_patches)

    def profile(self) -> dict[str, Any]:
        """A rasterio profile of the scene grid (one uint16 band, no CRS), for writers to update."""
        return {
            "driver": "GTiff",
            "width": self.width,
            "height": self.height,
            "count": 1,
            "dtype": "uint16",
            "crs": None,
            "transform": Affine.identity(),
        }


class Cloud38Reader:
    """Windowed reads of a :class:`Cloud38Scene`, assembling the patches a window overlaps.

    Recently used patches are cached (least recently used dropped first): the engine's tiles
    overlap and straddle patch borders, so each patch is asked for several times in a row. The
    default cache holds two patch rows (``2 * cols + 2`` patches; for a real 384 px scene about
    1.2 MB each, ~50 MB per reader), enough that every patch is read about once.
    """

    def __init__(self, scene: Cloud38Scene, cache_patches: int | None = None) -> None:
        self.scene = scene
        size = 2 * scene.grid[1] + 2 if cache_patches is None else cache_patches
        # Per reader (per thread), so no handle or cache is shared between threads.
        self._patch = functools.lru_cache(maxsize=max(size, 1))(self._load)

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of one patch."""
        return self.scene.block_shape

    def _load(self, row: int, col: int) -> np.ndarray | None:
        """Patch at 1-based ``(row, col)``: ``(4, P, P)`` uint16, or None if not listed."""
        if (row, col) not in self.scene.patches:
            return None  # a patch the dataset does not list is no data, as in stitching
        name = cloud38.patch_name(row, col, self.scene.grid[1], self.scene.scene_id)
        image = cloud38_read.read_image(self.scene.path, self.scene.split, name)
        if image.shape[-1] != self.scene.patch_size or image.shape[-2] != self.scene.patch_size:
            raise DataError(
                f"{self.scene.path}: patch {name} is {image.shape[-2]} x {image.shape[-1]}, "
                f"the scene's others {self.scene.patch_size} px"
            )
        return image

    def read(self, window: Window, boundless: bool = False) -> np.ndarray:
        """Read one window of all four bands.

        Args:
            window: pixel window (whole pixels) in scene coordinates.
            boundless: allow the window to extend past the scene, filled with 0 (no data);
                otherwise such a window raises ``ValueError``.

        Returns:
            ``(4, window.height, window.width)`` uint16 DN: red, green, blue, nir.
        """
        scene, size = self.scene, self.scene.patch_size
        (col, row, width, height), inside = clip_window(
            window, scene.width, scene.height, boundless
        )
        out = np.zeros((len(BANDS), height, width), np.uint16)
        if inside is None:
            return out
        c0, r0 = int(inside.col_off), int(inside.row_off)
        c1, r1 = c0 + int(inside.width), r0 + int(inside.height)
        top, left = scene.offset
        # Padded-grid pixels of the clipped window, and the 0-based patch rows/cols they span.
        py0, py1, px0, px1 = r0 + top, r1 + top, c0 + left, c1 + left
        for prow in range(py0 // size, (py1 - 1) // size + 1):
            for pcol in range(px0 // size, (px1 - 1) // size + 1):
                patch = self._patch(prow + 1, pcol + 1)
                if patch is None:
                    continue
                ys, ye = max(py0, prow * size), min(py1, (prow + 1) * size)
                xs, xe = max(px0, pcol * size), min(px1, (pcol + 1) * size)
                out[:, ys - top - row : ye - top - row, xs - left - col : xe - left - col] = patch[
                    :, ys - prow * size : ye - prow * size, xs - pcol * size : xe - pcol * size
                ]
        return out

    def valid(self, window: Window, boundless: bool = False) -> np.ndarray:
        """``(h, w)`` bool validity of a window: any band non-zero. Reads the window's pixels."""
        return valid_pixels(self.read(window, boundless=boundless))

    def read_coarse(self, factor: int) -> np.ndarray:
        """Every ``factor``-th pixel of the stitched scene, reading each listed patch once."""
        scene = self.scene
        shape = (-(-scene.height // factor), -(-scene.width // factor))
        out = np.zeros((len(BANDS), *shape), np.uint16)
        for row in range(0, scene.height, scene.patch_size):
            band = self.read(Window(0, row, scene.width, min(scene.patch_size, scene.height - row)))
            first = (-row) % factor
            rows = band[:, first::factor, ::factor]
            top = (row + first) // factor
            out[:, top : top + rows.shape[1]] = rows
        return out

    def read_qa(self, window: Window) -> None:
        """38-Cloud ships no quality band."""
        return None

    def close(self) -> None:
        """Drop the cached patches (safe to call twice)."""
        self._patch.cache_clear()

    def __enter__(self) -> Cloud38Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def split_scene_path(path: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """``"<folder>::<scene id>"`` -> ``(folder, scene id)``; a plain path -> ``(path, None)``."""
    text = os.fspath(path)
    if SCENE_SEPARATOR in text:
        folder, _, scene_id = text.rpartition(SCENE_SEPARATOR)
        return Path(folder).expanduser(), scene_id.strip() or None
    return Path(text).expanduser(), None


def is_cloud38_path(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` names a 38-Cloud scene: ``<folder>::<id>`` or a 38-Cloud split folder."""
    folder, scene_id = split_scene_path(path)
    if scene_id is not None:
        return True
    if not folder.is_dir():
        return False
    return any(_try_split(folder, split) is not None for split in SPLITS)


def _try_split(folder: Path, split: str) -> Path | None:
    try:
        return cloud38.find_split(folder, split)
    except MissingFileError:
        return None


def _patch_size(folder: Path, split: str, name: str) -> int:
    # The split folder may have any name, so paths are built from it, not from a dataset root.
    path = cloud38.band_path(folder, split, BANDS[0], name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.width != ds.height:
                    raise DataError(f"{path}: patch is {ds.height} x {ds.width}, not square")
                return int(ds.width)
    except RasterioIOError:
        raise MissingFileError(f"{path} is missing or not a readable TIFF") from None


def open_cloud38_scene(path: str | os.PathLike[str], scene_id: str | None = None) -> Cloud38Scene:
    """Open a 38-Cloud scene from its split folder: read its CSV and one header, no pixels.

    Args:
        path: dataset root or split folder (``38-Cloud_test``), or ``"<folder>::<scene id>"``.
        scene_id: the scene, if not given in ``path``; may be None if the split has one scene.

    Returns:
        The scene; its size is that of ``Entire_scene_gts/edited_corrected_gts_<id>.TIF`` when
        present, else the padded patch grid's.

    Raises:
        SceneError: the folder is not a 38-Cloud split, or the scene is not (or not uniquely)
            found; DataError for a malformed CSV or patch.
    """
    folder, from_path = split_scene_path(path)
    scene_id = scene_id or from_path
    found = [(s, f) for s in SPLITS if (f := _try_split(folder, s)) is not None]
    if not found:
        raise SceneError(f"{folder} is not a 38-Cloud dataset or split folder (no 38-Cloud_test)")
    split, split_dir = found[0]
    listed = cloud38.list_patches(split_dir, split, check=False)
    scenes = cloud38.scenes_of(listed)
    if scene_id is None:
        if len(scenes) != 1:
            raise SceneError(
                f"{split_dir} holds {len(scenes)} scenes; name one as "
                f"{split_dir}{SCENE_SEPARATOR}<scene id>"
            )
        scene_id = scenes[0]
    patches = [p for p in listed if p.scene == scene_id]
    if not patches:
        raise SceneError(f"{split_dir} lists no patch of scene {scene_id} ({len(scenes)} scenes)")
    rows, cols = cloud38_stitch.infer_grid(patches)
    size = _patch_size(split_dir, split, patches[0].name)
    gt = cloud38.scene_gt_path(split_dir, scene_id)
    if gt.is_file():
        height, width = cloud38_read.raster_shape(gt)
    else:
        height, width = rows * size, cols * size
    top, left = cloud38.pad_offsets(height, width, rows * size, cols * size, size)
    if top < 0 or left < 0:
        raise SceneError(
            f"{gt}: {height} x {width} is larger than the {rows} x {cols} grid of {size} px patches"
        )
    return Cloud38Scene(
        path=split_dir,
        scene_id=scene_id,
        split=split,
        width=width,
        height=height,
        patch_size=size,
        grid=(rows, cols),
        offset=(top, left),
        patches=frozenset((p.row, p.col) for p in patches),
    )
