"""End to end: ``cloudseg-run`` on synthetic scenes against the model alone on the same tiles.

Three questions, each answered from child processes (so times and peak RSS are the engine's own,
not this script's):

* Efficiency: does the streaming road (read, normalise, batch, blend, write) keep the model busy?
  ``cloudseg-run`` on one scene, interleaved with a model-only child that runs the same ORT backend
  on the same number of fixed-shape batches of pre-made arrays; engine wall over model-only time.
* Where the time goes: the summary's seconds per stage, plus a separate timing of the writer's
  re-read of every finished row (validity and preview), so the cost of reading the scene twice
  is visible.
* Memory: peak RSS per scene size (a sweep); it must stay flat in scene height.
* Providers: ``--provider openvino`` against ``--provider cpu`` end to end on one scene.
* Tile choice: the tile the engine picks without ``--tile``, per provider, and the pixels it
  computes per valid pixel.

    .venv/bin/python benchmarks/engine.py                 # r18, 4000 px efficiency, 1000-8000 sweep
    .venv/bin/python benchmarks/engine.py --model-kind r34 --sizes 1000 2000 --size 1000
    .venv/bin/python benchmarks/engine.py --quick         # under a minute, for the test suite
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import harness as h

cached = h.cached

# The model-only child. A child rather than this process, because that is what the engine gets: a
# fresh interpreter, a fresh session built by the same make_backend (same provider, intra-op
# threads = all cores, inter-op 1, sequential, IO binding), no thread pools or allocator state
# left from earlier cases, and this parent idle while it runs. Only the batch loop is timed (the
# summary's wall likewise starts after the session is built), with no warm-up call, since the
# engine's first batch pays ORT's first-run cost too.
MODEL_ONLY = """
import json, sys, time
import numpy as np
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend
model, provider, batch, tile, n = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
backend = make_backend(model, provider, BackendOptions(batch=batch, tile=tile))
x = np.random.default_rng(0).standard_normal((batch, 4, tile, tile), dtype=np.float32)
t0 = time.perf_counter()
for _ in range(n):
    backend.run(x)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""
STAGES = ("read", "infer", "blend", "write", "wall")


def strip(cache: Path, scene: Path, width: int, height: int) -> Path:
    """A ``width`` x ``height`` 4-band GeoTIFF cut from the middle of ``scene``. Square scenes
    grow in width too, and the engine's buffers are rows x width; strips of one width show
    whether memory grows with height alone."""
    import rasterio
    from rasterio.windows import Window, transform

    from cloudseg.data.landsat import open_scene

    def make(tmp: Path) -> Path:
        s = open_scene(scene)
        c0, r0 = (s.width - width) // 2, (s.height - height) // 2
        profile = {**s.profile(), "count": 4, "width": width, "height": height, "tiled": True,
                   "blockxsize": 256, "blockysize": 256, "compress": "deflate",
                   "transform": transform(Window(c0, r0, width, height), s.transform)}  # fmt: skip
        with s.open() as reader, rasterio.open(tmp, "w", **profile) as ds:
            for row in range(0, height, 512):
                n = min(512, height - row)
                ds.write(
                    reader.read(Window(c0, r0 + row, width, n)), window=Window(0, row, width, n)
                )
        return tmp

    return cached(cache / f"strip-{scene.name}-{width}x{height}.tif", make)


def run_engine(
    scene: Path, model: Path, args: argparse.Namespace, provider: str | None = None
) -> dict[str, Any]:
    """One ``cloudseg-run`` child: its summary, whole wall time and peak RSS."""
    with tempfile.TemporaryDirectory(prefix="cloudseg-bench-out-") as out:
        cmd = [*h.cloudseg("run"), scene, "--model", model, "--out", out, "-q",
               "--batch", args.batch, "--tile", args.tile, "--overlap", args.overlap,
               "--provider", provider or args.provider]  # fmt: skip
        child = h.run_with_peak_rss(cmd)
        summary = json.loads(next(Path(out).glob("*_summary.json")).read_text())
    mp = summary["width"] * summary["height"] / 1e6
    return {
        "scene_megapixels": mp,
        "tiles_run": summary["tiles_run"],
        "tiles_skipped": summary["tiles_skipped"],
        # Backend calls, not ceil(tiles_run / batch): a batch that would span three tile rows
        # runs early and short (at the no-data collar), and each call costs a full padded batch.
        "batches": summary["batches_run"],
        "seconds": summary["seconds"],
        "child_seconds": child["seconds"],
        "peak_rss_mib": child["peak_rss_mib"],
        "megapixels_per_second": mp / summary["seconds"]["wall"],
        "precision": summary["backend"]["precision"],
    }


