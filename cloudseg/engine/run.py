"""Run the engine over scenes: one backend (one session) for all of them, outputs per scene."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import rasterio
from tqdm import tqdm

from cloudseg.card import ModelCard, read_json
from cloudseg.card import read as read_card
from cloudseg.data.sources import open_any
from cloudseg.engine import models
from cloudseg.engine.backend import Backend, BackendOptions
from cloudseg.engine.outputs import OutputPaths, SceneWriter
from cloudseg.engine.pipeline import SceneJob, run_scene
from cloudseg.engine.preview import PREVIEW_MAX_SIDE
from cloudseg.engine.registry import Choice, choose, is_torch_model, open_backend
from cloudseg.engine.summary import write_summary
from cloudseg.engine.tile_plan import plan_tiles
from cloudseg.engine.tiling import TileSpec
from cloudseg.scene import Scene, check_value_kind

log = logging.getLogger("cloudseg.run")

#: GDAL's block cache, in MB. GDAL's default is 5 % of RAM, and blocks read and written stay in
#: it, so peak memory grew with scene size (measured: 469 -> 637 MiB from 3000 to 6000 rows);
#: with a fixed cache it stays flat. Reads are windowed and writes go out tile row by tile row,
#: so a small cache costs nothing. ``GDAL_CACHEMAX`` in the environment still wins.
GDAL_CACHE_MB = 128

#: Tiles per inference call when ``--batch`` is not given. On the CPU, 1: batching made neither
#: UNet faster here (ORT fp32, tile 384: r18 0.80 s a tile at batch 1 and at batch 4, r34 faster
#: at 1 than at 4 or 8; benchmarks/backends.py), while ONNX Runtime's memory arena grows with
#: the batch (r18 peak RSS 0.85 GB at batch 1, 2.7 GB at batch 4). On a GPU, batches keep the
#: device busy.
DEFAULT_BATCH = {"cpu": 1, "openvino": 1, "torch": 1, "cuda": 4, "tensorrt": 4}


def default_batch(provider: str, device: int | None = None) -> int:
    """``--batch`` when not given: 1 on CPUs, 4 on GPUs (torch on a CUDA device included)."""
    if provider == "torch" and device is not None:
        return DEFAULT_BATCH["cuda"]
    return DEFAULT_BATCH.get(provider, 1)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``cloudseg-run`` was asked to do, built once by the CLI."""

    model: str | Path | None  # a path or a name (cloudseg.engine.models); None: the default
    provider: str = "auto"
    out: Path | None = None  # default: a folder "cloudseg" beside each scene
    batch: int | None = None  # default: default_batch(provider)
    tile: int | None = None  # default: the model card's tile size
    overlap: int | None = None  # default: the card's default overlap for the tile
    threshold: float | None = None  # default: the card's
    probabilities: bool = False
    shadow: bool = False
    dilate: int = 0  # cloud buffer, pixels
    vector: bool = False  # also write <id>_clouds.gpkg
    overwrite: bool = False
    readers: int = 2
    lookahead: int = 16
    preview_size: int = PREVIEW_MAX_SIDE
    memory_budget: float | None = None  # GiB for inference; default: the provider's
    progress: bool = True
    threads: int | None = None
    device: int | None = None
    precision: str = "auto"
    fp16: bool = False
    trt_cache: Path | None = None

    def options(self, provider: str, tile: int) -> BackendOptions:
        """The backend's options once the provider and tile are known."""
        return BackendOptions(
            batch=self.batch or default_batch(provider, self.device),
            tile=tile,
            threads=self.threads,
            device=self.device,
            precision=self.precision,
            fp16=self.fp16,
            trt_cache=self.trt_cache,
            shadow=self.shadow,
        )


def model_card(model: Path) -> ModelCard:
    """The card of an ONNX file (inside it or beside it) or of a run folder / checkpoint."""
    model = Path(model)
    if is_torch_model(model):
        return read_json((model if model.is_dir() else model.parent) / "card.json")
    return read_card(model)


def out_dir_for(scene: Scene, config: RunConfig) -> Path:
    """``--out``, else a folder ``cloudseg`` beside a local scene (or here, for a remote one)."""
    if config.out is not None:
        return config.out
    return (scene.local_dir or Path.cwd()) / "cloudseg"


