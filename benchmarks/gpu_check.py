"""``make gpu-check``: every GPU path measured in one run of at most 8 minutes.

Run by ``benchmarks/gpu_check.sh`` (which installs what the machine lacks) in either setting:

* **index**: a CUDA machine with a package index; ``make install-gpu`` has installed
  onnxruntime-gpu, the CUDA/cuDNN wheels and TensorRT 10. Everything below runs.
* **locked**: a GPU machine with no index (python3 3.12, torch with CUDA, onnx, a CPU-only
  onnxruntime); rasterio travels as a wheelhouse. ONNX Runtime's CUDA and TensorRT paths cannot
  load there and are recorded as skipped, with the reason; r18 is skipped where fastai is
  missing. The native PyTorch path and ``cloudseg-run --provider torch`` on CUDA still run.

Sections, in order, each timed against what is left of the budget and skipped (with the reason)
when too little is left; a section that fails records its error and the next one runs:

1. ``tests``: ``pytest -m gpu`` (in the index setting, ONNX Runtime's GPU tests must not skip).
2. ``train``: r34 trained briefly on the GPU on synthetic scenes (``cloudseg-train``, precision
   auto), so the agreement figures below are of a model whose logits are decisive.
3. ``end_to_end``: ``cloudseg-run`` over one 8000 px synthetic scene, per provider, twice (the
   first run builds TensorRT's engine; the second reuses its cache): seconds, MP/s, and the GPU's
   utilisation and memory sampled by ``nvidia-smi`` while it runs.
4. ``torch_model``: the native PyTorch path at its best on CUDA: channels-last, fp32 (TF32
   convolutions, torch's default) / fp16 / bf16 autocast, the forward captured as a CUDA graph,
   input resident on the GPU; r18 and r34, tiles 384 and 768, batch 1 to 16.
5. ``agreement``: masks of every GPU path against CPU fp32 on a held-out synthetic scene.
6. ``ort_model``: ONNX Runtime CUDA fp32 and fp16 and TensorRT fp16, model only (IO binding, on
   the device), the same grid as torch_model.
7. ``compile``: ``torch.compile`` of r34 at one size against its CUDA-graph replay.

Results: ``benchmarks/results/gpu.{json,md}``, rewritten after every section (a run cut short
keeps what it measured). ``--cpu-smoke`` runs every section on the CPU at tiny sizes (torch and
ONNX Runtime's CPU provider in place of the GPU ones): the test suite checks the script so.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness as h  # benchmarks/ is sys.path[0] when this file is run as a script

REPO = h.REPO
#: The issue's limit for the whole check; the shell wrapper's ``timeout`` is the backstop.
BUDGET_S = 450
FULL = {"tiles": [384, 768], "batches": [1, 2, 4, 8, 16], "precisions": ["f32", "f16", "bf16"],
        "reps": 20, "scene": 8000, "e2e_tile": 384, "e2e_batch": 16, "agreement_tiles": 16,
        "train": {"scenes": 6, "size": 1152, "patch": 384, "train_size": 192, "epochs": 8,
                  "bs": 8}}  # fmt: skip
SMOKE = {"tiles": [64], "batches": [1, 2], "precisions": ["f32", "bf16"], "reps": 2,
         "scene": 512, "e2e_tile": 128, "e2e_batch": 2, "agreement_tiles": 4,
         "train": {"scenes": 2, "size": 256, "patch": 128, "train_size": 64, "epochs": 1,
                   "bs": 4}}  # fmt: skip
#: Below this share of valid pixels in agreement, a GPU path is not the same model (the
#: project's bar for every variant; see cloudseg.export.parity).
MIN_AGREEMENT = 0.995


@dataclass
class Context:
    """What the sections share: where to run, the sizes, the clock, and what earlier ones made."""

    device: str  # "cuda:0", or "cpu" for --cpu-smoke
    setting: str
    sizes: dict[str, Any]
    work: Path
    deadline: float
    run_dir: Path | None = None  # the briefly trained r34
    trained: bool = False
    onnx: dict[str, Path] = field(default_factory=dict)  # exports of run_dir, by variant
    scene: Path | None = None

    @property
    def gpu(self) -> bool:
        return self.device.startswith("cuda")

    def left(self) -> float:
        return self.deadline - time.monotonic()


class OutOfTime(Exception):
    """Raised inside a section when the budget will not hold its next step."""


@contextlib.contextmanager
def until_out_of_time(out: dict[str, Any]) -> Iterator[None]:
    """Keep what a section measured when the budget stops it, and say where it stopped."""
    try:
        yield
    except OutOfTime as exc:
        out["stopped"] = f"out of time before {exc}"


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


# --- machine facts ------------------------------------------------------------------------


def nvidia_smi(*query: str) -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    return [v.strip() for v in out.stdout.splitlines()[0].split(",")] if out.stdout else []


def facts(ctx: Context) -> dict[str, Any]:
    """The GPU, the driver, the libraries and which providers load here."""
    import torch

    from cloudseg.engine.registry import PROVIDERS, probe

    gpu = nvidia_smi("name", "driver_version", "memory.total")
    out: dict[str, Any] = {
        "setting": ctx.setting,
        "device": ctx.device,
        "gpu": dict(zip(("name", "driver", "memory_mib"), gpu, strict=False)) or None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "providers": {p: probe(p) or "loads" for p in PROVIDERS},
    }
    if ctx.gpu:
        out["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
    return out


class Utilisation:
    """``nvidia-smi`` sampling GPU utilisation and memory every 100 ms while a block runs."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Utilisation:
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                util, mem = (float(v) for v in line.split(",")[:2])
                self.samples.append((util, mem))

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_memory_max_mib": None}
        utils = [u for u, _ in self.samples]
        return {
            "gpu_util_mean": sum(utils) / len(utils),
            "gpu_util_max": max(utils),
            "gpu_memory_max_mib": max(m for _, m in self.samples),
            "samples": len(self.samples),
        }


