"""Model only: how fast each runtime runs the two UNets, against the machine's own ceilings.

For each model (r18, r34) and batch, every path below runs the same fixed-size input, interleaved
with one figure per round of each precision's ceiling on this machine (the best of three matrix
products in fp32, bf16 and int8: ``harness.matmul_gflops``), so every figure in the table is a
ratio measured in the same run, each path against the ceiling of the precision it computes in:

* ``torch_eager_fp32`` (the reference), ``torch_channels_last_fp32``, and the native path at its
  best on this CPU: ``torch_channels_last_bf16`` (bf16 autocast) and ``torch_compile_bf16``
  (``torch.compile`` of that, where it compiles; otherwise skipped with the reason);
* ``ort_cpu_fp32``: the file ``cloudseg.export`` writes (fixed tile, parity-checked);
* ``ort_cpu_int8``: cloudseg's static QDQ quantiser, calibrated on synthetic patches;
* ``openvino_f32``, ``openvino_bf16``: the same fp32 file through OpenVINO's CPU plugin (bf16 on
  the AMX / AVX512-BF16 units), compiled as the engine compiles it;
* GPU paths (PyTorch CUDA fp32/fp16, ORT CUDA fp32/fp16, ORT TensorRT fp16) only where a GPU
  is present; otherwise recorded as skipped. ORT's providers go through
  ``cloudseg.engine.ort_providers``, which refuses a session that fell back to the CPU.

Only the model is timed: ONNX Runtime through IO binding with buffers bound once, OpenVINO through
one infer request whose input was set once, nothing post-processed. FLOPs are counted once per
tile with ``FlopCounterMode`` (a multiply-add is 2); bf16 and int8 rows use the same count.

    .venv/bin/python benchmarks/backends.py                    # r18 + r34, tile 384, batch 1 4 8
    .venv/bin/python benchmarks/backends.py --r18-run RUN_DIR  # trained weights for r18
    .venv/bin/python benchmarks/backends.py --quick            # tiny smoke run (the test suite)
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness  # benchmarks/ is sys.path[0] when this file is run as a script
import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail
from torch.utils.flop_counter import FlopCounterMode

from cloudseg.engine import ort_providers as prov
from cloudseg.errors import ProviderError
from cloudseg.export import parity as par
from cloudseg.export.fp16 import to_fp16
from cloudseg.export.onnx_export import INPUT_NAME, OUTPUT_NAME, save
from cloudseg.export.pipeline import ExportConfig, export
from cloudseg.export.quantise import to_int8
from cloudseg.export.samples import synthetic_patches
from cloudseg.export.sources import load_source

CORES = os.cpu_count() or 1
EAGER = "torch_eager_fp32"
ORT_FP32 = "ort_cpu_fp32"
CPU_PATHS = (
    EAGER, "torch_channels_last_fp32", "torch_channels_last_bf16", "torch_compile_bf16",
    ORT_FP32, "ort_cpu_int8", "openvino_f32", "openvino_bf16",
)  # fmt: skip
#: The precision each path computes in: its figures are shares of that precision's ceiling.
PRECISION = {
    "torch_channels_last_bf16": "bf16", "torch_compile_bf16": "bf16", "openvino_bf16": "bf16",
    "ort_cpu_int8": "int8", "torch_cuda_fp16": "fp16", "ort_cuda_fp16": "fp16",
    "ort_tensorrt_fp16": "fp16",
}  # fmt: skip
CEILINGS = ("fp32", "bf16", "int8")
GPU_PATHS = (
    "torch_cuda_fp32",
    "torch_cuda_fp16",
    "ort_cuda_fp32",
    "ort_cuda_fp16",
    "ort_tensorrt_fp16",
)
# fmt: off
FULL = {"tile": 384, "batches": [1, 4, 8], "repeats": 5, "calib_patches": 32,
        "held_out_patches": 8, "matmul_n": 2048, "pause": 0.5, "compile": True}
# --quick: small enough for the test suite (most of its time is the two ONNX exports); no
# torch.compile (a minute of compiling per model).
QUICK = {"tile": 64, "batches": [1, 2], "repeats": 3, "calib_patches": 4,
         "held_out_patches": 4, "matmul_n": 1024, "pause": 0.05, "compile": False}
# fmt: on
MIN_AGREEMENT = par.MIN_AGREEMENT
log = logging.getLogger("benchmarks.backends")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["r18", "r34"], choices=["r18", "r34"])
    p.add_argument("--tile", type=int, help="tile side, a multiple of 32 (384; --quick 64)")
    p.add_argument("--batches", type=int, nargs="+", help="batch sizes (1 4 8; --quick 1 2)")
    p.add_argument("--repeats", type=int, help="timed rounds after one warm-up (5; --quick 3)")
    p.add_argument("--calib-patches", type=int, help="int8 calibration patches (32; --quick 4)")
    p.add_argument("--held-out-patches", type=int, help="int8 agreement patches (8; --quick 4)")
    p.add_argument("--matmul-n", type=int, help="side of the ceiling's matmul (2048; --quick 1024)")
    p.add_argument("--pause", type=float, help="untimed sleep before each call (0.5; --quick 0.05)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="also time torch.compile (default: yes; --quick: no)")  # fmt: skip
    p.add_argument("--r18-run", type=Path, help="training run folder: trained r18 weights")
    p.add_argument("--r34-run", type=Path, help="training run folder: trained r34 weights")
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR, help="results folder")
    p.add_argument("--quick", action="store_true", help="tiny sizes (explicit options still win)")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def flops_per_tile(model: torch.nn.Module, tile: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 4, tile, tile))
    return counter.get_total_flops()


def torch_call(
    model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    sync: bool = False,
    bf16: bool = False,
) -> Callable[[], None]:
    def run() -> None:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            model(x)
        if sync:  # CUDA calls return before the work is done
            torch.cuda.synchronize()

    return run


def compiled_call(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], None] | str:
    """``torch.compile`` of the channels-last bf16 path, compiled here; why not, if it fails."""
    try:
        fn = torch.compile(model)
        call = torch_call(fn, x, bf16=True)
        call()  # compiles (inductor writes C++ kernels; a minute or more per model)
        return call
    except Exception as exc:  # any compiler failure means "not here": record why, go on
        return f"torch.compile failed here: {' '.join(str(exc).split())[:160]}"


def openvino_call(path: Path, x: np.ndarray, precision: str) -> Callable[[], None] | str:
    """The ONNX file compiled by OpenVINO as the engine compiles it; one request, input set."""
    try:
        import openvino as ov
    except ImportError:
        return "openvino is not installed"
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(x.shape)})
    config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_NUM_THREADS": CORES}  # fmt: skip
    compiled = core.compile_model(model, "CPU", config)
    if compiled.get_property("INFERENCE_PRECISION_HINT").to_string() != precision:
        return f"OpenVINO does not run {precision} on this CPU"
    request = compiled.create_infer_request()
    request.get_input_tensor(0).data[...] = x

    def run(keep: Any = compiled) -> None:
        request.infer()

    return run


def ort_session(
    path: Path, provider: str = "cpu", batch: int = 1, tile: int = 0, fp16_trt: bool = False
) -> ort.InferenceSession:
    """A session on ``provider``, built as the engine builds it; ProviderError if it fell back."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = CORES  # the same cores torch gets
    options.inter_op_num_threads = 1  # a conv net is one chain: parallelism is inside ops
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    note = "" if provider == "cpu" else prov.preload_gpu_libraries(provider)
    providers = prov.provider_list(provider, INPUT_NAME, batch, tile, fp16_trt=fp16_trt)
    sess = ort.InferenceSession(str(path), options, providers=providers)
    prov.check_loaded(provider, sess.get_providers(), note)
    return sess


