"""The ``make gpu-check`` sections that time models alone (native PyTorch with CUDA graphs,
ONNX Runtime with IO binding, torch.compile) and compare every GPU path's masks with the CPU's."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h
from gpu_common import Context, OutOfTime, one_line, sync, until_out_of_time


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
