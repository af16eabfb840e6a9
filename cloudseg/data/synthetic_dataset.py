"""Write synthetic scenes in the 38-Cloud layout: zero-padded scenes cut into patches.

Names and folders come from :mod:`cloudseg.data.cloud38`, so the reader and this writer agree:

- ``38-Cloud_training/train_{red,green,blue,nir}/<band>_<patch>.TIF``: uint16 DN, PackBits, no
  georeferencing (as the real dataset); ``train_gt/gt_<patch>.TIF``: uint8, 0 clear / 255 cloud.
- ``38-Cloud_test/test_{red,green,blue,nir}/...``: the same without patch ground truth.
- ``<split dir>/Entire_scene_gts/edited_corrected_gts_<scene>.TIF``: the unpadded scene truth,
  uint8 **0 clear / 1 cloud** (no data is 0). Unlike the 0/255 patches: the dataset's own
  evaluation (``evaluation.m`` in SorourMo/38-Cloud-A-Cloud-Segmentation-Dataset) compares
  these files to labels ``[0, 1]`` directly. Readers should still treat any non-zero as cloud.
- Patch CSVs (column ``name``) and scene-id CSVs per split, and the training ``nonempty`` CSV
  beside ``38-Cloud_training`` (where Kaggle ships it). As documented for 95-Cloud, it lists the
  informative patches, those with less than 80 % no-data; all-zero patches are never in it.

Each scene is zero-padded centred to a multiple of the patch size (``top = pad // 2``), so a
centred crop, offset ``floor((H_pad - H) / 2)``, undoes it; patches are numbered row-major from 1.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from cloudseg.atomic import atomic_path
from cloudseg.bands import BANDS
from cloudseg.data.cloud38 import (
    CSV_COLUMN,
    GT_BAND,
    NONEMPTY_CSV,
    PATCH_SIZE,
    PATCHES_CSV,
    SCENES_CSV,
    SPLIT_DIRS,
    band_file,
    entire_scene_gt_file,
    grid_shape,
    pad_offsets,
    patch_name,
)
from cloudseg.data.synthetic import CLOUD, SceneSpec, make_scene, random_spec

#: Value of cloud in patch ground truth (``train_gt``) and in whole-scene ground truth.
PATCH_GT_CLOUD = 255
SCENE_GT_CLOUD = 1

#: A training patch is listed as nonempty when less than this share of it is no-data.
NONEMPTY_MAX_NODATA = 0.8

_PATCH_PROFILE = {"driver": "GTiff", "count": 1, "compress": "packbits"}


#: Written at the root of every dataset this module makes, so that what trains on it can say so
#: on its card (a model trained on synthetic scenes only is not for real products).
MARKER = "cloudseg-synthetic.json"


def data_origin(root: str | os.PathLike[str]) -> str:
    """``"synthetic"`` for a dataset written here (:data:`MARKER` at its root, given as the root
    or as one of its split folders), else ``"real"`` (38-Cloud, 95-Cloud or another real set in
    their layout)."""
    folder = Path(root)
    synthetic = (folder / MARKER).is_file() or (folder.parent / MARKER).is_file()
    return "synthetic" if synthetic else "real"


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`write_38cloud_dataset` wrote."""

    root: Path
    scenes: dict[str, list[str]]
    patches: dict[str, int]
    nonempty: int


def dataset_specs(
    train_scenes: int, test_scenes: int, size: int, seed: int
) -> list[tuple[str, SceneSpec]]:
    """The ``(split, spec)`` of every scene of a dataset, train first; product ids are unique.

    Cloud fractions are stratified within each split and pushed towards the ends: a split of
    six or more scenes holds a near-clear one (< 8 %) and a mostly cloudy one (> 92 %).
    """
    rng = np.random.default_rng([seed, 0x38C])
    specs: list[tuple[str, SceneSpec]] = []
    ids: set[str] = set()
    for split, count in (("train", train_scenes), ("test", test_scenes)):
        t = (rng.permutation(count) + rng.random(count)) / max(count, 1)
        fractions = 0.005 + 0.975 * (3 * t**2 - 2 * t**3)
        for fraction in fractions:
            child = int(np.random.SeedSequence([seed, len(specs)]).generate_state(1)[0])
            spec = random_spec(child, size, size, cloud_fraction=float(fraction))
            while spec.product_id in ids:  # vanishingly rare; a later processing date is enough
                spec = dataclasses.replace(spec, processed=spec.processed + dt.timedelta(days=1))
            ids.add(spec.product_id)
            specs.append((split, spec))
    return specs


