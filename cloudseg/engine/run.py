"""Run the engine over scenes: one backend (one session) for all of them, outputs per scene."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from tqdm import tqdm

from cloudseg.card import ModelCard, read_json
from cloudseg.card import read as read_card
from cloudseg.data.cloud38_scene import is_cloud38_path, open_cloud38_scene
from cloudseg.data.landsat import LandsatScene, open_scene
from cloudseg.engine.outputs import OutputPaths, SceneWriter, write_summary
from cloudseg.engine.pipeline import run_scene
from cloudseg.engine.tiling import TileSpec

log = logging.getLogger("cloudseg.run")

#: Pixels each tile overlaps its neighbours on each side, at the default 384 px tile.
DEFAULT_OVERLAP = 32

#: GDAL's block cache, in MB. GDAL's default is 5 % of RAM, and blocks read and written stay in
#: it, so peak memory grew with scene size (measured: 469 -> 637 MiB from 3000 to 6000 rows);
#: with a fixed cache it stays flat. Reads are windowed and writes go out tile row by tile row,
#: so a small cache costs nothing. ``GDAL_CACHEMAX`` in the environment still wins.
GDAL_CACHE_MB = 128

#: Tiles per inference call when ``--batch`` is not given. On the CPU, 1: batching made neither
#: UNet faster here (ORT fp32, tile 384: r18 0.80 s a tile at batch 1 and at batch 4, r34 faster
#: at 1 than at 4 or 8; benchmarks/backends.py), while ONNX Runtime's memory arena grows with
#: the batch (r18 peak RSS 0.85 GB at batch 1, 2.7 GB at batch 4). On a GPU, batches keep the
#: device busy (written to the docs, not measured here).
DEFAULT_BATCH = {"cpu": 1, "torch": 1, "cuda": 4, "tensorrt": 4}


def default_batch(provider: str) -> int:
    return DEFAULT_BATCH.get(provider, 1)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``cloudseg-run`` was asked to do, built once by the CLI."""

    model: Path
    provider: str = "cpu"
    out: Path | None = None  # default: a folder "cloudseg" beside each scene
    batch: int | None = None  # default: default_batch(provider)
    tile: int | None = None  # default: the model card's tile size
    overlap: int | None = None  # default: DEFAULT_OVERLAP, at most a quarter of the tile
    threshold: float | None = None  # default: the card's
    probabilities: bool = False
    overwrite: bool = False
    readers: int = 2
    lookahead: int = 16
    progress: bool = True


def model_card(model: Path) -> ModelCard:
    """The card of an ONNX file (inside it or beside it) or of a run folder / checkpoint."""
    model = Path(model)
    if model.suffix == ".onnx":
        return read_card(model)
    return read_json((model if model.is_dir() else model.parent) / "card.json")


def out_dir_for(scene: LandsatScene, config: RunConfig) -> Path:
    return config.out if config.out is not None else Path(scene.path).parent / "cloudseg"


def run(scenes: list[Path], config: RunConfig) -> list[dict[str, Any]]:
    """Mask every scene; returns their summaries. Checks every input and output first."""
    cache = os.environ.get("GDAL_CACHEMAX", GDAL_CACHE_MB)
    with rasterio.Env(GDAL_CACHEMAX=int(cache) if str(cache).isdigit() else cache):
        return _run(scenes, config)


def _run(scenes: list[Path], config: RunConfig) -> list[dict[str, Any]]:
    from cloudseg.engine.backends import make_backend

    opened = [open_cloud38_scene(p) if is_cloud38_path(p) else open_scene(p) for p in scenes]
    jobs = []
    for scene in opened:
        paths = OutputPaths.for_scene(out_dir_for(scene, config), scene.scene_id)
        paths.check(config.overwrite, config.probabilities)
        jobs.append((scene, paths))
    tile = config.tile or model_card(config.model).tile_size
    if config.batch is None:
        config = dataclasses.replace(config, batch=default_batch(config.provider))
    backend = make_backend(config.model, config.provider, config.batch, tile)
    overlap = min(DEFAULT_OVERLAP, tile // 4) if config.overlap is None else config.overlap
    spec = TileSpec(tile, overlap, backend.card.size_multiple)
    threshold = backend.card.threshold if config.threshold is None else config.threshold
    summaries = []
    try:
        for scene, paths in jobs:
            summaries.append(_one(scene, paths, backend, spec, threshold, config))
    finally:
        backend.close()
    return summaries


def _one(
    scene: LandsatScene,
    paths: OutputPaths,
    backend: Any,
    spec: TileSpec,
    threshold: float,
    config: RunConfig,
) -> dict[str, Any]:
    megapixels = scene.width * scene.height / 1e6
    # Counted in pixels, shown scaled (k, M): the bar reads in megapixels and MP/s.
    bar = tqdm(
        total=scene.width * scene.height,
        unit="px",
        unit_scale=True,
        desc=scene.scene_id[:24],
        disable=not config.progress,
    )
    with SceneWriter(
        paths, scene.profile(), config.probabilities, overwrite=config.overwrite
    ) as writer:
        stats = run_scene(
            scene, backend, writer, spec, config.batch, threshold, config.readers,
            config.lookahead, progress=bar.update,
        )  # fmt: skip
        written = writer.finish({"MODEL": backend.card.name, "PROVIDER": backend.providers[0]})
    bar.close()
    wall = stats.times.wall
    summary = {
        "scene_id": scene.scene_id,
        "scene": str(scene.path),
        "width": scene.width,
        "height": scene.height,
        **written.as_dict(),
        "tiles_run": stats.tiles_run,
        "tiles_skipped": stats.tiles_skipped,
        "batches_run": stats.batches_run,
        "tile": spec.tile,
        "overlap": spec.overlap,
        "batch": config.batch,
        "threshold": threshold,
        "seconds": stats.times.as_dict(),
        "megapixels_per_second": round(megapixels / wall, 4) if wall else None,
        "provider": backend.providers,
        "model": str(config.model),
        "card": backend.card.to_dict(),
        "outputs": [str(p) for p in paths.files(config.probabilities)],
        "cpu_count": os.cpu_count(),
    }
    write_summary(paths.summary, summary, overwrite=config.overwrite)
    return summary
