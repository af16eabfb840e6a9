"""One scene of a run, in three steps every runner shares: prepare, infer, finish.

* :func:`prepare`: open the scene (headers, metadata), refuse a model whose value kind it cannot
  give, skip it (``--skip-existing``) or refuse existing outputs, remove temporaries a killed run
  left, and start its tile reader (not yet reading).
* :func:`infer`: stream it through the backend into a :class:`SceneWriter` under temporary
  names. This is the only step that needs the model.
* :func:`finish`: finish the files (buffer, COGs, polygons, preview), rename them into place,
  write the summary. It needs no model, so a runner may finish one scene while the next infers.

A failure in any step removes that scene's temporaries and leaves its existing outputs alone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cloudseg.atomic import remove_stale
from cloudseg.card import ModelCard
from cloudseg.data.sources import open_any
from cloudseg.engine.backend import Backend
from cloudseg.engine.config import RunConfig
from cloudseg.engine.outputs import OutputPaths, SceneWriter
from cloudseg.engine.pipeline import RunStats, SceneJob, run_scene
from cloudseg.engine.stac_out import write_item
from cloudseg.engine.summary import write_summary
from cloudseg.engine.tiling import TileSpec
from cloudseg.errors import OutputExistsError
from cloudseg.scene import Scene, check_value_kind

#: GDAL's block cache, in MB. GDAL's default is 5 % of RAM, and blocks read and written stay in
#: it, so peak memory grew with scene size (measured: 469 -> 637 MiB from 3000 to 6000 rows);
#: with a fixed cache it stays flat. Reads are windowed and writes go out tile row by tile row,
#: so a small cache costs nothing (64 MB: 7800 px scenes held 34 MB less than at 128 and read no
#: slower). ``GDAL_CACHEMAX`` in the environment still wins.
GDAL_CACHE_MB = 64


def gdal_env() -> Any:
    """The GDAL settings every runner masks scenes under (one process or a Ray worker): the
    fixed block cache and the COG / network options of :func:`cloudseg.data.remote.gdal_options`."""
    import rasterio

    from cloudseg.data import remote

    cache = os.environ.get("GDAL_CACHEMAX", GDAL_CACHE_MB)
    gdal = {"GDAL_CACHEMAX": int(cache) if str(cache).isdigit() else cache}
    return rasterio.Env(**gdal, **remote.gdal_options())


@dataclass(frozen=True)
class RunPlan:
    """What every scene of a run shares: options, grid, threshold and the outputs' identity."""

    config: RunConfig
    card: ModelCard
    spec: TileSpec
    threshold: float
    key: dict[str, Any]  # report.run_key: the model and output options
    extra: dict[str, Any]  # summary fields of the run (provider choice, tile plan)


@dataclass
class Prepared:
    """A scene opened and checked, its reader made; or skipped (``job`` None)."""

    spec: str
    scene: Scene
    paths: OutputPaths
    job: SceneJob | None
    started: float


@dataclass
class Inferred:
    """A scene whose rows are all written under temporary names."""

    prepared: Prepared
    writer: SceneWriter
    stats: RunStats


def out_dir_for(scene: Scene, config: RunConfig) -> Path:
    """``--out``, else a folder ``cloudseg`` beside a local scene (or here, for a remote one)."""
    if config.out is not None:
        return config.out
    return (scene.local_dir or Path.cwd()) / "cloudseg"


