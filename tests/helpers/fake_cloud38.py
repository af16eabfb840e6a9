"""Tiny fake datasets in the real 38-Cloud layout, written with rasterio (torchgeo style).

Scenes are made in memory, padded centred to whole patches, cut into 384 x 384 patches named
as the real dataset names them, and written as single-band GeoTIFFs (uint16 bands, uint8 gt
0/255) with a UTM CRS and a 30 m transform. The in-memory truth is returned for the tests to
compare against. Kept independent of cloudseg (its synthetic writer is tested on its own):
names, padding and folders are spelt out here from the dataset's documentation.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

P = 384
BANDS = ("red", "green", "blue", "nir")
CRS = "EPSG:32617"

#: scene id -> (height, width, no-data columns on the left, cloud encoding of the scene gt)
TRAIN_SCENES: dict[str, tuple[int, int, int, int]] = {
    "LC08_L1TP_002053_20160520_20170324_01_T1": (700, 1000, 400, 255),
    "LC08_L1TP_035029_20160120_20170224_01_T1": (400, 800, 0, 1),  # gt file holds 0/1
    "LC08_L1TP_050024_20160520_20170324_01_T1": (384, 384, 0, 255),
}
TEST_SCENES: dict[str, tuple[int, int, int, int]] = {
    "LC08_L1TP_003052_20160120_20170405_01_T1": (500, 500, 0, 255),
}


@dataclass
class FakeDataset:
    """Where a fake dataset lives and what it holds."""

    root: Path
    #: scene id -> ((4, H, W) uint16 bands, (H, W) bool cloud)
    scenes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: patch name -> ((4, P, P) uint16, (P, P) bool)
    patches: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: split -> patch names in CSV order
    names: dict[str, list[str]] = field(default_factory=dict)
    grids: dict[str, tuple[int, int]] = field(default_factory=dict)


def make_scene(height: int, width: int, nodata_cols: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random bands with a no-data strip on the left and a cloud field over part of it."""
    rng = np.random.default_rng(seed)
    bands = rng.integers(1000, 40000, size=(4, height, width), dtype=np.uint16)
    yy, xx = np.mgrid[0:height, 0:width]
    cloud = np.sin(yy / 37.0) + np.cos(xx / 53.0) > 0.6
    if seed % 3 == 2:
        cloud[:] = False  # one cloud-free scene
    bands[:, :, :nodata_cols] = 0
    cloud[:, :nodata_cols] = False
    return bands, cloud


def pad_centred(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Zero-pad the last two axes to ``rows * P`` x ``cols * P``, top = floor(pad / 2)."""
    h, w = a.shape[-2:]
    top, left = (rows * P - h) // 2, (cols * P - w) // 2
    pads = [(0, 0)] * (a.ndim - 2) + [(top, rows * P - h - top), (left, cols * P - w - left)]
    return np.pad(a, pads)


def cut(padded: np.ndarray, scene: str) -> dict[str, np.ndarray]:
    """Patches of a padded ``(..., rows*P, cols*P)`` array, named as the dataset names them."""
    rows, cols = padded.shape[-2] // P, padded.shape[-1] // P
    out = {}
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            name = f"patch_{(r - 1) * cols + c}_{r}_by_{c}_{scene}"
            out[name] = padded[..., (r - 1) * P : r * P, (c - 1) * P : c * P]
    return out


def write_tif(path: Path, array: np.ndarray) -> None:
    """One single-band GeoTIFF with a UTM CRS and a 30 m transform."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "height": array.shape[0],
        "width": array.shape[1],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": CRS,
        "transform": Affine(30.0, 0.0, 500000.0, 0.0, -30.0, 4000000.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def write_csv(path: Path, names: list[str]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name"])
        writer.writerows([n] for n in names)


def write_split(fake: FakeDataset, split: str, scenes: dict, seed: int) -> None:
    folder = fake.root / {"train": "38-Cloud_training", "test": "38-Cloud_test"}[split]
    prefix = {"train": "train", "test": "test"}[split]
    names: list[str] = []
    for i, (scene, (h, w, nodata, encoding)) in enumerate(scenes.items()):
        bands, cloud = make_scene(h, w, nodata, seed + i)
        fake.scenes[scene] = (bands, cloud)
        rows, cols = -(-h // P), -(-w // P)
        fake.grids[scene] = (rows, cols)
        band_patches = cut(pad_centred(bands, rows, cols), scene)
        cloud_patches = cut(pad_centred(cloud, rows, cols), scene)
        for name, image in band_patches.items():
            fake.patches[name] = (image, cloud_patches[name])
            for b, band in enumerate(BANDS):
                write_tif(folder / f"{prefix}_{band}" / f"{band}_{name}.TIF", image[b])
            if split == "train":
                gt = cloud_patches[name].astype(np.uint8) * 255
                write_tif(folder / f"{prefix}_gt" / f"gt_{name}.TIF", gt)
        names += list(band_patches)
        gt_scene = cloud.astype(np.uint8) * encoding
        write_tif(folder / "Entire_scene_gts" / f"edited_corrected_gts_{scene}.TIF", gt_scene)
    fake.names[split] = names
    csv_name = {"train": "training_patches_38-Cloud.csv", "test": "test_patches_38-Cloud.csv"}
    write_csv(folder / csv_name[split], names)


def write_dataset(root: Path) -> FakeDataset:
    """A train split of three scenes (13 patches, 2 empty) and a test split of one scene."""
    fake = FakeDataset(root)
    write_split(fake, "train", TRAIN_SCENES, seed=0)
    write_split(fake, "test", TEST_SCENES, seed=10)
    nonempty = [n for n in fake.names["train"] if fake.patches[n][0].any()]
    # Kaggle ships the nonempty list beside the split folders, not inside.
    write_csv(root / "training_patches_38-cloud_nonempty.csv", nonempty)
    return fake


def write_one_patch_dataset(root: Path) -> Path:
    """The smallest valid dataset: one 384 x 384 training scene, one patch. Returns the name."""
    fake = FakeDataset(root)
    write_split(fake, "train", dict(list(TRAIN_SCENES.items())[2:]), seed=2)
    return root / "38-Cloud_training"


# Ways to break a one-patch dataset; each returns the path the error message must name.


def break_missing_band_folder(split_dir: Path) -> Path:
    shutil.rmtree(split_dir / "train_nir")
    return split_dir / "train_nir"


def break_csv_names_missing_patch(split_dir: Path) -> Path:
    scene = next(iter(TRAIN_SCENES))
    name = f"patch_7_2_by_1_{scene}"
    with (split_dir / "training_patches_38-Cloud.csv").open("a") as f:
        f.write(name + "\n")
    return split_dir / "train_red" / f"red_{name}.TIF"


def break_not_a_tiff(split_dir: Path) -> Path:
    path = next((split_dir / "train_green").iterdir())
    path.write_text("this is not a TIFF\n")
    return path


def break_wrong_size(split_dir: Path) -> Path:
    path = next((split_dir / "train_blue").iterdir())
    write_tif(path, np.ones((200, 384), dtype=np.uint16))
    return path


def break_wrong_dtype(split_dir: Path) -> Path:
    path = next((split_dir / "train_gt").iterdir())
    write_tif(path, np.ones((384, 384), dtype=np.float32))
    return path


BREAKAGES = {
    "missing band folder": break_missing_band_folder,
    "csv names missing patch": break_csv_names_missing_patch,
    "not a tiff": break_not_a_tiff,
    "wrong size": break_wrong_size,
    "wrong dtype": break_wrong_dtype,
}
