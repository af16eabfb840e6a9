"""Landsat 8/9 scenes as USGS ships them, read window by window in the band contract's order.

A scene is either a folder of single-band GeoTIFFs (Collection 1 or 2, Level-1 ``_B4.TIF`` or
Level-2 ``_SR_B4.TIF``, with its ``_MTL.txt`` / ``_MTL.json`` and quality band; the layout is in
:mod:`cloudseg.data.landsat_files`), one 4-band GeoTIFF stack, or the same files elsewhere (a STAC
item's band assets, :mod:`cloudseg.data.stac`). :func:`open_scene` reads file headers only and
checks that the four bands share one pixel grid; pixels are read through
:meth:`LandsatScene.open`, one reader per thread (:mod:`cloudseg.scene` has the contract).

    scene = open_scene("LC08_L1TP_044034_20160612_20170324_01_T1/")
    with scene.open() as reader:                   # in each reader thread
        dn = reader.read(Window(0, 0, 512, 512))   # (4, 512, 512) uint16: red, green, blue, nir
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cloudseg.bands import BANDS, LANDSAT8_BAND, reorder, valid_pixels
from cloudseg.data import landsat_files as files
from cloudseg.data import qa as qa_bits
from cloudseg.data.gdal_errors import describe
from cloudseg.data.mtl import Mtl, read_mtl, surface_reflectance, toa_reflectance
from cloudseg.errors import SceneError
from cloudseg.scene import cell_centres, clip_window, paste

__all__ = ["LandsatReader", "LandsatScene", "open_scene"]

#: What each product level can give a model (see :data:`cloudseg.card.VALUE_KIND_WORDS`).
#: Rows per read of :meth:`LandsatReader.read_coarse` (a multiple of the decimation is used).
COARSE_ROWS = 512

LEVEL_WORDS = {
    "L1": "Level-1 (digital numbers)",
    "L2": "Level-2 (surface reflectance)",
    "stack": "a 4-band GeoTIFF stack (taken as Level-1 digital numbers)",
}


@dataclass(frozen=True)
class LandsatScene:
    """One scene's grid and files; holds no open handle, so it can be shared and pickled.

    ``band_files[i]`` and 1-based ``band_indexes[i]`` locate contract band ``BANDS[i]`` (red,
    green, blue, nir): four files of a folder, or one stack file four times. Files are GDAL
    dataset names: local paths, or ``/vsicurl/`` and ``/vsis3/`` names for remote assets.
    """

    source: str  # the folder, file or item the scene was opened from
    scene_id: str
    kind: str  # "L1", "L2" or "stack"
    width: int
    height: int
    crs: CRS | None
    transform: Affine
    band_files: tuple[str, ...]
    band_indexes: tuple[int, ...]
    block_shape: tuple[int, int]  # (rows, cols) of the red band's internal tiles or strips
    mtl: Mtl | None = None
    qa_file: str | None = None  # QA_PIXEL or BQA, when the product has one
    collection: int | None = None  # 2, 1, 0 (pre-collection) or None (unknown)
    remote: bool = False

    @property
    def path(self) -> Path:
        """The local folder or file the scene was opened from."""
        return Path(self.source)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.height, self.width

    @property
    def band_paths(self) -> dict[str, str]:
        """File of each contract band, by name."""
        return dict(zip(BANDS, self.band_files, strict=True))

    @property
    def local_dir(self) -> Path | None:
        """Outputs default to a folder beside a local scene; a remote one has none."""
        return None if self.remote else self.path.parent

    @property
    def product(self) -> str:
        """``a Landsat 8 Collection 2 Level-2 (surface reflectance) product``, and so on."""
        if self.kind == "stack":
            return LEVEL_WORDS["stack"]
        collection = {None: "", 0: " pre-collection", 1: " Collection 1", 2: " Collection 2"}
        words = collection.get(self.collection, f" Collection {self.collection}")
        product_id = (self.mtl.scene_id if self.mtl else None) or self.scene_id
        return f"a {files.mission_of(product_id)}{words} {LEVEL_WORDS[self.kind]} product"

    @property
    def value_kinds(self) -> tuple[str, ...]:
        """What :meth:`to_values` can give: DN and (with an MTL) TOA, or surface reflectance."""
        if self.kind == "L2":
            return ("surface_reflectance",) if self.mtl is not None and self.mtl.sr else ()
        toa = self.mtl is not None and bool(self.mtl.toa) and not self.mtl.is_level2
        return ("dn", "toa_reflectance") if toa else ("dn",)

    @property
    def qa_layout(self) -> str | None:
        """Bit layout of :attr:`qa_file` (:data:`cloudseg.data.qa.LAYOUTS`), or None."""
        if self.qa_file is None:
            return None
        return qa_bits.layout_for(self.qa_file, self.collection)

    def open(self) -> LandsatReader:
        """Open a reader with its own dataset handles; use it from one thread, then close it."""
        return LandsatReader(self)

    def profile(self) -> dict[str, Any]:
        """Rasterio profile of the red band's file, for writers to copy and update."""
        with files.open_raster(self.band_files[0]) as ds:
            return dict(ds.profile)

    def to_values(self, raw: np.ndarray, kind: str) -> np.ndarray:
        """``(4, h, w)`` DN in contract order as ``kind``: DN, TOA or surface reflectance."""
        if kind not in self.value_kinds:
            raise SceneError(f"{self.source}: {self.product} cannot give {kind} values")
        if kind == "toa_reflectance":
            return toa_reflectance(raw, BANDS, self.mtl)
        if kind == "surface_reflectance":
            return surface_reflectance(raw, BANDS, self.mtl)
        return raw