def run(scenes: list[str | Path], config: RunConfig) -> list[dict[str, Any]]:
    """Mask every scene; returns their summaries. Checks every input and output first."""
    cache = os.environ.get("GDAL_CACHEMAX", GDAL_CACHE_MB)
    with rasterio.Env(GDAL_CACHEMAX=int(cache) if str(cache).isdigit() else cache):
        return _run(scenes, config)


def _run(specs: list[str | Path], config: RunConfig) -> list[dict[str, Any]]:
    config = replace(config, model=models.resolve(config.model))
    card = model_card(config.model)
    scenes = [open_any(s) for s in specs]
    jobs = []
    for scene in scenes:
        check_value_kind(card, scene)  # before any work, with the user's words
        paths = OutputPaths.for_scene(out_dir_for(scene, config), scene.scene_id)
        paths.check(config.overwrite, config.probabilities, config.vector)
        jobs.append((scene, paths))
    choice = choose(config.provider, config.model, config.device)
    plan = None
    if config.tile is None:  # the first scene's best size: one backend (one shape) for all
        provider = choice.candidates[0] if choice.candidates else "cpu"
        batch = config.batch or default_batch(provider, config.device)
        plan = plan_tiles(card, scenes[0], provider, batch, config.memory_budget)
    tile = card.check_tile(plan.tile if plan else config.tile)
    backend = open_backend(config.model, choice, lambda p: config.options(p, tile))
    overlap = card.default_overlap(tile) if config.overlap is None else config.overlap
    spec = TileSpec(tile, overlap)
    threshold = card.threshold if config.threshold is None else config.threshold
    summaries = []
    try:
        for scene, paths in jobs:
            summary = _one(scene, paths, backend, spec, threshold, config, choice)
            if plan is not None:
                summary["tile_plan"] = plan.as_dict() | {"planned_on": scenes[0].scene_id}
                write_summary(paths.summary, summary, overwrite=True)
            summaries.append(summary)
    finally:
        backend.close()
    return summaries


def _one(
    scene: Scene,
    paths: OutputPaths,
    backend: Backend,
    spec: TileSpec,
    threshold: float,
    config: RunConfig,
    choice: Choice,
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
    job = SceneJob.start(scene, backend.card, spec, config.readers, config.lookahead)
    with SceneWriter(
        paths,
        scene.profile(),
        config.probabilities,
        preview_size=config.preview_size,
        overwrite=config.overwrite,
        dilate=config.dilate,
        polygons=config.vector,
    ) as writer:
        stats = run_scene(job, backend, writer, threshold, progress=bar.update)
        written = writer.finish({"MODEL": backend.card.name, "PROVIDER": backend.providers[0]})
    bar.close()
    wall = stats.times.wall
    summary = {
        "scene_id": scene.scene_id,
        "scene": scene.source,
        "product": scene.product,
        "width": scene.width,
        "height": scene.height,
        **written.as_dict(),
        "tiles_run": stats.tiles_run,
        "tiles_skipped": stats.tiles_skipped,
        "batches_run": stats.batches_run,
        "tile": spec.tile,
        "overlap": spec.overlap,
        "computed_pixels": stats.tiles_run * spec.tile**2,
        "computed_per_valid_pixel": (
            round(stats.tiles_run * spec.tile**2 / written.valid_pixels, 4)
            if written.valid_pixels
            else None
        ),
        "batch": backend.options.batch,
        "threshold": threshold,
        "seconds": stats.times.as_dict(),
        "megapixels_per_second": round(megapixels / wall, 4) if wall else None,
        "provider": backend.providers,
        "provider_choice": choice.as_dict(),
        "backend": backend.describe(),
        "model": str(config.model),
        "card": backend.card.to_dict(),
        "cloud_buffer_pixels": config.dilate,
        **({"polygons": writer.polygon_counts} if config.vector else {}),
        "outputs": [str(p) for p in paths.files(config.probabilities, config.vector)],
        "cpu_count": os.cpu_count(),
    }
    write_summary(paths.summary, summary, overwrite=config.overwrite)
    return summary