def ort_call(
    sess: ort.InferenceSession, x: np.ndarray, n_out: int, device: str = "cpu"
) -> Callable[[], None]:
    """Run ``sess`` on ``x`` through IO binding: input and output live on ``device``, bound once,
    so only the model is timed (no host copies, no allocation per call)."""
    binding = sess.io_binding()
    x_dev = ort.OrtValue.ortvalue_from_numpy(x, device, 0)
    shape = (x.shape[0], n_out, *x.shape[2:])
    out = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device, 0)
    binding.bind_ortvalue_input(INPUT_NAME, x_dev)
    binding.bind_ortvalue_output(OUTPUT_NAME, out)

    def run(buffers: tuple[ort.OrtValue, ...] = (x_dev, out)) -> None:  # keeps them alive
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def gpu_cases(
    model: torch.nn.Module, x: np.ndarray, files: dict[str, Path], tile: int, n_out: int
) -> dict[str, Callable[[], None] | str]:
    """The GPU paths of one batch: callables, or a string saying why a path cannot run."""
    cases: dict[str, Callable[[], None] | str] = {}
    dev = copy.deepcopy(model).cuda().eval()
    x_dev = torch.from_numpy(x).cuda()
    cases["torch_cuda_fp32"] = torch_call(dev, x_dev, sync=True)
    cases["torch_cuda_fp16"] = torch_call(copy.deepcopy(dev).half(), x_dev.half(), sync=True)
    for name, path, provider, trt_fp16 in (
        ("ort_cuda_fp32", files["fp32"], "cuda", False),
        ("ort_cuda_fp16", files["fp16"], "cuda", False),  # fp16 weights, float32 in and out
        ("ort_tensorrt_fp16", files["fp32"], "tensorrt", True),  # TensorRT makes its own fp16
    ):
        try:
            cases[name] = ort_call(
                ort_session(path, provider, len(x), tile, trt_fp16), x, n_out, "cuda"
            )
        except (ProviderError, Fail, EPFail) as exc:  # recorded as skipped, with the reason
            cases[name] = " ".join(str(exc).split())
    return cases