def run_model_only(model: Path, batches: int, args: argparse.Namespace) -> dict[str, Any]:
    cmd = h.python_cmd("-c", MODEL_ONLY, str(model), args.provider, str(args.batch), str(args.tile))
    child = h.run_with_peak_rss([*cmd, str(batches)])
    inner = json.loads(child["stdout"].strip().splitlines()[-1])
    return {
        "seconds": inner["seconds"],
        "child_seconds": child["seconds"],
        "peak_rss_mib": child["peak_rss_mib"],
    }


def reread_seconds(scene: Path, rows: int) -> float:
    """What the writer thread's re-read costs alone: the whole scene in full-width bands of
    ``rows`` rows, plus the validity test, in this (idle) process. In the engine it runs beside
    inference on the same cores, so this is a floor."""
    from rasterio.windows import Window

    from cloudseg.bands import valid_pixels
    from cloudseg.data.landsat import open_scene

    s = open_scene(scene)
    t0 = time.perf_counter()
    with s.open() as reader:
        for row0 in range(0, s.height, rows):
            valid_pixels(reader.read(Window(0, row0, s.width, min(rows, s.height - row0))))
    return time.perf_counter() - t0


def efficiency(scene: Path, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Engine and model-only children, interleaved A B A B after one warm-up engine run."""
    probe = run_engine(scene, model, args)  # also the warm-up: page cache, model file
    engine: list[dict] = []
    model_only: list[dict] = []
    h.interleaved(
        {
            "engine": lambda: engine.append(run_engine(scene, model, args)),
            "model_only": lambda: model_only.append(run_model_only(model, probe["batches"], args)),
        },
        repeats=args.repeats,
        warmup=0,
    )
    # Per pair, so a burst of load from elsewhere hits both sides of each ratio.
    ratios = [m["seconds"] / e["seconds"]["wall"] for e, m in zip(engine, model_only, strict=True)]
    ratios_child = [
        m["child_seconds"] / e["child_seconds"] for e, m in zip(engine, model_only, strict=True)
    ]
    return {
        "size": args.size,
        "batches": probe["batches"],
        "tiles_run": probe["tiles_run"],
        "warmup": probe,
        "engine": engine,
        "model_only": model_only,
        "efficiency": h.median(ratios),
        "efficiency_child": h.median(ratios_child),
        "efficiency_repeats": ratios,
        "reread_seconds": reread_seconds(scene, args.tile - 2 * args.overlap),
    }


#: The two providers compared end to end, on the same scene and model.
VERSUS = ("cpu", "openvino")


def providers(scene: Path, model: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``cloudseg-run --provider cpu`` against ``--provider openvino`` (bf16 where the CPU has
    it), interleaved pairs after one warm-up each, on one scene."""
    runs: dict[str, list[dict]] = {p: [] for p in VERSUS}
    for provider in VERSUS:  # warm-up: page cache, model file, OpenVINO's kernel cache
        run_engine(scene, model, args, provider)
    for _ in range(args.provider_repeats):
        for provider in VERSUS:
            runs[provider].append(run_engine(scene, model, args, provider))
    pairs = list(zip(runs["cpu"], runs["openvino"], strict=True))
    return {
        "size": scene.name,
        "runs": runs,
        "speedup_end_to_end": h.median([c["child_seconds"] / o["child_seconds"] for c, o in pairs]),
        "speedup_wall": h.median([c["seconds"]["wall"] / o["seconds"]["wall"] for c, o in pairs]),
        "precision": runs["openvino"][0]["precision"],
    }


def tile_plans(scenes: dict[int, Path], model: Path, args: argparse.Namespace) -> list[dict]:
    """The tile the engine picks when no --tile is given, per provider, and the pixels it
    computes per valid pixel, against the 384 px default, on each scene's validity map."""
    import dataclasses

    from cloudseg.card import read
    from cloudseg.data.sources import open_any
    from cloudseg.engine.tile_plan import plan_tiles, validity_map

    # The benchmark's file has a fixed tile; the plan is for the model, which takes any size.
    card = dataclasses.replace(read(model), fixed_size=False, tile_size=384)
    out = []
    for size, path in scenes.items():
        scene = open_any(path)
        valid = validity_map(scene)
        for provider, batch in (("cpu", 1), ("openvino", 1), ("tensorrt", 4)):
            plan = plan_tiles(card, scene, provider, batch, valid=valid)
            out.append({"size": size, "provider": provider, "batch": batch, **plan.as_dict(),
                        "ratio_at_384": plan.candidates.get(384)})  # fmt: skip
    return out


def render_providers(res: dict[str, Any]) -> str:
    v = res["providers"]
    rows = []
    for provider, runs in v["runs"].items():
        rows.append([provider, h.median([r["child_seconds"] for r in runs]),
                     h.median([r["seconds"]["wall"] for r in runs]),
                     h.median([r["megapixels_per_second"] for r in runs]),
                     max(r["peak_rss_mib"] for r in runs), runs[0]["precision"]])  # fmt: skip
    ok = v["speedup_end_to_end"] >= 2
    return (
        f"**Providers end to end** (`cloudseg-run --provider cpu` against `--provider openvino` "
        f"on the {v['size']} scene, {res['model']['label']}, median of interleaved pairs)\n\n"
        + h.table(
            [
                "provider",
                "end to end s",
                "summary wall s",
                "scene MP/s",
                "peak RSS MiB",
                "precision",
            ],
            rows,
        )  # fmt: skip
        + f"\nopenvino / cpu: **{v['speedup_end_to_end']:.2f}x** end to end, "
        f"{v['speedup_wall']:.2f}x on the summary wall (target >= 2x end to end: "
        f"{verdict(ok)}).\n"
    )


def render_plans(res: dict[str, Any]) -> str:
    rows = [[p["size"], p["provider"], p["batch"], p["tile"], p["ratio"], p["ratio_at_384"]]
            for p in res["tile_plans"]]  # fmt: skip
    best = min(p["ratio"] for p in res["tile_plans"] if p["size"] == max(
        q["size"] for q in res["tile_plans"]))  # fmt: skip
    return (
        "**Tile choice** (no `--tile`: the size that computes the fewest pixels per valid pixel "
        "within the provider's memory budget, on each scene's validity map)\n\n"
        + h.table(
            ["scene px", "provider", "batch", "tile chosen", "computed / valid", "at 384 px"], rows
        )  # fmt: skip
        + f"\nOn the largest scene: {best:.3f} pixels computed per valid pixel at best "
        f"(target <= 1.2: {verdict(best <= 1.2)}).\n"
    )


def sweep_entry(size: int, runs: list[dict]) -> dict:
    return {
        "size": size,
        "runs": runs,
        "megapixels_per_second": h.median([r["megapixels_per_second"] for r in runs]),
        "seconds": {k: h.median([r["seconds"][k] for r in runs]) for k in STAGES},
        "child_seconds": h.median([r["child_seconds"] for r in runs]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),  # the ceiling is what matters
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render(res: dict[str, Any]) -> str:
    """The tables, from the results document alone."""
    cfg = res["config"]
    eff, label, t = res["efficiency"], res["model"]["label"], res["targets"]
    share = (cfg["tile"] / (cfg["tile"] - 2 * cfg["overlap"])) ** 2
    med = {k: h.median([r["seconds"][k] for r in eff["engine"]]) for k in STAGES}
    wall, infer = med["wall"], med["infer"]
    tile_mp = eff["batches"] * cfg["batch"] * cfg["tile"] ** 2 / 1e6  # pixels the model computes
    scene_mp = eff["engine"][0]["scene_megapixels"]
    cases = (
        ("engine: summary wall", [r["seconds"]["wall"] for r in eff["engine"]], "engine"),
        ("engine: child wall (with start-up)", [r["child_seconds"] for r in eff["engine"]], None),
        ("model only: batch loop", [r["seconds"] for r in eff["model_only"]], "model_only"),
        ("model only: child wall (with start-up)",
         [r["child_seconds"] for r in eff["model_only"]], None),
    )  # fmt: skip
    rows = [[name, h.median(v), f"{h.spread(v):.0%}", scene_mp / h.median(v),
             tile_mp / h.median(v),
             h.median([r["peak_rss_mib"] for r in eff[rss]]) if rss else None]
            for name, v, rss in cases]  # fmt: skip
    m_med = h.median(cases[2][1])
    reread = eff["reread_seconds"]
    stages = [[k, med[k], f"{med[k] / wall:.0%}"] for k in STAGES]
    stages.append(["writer's re-read alone (measured apart)", reread, f"{reread / wall:.0%}"])
    sweep = [[s["size"], s["runs"][0]["scene_megapixels"],
              f"{s['runs'][0]['tiles_run']} / {s['runs'][0]['tiles_skipped']}",
              s["megapixels_per_second"], *(s["seconds"][k] for k in STAGES),
              s["child_seconds"], s["peak_rss_mib"]] for s in res["sweep"]]  # fmt: skip
    ratio, (low, high), hr = t["rss_ratio"], t["rss_sizes"], t["rss_height_ratio"]
    strip_rows = [[f"{s['width']} x {s['height']}", s["megapixels_per_second"],
                   s["seconds"]["wall"], s["peak_rss_mib"]] for s in res["strips"]]  # fmt: skip
    rss_line = f"""\
- Peak RSS flat in height: {low} px wide strips, {high} rows / {low} rows: {hr:.3f} \
(target <= 1.10: {verdict(hr <= 1.1)}).
"""
    if ratio is not None:
        rss_line += (f"- Square scenes {high} px / {low} px (width grows too): {ratio:.3f}; "
                     "the blender and writer hold rows x width.\n")  # fmt: skip
    return f"""\
**Efficiency** ({label}, tile {cfg["tile"]}, overlap {cfg["overlap"]}, batch {cfg["batch"]}; \
{eff["size"]} px scene, {eff["tiles_run"]} tiles in {eff["batches"]} batches; median of \
{len(eff["engine"])} interleaved pairs after a warm-up)

{h.table(["case", "seconds", "spread", "scene MP/s", "tile MP/s", "peak RSS MiB"], rows)}
Efficiency (model-only time / engine summary wall, median of per-pair ratios): \
**{eff["efficiency"]:.1%}** (target >= 90 %: {verdict(eff["efficiency"] >= 0.9)}); with \
start-up on both sides: {eff["efficiency_child"]:.1%}.

**Where the engine's time goes** (median seconds per stage at {eff["size"]} px; read is summed \
over the 2 reader threads, write is the writer thread's, so stages overlap and can sum past wall)

{h.table(["stage", "seconds", "share of wall"], stages)}
**Size sweep** ({label}; {cfg["sweep_repeats"]} run(s) per size, median times, max peak RSS)

{
        h.table(
            [
                "size px",
                "MP",
                "tiles run / skipped",
                "scene MP/s",
                *STAGES,
                "child wall",
                "peak RSS MiB",
            ],
            sweep,
        )
    }
**Peak RSS against height alone** (strips cut from the {high} px scene, same width)

{h.table(["width x height px", "scene MP/s", "wall s", "peak RSS MiB"], strip_rows)}
{render_providers(res)}
{render_plans(res)}
Notes:

{rss_line}\
- Largest peak RSS {t["rss_max_mib"]:.0f} MiB (target < 1536 MiB with r18 fp32: \
{verdict(t["rss_max_mib"] < 1536)}{"" if label.startswith("r18") else "; this run is not r18"}).
- Efficiency splits into the model running slower inside the engine (model-only / infer stage: \
{m_med / infer:.1%}; readers and writer share the cores) and the model waiting (infer / wall: \
{infer / wall:.1%}; first tiles, last rows, queue stalls).
- The scene is read twice: tiles by the readers (overlapping, so \
{share:.2f}x its pixels), then every finished row \
again by the writer for validity and the preview. Alone, that re-read takes {reread:.2f} s at \
{eff["size"]} px ({reread / wall:.1%} of the engine's wall, {reread / max(med["write"], 1e-9):.0%} \
of its write stage); inside the engine it takes a core from inference while it runs.
- Model-only runs as many fixed-shape batches as the engine did (a short batch is padded, so \
costs a full one) on pre-made arrays, in a fresh child with the same make_backend session.
- Plot of peak RSS and MP/s against scene size: `engine.png` beside `engine.json`.
"""


def plot(sweep: list[dict], out_dir: Path, label: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib comes with the train extra; the tables say it all anyway
        return None
    sizes = [s["size"] for s in sweep]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(sizes, [s["peak_rss_mib"] for s in sweep], "o-")
    a.set(xlabel="scene side (px)", ylabel="peak RSS (MiB)", title="memory", ylim=(0, None))
    b.plot(sizes, [s["megapixels_per_second"] for s in sweep], "o-")
    b.set(xlabel="scene side (px)", ylabel="scene MP/s", title="throughput", ylim=(0, None))
    fig.suptitle(f"cloudseg-run, {label}")
    fig.tight_layout()
    path = out_dir / "engine.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    p.add_argument("--size", type=int, default=4000, help="efficiency scene side (px)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved pairs, efficiency case")
    p.add_argument("--sweep-repeats", type=int, default=1, help="runs per sweep size")
    p.add_argument(
        "--batch", type=int, default=1, help="tiles per call (the engine's CPU default: 1)"
    )
    p.add_argument("--tile", type=int, default=384)
    p.add_argument("--provider", default="cpu", help="cloudseg-run --provider for every case")
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--model", type=Path, help="ONNX file (trained, int8, ...) instead of random")
    p.add_argument("--model-kind", choices=["r18", "r34"], default="r18")
    p.add_argument(
        "--scenes-dir",
        type=Path,
        default=h.SCENE_CACHE,
        help="cache of synthetic scenes and random models, reused when present",
    )
    p.add_argument("--out", type=Path, default=h.RESULTS_DIR)
    p.add_argument("--provider-size", type=int, default=4000, help="openvino vs cpu scene side")
    p.add_argument("--provider-repeats", type=int, default=2, help="interleaved pairs, ov vs cpu")
    p.add_argument("--plan-size", type=int, default=7800,
                   help="side of the full-size scene the tile choice is judged on (a Landsat 8 "
                        "scene is about 7,700 x 7,800 px; only planned, not run)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="r34 at tile 128, 300/600 px, 2 repeats")
    args = p.parse_args()
    if args.quick:  # small tiles at the same overlap share as the real default
        args.model_kind, args.tile, args.overlap = "r34", 128, 16
        args.sizes, args.size, args.repeats, args.sweep_repeats = [300, 600], 300, 2, 1
        args.provider_size, args.provider_repeats, args.plan_size = 300, 1, 600
    model = args.model or h.random_model(args.scenes_dir, args.model_kind, args.tile)
    label = args.model.name if args.model else f"{args.model_kind} fp32 (random weights)"
    sizes = sorted({*args.sizes, args.size, args.provider_size})
    scenes = {s: h.synthetic_scene(args.scenes_dir, s, seed=1) for s in sizes}

    eff = efficiency(scenes[args.size], model, args)
    sweep = []
    for size in sorted(args.sizes):
        # The efficiency scene's runs already measured this size: reuse them, as they are many.
        runs = (
            eff["engine"]
            if size == args.size
            else [run_engine(scenes[size], model, args) for _ in range(args.sweep_repeats)]
        )
        sweep.append(sweep_entry(size, runs))
        print(
            f"{size} px: {sweep[-1]['megapixels_per_second']:.3f} MP/s, "
            f"peak RSS {sweep[-1]['peak_rss_mib']:.0f} MiB",
            flush=True,
        )
    # Flatness: the largest scene against the one nearest 2000 px (the pair), as square
    # scenes and as strips of the smaller one's width cut from the largest scene (height alone).
    rss = {s["size"]: s["peak_rss_mib"] for s in sweep}
    top = max(rss)
    base = min((s for s in rss if s != top), key=lambda s: abs(s - 2000), default=top)
    strips = []
    for height in sorted({base, top}):
        path = strip(args.scenes_dir, scenes[top], base, height)
        runs = [run_engine(path, model, args) for _ in range(args.sweep_repeats)]
        strips.append({"width": base, "height": height, **sweep_entry(height, runs)})
    versus = providers(scenes[args.provider_size], model, args)
    plan_scene = scenes.get(args.plan_size) or h.synthetic_scene(
        args.scenes_dir, args.plan_size, seed=1
    )
    plans = tile_plans({args.size: scenes[args.size], args.plan_size: plan_scene}, model, args)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model": {"path": str(model), "label": label},
        "providers": versus,
        "tile_plans": plans,
        "efficiency": eff,
        "sweep": sweep,
        "strips": strips,
        "targets": {
            "efficiency_min": 0.9,
            "efficiency_pass": eff["efficiency"] >= 0.9,
            "rss_sizes": [base, top],
            "rss_ratio": rss[top] / rss[base] if top != base else None,
            "rss_height_ratio": strips[-1]["peak_rss_mib"] / strips[0]["peak_rss_mib"],
            "rss_max_mib": max(rss.values()),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot(sweep, args.out, label)
    results["plot"] = str(png) if png else None
    path = h.write_results("engine", results, render, args.out)
    print((args.out / "engine.md").read_text())
    print(f"wrote {path}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
