"""Landsat 8/9 scenes as USGS ships them, read window by window in the band contract's order.

A scene is either a folder of single-band GeoTIFFs (Collection 1 or 2, Level-1 ``_B4.TIF`` or
Level-2 ``_SR_B4.TIF``, any letter case, with its ``_MTL.txt`` / ``_MTL.json``), or one 4-band
GeoTIFF stack. :func:`open_scene` reads file headers only and checks that the four bands share one
pixel grid; pixels are read through :meth:`LandsatScene.open`, one reader per thread, because a
GDAL dataset handle must never be used by two threads at once.

    scene = open_scene("LC08_L1TP_044034_20160612_20170324_01_T1/")
    with scene.open() as reader:                   # in each reader thread
        dn = reader.read(Window(0, 0, 512, 512))   # (4, 512, 512) uint16: red, green, blue, nir
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cloudseg.bands import BANDS, LANDSAT8_BAND, reorder, valid_pixels
from cloudseg.data.mtl import Mtl, read_mtl, surface_reflectance, toa_reflectance
from cloudseg.errors import MissingBandError, SceneError

__all__ = [
    "LandsatScene",
    "SceneReader",
    "open_scene",
    "read_mtl",
    "surface_reflectance",
    "toa_reflectance",
]

#: Product id ``LC08_L1TP_044034_20160612_20170324_01_T1``: sensor and mission (LC08/LC09, or
#: OLI-only LO08/LO09; Landsat 9's OLI-2 has the same band numbers), processing level, WRS
#: path/row, acquired, processed, collection, tier.
PRODUCT_ID_RE = re.compile(r"^L[CO]0[89]_L[12][A-Z]{2}_\d{6}_\d{8}_\d{8}_\d{2}_(T1|T2|RT)$", re.I)

#: Band file of each product level; names match case-insensitively, ``.TIF`` or ``.TIFF``.
BAND_SUFFIX: dict[str, str] = {"L1": "_B{n}.TIF", "L2": "_SR_B{n}.TIF"}
BAND_FILE_RE = re.compile(r"^(?P<stem>.+?)_(?P<sr>SR_)?B(?P<n>\d{1,2})\.TIFF?$", re.I)

#: Metadata beside the band files, in order of preference (the ODL text is always shipped).
MTL_SUFFIXES = ("_MTL.txt", "_MTL.json")

#: Only GeoTIFF is read: a mis-named PNG must fail here, not open quietly with another driver.
DRIVER = "GTiff"
DTYPE = "uint16"


def _label(band: str) -> str:
    return f"B{LANDSAT8_BAND[band]} ({band})"


def _open(path: Path) -> DatasetReader:
    try:
        return rasterio.open(path, driver=DRIVER)
    except RasterioIOError as exc:
        raise SceneError(f"{path} is not a readable GeoTIFF: {exc}") from exc


@dataclass(frozen=True)
class LandsatScene:
    """One scene's grid and files; holds no open handle, so it can be shared and pickled.

    ``band_files[i]`` and 1-based ``band_indexes[i]`` locate contract band ``BANDS[i]`` (red,
    green, blue, nir): four files of a folder, or one stack file four times.
    """

    path: Path
    scene_id: str
    kind: str  # "L1", "L2" or "stack"
    width: int
    height: int
    crs: CRS | None
    transform: Affine
    band_files: tuple[Path, ...]
    band_indexes: tuple[int, ...]
    block_shape: tuple[int, int]  # (rows, cols) of the red band's internal tiles or strips
    mtl: Mtl | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.height, self.width

    @property
    def band_paths(self) -> dict[str, Path]:
        """File of each contract band, by name."""
        return dict(zip(BANDS, self.band_files, strict=True))

    def open(self) -> SceneReader:
        """Open a reader with its own dataset handles; use it from one thread, then close it."""
        return SceneReader(self)

    def profile(self) -> dict[str, Any]:
        """Rasterio profile of the red band's file, for writers to copy and update."""
        with _open(self.band_files[0]) as ds:
            return dict(ds.profile)


