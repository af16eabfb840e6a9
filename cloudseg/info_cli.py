"""``cloudseg-info``: what cloudseg sees in a scene, a dataset, this machine and its models.

``cloudseg-info PATH`` reads headers only (and the 38-Cloud CSVs) and checks everything the engine
and training would check, so a broken input fails here with the same one-line error, before any
long job. ``--providers`` says which inference providers load here (and what is missing for the
others); ``--models`` lists the named and exported models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cloudseg.cli_options import OneLineCommand, one_line_errors
from cloudseg.data import cloud38
from cloudseg.data.landsat import LandsatScene, open_scene
from cloudseg.data.landsat_files import check_pixels
from cloudseg.errors import MissingFileError

EPILOG = """\b
Examples:
  cloudseg-info demo/scene                     # a Landsat 8 scene folder
  cloudseg-info LC08_stack.tif --json          # a 4-band GeoTIFF
  cloudseg-info ~/data/38-Cloud                # a 38-Cloud-layout dataset
  cloudseg-info --providers                    # which providers load here
  cloudseg-info --models                       # named and exported models
"""


def scene_info(scene: LandsatScene) -> dict[str, Any]:
    """Facts about a scene: id, kind, size, grid and the metadata the engine may use."""
    info: dict[str, Any] = {
        "scene_id": scene.scene_id,
        "kind": scene.kind,
        "product": scene.product,
        "value_kinds": list(scene.value_kinds),
        "width": scene.width,
        "height": scene.height,
        "crs": scene.crs.to_string() if scene.crs else None,
        "pixel_size": [scene.transform.a, -scene.transform.e],
        "origin": [scene.transform.c, scene.transform.f],
        "block_shape": list(scene.block_shape),
        "bands": {band: str(path) for band, path in scene.band_paths.items()},
        "quality_band": scene.qa_file and {"path": scene.qa_file, "layout": scene.qa_layout},
    }
    if scene.mtl is not None:
        info["mtl"] = {
            "path": str(scene.mtl.path),
            "date_acquired": str(scene.mtl.date_acquired),
            "sun_elevation": scene.mtl.sun_elevation,
            "sun_azimuth": scene.mtl.sun_azimuth,
            "toa_reflectance": bool(scene.mtl.toa),
            "surface_reflectance": bool(scene.mtl.sr),
            "usgs_cloud_cover": scene.mtl.cloud_cover,
        }
    return info


def providers_info() -> dict[str, Any]:
    """Every provider: ``loads``, or the exact library or package that is missing."""
    import onnxruntime

    from cloudseg.engine.registry import AUTO_ORDER, PROVIDERS, probe

    onnxruntime.set_default_logger_severity(4)  # the probe's failure is its reason, not a log
    out: dict[str, Any] = {}
    for name, provider in PROVIDERS.items():
        why = probe(name)
        out[name] = {"status": "loads" if why is None else f"missing: {why}", "what": provider.what}
    chosen = next((n for n in AUTO_ORDER if out[n]["status"] == "loads"), None)
    out["auto"] = {"status": f"picks {chosen}", "what": f"first that loads of {AUTO_ORDER}"}
    return out


def models_info() -> dict[str, Any]:
    """Named models (and whether they run here) and the exported ones in the models folder."""
    from cloudseg.engine.models import list_models

    return {entry.pop("name"): entry for entry in list_models()}


def _check_patch_files(folder: Path, split: str, patches: list) -> None:
    """Every band (and truth) file of every patch is there and whole: two block reads each, so
    a truncated patch fails here in one line, not in the middle of a training epoch."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    cloud38.check_patches(folder, split, patches)
    layout = cloud38.SPLITS[split]
    bands = (*cloud38.BANDS, cloud38.GT_BAND) if layout.has_gt else cloud38.BANDS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # 38-Cloud has no CRS
        for patch in patches:
            for band in bands:
                check_pixels(cloud38.band_path(folder, split, band, patch.name))


def dataset_info(path: Path) -> dict[str, Any]:
    """Patch and scene counts of each split found under a 38-Cloud-layout folder."""
    info: dict[str, Any] = {}
    for split in ("train", "test", "train95"):
        try:
            folder = cloud38.find_split(path, split)
        except MissingFileError:
            continue
        patches = cloud38.list_patches(folder, split)
        _check_patch_files(folder, split, patches)
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


def _shown(section: str, value: Any) -> Any:
    """One readable line per entry: a provider's status, a model's state and what it is."""
    if not isinstance(value, dict):
        return value
    if section == "providers":
        return value.get("status", value)
    if section == "models":
        if not value.get("available"):
            return f"missing: {value.get('missing', '?')}"
        what = value.get("what") or value.get("card", "")
        where = f" ({value['path']})" if value.get("path") else ""
        trained = f"; trained on {value['trained_on']} data" if "trained_on" in value else ""
        precisions = "".join(f"\n      {line}" for line in value.get("precisions", []))
        return f"available: {what}{where}{trained}{precisions}"
    return value


@click.command(cls=OneLineCommand, epilog=EPILOG)
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--providers", is_flag=True, help="Which inference providers load here.")
@click.option("--models", "list_models", is_flag=True, help="Named and exported models.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@one_line_errors
def main(path: Path | None, providers: bool, list_models: bool, as_json: bool) -> None:
    """Describe PATH (scene folder, 4-band GeoTIFF or 38-Cloud dataset) and check it is usable;
    or, with --providers / --models, this machine's providers and the models cloudseg knows."""
    if path is None and not (providers or list_models):
        raise click.UsageError("give a PATH, --providers or --models")
    info: dict[str, Any] = {}
    if providers:
        info["providers"] = providers_info()
    if list_models:
        info["models"] = models_info()
    if path is not None:
        if _is_dataset(path):
            info |= dataset_info(path)
        else:
            scene = open_scene(path)
            for file in dict.fromkeys([*scene.band_files, *filter(None, [scene.qa_file])]):
                check_pixels(file)  # a truncated band fails here, not hours into a run
            info |= scene_info(scene)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {_shown(key, v)}")
        else:
            click.echo(f"{key}: {value}")