# --- sections -----------------------------------------------------------------------------


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


def torch_models(device: str) -> dict[str, Any]:
    """r34, and r18 where fastai imports; for r18 otherwise the reason."""
    out: dict[str, Any] = {"r34": None}
    try:
        import fastai.vision.models.unet  # noqa: F401  (r18 is fastai's DynamicUnet)

        out["r18"] = None
    except Exception as exc:  # any import failure: r18 cannot be built here
        out["r18"] = f"r18 needs fastai: {one_line(exc)}"
    return out


def flops_per_pixel(model: Any, device: str) -> float:
    """Model FLOPs per input pixel (a UNet's cost is proportional to its tile's area)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 4, 256, 256, device=device))
    return counter.get_total_flops() / 256**2


def timed_forward(model: Any, x: Any, precision: str, reps: int, device: str) -> dict[str, Any]:
    """Median seconds per batch of the forward pass at its best on ``device``: autocast to
    ``precision``, channels-last, captured as a CUDA graph (one launch per batch) on CUDA."""
    import torch

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[precision]
    kind = "cuda" if device.startswith("cuda") else "cpu"

    def forward() -> Any:
        with torch.autocast(kind, dtype=dtype, enabled=precision != "f32"):
            return model(x)

    call: Callable[[], Any] = forward
    graph = None
    with torch.inference_mode():
        if kind == "cuda":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # cuDNN picks its kernels before the capture
                    forward()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                forward()
            call = graph.replay
        call()
        sync(device)
        seconds = []
        for _ in range(reps):
            t0 = time.perf_counter()
            call()
            sync(device)
            seconds.append(time.perf_counter() - t0)
    del graph
    return {"seconds": seconds, "median_s": h.median(seconds), "spread": h.spread(seconds)}


def torch_model(ctx: Context) -> dict[str, Any]:
    """The native PyTorch grid: model x tile x precision x batch."""
    import torch

    torch.backends.cudnn.benchmark = ctx.gpu  # fixed shapes: pick the fastest kernels once
    out: dict[str, Any] = {"rows": [], "skipped": {}}
    with until_out_of_time(out):
        torch_grid(ctx, out)
    return out


def torch_grid(ctx: Context, out: dict[str, Any]) -> None:
    import torch

    from cloudseg.export.sources import load_source

    for name, why in torch_models(ctx.device).items():
        if why:
            out["skipped"][name] = why
            continue
        for tile in ctx.sizes["tiles"]:
            net = load_source(name, random_init=True, tile=tile).model.eval()
            net = net.to(ctx.device, memory_format=torch.channels_last)
            per_px = flops_per_pixel(net, ctx.device)
            for precision in ctx.sizes["precisions"]:
                for batch in ctx.sizes["batches"]:
                    if ctx.left() < 90:
                        raise OutOfTime(f"torch {name} tile {tile} {precision} batch {batch}")
                    x = torch.randn(batch, 4, tile, tile, device=ctx.device)
                    x = x.contiguous(memory_format=torch.channels_last)
                    if ctx.gpu:
                        torch.cuda.reset_peak_memory_stats()
                    row = timed_forward(net, x, precision, ctx.sizes["reps"], ctx.device)
                    pixels = batch * tile * tile
                    row |= {"model": name, "tile": tile, "batch": batch, "precision": precision,
                            "mp_per_s": pixels / row["median_s"] / 1e6,
                            "tflop_per_s": per_px * pixels / row["median_s"] / 1e12}  # fmt: skip
                    if ctx.gpu:
                        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
                    out["rows"].append(row)
            del net
            if ctx.gpu:
                torch.cuda.empty_cache()


def scene_tiles(ctx: Context, count: int, tile: int) -> Any:
    """``count`` raw tiles of a held-out synthetic scene (seed 321), uint16 DN."""
    import numpy as np

    from cloudseg.data.synthetic import SceneSpec, make_scene

    side = int(np.ceil(np.sqrt(count)))
    scene = make_scene(SceneSpec(seed=321, height=side * tile, width=side * tile,
                                 cloud_fraction=0.4))  # fmt: skip
    b = scene.bands
    tiles = [b[:, r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
             for r in range(side) for c in range(side)]  # fmt: skip
    return np.stack(tiles[:count])


def agreement(ctx: Context) -> dict[str, Any]:
    """Each GPU path's masks against CPU fp32 (torch) on a held-out synthetic scene."""
    import numpy as np

    from cloudseg.card import read_json
    from cloudseg.engine.backend import BackendOptions
    from cloudseg.engine.registry import make_backend, probe
    from cloudseg.train.runs import CARD

    tile, card = ctx.sizes["e2e_tile"], read_json(ctx.run_dir / CARD)
    raw = scene_tiles(ctx, ctx.sizes["agreement_tiles"], tile)
    x, valid = card.transform.apply(raw), np.all(raw != 0, axis=1)
    ref_backend = make_backend(ctx.run_dir, "torch", BackendOptions(tile=tile, precision="f32"))
    reference = ref_backend.run(x)[:, 0]
    ref_backend.close()
    gpu = {"device": 0} if ctx.gpu else {}
    cases: list[tuple[str, Path | None, str, dict[str, Any]]] = [
        (f"torch {p}", ctx.run_dir, "torch", {"precision": p}) for p in ctx.sizes["precisions"]
    ]
    if ctx.gpu:
        cases += [("ort cuda fp32", ctx.onnx.get("fp32"), "cuda", {}),
                  ("ort cuda fp16 file", ctx.onnx.get("fp16"), "cuda", {}),
                  ("ort tensorrt fp16", ctx.onnx.get("fp32"), "tensorrt",
                   {"fp16": True, "trt_cache": ctx.work / "trt-cache"})]  # fmt: skip
    else:
        cases.append(("ort cpu fp32", ctx.onnx.get("fp32"), "cpu", {}))
    out: dict[str, Any] = {
        "reference": "torch fp32 on the CPU",
        "tiles": len(raw), "tile": tile, "valid_pixels": int(valid.sum()),
        "trained": ctx.trained, "cases": {},
    }  # fmt: skip
    for label, model, provider, extra in cases:
        why = probe(provider) if provider not in ("torch", "cpu") else None
        if why is None and model is None:
            why = "no ONNX export of the run (see end_to_end)"
        if why:
            out["cases"][label] = {"skipped": why}
            continue
        options = BackendOptions(tile=tile, batch=4, **(gpu if provider != "cpu" else {}), **extra)
        backend = make_backend(model, provider, options)
        prob = backend.run(x)[:, 0]
        backend.close()
        same = (prob > card.threshold) == (reference > card.threshold)
        out["cases"][label] = {
            "agreement": float(same[valid].mean()),
            "max_abs_probability_diff": float(np.abs(prob - reference)[valid].max()),
        }
    return out


