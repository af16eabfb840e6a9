"""A full Landsat 8 scene end to end: the default path against cpu fp32, and CSmask on it.

A 7800 x 7800 px synthetic Level-1 scene (60.8 MP, a WRS-2 footprint turned in its no-data
collar, an MTL for top-of-atmosphere reflectance) and a 2000 px one, each masked by
``cloudseg-run`` in a child process:

* **default**: no ``--provider`` or ``--precision``: ``auto`` runs the fastest path whose masks
  are proven here (``cloudseg.engine.fastest``), its speeds measured by a warm-up run first;
* **cpu fp32**: ``--provider cpu --precision f32``, ONNX Runtime on the float model.

For each: seconds end to end (the child, start-up included) and in the summary's stages, scene
MP/s, peak RSS, the tile chosen, tiles trimmed at the collar and pixels computed per valid
pixel. Then ukis-csmask's own ``CSmask`` on the same 7800 px scene (its time and peak RSS, in
a child: benchmarks/peer.py's), and each provider's start-up: model load and compile, first
call and second call (OpenVINO's model cache in ``$CLOUDSEG_HOME``).

Models come from ``--home`` (default ``demo/home``: make demo's home, where ``cloudseg-export
--model r34 --int8`` and the proofs of ``cloudseg-eval prove`` were made). What auto may run
is what was proven there; the proofs used are in the results.

    python benchmarks/full_scene.py                          # ukis-l1c and r34, 2000 and 7800 px
    python benchmarks/full_scene.py --models r34 --sizes 1000 2000 --no-csmask   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import harness as h

#: The two paths compared: the arguments each passes to cloudseg-run.
PATHS = {"default": [], "cpu fp32": ["--provider", "cpu", "--precision", "f32"]}
#: Start-up: (provider, file variant) pairs timed per model.
STARTUP_PATHS = (("cpu", None), ("openvino", None), ("cpu", "int8"), ("openvino", "int8"))

STARTUP = """
import json, sys, time
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend
model, provider, tile = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
backend = make_backend(model, provider, BackendOptions(batch=1, tile=tile, precision="f32"))
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def run_path(scene: Path, model: str, path: str, tile: int | None = None) -> dict[str, Any]:
    """One ``cloudseg-run`` child on ``scene`` (at ``tile``, else the tile it plans): what its
    summary and the child say."""
    with tempfile.TemporaryDirectory(prefix="cloudseg-full-") as out:
        cmd = [*h.cloudseg("run"), scene, "--model", model, "--out", out, "-q", *PATHS[path]]
        cmd += ["--tile", tile] if tile else []
        child = h.run_with_peak_rss(cmd)
        summary = json.loads(next(Path(out).glob("*_summary.json")).read_text())
    mp = summary["width"] * summary["height"] / 1e6
    choice = summary.get("provider_choice", {})
    return {
        "scene_megapixels": mp,
        "child_seconds": child["seconds"],
        "peak_rss_mib": child["peak_rss_mib"],
        "seconds": summary["seconds"],
        "megapixels_per_second": mp / summary["seconds"]["wall"],
        "end_to_end_megapixels_per_second": mp / child["seconds"],
        "tile": summary["tile"],
        "overlap": summary["overlap"],
        "tiles_run": summary["tiles_run"],
        "tiles_trimmed": summary.get("tiles_trimmed", 0),
        "computed_per_valid_pixel": summary["computed_per_valid_pixel"],
        "provider": choice.get("chosen"),
        # an int8 file runs with its float parts in f32: the path names the int8
        "precision": (choice.get("fastest_path") or {})
        .get("path", {})
        .get("precision", summary["backend"]["precision"]),
        "fastest_path": choice.get("fastest_path"),
    }


def startup(model: Path, tile: int) -> list[dict[str, Any]]:
    """Load + compile seconds per provider and file, first and second call, in a fresh home
    (so OpenVINO's first call compiles and its second loads the cached blob)."""
    from cloudseg.home import variant_path

    rows = []
    with tempfile.TemporaryDirectory(prefix="cloudseg-home-") as home:
        env = {**os.environ, "CLOUDSEG_HOME": home}
        for provider, variant in STARTUP_PATHS:
            file = variant_path(model, variant)
            if not file.is_file():
                continue
            cmd = h.python_cmd("-c", STARTUP, str(file), provider, str(tile))
            times = [json.loads(h.run_with_peak_rss(cmd, env)["stdout"].splitlines()[-1])
                     ["seconds"] for _ in range(2)]  # fmt: skip
            rows.append({"provider": provider, "file": file.name, "first_s": times[0],
                         "second_s": times[1]})  # fmt: skip
    return rows