def bench_model(name: str, args: argparse.Namespace, tmp: Path, gpu: bool) -> dict[str, Any]:
    run = getattr(args, f"{name}_run")
    source = load_source(name, run=run, random_init=run is None, tile=args.tile)
    model, card, n_out = source.model.eval(), source.card, len(source.card.classes)
    flops = flops_per_tile(model, args.tile)
    log.info("%s: %.1f GFLOP per %d px tile; exporting", name, flops / 1e9, args.tile)
    files = {"fp32": tmp / f"{name}.onnx", "int8": tmp / f"{name}-int8.onnx"}
    fp32 = export(ExportConfig(name, out=files["fp32"], tile=args.tile), source=source)[0]
    # Calibration and agreement patches come from different synthetic scenes (seeds 0.. and
    # 1000..), as export keeps calibration scenes out of the agreement check.
    calib = synthetic_patches(args.calib_patches, args.tile, seed=0)
    held = synthetic_patches(args.held_out_patches, args.tile, seed=1000)
    to_int8(files["fp32"], files["int8"], card.transform.apply(calib.raw))
    sessions = {v: ort_session(files[v]) for v in ("fp32", "int8")}  # timed below, too
    agreement = par.mask_agreement(
        sessions["fp32"], sessions["int8"], card, held.raw, "int8", f"held-out {held.source}"
    )
    log.info("%s int8: %s", name, agreement.summary())
    if gpu:
        files["fp16"] = tmp / f"{name}-fp16.onnx"
        save(to_fp16(onnx.load_model(str(files["fp32"]))), files["fp16"])

    # Built once per model: only the input changes with the batch.
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    rng = np.random.default_rng(0)
    batches = {}
    for batch in args.batches:
        x = rng.standard_normal((batch, 4, args.tile, args.tile), dtype=np.float32)
        t = torch.from_numpy(x)
        t_last = t.contiguous(memory_format=torch.channels_last)
        cases: dict[str, Callable[[], None] | str] = {
            EAGER: torch_call(model, t),
            "torch_channels_last_fp32": torch_call(last, t_last),
            "torch_channels_last_bf16": torch_call(last, t_last, bf16=True),
            "torch_compile_bf16": compiled_call(last, t_last) if args.compile else "not asked",
            ORT_FP32: ort_call(sessions["fp32"], x, n_out),
            "ort_cpu_int8": ort_call(sessions["int8"], x, n_out),
            "openvino_f32": openvino_call(files["fp32"], x, "f32"),
            "openvino_bf16": openvino_call(files["fp32"], x, "bf16"),
        }
        if gpu:
            cases.update(gpu_cases(model, x, files, args.tile, n_out))
        else:
            cases.update(dict.fromkeys(GPU_PATHS, "no GPU"))
        log.info("%s batch %d: %d rounds", name, batch, args.repeats)
        batches[str(batch)] = time_cases(cases, flops * batch, batch * args.tile**2, args)
    return {
        "weights": "trained" if run else "random",
        "source": source.description,
        "parameters": sum(p.numel() for p in model.parameters()),
        "flops_per_tile": flops,
        "gflop_per_tile": flops / 1e9,
        "fp32_parity": fp32.figures.to_dict(),
        "int8_agreement": agreement.to_dict(),
        # An untrained model's logits sit near the threshold: its agreement says little.
        "int8_agreement_meaningful": run is not None,
        "int8_calibration": {"patches": len(calib), "source": calib.source, "seed": 0},
        "batches": batches,
    }