def ort_model(ctx: Context) -> dict[str, Any]:
    """ONNX Runtime CUDA fp32 / fp16 and TensorRT fp16, model only, as backends.py times them."""
    from cloudseg.engine.registry import probe

    paths = (("ort_cuda_fp32", "fp32", "cuda", False), ("ort_cuda_fp16", "fp16", "cuda", False),
             ("ort_tensorrt_fp16", "fp32", "tensorrt", True))  # fmt: skip
    provider_why = {p: probe(p) for p in ("cuda", "tensorrt")} if ctx.gpu else {"cpu": None}
    if not ctx.gpu:  # the smoke run: ONNX Runtime's CPU provider stands in
        paths = (("ort_cpu_fp32", "fp32", "cpu", False),)
    out: dict[str, Any] = {"rows": [], "skipped": {}}
    for path, _, provider, _ in paths:
        if provider_why.get(provider):
            out["skipped"][path] = provider_why[provider]
    live = [p for p in paths if p[0] not in out["skipped"]]
    if live:
        with until_out_of_time(out):
            ort_grid(ctx, live, out)
    return out


def ort_grid(ctx: Context, live: list[tuple[str, str, str, bool]], out: dict[str, Any]) -> None:
    import backends as bk  # its session and IO-binding helpers: the same calls as the engine
    import numpy as np
    import onnx

    from cloudseg.export.pipeline import ExportConfig, export

    for name, why in torch_models(ctx.device).items():
        if why:
            out["skipped"][name] = why
            continue
        files = {"fp32": ctx.work / f"ort-{name}.onnx", "fp16": ctx.work / f"ort-{name}-fp16.onnx"}
        if ctx.left() < 120:
            raise OutOfTime(f"ort export {name}")
        # Dynamic height and width (one file for every tile) unless one tile only is timed.
        tiles = ctx.sizes["tiles"]
        fixed = tiles[0] if len(tiles) == 1 else None
        export(ExportConfig(name, random_init=True, out=files["fp32"], tile=fixed))
        bk.save(bk.to_fp16(onnx.load_model(str(files["fp32"]))), files["fp16"])
        n_out = 1 if name == "r18" else 2
        for tile in ctx.sizes["tiles"]:
            for path, variant, provider, trt_fp16 in live:
                if ctx.left() < 90:
                    raise OutOfTime(f"{path} {name} tile {tile}")
                # One session per tile; TensorRT's profile spans batch 1 to the largest.
                top = max(ctx.sizes["batches"])
                device = "cuda" if ctx.gpu else "cpu"
                try:
                    sess = bk.ort_session(files[variant], provider, top, tile, trt_fp16)
                except Exception as exc:  # a provider that fails on this model: say so, go on
                    out["skipped"][f"{path} {name} {tile}"] = one_line(exc)
                    continue
                for batch in ctx.sizes["batches"]:
                    x = np.random.default_rng(0).standard_normal((batch, 4, tile, tile), np.float32)
                    call = bk.ort_call(sess, x, n_out, device)
                    times = h.interleaved({"c": call}, ctx.sizes["reps"], warmup=2)["c"]
                    s = h.median(times)
                    out["rows"].append({"path": path, "model": name, "tile": tile,
                                        "batch": batch, "median_s": s, "spread": h.spread(times),
                                        "mp_per_s": batch * tile * tile / s / 1e6})  # fmt: skip
                del sess