def csmask(scene: Path, work: Path) -> dict[str, Any]:
    """ukis-csmask's CSmask on ``scene`` (benchmarks/peer.py's child), or why it failed."""
    import peer

    try:
        return peer.run_ukis(scene, work, 1)
    except RuntimeError as exc:  # e.g. killed for memory: its last line says so
        return {"failed": str(exc).strip().splitlines()[-1][:300]}


def proofs_of(model: Path) -> list[str]:
    """The kept proofs of the model and its int8 file, one line each."""
    from cloudseg.engine import proof
    from cloudseg.home import variant_path

    lines = []
    for file in (model, variant_path(model, "int8")):
        if file.is_file():
            lines += [f"{file.name}: {line}" for line in
                      proof.summary_of(proof.load_records(proof.sha256(file)))]  # fmt: skip
    return lines


def measure_model(name: str, scenes: dict[int, Path], args: argparse.Namespace) -> dict:
    from cloudseg.card import read
    from cloudseg.engine import models

    model = models.resolve(name)
    card = read(model)
    small, large = min(scenes), max(scenes)
    # Warm-ups: the default path measures its candidates' speeds at each tile it plans (once,
    # kept in the home), and fills OpenVINO's compile cache; a fixed-size model plans one tile.
    for size in [small] if card.fixed_size else [small, large]:
        run_path(scenes[size], name, "default")
    runs = {path: {size: run_path(scene, name, path) for size, scene in scenes.items()}
            for path in PATHS}  # fmt: skip
    # Memory against the scene alone: the small scene at the tile the full scene planned (the
    # plan picks per scene, and inference memory grows with the tile, by the plan's budget).
    same_tile = run_path(scenes[small], name, "default", runs["default"][large]["tile"])
    for path, by_size in runs.items():
        for size, r in by_size.items():
            print(
                f"{name} {path} {size} px: {r['child_seconds']:.1f} s, "
                f"{r['peak_rss_mib']:.0f} MiB, {r['computed_per_valid_pixel']}",
                flush=True,
            )
    return {
        "model": name,
        "file": str(model),
        "fixed_size": card.fixed_size,
        "runs": {p: {str(s): r for s, r in v.items()} for p, v in runs.items()},
        "speedup_end_to_end": runs["cpu fp32"][large]["child_seconds"]
        / runs["default"][large]["child_seconds"],
        "speedup_wall": runs["cpu fp32"][large]["seconds"]["wall"]
        / runs["default"][large]["seconds"]["wall"],
        "rss_ratio": {
            p: runs[p][large]["peak_rss_mib"] / runs[p][small]["peak_rss_mib"] for p in PATHS
        },  # fmt: skip
        "same_tile": same_tile,
        "rss_ratio_same_tile": runs["default"][large]["peak_rss_mib"] / same_tile["peak_rss_mib"],
        "startup": startup(model, card.tile_size),
        "proofs": proofs_of(model),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def render(res: dict[str, Any]) -> str:
    large = str(max(res["config"]["sizes"]))
    small = str(min(res["config"]["sizes"]))
    out = []
    for m in res["models"]:
        rows = []
        for path, by_size in m["runs"].items():
            for size, r in by_size.items():
                st = r["seconds"]
                runs = f"{r['provider']} {r['precision']}"
                rows.append([m["model"], path, runs, size, r["child_seconds"], st["wall"],
                             r["end_to_end_megapixels_per_second"], r["peak_rss_mib"], r["tile"],
                             r["tiles_trimmed"], r["computed_per_valid_pixel"], st["read"],
                             st["infer"], st["write"]])  # fmt: skip
        out.append(h.table(["model", "path", "runs", "px", "end to end s", "summary wall s",
                            "MP/s end to end", "peak RSS MiB", "tile", "trimmed",
                            "computed / valid", "read s", "infer s", "write s"], rows))  # fmt: skip
        rss = ", ".join(f"{p} {v:.3f}" for p, v in m["rss_ratio"].items())
        same = m["same_tile"]
        out.append(
            f"{m['model']}: default / cpu fp32 at {large} px **{m['speedup_end_to_end']:.2f}x** "
            f"end to end ({m['speedup_wall']:.2f}x on the summary wall). Peak RSS {large} px / "
            f"{small} px, each at its planned tile: {rss}. At the same tile ({same['tile']} px, "
            f"default path; {small} px: {same['peak_rss_mib']:.0f} MiB): "
            f"**{m['rss_ratio_same_tile']:.3f}** (target <= 1.10: "
            f"{verdict(m['rss_ratio_same_tile'] <= 1.1)}).\n"
        )
        fastest = m["runs"]["default"][large]["fastest_path"] or {}
        if fastest.get("measured"):
            speeds = ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                fastest["measured"].items(), key=lambda kv: -kv[1]))  # fmt: skip
            out.append(f"Paths auto measured at the {large} px scene's tile (MP/s): {speeds}.\n")
        if fastest.get("not_candidates"):
            out.append("Not candidates: " + "; ".join(
                f"{k}: {v}" for k, v in fastest["not_candidates"].items()) + ".\n")  # fmt: skip
        out.append(h.table(["provider", "file", "first call s", "second call s"],
                           [[s["provider"], s["file"], s["first_s"], s["second_s"]]
                            for s in m["startup"]]))  # fmt: skip
        out.append("Proofs kept in the home:\n\n" + "".join(f"- {p}\n" for p in m["proofs"]))
    c = res.get("csmask")
    if c is not None:
        ukis = next((m for m in res["models"] if m["model"] == "ukis-l1c"), None)
        if "failed" in c:
            out.append(f"**ukis-csmask CSmask on the {large} px scene: failed** ({c['failed']}).\n")
        else:
            line = (f"**ukis-csmask CSmask on the {large} px scene**: {c['seconds']:.1f} s end to "
                    f"end ({c['inner_seconds']:.1f} s in `CSmask(...)`), peak RSS "
                    f"{c['peak_rss_mib']:.0f} MiB.")  # fmt: skip
            if ukis is not None:
                ours = ukis["runs"]["default"][large]["peak_rss_mib"]
                line += (f" cloudseg's default path on the same scene and model: {ours:.0f} MiB, "
                         f"{ours / c['peak_rss_mib']:.3f} of it (target <= 0.2: "
                         f"{verdict(ours <= 0.2 * c['peak_rss_mib'])}).")  # fmt: skip
            out.append(line + "\n")
    best = min(m["runs"]["default"][large]["computed_per_valid_pixel"] for m in res["models"])
    out.append(f"Pixels computed per valid pixel on the {large} px footprint, default path: "
               f"{best:.3f} at best (target <= 1.25: {verdict(best <= 1.25)}).\n")  # fmt: skip
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["ukis-l1c", "r34"])
    p.add_argument("--sizes", type=int, nargs=2, default=[2000, 7800],
                   help="the small and the full scene side, px")  # fmt: skip
    p.add_argument("--home", type=Path, default=Path("demo/home"),
                   help="$CLOUDSEG_HOME with the exported models, variants and proofs")  # fmt: skip
    p.add_argument("--no-csmask", action="store_true", help="skip ukis-csmask's CSmask")
    p.add_argument("--scenes-dir", type=Path, default=h.SCENE_CACHE)
    p.add_argument("--out", type=Path, default=h.RESULTS_DIR)
    args = p.parse_args()
    os.environ["CLOUDSEG_HOME"] = str(args.home.resolve())  # children inherit it
    scenes = {s: h.synthetic_scene(args.scenes_dir, s, seed=1) for s in sorted(args.sizes)}
    results: dict[str, Any] = {
        "config": {"sizes": sorted(args.sizes), "home": str(args.home), "models": args.models},
        "models": [measure_model(name, scenes, args) for name in args.models],
    }
    if not args.no_csmask:
        with tempfile.TemporaryDirectory(prefix="cloudseg-csmask-") as work:
            results["csmask"] = csmask(scenes[max(scenes)], Path(work))
    path = h.write_results("full_scene", results, render, args.out)
    print((args.out / "full_scene.md").read_text())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