def pad_centred(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad the last two axes of ``(..., H, W)`` up to multiples of ``multiple``, centred.

    ``pad = ceil(H / multiple) * multiple - H``; ``pad // 2`` rows go on top, the rest below
    (likewise for columns): :func:`cloudseg.data.cloud38.pad_offsets`, whose inverse is the
    38-Cloud evaluation's crop at ``floor(pad / 2)``.
    """
    h, w = array.shape[-2:]
    rows, cols = grid_shape(h, w, multiple)
    top, left = pad_offsets(h, w, patch_size=multiple)
    bottom, right = rows * multiple - h - top, cols * multiple - w - left
    return np.pad(array, [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)])


def write_38cloud_dataset(
    root: str | os.PathLike[str],
    *,
    train_scenes: int = 6,
    test_scenes: int = 2,
    size: int = 1152,
    seed: int = 0,
    patch_size: int = PATCH_SIZE,
    overwrite: bool = False,
    on_scene: Callable[[str], None] | None = None,
) -> DatasetSummary:
    """Generate scenes and write them as a 38-Cloud dataset at ``root``, whole or not at all.

    Args:
        root: dataset folder (holds ``38-Cloud_training`` and ``38-Cloud_test``).
        train_scenes, test_scenes: number of scenes per split (split by scene, never by patch).
        size: side of each square scene, in pixels.
        seed: seed of the whole dataset; scenes get derived seeds (:func:`dataset_specs`).
        patch_size: patch side; 384 as in 38-Cloud, smaller for fast tests.
        overwrite: replace an existing ``root``.
        on_scene: called with each scene id once it is written (progress bars).
    """
    if train_scenes + test_scenes < 1:
        raise ValueError("a dataset needs at least one scene")
    specs = dataset_specs(train_scenes, test_scenes, size, seed)
    scenes: dict[str, list[str]] = {"train": [], "test": []}
    names: dict[str, list[str]] = {"train": [], "test": []}
    nonempty: list[str] = []
    with atomic_path(Path(root), overwrite=overwrite) as tmp:
        for split in ("train", "test"):
            bands = [*BANDS, GT_BAND] if split == "train" else list(BANDS)
            for band in bands:
                band_file(tmp, split, band, "x").parent.mkdir(parents=True)
            entire_scene_gt_file(tmp, split, "x").parent.mkdir(parents=True)
        for split, spec in specs:
            written, full = _write_scene_patches(tmp, split, spec, patch_size)
            scenes[split].append(spec.product_id)
            names[split] += written
            nonempty += full
            if on_scene is not None:
                on_scene(spec.product_id)
        for split in ("train", "test"):
            folder = tmp / SPLIT_DIRS[split]
            _write_csv(folder / PATCHES_CSV[split], names[split])
            _write_csv(folder / SCENES_CSV[split], scenes[split])
        _write_csv(tmp / NONEMPTY_CSV["train"], nonempty)
        marker = {"generator": "cloudseg-synth dataset", "seed": seed, "size": size,
                  "scenes": scenes}  # fmt: skip
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    counts = {split: len(v) for split, v in names.items()}
    return DatasetSummary(Path(root), scenes, counts, len(nonempty))


def _write_scene_patches(
    root: Path, split: str, spec: SceneSpec, patch_size: int
) -> tuple[list[str], list[str]]:
    """Write one scene's patches and whole-scene truth; return all and non-empty train names."""
    scene = make_scene(spec)
    sid = spec.product_id
    cloud = scene.mask == CLOUD
    _write_plain(entire_scene_gt_file(root, split, sid), (cloud * SCENE_GT_CLOUD).astype(np.uint8))
    bands = pad_centred(scene.bands, patch_size)
    gt = pad_centred((cloud * PATCH_GT_CLOUD).astype(np.uint8), patch_size)
    rows, cols = bands.shape[1] // patch_size, bands.shape[2] // patch_size
    written, nonempty = [], []
    for r in range(rows):
        for c in range(cols):
            name = patch_name(r + 1, c + 1, cols, sid)
            ys, xs = (
                slice(r * patch_size, (r + 1) * patch_size),
                slice(c * patch_size, (c + 1) * patch_size),
            )
            patch = bands[:, ys, xs]
            for i, band in enumerate(BANDS):
                _write_plain(band_file(root, split, band, name), patch[i])
            if split == "train":
                _write_plain(band_file(root, split, GT_BAND, name), gt[ys, xs])
                if nodata_share(patch) < NONEMPTY_MAX_NODATA:
                    nonempty.append(name)
            written.append(name)
    return written, nonempty


def nodata_share(patch: np.ndarray) -> float:
    """Share of ``(B, H, W)`` ``patch`` pixels that are no-data (0 in every band)."""
    return 1.0 - np.count_nonzero(patch.any(axis=0)) / (patch.shape[-2] * patch.shape[-1])


def _write_plain(path: Path, array: np.ndarray) -> None:
    """One-band PackBits GeoTIFF without georeferencing, as the real 38-Cloud files."""
    h, w = array.shape
    with warnings.catch_warnings():
        # No CRS or transform is the point here; rasterio warns about exactly that.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", height=h, width=w, dtype=array.dtype.name, **_PATCH_PROFILE
        ) as dst:
            dst.write(array, 1)


def _write_csv(path: Path, names: list[str]) -> None:
    path.write_text("\n".join([CSV_COLUMN, *names]) + "\n")