def compiled(ctx: Context) -> dict[str, Any]:
    """``torch.compile`` of r34 (one size, bf16 on GPUs that run it) against the CUDA graph."""
    import torch

    from cloudseg.export.sources import load_source

    tile, batch = ctx.sizes["tiles"][0], max(ctx.sizes["batches"][:4])
    precision = "bf16" if "bf16" in ctx.sizes["precisions"] else ctx.sizes["precisions"][-1]
    net = load_source("r34", random_init=True, tile=tile).model.eval()
    net = net.to(ctx.device, memory_format=torch.channels_last)
    x = torch.randn(batch, 4, tile, tile, device=ctx.device)
    x = x.contiguous(memory_format=torch.channels_last)
    graph = timed_forward(net, x, precision, ctx.sizes["reps"], ctx.device)
    t0 = time.perf_counter()
    fn = torch.compile(copy.deepcopy(net), mode="max-autotune-no-cudagraphs")
    kind = "cuda" if ctx.gpu else "cpu"
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[precision]

    def call() -> None:
        with torch.inference_mode(), torch.autocast(kind, dtype=dtype, enabled=precision != "f32"):
            fn(x)
        sync(ctx.device)

    call()  # the compile itself
    compile_s = time.perf_counter() - t0
    times = h.interleaved({"c": call}, ctx.sizes["reps"], warmup=1)["c"]
    return {"model": "r34", "tile": tile, "batch": batch, "precision": precision,
            "compile_seconds": compile_s, "compiled_median_s": h.median(times),
            "graph_median_s": graph["median_s"],
            "compiled_over_graph": graph["median_s"] / h.median(times)}  # fmt: skip