def time_cases(
    cases: dict[str, Callable[[], None] | str], flops: int, pixels: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Time the runnable cases interleaved with the ceilings; figures per path."""
    runnable = {k: v for k, v in cases.items() if callable(v)}
    # One figure per precision per round, between the cases it bounds: the best of 3 products,
    # since a single 2048 product lasts ~20-70 ms and one preemption halves it.
    ceilings: dict[str, list[float]] = {p: [] for p in CEILINGS}

    def measure_ceilings() -> None:
        for precision in CEILINGS:
            best = max(harness.matmul_gflops(3, args.matmul_n, precision))
            ceilings[precision].append(best)

    runnable["matmul"] = measure_ceilings
    times = harness.interleaved(runnable, args.repeats, pause=args.pause)
    ceilings = {p: v[-args.repeats :] for p, v in ceilings.items()}  # drop the warm-up round
    paths: dict[str, Any] = {}
    for path, case in cases.items():
        if not callable(case):
            paths[path] = {"skipped": case}
            continue
        s = harness.median(times[path])
        precision = PRECISION.get(path, "fp32")
        bound = harness.median(ceilings.get(precision, ceilings["fp32"]))
        paths[path] = {
            "seconds": times[path],
            "median_s": s,
            "spread": harness.spread(times[path]),
            "mp_per_s": pixels / s / 1e6,
            "gflop_per_s": flops / s / 1e9,
            "precision": precision,
            "ceiling_fraction": flops / s / 1e9 / bound,
            "speedup_vs_eager": harness.median(times[EAGER]) / s,  # ratio of medians
            "speedup_vs_ort_fp32": harness.median(times[ORT_FP32]) / s,
        }
    return {"ceiling_gflops": ceilings["fp32"], "ceilings_gflops": ceilings, "paths": paths}


def target(path: str, row: dict[str, Any], model: dict[str, Any]) -> str:
    """PASS/MISS against the issue's targets (shown, never asserted)."""
    if path == "ort_cpu_fp32":
        ok = row["speedup_vs_eager"] >= 1.4 and row["ceiling_fraction"] >= 0.70
        return f"{'PASS' if ok else 'MISS'} (>= 1.4x, >= 70 % of ceiling)"
    if path == "openvino_bf16":
        ok = row["speedup_vs_ort_fp32"] >= 2.5 and row["ceiling_fraction"] >= 0.60
        return f"{'PASS' if ok else 'MISS'} (>= 2.5x ORT fp32, >= 60 % of bf16 ceiling)"
    if path == "ort_cpu_int8":
        share = model["int8_agreement"]["share"]
        fast = row["speedup_vs_eager"] >= 3
        if model["weights"] != "trained":  # random logits sit near the threshold: not judged
            return f"speed {'PASS' if fast else 'MISS'} (>= 3x); agreement not judged (random)"
        ok = fast and share >= MIN_AGREEMENT
        return f"{'PASS' if ok else 'MISS'} (>= 3x, >= {100 * MIN_AGREEMENT:.1f} % agreement)"
    return ""


def render(results: dict[str, Any]) -> str:
    models, cfg = results["models"], results["config"]
    rows = []
    for name, m in models.items():
        agree = m["int8_agreement"]
        rows.append([
            name, m["weights"], m["gflop_per_tile"], m["parameters"] / 1e6,
            f"{m['fp32_parity']['max_abs_diff']:.1e}",
            f"{100 * agree['share']:.2f} % of {agree['valid_pixels']:,} px in {agree['patches']} "
            f"held-out synthetic patches{' (random weights)' * (m['weights'] != 'trained')}",
        ])  # fmt: skip
    head = "model|weights|GFLOP / tile|parameters (M)|fp32 vs torch: max logit diff|int8 agreement"
    out = harness.table(head.split("|"), rows) + "\n"
    rows, skipped = [], {}
    for name, m in models.items():
        for batch, b in m["batches"].items():
            for path, r in b["paths"].items():
                if "skipped" in r:
                    skipped.setdefault(r["skipped"], set()).add(path)
                    continue
                rows.append([
                    name, batch, path, r["mp_per_s"], r["gflop_per_s"],
                    f"{100 * r['ceiling_fraction']:.0f} % {r['precision']}",
                    f"{r['speedup_vs_eager']:.2f}x", f"{r['speedup_vs_ort_fp32']:.2f}x",
                    f"{100 * r['spread']:.0f} %", target(path, r, m),
                ])  # fmt: skip
            for precision, c in b["ceilings_gflops"].items():
                spread = f"{100 * harness.spread(c):.0f} %"
                matmul = f"matmul {precision} n={cfg['matmul_n']} (ceiling)"
                rows.append([name, batch, matmul, None, harness.median(c), f"100 % {precision}",
                             None, None, spread, None])  # fmt: skip
    head = "model|batch|path|MP/s|GFLOP/s|of its ceiling|vs eager|vs ORT fp32|spread|target"
    out += harness.table(head.split("|"), rows)
    for reason, paths in skipped.items():
        out += f"\nNot run ({reason}): {', '.join(sorted(paths))}.\n"
    return out + (
        f"\nTile {cfg['tile']} px; median of {cfg['repeats']} interleaved rounds after one "
        f"warm-up, {cfg['pause']} s idle before each timed call (spinning thread pools); "
        "one figure per round of each ceiling (the best of 3 matrix products, torch, "
        f"n = {cfg['matmul_n']}: fp32, bf16, int8 with int32 accumulation); each path is shown "
        "against the ceiling of the precision it computes in. "
        f"torch threads {cfg['torch_threads']}, ONNX Runtime intra-op and OpenVINO inference "
        f"threads {cfg['ort_intra_op_threads']}. A multiply-add counts as 2 FLOPs, whatever the "
        "precision.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Progress on stderr, in ms since start; the exporter's own chatter stays quiet.
    logging.basicConfig(level=logging.WARNING, format="%(relativeCreated)7.0f ms  %(message)s")
    for name in (log.name, "cloudseg.export"):
        logging.getLogger(name).setLevel(logging.INFO)
    torch.set_num_threads(CORES)  # and ORT sessions get intra_op_num_threads = CORES
    gpu = torch.cuda.is_available()
    torch.backends.cudnn.benchmark = gpu  # one input shape: pick the fastest kernels once, as ORT
    config = {k: getattr(args, k) for k in (*FULL, "models", "quick")}
    config |= {
        "torch_threads": torch.get_num_threads(),
        "ort_intra_op_threads": CORES,
        "paths": [*CPU_PATHS, *GPU_PATHS],
    }
    results: dict[str, Any] = {"config": config, "models": {}}
    with tempfile.TemporaryDirectory(prefix="cloudseg-bench-") as tmp:
        for name in args.models:
            results["models"][name] = bench_model(name, args, Path(tmp), gpu)
    path = harness.write_results("backends", results, render, args.out)
    print((args.out / "backends.md").read_text())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
