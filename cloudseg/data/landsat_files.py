"""The file layout of Landsat 8/9 products as USGS ships them: names, ids, headers, one grid.

A scene folder holds one product: Level-1 band files ``<id>_B4.TIF`` or Level-2 ``<id>_SR_B4.TIF``
(any letter case, ``.TIF`` or ``.TIFF``), its metadata ``<id>_MTL.txt`` and/or ``<id>_MTL.json``,
and its quality band: ``<id>_QA_PIXEL.TIF`` (Collection 2) or ``<id>_BQA.TIF`` (Collection 1 and
pre-collection). :mod:`cloudseg.data.landsat` builds scenes from what is found here.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from cloudseg.bands import BANDS, LANDSAT8_BAND
from cloudseg.data import remote
from cloudseg.data.gdal_errors import describe
from cloudseg.errors import MissingBandError, SceneError

#: Product id ``LC08_L1TP_044034_20160612_20170324_01_T1``: sensor and mission (LC08/LC09, or
#: OLI-only LO08/LO09; Landsat 9's OLI-2 has the same band numbers), processing level, WRS
#: path/row, acquired, processed, collection, tier.
PRODUCT_ID_RE = re.compile(
    r"^L[CO]0(?P<mission>[89])_(?P<level>L[12][A-Z]{2})_\d{6}_(?P<acquired>\d{8})_\d{8}_"
    r"(?P<collection>\d{2})_"
    r"(T1|T2|RT)$",
    re.I,
)
#: Pre-collection scene id ``LC80440342016164LGN01``.
SCENE_ID_RE = re.compile(r"^L[CO](?P<mission>[89])\d{6}(?P<year_day>\d{7})[A-Z]{3}\d{2}$", re.I)

#: Band file of each product level; names match case-insensitively, ``.TIF`` or ``.TIFF``.
BAND_SUFFIX: dict[str, str] = {"L1": "_B{n}.TIF", "L2": "_SR_B{n}.TIF"}
BAND_FILE_RE = re.compile(r"^(?P<stem>.+?)_(?P<sr>SR_)?B(?P<n>\d{1,2})\.TIFF?$", re.I)
#: Quality bands: Collection 2 ``QA_PIXEL``, Collection 1 / pre-collection ``BQA``.
QA_FILE_RE = re.compile(r"^(?P<stem>.+?)_(?P<qa>QA_PIXEL|BQA)\.TIFF?$", re.I)

#: Metadata beside the band files, in order of preference (the ODL text is always shipped).
MTL_SUFFIXES = ("_MTL.txt", "_MTL.json")

#: Only GeoTIFF is read: a mis-named PNG must fail here, not open quietly with another driver.
DRIVER = "GTiff"
DTYPE = "uint16"


def band_label(band: str) -> str:
    """``B4 (red)``: how messages name a contract band."""
    return f"B{LANDSAT8_BAND[band]} ({band})"


def open_raster(path: str | Path) -> DatasetReader:
    """Open one GeoTIFF of a scene; a file GDAL cannot read is a one-line :class:`SceneError`.

    A remote file (``/vsicurl/``, ``/vsis3/``) is retried while the network fails
    (:func:`cloudseg.data.remote.with_retries`); the message names its URL.
    """
    if str(path).startswith("/vsi"):
        return remote.open_with_retries(str(path), lambda: rasterio.open(path, driver=DRIVER))
    try:
        return rasterio.open(path, driver=DRIVER)
    except RasterioIOError as exc:
        raise SceneError(f"{path} is not a readable GeoTIFF: {describe(exc)}") from None


def check_pixels(path: str | Path) -> None:
    """Read the last block of ``path`` (where a truncated file breaks first) and its first.

    Headers can be whole while the pixels are cut short; this finds that in two block reads.

    Raises:
        SceneError: the file is truncated or corrupt (GDAL's reason in the message).
    """
    with open_raster(path) as ds:
        rows, cols = ds.block_shapes[0]
        last = Window(
            (ds.width - 1) // cols * cols, (ds.height - 1) // rows * rows,
            min(cols, ds.width - (ds.width - 1) // cols * cols),
            min(rows, ds.height - (ds.height - 1) // rows * rows),
        )  # fmt: skip
        try:
            for window in (last, Window(0, 0, min(cols, ds.width), min(rows, ds.height))):
                ds.read(1, window=window)
        except RasterioIOError as exc:
            raise SceneError(f"{path}: cannot read pixels: {describe(exc)}") from None


@dataclass(frozen=True)
class Header:
    """What one file's header says, read without pixels."""

    path: str
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


def read_header(path: str | Path, dtype: str = DTYPE) -> Header:
    """The header of ``path``; refuses files whose pixels are not ``dtype``."""
    with open_raster(path) as ds:
        args = (ds.width, ds.height, ds.count, ds.crs, ds.transform, tuple(ds.dtypes))
        header = Header(str(path), *args, tuple(ds.descriptions), tuple(ds.block_shapes[0]))
    bad = sorted(set(header.dtypes) - {dtype})
    if bad:
        raise SceneError(f"{path} holds {', '.join(bad)} pixels; Landsat DN files are {dtype}")
    return header


def check_same_grid(where: str, headers: list[Header], labels: list[str]) -> None:
    """Refuse files of one scene that do not share the first one's size, CRS and transform.

    Args:
        where: what the files are, for the message (``scene folder X``).
        headers: the files' headers, the reference first.
        labels: how the message names each file (``B4 (red)``, ``band B5 (nir)``).
    """
    ref, ref_label = headers[0], labels[0]
    for label, h in zip(labels[1:], headers[1:], strict=True):
        what = f"{where}: {label} ({Path(h.path).name})"
        if (h.width, h.height) != (ref.width, ref.height):
            raise SceneError(
                f"{what} is {h.width} x {h.height} pixels but {ref_label} is "
                f"{ref.width} x {ref.height}"
            )
        if h.crs != ref.crs:
            raise SceneError(f"{what} has CRS {h.crs} but {ref_label} has {ref.crs}")
        if not h.transform.almost_equals(ref.transform):
            raise SceneError(
                f"{what} has transform {tuple(h.transform)[:6]} but {ref_label} has "
                f"{tuple(ref.transform)[:6]}"
            )


def find_bands(folder: Path) -> tuple[str, str, list[Path]]:
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
        labels = ", ".join(band_label(wanted[n]) for n in missing)
        ends = ", ".join(suffix.format(n=n) for n in missing)
        noun, ending = ("band", "a file ending") if len(missing) == 1 else ("bands", "files ending")
        raise MissingBandError(
            f"scene folder {folder} has no {noun} {labels}: expected {ending} {ends}"
        )
    for n, files in found.items():
        if len(files) > 1:
            names = ", ".join(p.name for _, _, p in files)
            raise SceneError(
                f"scene folder {folder} has {len(files)} files for band {band_label(wanted[n])}: "
                f"{names}; keep one product (Level-1 or Level-2) per folder"
            )
    picks = [found[LANDSAT8_BAND[b]][0] for b in BANDS]
    if len(kinds) > 1 or len({stem for _, stem, _ in picks}) > 1:
        names = ", ".join(p.name for _, _, p in picks)
        raise SceneError(f"scene folder {folder} mixes band files of different products: {names}")
    return picks[0][0], picks[0][1], [p for _, _, p in picks]


def find_mtl(folder: Path, stem: str) -> Path | None:
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


def find_qa(folder: Path, stem: str) -> Path | None:
    """The product's pixel quality band (``_QA_PIXEL`` or ``_BQA``) named like its bands."""
    for path in sorted(folder.iterdir()):
        match = QA_FILE_RE.match(path.name)
        if match and not path.name.startswith(".") and match["stem"].upper() == stem.upper():
            return path
    return None


def id_from_name(stem: str) -> str:
    """Product ids are upper case; lower-cased copies still name outputs the canonical way."""
    return stem.upper() if PRODUCT_ID_RE.match(stem) or SCENE_ID_RE.match(stem) else stem


def collection_of(scene_id: str, mtl_collection: int | None) -> int | None:
    """Collection number (1, 2), or 0 for pre-collection; None when nothing says."""
    if mtl_collection is not None:
        return mtl_collection
    match = PRODUCT_ID_RE.match(scene_id)
    if match:
        return int(match["collection"])
    return 0 if SCENE_ID_RE.match(scene_id) else None


def acquired_on(scene_id: str) -> datetime.date | None:
    """The acquisition date an id carries (``..._20160612_...``, or year and day of year in a
    pre-collection id), or None when it is not a Landsat id."""
    if match := PRODUCT_ID_RE.match(scene_id):
        return datetime.datetime.strptime(match["acquired"], "%Y%m%d").date()
    if match := SCENE_ID_RE.match(scene_id):
        return datetime.datetime.strptime(match["year_day"], "%Y%j").date()
    return None


def mission_of(scene_id: str) -> str:
    """``Landsat 8`` / ``Landsat 9`` from an id, or ``Landsat`` when the id says neither."""
    match = PRODUCT_ID_RE.match(scene_id) or SCENE_ID_RE.match(scene_id)
    return f"Landsat {match['mission']}" if match else "Landsat"