#: name, function, seconds it needs at least to be worth starting (full sizes).
SECTIONS: tuple[tuple[str, Callable[[Context], dict[str, Any]], float], ...] = (
    ("tests", gpu_tests, 60),
    ("train", train, 60),
    ("end_to_end", end_to_end, 90),
    ("torch_model", torch_model, 90),
    ("agreement", agreement, 45),
    ("ort_model", ort_model, 120),
    ("compile", compiled, 120),
)


# --- the report ---------------------------------------------------------------------------


def render(doc: dict[str, Any]) -> str:
    """The tables, from the results document alone."""
    f, s = doc["facts"], doc["sections"]
    gpu = f["gpu"] or {}
    text = (
        f"**Setting**: {f['setting']} ({f['device']}); GPU {gpu.get('name', 'none')}, driver "
        f"{gpu.get('driver', '-')}; torch {f['torch']} (CUDA {f['torch_cuda']}, cuDNN "
        f"{f['cudnn']}); wall {doc['wall_seconds']:.0f} s of a {doc['config']['budget_s']} s "
        "budget.\n\n"
        + h.table(["provider", "here"], [[p, w] for p, w in f["providers"].items()])
        + "\n"
    )
    for name, _, _ in SECTIONS:
        sec = s.get(name)
        if name not in doc["config"]["sections"]:
            text += f"**{name}**: not asked (--sections).\n\n"
        elif sec is None:
            text += f"**{name}**: not reached.\n\n"
        elif "failed" in sec or "skipped_section" in sec:
            text += f"**{name}**: {sec.get('failed') or sec['skipped_section']}\n\n"
        else:
            text += RENDERERS[name](sec)
            text += f"\n_Stopped: {sec['stopped']}._\n\n" if "stopped" in sec else "\n"
    return text


def render_tests(sec: dict[str, Any]) -> str:
    lines = "".join(f"- {ln}\n" for ln in sec["failed_tests"] + sec["skipped"])
    return f"**pytest -m gpu**: {sec['summary']} (exit {sec['returncode']})\n\n{lines}"


def render_train(sec: dict[str, Any]) -> str:
    return (
        f"**Training** (r34, {sec['epochs']} epochs at {sec['patch_size']} px on synthetic "
        f"scenes, {sec['precision']}): {sec['seconds']:.1f} s; held-out probability std "
        f"{sec['held_out_probability_std']:.3f} ({'learned' if sec['learned'] else 'NOT learned'}"
        ": the agreement figures below "
        f"{'are' if sec['learned'] else 'are not'} of decisive logits).\n"
    )


def render_e2e(sec: dict[str, Any]) -> str:
    rows, skipped = [], []
    for label, case in sec["cases"].items():
        if "skipped" in case:
            skipped.append(f"- {label}: skipped ({case['skipped']})\n")
            continue
        for r in case["runs"]:
            rows.append([label, r["run"], r["child_seconds"], r["seconds"]["wall"],
                         r["scene_mp_per_s"], r["gpu_util_mean"], r["gpu_util_max"],
                         r["gpu_memory_max_mib"], r["peak_rss_mib"],
                         r["backend"].get("precision")])  # fmt: skip
    head = ("case|run|process s|engine wall s|scene MP/s|GPU util mean %|max %|GPU MiB max|"
            "peak RSS MiB|precision")  # fmt: skip
    return (
        f"**cloudseg-run end to end** ({sec['scene_px']} px synthetic scene, tile {sec['tile']}, "
        f"batch {sec['batch']}; cold = first run, TensorRT building its engine)\n\n"
        + h.table(head.split("|"), rows)
        + "".join(skipped)
    )


def render_grid(sec: dict[str, Any], title: str, key: str) -> str:
    rows = [[r["model"], r["tile"], r[key], r["batch"], r["median_s"] * 1e3, r["mp_per_s"],
             r.get("tflop_per_s"), f"{100 * r['spread']:.0f} %", r.get("peak_gib")]
            for r in sec["rows"]]  # fmt: skip
    head = ["model", "tile", key, "batch", "ms per batch", "MP/s", "TFLOP/s", "spread", "peak GiB"]
    skipped = "".join(f"- {k}: skipped ({v})\n" for k, v in sec["skipped"].items())
    return f"**{title}**\n\n" + h.table(head, rows) + skipped


