"""``cloudseg-info``: what cloudseg sees in a scene folder, a 4-band GeoTIFF or a 38-Cloud folder.

Reads headers only (and the 38-Cloud CSVs); checks everything the engine and training would
check, so a broken input fails here with the same one-line error, before any long job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cloudseg.cli_options import one_line_errors
from cloudseg.data import cloud38
from cloudseg.data.landsat import LandsatScene, open_scene
from cloudseg.errors import MissingFileError

EPILOG = """\b
Examples:
  cloudseg-info demo/scene                     # a Landsat 8 scene folder
  cloudseg-info LC08_stack.tif --json          # a 4-band GeoTIFF
  cloudseg-info ~/data/38-Cloud                # a 38-Cloud-layout dataset
"""


def scene_info(scene: LandsatScene) -> dict[str, Any]:
    """Facts about a scene: id, kind, size, grid and the metadata the engine may use."""
    info: dict[str, Any] = {
        "scene_id": scene.scene_id,
        "kind": scene.kind,
        "width": scene.width,
        "height": scene.height,
        "crs": scene.crs.to_string() if scene.crs else None,
        "pixel_size": [scene.transform.a, -scene.transform.e],
        "origin": [scene.transform.c, scene.transform.f],
        "block_shape": list(scene.block_shape),
        "bands": {band: str(path) for band, path in scene.band_paths.items()},
    }
    if scene.mtl is not None:
        info["mtl"] = {
            "path": str(scene.mtl.path),
            "date_acquired": str(scene.mtl.date_acquired),
            "sun_elevation": scene.mtl.sun_elevation,
            "sun_azimuth": scene.mtl.sun_azimuth,
            "toa_reflectance": bool(scene.mtl.toa),
        }
    return info


def dataset_info(path: Path) -> dict[str, Any]:
    """Patch and scene counts of each split found under a 38-Cloud-layout folder."""
    info: dict[str, Any] = {}
    for split in ("train", "test", "train95"):
        try:
            folder = cloud38.find_split(path, split)
        except MissingFileError:
            continue
        patches = cloud38.list_patches(folder, split)
        info[split] = {
            "folder": str(folder),
            "patches": len(patches),
            "scenes": len(cloud38.scenes_of(patches)),
        }
    return info


def _is_dataset(path: Path) -> bool:
    """A dataset root holds a split folder; a split folder holds a patch CSV."""
    if not path.is_dir():
        return False
    has_split = any((path / d).is_dir() for d in cloud38.SPLIT_DIRS.values())
    return has_split or any(path.glob("*_patches_*.csv"))


@click.command(epilog=EPILOG)
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@one_line_errors
def main(path: Path, as_json: bool) -> None:
    """Describe PATH (scene folder, 4-band GeoTIFF or 38-Cloud dataset) and check it is usable."""
    info = dataset_info(path) if _is_dataset(path) else scene_info(open_scene(path))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")
