"""38-Cloud and 95-Cloud patch folders: layout, names, listing and the split by scene.

Reading a patch's pixels is :mod:`cloudseg.data.cloud38_read`; putting a scene's patches back
together is :mod:`cloudseg.data.cloud38_stitch`.

The layout is written as data here, at the top, so that the reader and the synthetic dataset
writer (:mod:`cloudseg.data.synthetic`) agree on every name.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudseg.bands import BANDS
from cloudseg.errors import DataError, MissingFileError

# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------

#: Side of every 38-Cloud patch, in pixels.
PATCH_SIZE = 384

#: Folder of each split below the dataset root.
SPLIT_DIRS: dict[str, str] = {"train": "38-Cloud_training", "test": "38-Cloud_test"}

#: Band folders per split are ``<split>_<band>``; files in them are ``<band>_<patch name>.TIF``.
BAND_FOLDER = "{split}_{band}"
BAND_FILE = "{band}_{name}.TIF"

#: Ground truth of training patches: ``train_gt/gt_<name>.TIF``, uint8, 0 clear / 255 cloud.
GT_BAND = "gt"

#: Whole-scene ground truth, used by the dataset's own evaluation (test split).
ENTIRE_SCENE_GT_DIR = "Entire_scene_gts"
ENTIRE_SCENE_GT_FILE = "edited_corrected_gts_{scene}.TIF"

#: Patch lists (one column, ``name``) and scene lists, per split.
PATCHES_CSV: dict[str, str] = {
    "train": "training_patches_38-Cloud.csv",
    "test": "test_patches_38-Cloud.csv",
}
#: Informative patches (less than 80 % no-data). Kaggle ships it beside ``38-Cloud_training``, some
#: copies put it inside; both places are searched.
NONEMPTY_CSV: dict[str, str] = {"train": "training_patches_38-cloud_nonempty.csv"}
SCENES_CSV: dict[str, str] = {
    "train": "training_sceneids_38-Cloud.csv",
    "test": "test_sceneids_38-Cloud.csv",
}
CSV_COLUMN = "name"

#: 95-Cloud adds 57 training scenes in one more folder beside 38-Cloud's (its test set is
#: 38-Cloud's). Its nonempty list names the informative patches of all 75 training scenes, so
#: listing keeps only those of the split asked for.
EXTRA_SPLIT = "train95"
CLOUD95_DIR = "95-cloud_training_only_additional_to38-cloud"
CLOUD95_BAND_FOLDER = "train_{band}_additional_to38cloud"
CLOUD95_PATCHES_CSV = "training_patches_95-cloud_additional_to_38-cloud.csv"
CLOUD95_NONEMPTY_CSV = "training_patches_95-cloud_nonempty.csv"

#: ``patch_<n>_<row>_by_<col>_<scene id>``; row and col are 1-based, n = (row-1)*ncols + col.
PATCH_NAME = "patch_{n}_{row}_by_{col}_{scene}"
PATCH_NAME_RE = re.compile(r"^patch_(?P<n>\d+)_(?P<row>\d+)_by_(?P<col>\d+)_(?P<scene>\S+)$")


@dataclass(frozen=True)
class SplitLayout:
    """Where one split keeps its files, relative to the dataset root."""

    folder: str
    band_folder: str  # formatted with ``band=``
    patches_csv: str
    nonempty_csv: str | None
    scenes_csv: str | None
    has_gt: bool  # per-patch ground truth (``gt`` band folder)


SPLITS: dict[str, SplitLayout] = {
    split: SplitLayout(
        folder=SPLIT_DIRS[split],
        band_folder=BAND_FOLDER.format(split=split, band="{band}"),
        patches_csv=PATCHES_CSV[split],
        nonempty_csv=NONEMPTY_CSV.get(split),
        scenes_csv=SCENES_CSV[split],
        has_gt=split == "train",
    )
    for split in SPLIT_DIRS
}
SPLITS[EXTRA_SPLIT] = SplitLayout(
    CLOUD95_DIR, CLOUD95_BAND_FOLDER, CLOUD95_PATCHES_CSV, CLOUD95_NONEMPTY_CSV, None, True
)


@dataclass(frozen=True)
class PatchId:
    """Where a patch sits: its scene and 1-based grid position."""

    n: int
    row: int
    col: int
    scene: str

    @property
    def name(self) -> str:
        return PATCH_NAME.format(n=self.n, row=self.row, col=self.col, scene=self.scene)

    @property
    def ncols(self) -> int | None:
        """Columns of the scene grid, known from ``n`` only below the first row."""
        return (self.n - self.col) // (self.row - 1) if self.row > 1 else None


def patch_name(row: int, col: int, ncols: int, scene: str) -> str:
    """Name of the patch at 1-based ``(row, col)`` of a scene grid ``ncols`` patches wide."""
    return PatchId((row - 1) * ncols + col, row, col, scene).name


def split_layout(split: str) -> SplitLayout:
    """The layout of ``split`` (``train``, ``test`` or ``train95``), else :class:`DataError`."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return SPLITS[split]