class SceneReader:
    """Windowed reads of a scene through dataset handles owned by the calling thread.

    Create one per thread (``scene.open()``) and close it (or use ``with``). Reads fetch only the
    window asked for; align windows to :attr:`block_shape` so no block is decoded twice.
    """

    def __init__(self, scene: LandsatScene) -> None:
        self.scene = scene
        self._datasets: dict[Path, DatasetReader] = {}
        # One read per file: a stack gives all four bands in one call, in contract order.
        self._plan: list[tuple[Path, list[int], slice]] = []
        try:
            for path in dict.fromkeys(scene.band_files):
                self._datasets[path] = _open(path)
                at = [i for i, p in enumerate(scene.band_files) if p == path]
                indexes = [scene.band_indexes[i] for i in at]
                self._plan.append((path, indexes, slice(at[0], at[-1] + 1)))
        except BaseException:
            self.close()
            raise

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the files' internal blocks."""
        return self.scene.block_shape

    def read(self, window: Window, boundless: bool = False) -> np.ndarray:
        """Read one window of all four bands.

        Args:
            window: pixel window (whole pixels) in scene coordinates.
            boundless: allow the window to extend past the scene; the outside is filled with
                0 (no data). Otherwise such a window raises ``ValueError``.

        Returns:
            ``(4, window.height, window.width)`` uint16 digital numbers: red, green, blue, nir.
        """
        col, row, width, height = whole_pixels(window)
        out = np.zeros((len(BANDS), height, width), np.dtype(DTYPE))
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + width, self.scene.width), min(row + height, self.scene.height)
        inside = (c0, r0, c1, r1) == (col, row, col + width, row + height)
        if not inside and not boundless:
            # rasterio would silently return a smaller array; the engine needs the shape it asked.
            raise ValueError(
                f"window {window} extends past the {self.scene.width} x {self.scene.height} "
                "scene; pass boundless=True to fill the outside with 0"
            )
        if c1 <= c0 or r1 <= r0:
            return out
        src = Window(c0, r0, c1 - c0, r1 - r0)
        for path, indexes, part in self._plan:
            try:
                if inside:
                    self._datasets[path].read(indexes, window=src, out=out[part])
                else:
                    data = self._datasets[path].read(indexes, window=src)
                    out[part, r0 - row : r1 - row, c0 - col : c1 - col] = data
            except RasterioIOError as exc:
                raise SceneError(f"cannot read {src} of {path}: {exc}") from exc
        return out

    def valid(self, window: Window, boundless: bool = False) -> np.ndarray:
        """``(h, w)`` bool validity of a window: any band non-zero. Reads the window's pixels."""
        return valid_pixels(self.read(window, boundless=boundless))

    def close(self) -> None:
        """Close every dataset handle (safe to call twice)."""
        for ds in self._datasets.values():
            ds.close()
        self._datasets.clear()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def whole_pixels(window: Window) -> tuple[int, int, int, int]:
    values = np.array([window.col_off, window.row_off, window.width, window.height], float)
    ints = np.rint(values).astype(int)
    if np.abs(values - ints).max() > 1e-6 or min(ints[2:]) <= 0:
        raise ValueError(f"window {window} must have whole-pixel offsets and positive size")
    col, row, width, height = (int(v) for v in ints)
    return col, row, width, height


@dataclass(frozen=True)
class _Header:
    path: Path
    width: int
    height: int
    count: int
    crs: CRS | None
    transform: Affine
    dtypes: tuple[str, ...]
    descriptions: tuple[str | None, ...]
    block_shape: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int, CRS | None, Affine]:
        return self.width, self.height, self.crs, self.transform


def _header(path: Path) -> _Header:
    with _open(path) as ds:
        args = (ds.width, ds.height, ds.count, ds.crs, ds.transform, tuple(ds.dtypes))
        header = _Header(path, *args, tuple(ds.descriptions), tuple(ds.block_shapes[0]))
    bad = sorted(set(header.dtypes) - {DTYPE})
    if bad:
        raise SceneError(f"{path} holds {', '.join(bad)} pixels; Landsat DN files are {DTYPE}")
    return header


def _check_same_grid(folder: Path, headers: list[_Header]) -> None:
    ref, ref_label = headers[0], _label(BANDS[0])
    for band, h in zip(BANDS[1:], headers[1:], strict=True):
        where = f"scene folder {folder}: band {_label(band)} ({h.path.name})"
        if (h.width, h.height) != (ref.width, ref.height):
            raise SceneError(
                f"{where} is {h.width} x {h.height} pixels but {ref_label} is "
                f"{ref.width} x {ref.height}"
            )
        if h.crs != ref.crs:
            raise SceneError(f"{where} has CRS {h.crs} but {ref_label} has {ref.crs}")
        if not h.transform.almost_equals(ref.transform):
            raise SceneError(
                f"{where} has transform {tuple(h.transform)[:6]} but {ref_label} has "
                f"{tuple(ref.transform)[:6]}"
            )