class LandsatReader:
    """Windowed reads of a scene through dataset handles owned by the calling thread.

    Create one per thread (``scene.open()``) and close it (or use ``with``). Reads fetch only the
    window asked for; align windows to :attr:`block_shape` so no block is decoded twice. Where the
    scene has a quality band, pixels it flags as fill are returned as 0 in every band.
    """

    def __init__(self, scene: LandsatScene) -> None:
        self.scene = scene
        self._datasets: dict[str, DatasetReader] = {}
        # One read per file: a stack gives all four bands in one call, in contract order.
        self._plan: list[tuple[str, list[int], slice]] = []
        self._qa: DatasetReader | None = None
        try:
            for path in dict.fromkeys(scene.band_files):
                self._datasets[path] = files.open_raster(path)
                at = [i for i, p in enumerate(scene.band_files) if p == path]
                indexes = [scene.band_indexes[i] for i in at]
                self._plan.append((path, indexes, slice(at[0], at[-1] + 1)))
            self._qa = files.open_raster(scene.qa_file) if scene.qa_file else None
        except BaseException:
            self.close()
            raise

    @property
    def block_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the files' internal blocks."""
        return self.scene.block_shape

    def read(self, window: Window, boundless: bool = False) -> np.ndarray:
        """``(4, window.height, window.width)`` uint16 DN: red, green, blue, nir (0: no data).

        Args:
            window: pixel window (whole pixels) in scene coordinates.
            boundless: allow the window to extend past the scene; the outside is filled with
                0 (no data). Otherwise such a window raises ``ValueError``.
        """
        request, inside = clip_window(window, self.scene.width, self.scene.height, boundless)
        shape = (len(BANDS), request[3], request[2])
        if inside is None:
            return np.zeros(shape, np.dtype(files.DTYPE))
        whole = (inside.width, inside.height) == (request[2], request[3])
        block = np.empty((len(BANDS), inside.height, inside.width), np.dtype(files.DTYPE))
        for path, indexes, part in self._plan:
            self._read(self._datasets[path], indexes, inside, path, out=block[part])
        if self._qa is not None:  # what the quality band calls fill is no data in every band
            block[:, qa_bits.is_fill(self._read(self._qa, [1], inside, self.scene.qa_file)[0])] = 0
        if whole:
            return block
        out = np.zeros(shape, block.dtype)
        paste(out, request, inside, block)
        return out

    def read_coarse(self, factor: int) -> np.ndarray:
        """``(4, ceil(H / f), ceil(W / f))`` DN sampled every ``factor`` pixels, at the centre
        of each ``factor`` x ``factor`` cell.

        A remote scene is read decimated by GDAL (a COG's overviews, few bytes over the
        network). A local one is read at full resolution in bands of :data:`COARSE_ROWS` rows
        and sampled here: GDAL's decimated read of a whole local scene took 6.8 s instead of
        1.1 s on a 7800 px scene whenever ``GDAL_CACHEMAX`` was set (as every run sets it).
        """
        shape = (-(-self.scene.height // factor), -(-self.scene.width // factor))
        out = np.empty((len(BANDS), *shape), np.dtype(files.DTYPE))
        step = max(1, COARSE_ROWS // factor) * factor
        cols = cell_centres(self.scene.width, factor)
        for path, indexes, part in self._plan:
            ds = self._datasets[path]
            try:
                if self.scene.local_dir is None:
                    out[part] = ds.read(indexes, out_shape=(len(indexes), *shape))
                    continue
                for row0 in range(0, self.scene.height, step):
                    rows = min(step, self.scene.height - row0)
                    data = ds.read(indexes, window=Window(0, row0, self.scene.width, rows))
                    picked = cell_centres(rows, factor)
                    r0 = row0 // factor
                    out[part, r0 : r0 + len(picked)] = data[:, picked][:, :, cols]
            except RasterioIOError as exc:
                raise SceneError(f"{path}: cannot read pixels: {describe(exc)}") from None
        return out

    def read_qa(self, window: Window) -> np.ndarray | None:
        """``(h, w)`` uint8 :mod:`cloudseg.data.qa` flags of the quality band, or None."""
        if self._qa is None:
            return None
        _, inside = clip_window(window, self.scene.width, self.scene.height, False)
        raw = self._read(self._qa, [1], inside, self.scene.qa_file)[0]
        return qa_bits.decode(raw, self.scene.qa_layout)

    @staticmethod
    def _read(
        ds: DatasetReader,
        indexes: list[int],
        window: Window,
        path: str,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        try:
            return ds.read(indexes, window=window, out=out)
        except RasterioIOError as exc:
            raise SceneError(f"{path}: cannot read pixels: {describe(exc)}") from None

    def valid(self, window: Window, boundless: bool = False) -> np.ndarray:
        """``(h, w)`` bool validity of a window: any band non-zero. Reads the window's pixels."""
        return valid_pixels(self.read(window, boundless=boundless))

    def close(self) -> None:
        """Close every dataset handle (safe to call twice)."""
        for ds in self._datasets.values():
            ds.close()
        self._datasets.clear()
        if self._qa is not None:
            self._qa.close()
            self._qa = None

    def __enter__(self) -> LandsatReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_folder(folder: Path) -> LandsatScene:
    kind, stem, paths = files.find_bands(folder)
    headers = [files.read_header(p) for p in paths]
    labels = [files.band_label(BANDS[0])] + [f"band {files.band_label(b)}" for b in BANDS[1:]]
    files.check_same_grid(f"scene folder {folder}", headers, labels)
    mtl_path = files.find_mtl(folder, stem)
    mtl = read_mtl(mtl_path) if mtl_path else None
    scene_id = (mtl.scene_id if mtl else None) or files.id_from_name(stem)
    collection = files.collection_of(scene_id, mtl.collection if mtl else None)
    qa = files.find_qa(folder, stem)
    if qa is not None:
        files.check_same_grid(
            f"scene folder {folder}",
            [headers[0], files.read_header(qa)],
            [files.band_label(BANDS[0]), "quality band"],
        )
    ref = headers[0]
    return LandsatScene(
        source=str(folder),
        scene_id=scene_id,
        kind=kind,
        width=ref.width,
        height=ref.height,
        crs=ref.crs,
        transform=ref.transform,
        band_files=tuple(str(p) for p in paths),
        band_indexes=(1,) * len(BANDS),
        block_shape=ref.block_shape,
        mtl=mtl,
        qa_file=str(qa) if qa else None,
        collection=collection,
    )


def _stack_indexes(header: files.Header) -> tuple[int, ...]:
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


def open_stack(path: str, source: str | None = None, remote: bool = False) -> LandsatScene:
    """A 4-band GeoTIFF (red, green, blue, nir, or named so by band descriptions) as a scene.

    Args:
        path: GDAL name of the file (a local path, or ``/vsicurl/...`` for a COG over HTTP).
        source: what the user gave (shown in messages); default ``path``.
        remote: the file is not on a local disk (outputs then need ``--out``).
    """
    header = files.read_header(path)
    if header.count != len(BANDS):
        hint = (
            "; pass its scene folder instead" if files.BAND_FILE_RE.match(Path(path).name) else ""
        )
        raise SceneError(
            f"{source or path} has {header.count} band(s); a scene file needs {len(BANDS)} "
            f"({', '.join(BANDS)}){hint}"
        )
    stem = Path(path.split("?")[0]).stem
    return LandsatScene(
        source=source or path,
        scene_id=files.id_from_name(stem),
        kind="stack",
        width=header.width,
        height=header.height,
        crs=header.crs,
        transform=header.transform,
        band_files=(path,) * len(BANDS),
        band_indexes=_stack_indexes(header),
        block_shape=header.block_shape,
        remote=remote,
    )


def open_scene(path: str | Path) -> LandsatScene:
    """Open a Landsat scene folder or 4-band GeoTIFF: check its files, read no pixels.

    Args:
        path: a USGS scene folder (Level-1 ``*_B4.TIF`` or Level-2 ``*_SR_B4.TIF`` files with an
            optional ``*_MTL.txt``/``*_MTL.json`` and ``*_QA_PIXEL.TIF``/``*_BQA.TIF``), or a
            4-band GeoTIFF whose bands are red, green, blue, nir (or named so by their
            descriptions, in any order).

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
        return open_stack(str(path))
    raise SceneError(f"scene {path} does not exist")