def already_done(paths: OutputPaths, plan: RunPlan) -> bool:
    """Every output is there and the summary names the same model and options."""
    config = plan.config
    if not all(p.is_file() for p in paths.files(config.probabilities, config.vector)):
        return False
    try:
        summary = json.loads(paths.summary.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return summary.get("run_key") == json.loads(json.dumps(plan.key, default=str))


def prepare(spec: str, plan: RunPlan, scene: Scene | None = None) -> Prepared:
    """Open and check one scene (see the module docstring); reads no pixels."""
    started = time.perf_counter()
    config = plan.config
    scene = scene or open_any(spec)
    check_value_kind(plan.card, scene)  # before any work, in the user's words
    paths = OutputPaths.for_scene(out_dir_for(scene, config), scene.scene_id)
    if config.skip_existing and already_done(paths, plan):
        return Prepared(spec, scene, paths, None, started)
    try:
        paths.check(config.overwrite, config.probabilities, config.vector)
    except OutputExistsError as exc:
        why = (
            " (made with another model or options); pass --overwrite to replace it"
            if config.skip_existing
            else "; pass --overwrite to replace it, or --skip-existing to skip scenes already done"
        )
        raise OutputExistsError(exc.path, why) from None
    for path in paths.files(config.probabilities, config.vector):
        remove_stale(path)
    readers, lookahead = config.reading(remote=scene.local_dir is None)
    job = SceneJob.start(scene, plan.card, plan.spec, readers, lookahead)
    return Prepared(spec, scene, paths, job, started)


def infer(
    prepared: Prepared,
    backend: Backend,
    plan: RunPlan,
    position: int = 0,
    on_reads_done: Any = None,
) -> Inferred:
    """Stream the scene through ``backend`` into its writer (files still temporary)."""
    config, scene = plan.config, prepared.scene
    assert prepared.job is not None
    # Counted in pixels, shown scaled (k, M): the bar reads in megapixels and MP/s.
    bar = tqdm(total=scene.width * scene.height, unit="px", unit_scale=True,
               desc=scene.scene_id[:24], disable=not config.progress, position=position,
               leave=False)  # fmt: skip
    writer = SceneWriter(
        prepared.paths,
        scene.profile(),
        config.probabilities,
        preview_size=config.preview_size,
        overwrite=config.overwrite,
        dilate=config.dilate,
        polygons=config.vector,
    )
    writer.__enter__()
    try:
        stats = run_scene(prepared.job, backend, writer, plan.threshold, bar.update, on_reads_done)
    except BaseException as exc:
        writer.__exit__(type(exc), exc, exc.__traceback__)  # temporaries removed
        raise
    finally:
        bar.close()
    return Inferred(prepared, writer, stats)


def finish(inferred: Inferred, backend: Backend, plan: RunPlan) -> dict[str, Any]:
    """Finish and rename the scene's files, write its summary; returns the summary."""
    prepared, writer, stats = inferred.prepared, inferred.writer, inferred.stats
    scene, paths, config = prepared.scene, prepared.paths, plan.config
    try:
        written = writer.finish({"MODEL": backend.card.name, "PROVIDER": backend.providers[0]})
    except BaseException as exc:
        writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    writer.__exit__(None, None, None)  # renames every file into place
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
        "tile": plan.spec.tile,
        "overlap": plan.spec.overlap,
        "tiles_trimmed": stats.tiles_trimmed,
        "computed_pixels": stats.pixels_computed,
        "computed_per_valid_pixel": (
            round(stats.pixels_computed / written.valid_pixels, 4) if written.valid_pixels else None
        ),
        "batch": backend.options.batch,
        "threshold": plan.threshold,
        "seconds": stats.times.as_dict(),
        "seconds_total": round(time.perf_counter() - prepared.started, 3),
        "megapixels_per_second": round(scene.width * scene.height / 1e6 / wall, 4)
        if wall
        else None,
        "provider": backend.providers,
        "backend": backend.describe(),
        **plan.extra,
        "model": str(config.model),
        "card": backend.card.to_dict(),
        "cloud_buffer_pixels": config.dilate,
        **({"polygons": writer.polygon_counts} if config.vector else {}),
        "outputs": [str(p) for p in paths.files(config.probabilities, config.vector)],
        "run_key": plan.key,
        "cpu_count": os.cpu_count(),
    }
    write_summary(paths.summary, summary, overwrite=True)
    write_item(summary, paths.item)  # last: its presence says every other file is in place
    return summary