def _find_bands(folder: Path) -> tuple[str, str, list[Path]]:
    """Level (``L1``/``L2``), file stem, and the band files in contract order."""
    wanted = {LANDSAT8_BAND[b]: b for b in BANDS}
    found: dict[int, list[tuple[str, str, Path]]] = {n: [] for n in wanted}
    for path in sorted(folder.iterdir()):
        match = BAND_FILE_RE.match(path.name)
        # Dot files are macOS "._" forks and our own temporaries, never bands.
        if match and not path.name.startswith(".") and int(match["n"]) in wanted:
            found[int(match["n"])].append(("L2" if match["sr"] else "L1", match["stem"], path))
    kinds = {kind for files in found.values() for kind, _, _ in files}
    missing = [n for n, files in found.items() if not files]
    if missing:
        suffix = BAND_SUFFIX["L2" if kinds == {"L2"} else "L1"]
        labels = ", ".join(_label(wanted[n]) for n in missing)
        ends = ", ".join(suffix.format(n=n) for n in missing)
        noun, ending = ("band", "a file ending") if len(missing) == 1 else ("bands", "files ending")
        raise MissingBandError(
            f"scene folder {folder} has no {noun} {labels}: expected {ending} {ends}"
        )
    for n, files in found.items():
        if len(files) > 1:
            names = ", ".join(p.name for _, _, p in files)
            raise SceneError(
                f"scene folder {folder} has {len(files)} files for band {_label(wanted[n])}: "
                f"{names}; keep one product (Level-1 or Level-2) per folder"
            )
    picks = [found[LANDSAT8_BAND[b]][0] for b in BANDS]
    if len(kinds) > 1 or len({stem for _, stem, _ in picks}) > 1:
        names = ", ".join(p.name for _, _, p in picks)
        raise SceneError(f"scene folder {folder} mixes band files of different products: {names}")
    return picks[0][0], picks[0][1], [p for _, _, p in picks]


def _find_mtl(folder: Path, stem: str) -> Path | None:
    """The MTL named like the bands, else the folder's only one; txt before json."""
    by_stem: dict[str, Path] = {}
    for suffix in MTL_SUFFIXES:
        for path in sorted(folder.iterdir()):
            name = path.name
            if name.lower().endswith(suffix.lower()) and not name.startswith("."):
                by_stem.setdefault(name[: -len(suffix)].upper(), path)
    if stem.upper() in by_stem:
        return by_stem[stem.upper()]
    if len(by_stem) > 1:
        names = ", ".join(p.name for p in by_stem.values())
        raise SceneError(f"scene folder {folder} has MTL files of several products: {names}")
    return next(iter(by_stem.values()), None)


def _id_from_name(stem: str) -> str:
    # Product ids are upper case; lower-cased copies still name outputs the canonical way.
    return stem.upper() if PRODUCT_ID_RE.match(stem) else stem


def _open_folder(folder: Path) -> LandsatScene:
    kind, stem, paths = _find_bands(folder)
    headers = [_header(p) for p in paths]
    _check_same_grid(folder, headers)
    mtl_path = _find_mtl(folder, stem)
    mtl = read_mtl(mtl_path) if mtl_path else None
    scene_id = (mtl.scene_id if mtl else None) or _id_from_name(stem)
    ref, files = headers[0], tuple(paths)
    return LandsatScene(folder, scene_id, kind, *ref.grid, files, (1,) * 4, ref.block_shape, mtl)


def _stack_indexes(header: _Header) -> tuple[int, ...]:
    """1-based stack band of each contract band: by description if any names a band."""
    aliases = {b: b for b in BANDS} | {f"b{n}": b for b, n in LANDSAT8_BAND.items()}
    names = [(d or "").strip().lower() for d in header.descriptions]
    if not any(name in aliases for name in names):
        return tuple(range(1, len(BANDS) + 1))
    try:
        order = reorder(np.arange(1, len(BANDS) + 1), [aliases.get(n, n) for n in names])
    except ValueError as exc:
        raise SceneError(
            f"{header.path} band descriptions {header.descriptions} must name each of "
            f"{', '.join(BANDS)} once ({exc})"
        ) from exc
    return tuple(int(i) for i in order)


def _open_stack(path: Path) -> LandsatScene:
    header = _header(path)
    if header.count != len(BANDS):
        hint = "; pass its scene folder instead" if BAND_FILE_RE.match(path.name) else ""
        raise SceneError(
            f"{path} has {header.count} band(s); a scene file needs {len(BANDS)} "
            f"({', '.join(BANDS)}){hint}"
        )
    scene_id, indexes = _id_from_name(path.stem), _stack_indexes(header)
    return LandsatScene(
        path, scene_id, "stack", *header.grid, (path,) * 4, indexes, header.block_shape
    )


def open_scene(path: str | Path) -> LandsatScene:
    """Open a Landsat scene folder or 4-band GeoTIFF: check its files, read no pixels.

    Args:
        path: a USGS scene folder (Level-1 ``*_B4.TIF`` or Level-2 ``*_SR_B4.TIF`` files with an
            optional ``*_MTL.txt``/``*_MTL.json``), or a 4-band GeoTIFF whose bands are red,
            green, blue, nir (or named so by their descriptions, in any order).

    Returns:
        The scene's grid, files and metadata; call :meth:`LandsatScene.open` to read pixels.

    Raises:
        MissingBandError: a folder lacks one of bands B4, B3, B2, B5.
        SceneError: anything else that keeps the scene from being read as the contract needs.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _open_folder(path)
    if path.is_file():
        return _open_stack(path)
    raise SceneError(f"scene {path} does not exist")
