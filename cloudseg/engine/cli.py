"""``cloudseg-run``: mask clouds in whole Landsat 8 scenes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cloudseg.cli_options import (
    FiniteFloatRange,
    OneLineCommand,
    device_option,
    one_line_errors,
    out_dir_option,
    overwrite_option,
    precision_option,
    progress_disabled,
    quiet_option,
    setup_logging,
    threads_option,
)

EPILOG = """\b
Examples:
  cloudseg-run LC08_L1TP_044034_20160612_20170324_01_T1/          # provider auto
  cloudseg-run scene_a/ scene_b/ stack.tif --model models/cloudseg-r34.onnx --out masks/
  cloudseg-run https://example.org/stac/LC08_L2SP_..._02_T1.json --model ukis-l2a --shadow
  cloudseg-run @scenes.txt --out masks/ --skip-existing --keep-going
  cloudseg-run @scenes.txt --out s3-masks/ --ray auto --threads 2
  cloudseg-run SCENE --provider tensorrt --fp16 --device 1
  cloudseg-run demo/scene --provider torch --model ~/.cache/cloudseg/runs/r18-20261126-101500

Writes <id>_cloudmask.tif (a COG: 0 clear, 1 cloud, 2 shadow with --shadow, 255 no data),
<id>_preview.png and <id>_summary.json per scene (and <id>_cloudprob.tif with --probabilities,
<id>_clouds.gpkg with --vector).
"""

#: Keys of each scene's summary echoed on stdout, one JSON line per scene.
ECHOED = (
    "scene_id", "cloud_cover", "valid_pixels", "tiles_run", "tiles_skipped",
    "megapixels_per_second", "provider",
)  # fmt: skip


@click.command(cls=OneLineCommand, epilog=EPILOG)
# Plain strings: a scene may be a URL, a 38-Cloud "<split folder>::<scene id>" or a @manifest,
# and the scene readers already answer a missing path with one line.
@click.argument("scenes", nargs=-1, required=True)
@click.option(
    "--model",
    default=None,
    help="A named model (r18, r34: exported here; ukis-l1c, ukis-l2a: ukis-csmask's), an ONNX "
    "file (its card inside or beside it), or for --provider torch a run folder. Default: the "
    "r18 model cloudseg-export writes ($CLOUDSEG_HOME/models). cloudseg-info --models lists them.",
)
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    # Checked by the registry, so an unknown name is one line listing the valid ones.
    help="auto (the fastest that loads here: tensorrt, cuda, openvino, cpu), cpu, cuda or "
    "tensorrt (ONNX Runtime), openvino, or torch (the native PyTorch path). A provider named "
    "here never falls back to another.",
)
@out_dir_option("default: a folder 'cloudseg' beside each scene")
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=None,
    help="Tiles per inference call (default: 1 on the CPU, where batching is no faster and "
    "costs memory; 4 on GPUs).",
)
@click.option(
    "--tile",
    type=click.IntRange(32),
    default=None,
    help="Tile size in pixels (default: the size the model takes that computes the fewest "
    "pixels per valid pixel of the first scene, within the memory budget).",
)
@click.option(
    "--memory-budget",
    type=FiniteFloatRange(0.1),
    default=None,
    help="GiB of memory inference may use when the tile size is chosen (default: 2 on CPUs, "
    "8 on GPUs).",
)
@click.option(
    "--overlap",
    type=click.IntRange(0),
    default=None,
    help="Pixels each tile overlaps its neighbours on each side (default: 32, at most a "
    "quarter of the tile).",
)
@click.option(
    "--threshold",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Cloud probability threshold (default: the card's).",
)
@click.option("--probabilities", is_flag=True, help="Also write <id>_cloudprob.tif.")
@click.option(
    "--shadow",
    is_flag=True,
    help="Write cloud shadow as mask code 2 (models with a shadow class, e.g. ukis-l2a).",
)
@click.option(
    "--dilate",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Cloud buffer: grow cloud by N pixels (a square window, as Fmask's --dcloud).",
)
@click.option(
    "--vector",
    is_flag=True,
    help="Also write <id>_clouds.gpkg: cloud (and shadow) polygons in the scene's CRS.",
)
@precision_option(
    "Inference precision for openvino and torch: auto is bf16 where the CPU (AMX, "
    "AVX512-BF16) or GPU runs it natively, else f32 (fp16 on older GPUs for torch)."
)
@click.option("--fp16", is_flag=True, help="TensorRT float16 kernels (--provider tensorrt).")
@click.option(
    "--trt-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="TensorRT engine and timing caches (default: $CLOUDSEG_HOME/trt-cache).",
)
@device_option
@threads_option
@click.option(
    "--readers", type=click.IntRange(1), default=2, show_default=True, help="Reader threads."
)
@click.option(
    "--preview-size",
    type=click.IntRange(16),
    default=1024,
    show_default=True,
    help="Longest side of <id>_preview.png, in pixels.",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Skip a scene whose outputs are all there and whose summary names the same model and "
    "options.",
)
@click.option(
    "--keep-going", is_flag=True, help="Report a failed scene and go on (exit 1 at the end)."
)
@click.option(
    "--sequential",
    is_flag=True,
    help="One scene after another (default: the next scene is opened and read while the "
    "current one infers, and finished files are written while the next infers).",
)
@click.option(
    "--ray",
    default=None,
    metavar="auto|ADDRESS",
    help="Scale out on Ray: a pool of actors, one per GPU or one per --threads cores, each "
    "with one session (the [ray] extra).",
)
@click.option(
    "--retries",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="With --ray: how many more times a scene whose worker died is tried on another.",
)
@overwrite_option
@quiet_option
@one_line_errors
def main(
    scenes: tuple[str, ...],
    model: str | None,
    provider: str,
    out: Path | None,
    batch: int | None,
    tile: int | None,
    memory_budget: float | None,
    overlap: int | None,
    threshold: float | None,
    probabilities: bool,
    shadow: bool,
    dilate: int,
    vector: bool,
    precision: str,
    fp16: bool,
    trt_cache: Path | None,
    device: int | None,
    threads: int | None,
    readers: int,
    preview_size: int,
    skip_existing: bool,
    keep_going: bool,
    sequential: bool,
    ray: str | None,
    retries: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Mask clouds in SCENES: Landsat 8/9 scene folders (Level-1 or -2), 4-band GeoTIFFs, STAC
    items (local .json or http(s) URLs), URLs of 4-band COGs, 38-Cloud test scenes given as
    <split folder>::<scene id>, or @manifest files listing any of these, one per line."""
    from cloudseg.api import mask_scenes
    from cloudseg.engine.heap import bound_heap

    bound_heap()  # before the first large array: freed memory goes back to the system

    setup_logging()
    import onnxruntime

    # ONNX Runtime logs its own warnings (e.g. a provider that failed to load) before our one-line
    # error says the same; the CLI owns this process, so ORT logs only fatal errors.
    onnxruntime.set_default_logger_severity(4)
    # The command is a thin layer over the Python API: the same call a pipeline makes.
    options = dict(
        provider=provider,
        batch=batch,
        tile=tile,
        memory_budget=memory_budget,
        overlap=overlap,
        threshold=threshold,
        probabilities=probabilities,
        shadow=shadow,
        dilate=dilate,
        vector=vector,
        overwrite=overwrite,
        readers=readers,
        preview_size=preview_size,
        skip_existing=skip_existing,
        keep_going=keep_going,
        sequential=sequential,
        ray=ray,
        retries=retries,
        progress=not progress_disabled(quiet),
        threads=threads,
        device=device,
        precision=precision,
        fp16=fp16,
        trt_cache=trt_cache,
    )
    try:
        outcome = mask_scenes(scenes, out, model=model, **options)
    except KeyboardInterrupt:
        click.echo("interrupted: no partial outputs were left", err=True)
        sys.exit(130)
    for s in outcome.summaries:
        click.echo(json.dumps({k: s[k] for k in ECHOED}))
        click.echo(f"  outputs: {', '.join(s['outputs'])}")
    report = outcome.report
    if report is not None and len(report.entries) > 1:
        counts = ", ".join(f"{n} {k}" for k, n in report.counts().items())
        page = report.folder / "cloudseg-run.html"
        where = page if page.is_file() else report.folder
        click.echo(f"{len(report.entries)} scenes: {counts}; report in {where}")
    failed = report.failed if report is not None else []
    if failed:
        where = report.folder / "cloudseg-run.json"
        click.echo(f"Error: {len(failed)} of {len(report.entries)} scenes failed; see {where}",
                   err=True)  # fmt: skip
        sys.exit(1)
