"""The ``make gpu-check`` sections that run cloudseg's own commands: the GPU tests, a short
training run, and ``cloudseg-run`` end to end per provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness as h
from gpu_common import REPO, Context, OutOfTime, Utilisation, one_line, until_out_of_time


def gpu_tests(ctx: Context) -> dict[str, Any]:
    """``pytest -m gpu``: pass/fail, and every skip with its reason."""
    env = dict(os.environ)
    if ctx.setting == "index":  # onnxruntime-gpu is installed: its GPU tests must run, not skip
        env["CLOUDSEG_REQUIRE_ORT_GPU"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "tests"]
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True,
            timeout=max(30.0, min(180.0, ctx.left() - 240)),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"failed": "pytest -m gpu ran past its share of the budget"}
    lines = proc.stdout.strip().splitlines()
    return {
        "returncode": proc.returncode,
        "summary": lines[-1].strip("= ") if lines else proc.stderr.strip()[-300:],
        "skipped": [ln for ln in lines if ln.startswith("SKIPPED")],
        "failed_tests": [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))],
    }


def train(ctx: Context) -> dict[str, Any]:
    """r34 trained briefly on synthetic scenes on this device: the run folder later sections
    use, and whether it learned (the spread of its probabilities on a held-out scene)."""
    t = ctx.sizes["train"]
    data, run_dir = ctx.work / "38cloud", ctx.work / "r34-run"
    h.run_with_peak_rss([*h.cloudseg("synth"), "dataset", data, "--train-scenes", t["scenes"],
                         "--test-scenes", 1, "--size", t["size"], "--patch-size", t["patch"],
                         "-q"])  # fmt: skip
    child = h.run_with_peak_rss([*h.cloudseg("train"), data, "--model", "r34", "--out", run_dir,
                                 "--size", t["train_size"], "--fine-tune-size", 0,
                                 "--epochs", t["epochs"], "--bs", t["bs"], "--no-pretrained",
                                 "--workers", 4, "--cache", "-q"])  # fmt: skip
    card = json.loads((run_dir / "card.json").read_text())
    spread = held_out_spread(run_dir)
    ctx.run_dir, ctx.trained = run_dir, spread > 0.15  # the test fixture's bar for "learned"
    history = card["training"].get("history", {})
    return {
        "seconds": child["seconds"],
        "precision": history.get("precision"),
        "epochs": history.get("epochs_run"),
        "patch_size": t["train_size"],
        "valid_scores": card.get("scores"),
        "held_out_probability_std": spread,
        "learned": ctx.trained,
    }


def held_out_spread(run_dir: Path) -> float:
    from cloudseg.data.synthetic import SceneSpec, make_scene
    from cloudseg.train.predict import load_run, predict

    scene = make_scene(SceneSpec(seed=123, height=256, width=256, cloud_fraction=0.4))
    model, card = load_run(run_dir)
    prob = predict(model, card, scene.bands[None])[0][scene.mask != 255]
    return float(prob.std())


def random_run(ctx: Context) -> Path:
    """An untrained r34 run folder, where training failed: the later sections still run (their
    agreement figures then say little, and are marked so)."""
    import torch

    from cloudseg.card import write_json
    from cloudseg.export.sources import load_source
    from cloudseg.train.runs import BEST_WEIGHTS, CARD

    source = load_source("r34", random_init=True, tile=ctx.sizes["e2e_tile"])
    run_dir = ctx.work / "r34-random"
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save(source.model.state_dict(), run_dir / BEST_WEIGHTS)
    write_json(source.card, run_dir / CARD)
    return run_dir


#: cloudseg-run cases end to end: label, which model file, provider flags.
def e2e_cases(ctx: Context) -> list[tuple[str, str, list[Any]]]:
    if not ctx.gpu:
        return [("torch (cpu)", "run", ["--provider", "torch"]),
                ("cpu fp32", "fp32", ["--provider", "cpu"])]  # fmt: skip
    gpu = ["--device", 0]
    return [
        ("torch (precision auto)", "run", ["--provider", "torch", *gpu]),
        ("cuda fp32", "fp32", ["--provider", "cuda", *gpu]),
        ("cuda fp16 file", "fp16", ["--provider", "cuda", *gpu]),
        ("tensorrt fp16", "fp32", ["--provider", "tensorrt", "--fp16", *gpu,
                                   "--trt-cache", ctx.work / "trt-cache"]),
    ]  # fmt: skip


def export_run(ctx: Context) -> str | None:
    """ONNX exports of the run folder at the end-to-end tile (fp32 and fp16); why not, if not."""
    if ctx.onnx:
        return None
    out = ctx.work / "r34-run.onnx"
    try:
        h.run_with_peak_rss([*h.cloudseg("export"), "--model", "r34", "--run", ctx.run_dir,
                             "--tile", ctx.sizes["e2e_tile"], "--fp16", "--out", out])  # fmt: skip
    except RuntimeError as exc:
        return one_line(exc)
    ctx.onnx = {"fp32": out, "fp16": out.with_name(f"{out.stem}-fp16.onnx")}
    return None


def end_to_end(ctx: Context) -> dict[str, Any]:
    """``cloudseg-run`` over one synthetic scene per provider, cold then warm."""
    size = ctx.sizes["scene"]
    t0 = time.perf_counter()
    scene = h.synthetic_scene(ctx.work / "scenes", size, seed=7)
    ctx.scene = scene
    out: dict[str, Any] = {"scene_px": size, "synth_seconds": time.perf_counter() - t0,
                           "tile": ctx.sizes["e2e_tile"], "batch": ctx.sizes["e2e_batch"],
                           "cases": {}}  # fmt: skip
    export_error = export_run(ctx)
    with until_out_of_time(out):
        e2e_loop(ctx, scene, export_error, out["cases"])
    return out


def e2e_loop(ctx: Context, scene: Path, export_error: str | None, cases: dict[str, Any]) -> None:
    from cloudseg.engine.registry import probe

    for label, model_key, flags in e2e_cases(ctx):
        provider = flags[1]
        why = probe(provider) if provider not in ("torch", "cpu") else None
        if why is None and model_key != "run" and export_error:
            why = f"export failed: {export_error}"
        if why:
            cases[label] = {"skipped": why}
            continue
        model = ctx.run_dir if model_key == "run" else ctx.onnx[model_key]
        cases[label] = {"runs": []}
        for attempt in ("cold", "warm"):
            if ctx.left() < 60:
                raise OutOfTime(f"{label} {attempt}")
            cases[label]["runs"].append({"run": attempt, **run_scene(ctx, scene, model, flags)})


def run_scene(ctx: Context, scene: Path, model: Path, flags: list[Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cloudseg-gpu-out-", dir=ctx.work) as tmp:
        sizes = ["--tile", ctx.sizes["e2e_tile"], "--batch", ctx.sizes["e2e_batch"]]
        cmd = [*h.cloudseg("run"), scene, "--model", model, "--out", tmp, "-q", *sizes, *flags]
        with Utilisation() as util:
            child = h.run_with_peak_rss(cmd)
        summary = json.loads(next(Path(tmp).glob("*_summary.json")).read_text())
    mp = summary["width"] * summary["height"] / 1e6
    return {
        "child_seconds": child["seconds"],
        "seconds": summary["seconds"],
        "scene_mp_per_s": mp / summary["seconds"]["wall"],
        "tiles_run": summary["tiles_run"],
        "peak_rss_mib": child["peak_rss_mib"],
        "backend": summary["backend"],
        **util.summary(),
    }