def band_file(root: Path, split: str, band: str, name: str) -> Path:
    """Path of one band (``red``, ``green``, ``blue``, ``nir`` or ``gt``) of patch ``name``."""
    return band_path(Path(root) / split_layout(split).folder, split, band, name)


def entire_scene_gt_file(root: Path, split: str, scene: str) -> Path:
    """Path of a scene's whole ground-truth mask."""
    return scene_gt_path(Path(root) / split_layout(split).folder, scene)


def band_path(folder: Path, split: str, band: str, name: str) -> Path:
    return (
        folder
        / SPLITS[split].band_folder.format(band=band)
        / BAND_FILE.format(band=band, name=name)
    )


def scene_gt_path(folder: Path, scene: str) -> Path:
    return folder / ENTIRE_SCENE_GT_DIR / ENTIRE_SCENE_GT_FILE.format(scene=scene)


def grid_shape(height: int, width: int, patch_size: int = PATCH_SIZE) -> tuple[int, int]:
    """Fewest patch rows and columns that cover a ``height`` x ``width`` scene."""
    return math.ceil(height / patch_size), math.ceil(width / patch_size)


def pad_offsets(
    height: int,
    width: int,
    padded_height: int | None = None,
    padded_width: int | None = None,
    patch_size: int = PATCH_SIZE,
) -> tuple[int, int]:
    """Top and left zero padding that centres a scene in its padded patch grid.

    The dataset's evaluation crops stitched scenes at ``floor((padded - size) / 2)``; padding with
    these offsets is its inverse, so a writer and :func:`stitch` agree by construction.

    Args:
        height, width: scene size in pixels.
        padded_height, padded_width: padded size; by default the smallest multiple of
            ``patch_size`` that covers the scene.

    Returns:
        ``(top, left)`` in pixels; bottom and right padding take the remainder.
    """
    rows, cols = grid_shape(height, width, patch_size)
    ph = rows * patch_size if padded_height is None else padded_height
    pw = cols * patch_size if padded_width is None else padded_width
    return (ph - height) // 2, (pw - width) // 2


# ---------------------------------------------------------------------------------------------
# Names and lists
# ---------------------------------------------------------------------------------------------


def parse_patch_name(name: str) -> PatchId:
    """Parse ``patch_<n>_<row>_by_<col>_<scene>``; :class:`DataError` naming ``name`` if bad."""
    match = PATCH_NAME_RE.match(name.strip())
    if match is None:
        raise DataError(f"{name!r} is not a 38-Cloud patch name (patch_<n>_<row>_by_<col>_<scene>)")
    pid = PatchId(int(match["n"]), int(match["row"]), int(match["col"]), match["scene"])
    ncols = pid.ncols
    if pid.row < 1 or pid.col < 1 or (pid.row == 1 and pid.n != pid.col):
        raise DataError(f"{name!r}: row and col must be >= 1 and n = (row - 1) * ncols + col")
    if ncols is not None and ((pid.n - pid.col) % (pid.row - 1) or ncols < pid.col):
        raise DataError(f"{name!r}: n = {pid.n} fits no grid with row {pid.row}, col {pid.col}")
    return pid