def render_agreement(sec: dict[str, Any]) -> str:
    rows, skipped = [], []
    for label, c in sec["cases"].items():
        if "skipped" in c:
            skipped.append(f"- {label}: skipped ({c['skipped']})\n")
            continue
        ok = "PASS" if c["agreement"] >= MIN_AGREEMENT else "MISS"
        rows.append([label, f"{100 * c['agreement']:.3f} %", c["max_abs_probability_diff"],
                     f"{ok} (>= {100 * MIN_AGREEMENT:.1f} %)"])  # fmt: skip
    return (
        f"**Mask agreement** against {sec['reference']} ({sec['tiles']} held-out tiles of "
        f"{sec['tile']} px, {sec['valid_pixels']:,} valid pixels; weights "
        f"{'trained here' if sec['trained'] else 'NOT trained: figures say little'})\n\n"
        + h.table(["path", "agreement", "max probability diff", "target"], rows)
        + "".join(skipped)
    )


def render_compile(sec: dict[str, Any]) -> str:
    return (
        f"**torch.compile** (r34, tile {sec['tile']}, batch {sec['batch']}, {sec['precision']}): "
        f"compiled {sec['compiled_median_s'] * 1e3:.2f} ms a batch against the CUDA graph's "
        f"{sec['graph_median_s'] * 1e3:.2f} ms ({sec['compiled_over_graph']:.2f}x); compiling "
        f"took {sec['compile_seconds']:.0f} s.\n"
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "tests": render_tests,
    "train": render_train,
    "end_to_end": render_e2e,
    "torch_model": lambda s: render_grid(s, "Native PyTorch, model only (CUDA graph)", "precision"),
    "agreement": render_agreement,
    "ort_model": lambda s: render_grid(s, "ONNX Runtime, model only (IO binding)", "path"),
    "compile": render_compile,
}


# --- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="cloudseg-gpu-check-") as tmp:
        yield Path(tmp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=["index", "locked", "smoke"], default="index")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for every section")
    p.add_argument("--sections", nargs="+", choices=[n for n, _, _ in SECTIONS])
    p.add_argument("--cpu-smoke", action="store_true", help="every section on the CPU, tiny")
    p.add_argument("--work", type=Path, help="keep the work folder here (default: a temp one)")
    p.add_argument("--out", type=Path, default=h.RESULTS_DIR)
    args = p.parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device here (torch {torch.__version__}: "
              "torch.cuda.is_available() is False); nothing measured")  # fmt: skip
        return 0
    start = time.monotonic()
    sizes = SMOKE if args.cpu_smoke else FULL
    wanted = set(args.sections or [n for n, _, _ in SECTIONS])
    with workdir(args.work) as work:
        ctx = Context("cpu" if args.cpu_smoke else "cuda:0", "smoke" if args.cpu_smoke
                      else args.setting, sizes, work, start + args.budget)  # fmt: skip
        results: dict[str, Any] = {
            "config": {"budget_s": args.budget, "sizes": sizes, "sections": sorted(wanted)},
            "facts": facts(ctx),
            "sections": {},
            "wall_seconds": 0.0,
        }
        for name, fn, needs in SECTIONS:
            if name not in wanted:
                continue
            needs = needs if ctx.gpu else 0
            if ctx.run_dir is None and name in ("end_to_end", "agreement"):
                ctx.run_dir = random_run(ctx)  # training was not asked for, or failed
            if ctx.left() < needs:
                results["sections"][name] = {"skipped_section": f"{ctx.left():.0f} s left"}
            else:
                print(f"gpu-check: {name} ({ctx.left():.0f} s left)", flush=True)
                try:
                    results["sections"][name] = fn(ctx)
                except OutOfTime as exc:
                    results["sections"][name] = {"failed": f"out of time before {exc}"}
                except Exception as exc:  # one broken section must not cost the others
                    results["sections"][name] = {"failed": one_line(exc)}
            results["wall_seconds"] = time.monotonic() - start
            h.write_results("gpu", results, render, args.out)  # after every section
    print((args.out / "gpu.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