def find_split(path: str | os.PathLike[str], split: str = "train") -> Path:
    """Folder of ``split``: ``path/<split folder>``, or ``path`` itself if it is that folder.

    Raises:
        MissingFileError: ``path`` is neither, naming it.
    """
    layout = split_layout(split)
    path = Path(path)
    if not path.is_dir():
        raise MissingFileError(f"{path}: no such dataset folder")
    if (path / layout.folder).is_dir():
        return path / layout.folder
    if (path / layout.patches_csv).is_file() or (
        path / layout.band_folder.format(band=BANDS[0])
    ).is_dir():
        return path
    raise MissingFileError(
        f"{path}: not a 38-Cloud dataset (no {layout.folder} folder, nor the "
        f"{layout.patches_csv} of the {split} split)"
    )


def read_patch_csv(csv_path: Path) -> list[PatchId]:
    """Patches named in a 38-Cloud CSV (column ``name``), in file order, duplicates dropped.

    A byte-order mark, spaces around cells and empty lines are tolerated.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise MissingFileError(f"{csv_path} is missing")
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{csv_path}: not a text CSV file") from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    seen: dict[PatchId, None] = {}
    for row in reader:
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if header is None:
            header = [c.lower() for c in cells]
            if CSV_COLUMN not in header:
                raise DataError(f"{csv_path}: no {CSV_COLUMN!r} column in header {row}")
            column = header.index(CSV_COLUMN)
            continue
        name = cells[column] if column < len(cells) else ""
        if name:
            try:
                seen.setdefault(parse_patch_name(name), None)
            except DataError as exc:
                raise DataError(f"{csv_path}, line {reader.line_num}: {exc}") from None
    return list(seen)


def list_patches(
    root: str | os.PathLike[str], split: str = "train", nonempty: bool = False, check: bool = True
) -> list[PatchId]:
    """Patches of ``split`` from its CSV, optionally only those in the nonempty CSV.

    Args:
        root: dataset root (holding ``38-Cloud_training``) or the split folder itself.
        nonempty: keep only the informative patches the dataset lists.
        check: verify, with one folder listing per band, that every band file exists.
    """
    folder = find_split(root, split)
    layout = SPLITS[split]
    patches = read_patch_csv(folder / layout.patches_csv)
    source = folder / layout.patches_csv
    if nonempty:
        if layout.nonempty_csv is None:
            raise DataError(f"the {split} split has no list of nonempty patches")
        places = [folder / layout.nonempty_csv, folder.parent / layout.nonempty_csv]
        found = [p for p in places if p.is_file()]
        if not found:
            raise MissingFileError(f"{places[0]} is missing (also looked for {places[1]})")
        keep = set(read_patch_csv(found[0]))
        patches = [p for p in patches if p in keep]
        source = found[0]
    if check:
        check_patches(folder, split, patches, source)
    return patches


def check_patches(
    root: str | os.PathLike[str], split: str, patches: Sequence[PatchId], source: object = "list"
) -> None:
    """Raise :class:`MissingFileError` naming the first band file of ``patches`` not on disk."""
    folder = find_split(root, split)
    layout = SPLITS[split]
    for band in (*BANDS, GT_BAND) if layout.has_gt else BANDS:
        band_dir = folder / layout.band_folder.format(band=band)
        if not band_dir.is_dir():
            raise MissingFileError(
                f"{band_dir} is missing: no {band} band for the {len(patches)} patches of {source}"
            )
        # One listing per band, not a stat per file: 40 000 stats are slow on network disks.
        present = set(os.listdir(band_dir))
        missing = [p for p in patches if BAND_FILE.format(band=band, name=p.name) not in present]
        if missing:
            more = f"; {len(missing) - 1} more {band} files are missing" if len(missing) > 1 else ""
            first = band_dir / BAND_FILE.format(band=band, name=missing[0].name)
            raise MissingFileError(f"{first} is missing ({source} lists it{more})")


def scenes_of(patches: Iterable[PatchId]) -> list[str]:
    """Sorted scene ids of ``patches``."""
    return sorted({p.scene for p in patches})
