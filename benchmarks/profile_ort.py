"""Where ONNX Runtime spends a UNet's time on the CPU: share of run time per operator type.

The backends benchmark says how far each path is from the machine's matrix-product ceiling; this
says why. ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) times every node of
a few runs; the node events are summed per operator type, and the convolutions' share is set
against everything else (memory-bound work: concatenation, pixel shuffle, normalisation,
element-wise activations), which no GEMM speed can shorten.

    .venv/bin/python benchmarks/profile_ort.py                       # fp32, batch 1 and 4
    .venv/bin/python benchmarks/profile_ort.py --variant int8       # results/profile_ort_int8.*
    .venv/bin/python benchmarks/profile_ort.py --quick          # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import harness  # benchmarks/ is sys.path[0] when this file is run as a script
import numpy as np
import onnxruntime as ort

CORES = os.cpu_count() or 1


def export_random(model: str, tile: int, out: Path, variant: str) -> Path:
    """A random-weights export of ``model`` (a UNet's cost does not depend on its weights), and
    for ``int8`` its quantised copy, calibrated on synthetic patches as export would."""
    from cloudseg.card import read
    from cloudseg.export.pipeline import ExportConfig, export
    from cloudseg.export.quantise import to_int8
    from cloudseg.export.samples import synthetic_patches

    export(ExportConfig(model, random_init=True, out=out, tile=tile))
    if variant == "fp32":
        return out
    int8 = out.with_name(f"{out.stem}-int8.onnx")
    to_int8(out, int8, read(out).transform.apply(synthetic_patches(8, tile, seed=0).raw))
    return int8


def profile(path: Path, batch: int, tile: int, runs: int) -> dict[str, Any]:
    """Per operator type: milliseconds per run, share, node count; from ORT's profiler."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = CORES, 1
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.gettempdir()) / "cloudseg-ort-profile")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 4, tile, tile), dtype=np.float32)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})  # warm-up, dropped below
    for _ in range(runs):
        sess.run(None, {name: x})
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    runs_us = [e["dur"] for e in events if e.get("name") == "model_run"][1:]
    per_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            per_op[op][0] += e["dur"]
            per_op[op][1] += 1
    warm_share = 1 / (runs + 1)  # the node events include the warm-up run: scale it out
    total = sum(us for us, _ in per_op.values()) * (1 - warm_share)
    ops = {
        op: {
            "ms_per_run": us * (1 - warm_share) / runs / 1e3,
            "share": us * (1 - warm_share) / total,
            "nodes": n // (runs + 1),
        }
        for op, (us, n) in sorted(per_op.items(), key=lambda kv: -kv[1][0])
    }
    return {"run_ms": harness.median(runs_us) / 1e3, "kernel_ms": total / runs / 1e3, "ops": ops}


def render(doc: dict[str, Any]) -> str:
    """The tables of a result, from its JSON document alone."""
    config = doc["config"]
    out = ""
    for key, prof in doc["models"].items():
        model, batch = key.split(" batch ")
        conv = sum(v["share"] for op, v in prof["ops"].items() if "Conv" in op)
        rows = [[op, v["ms_per_run"], f"{100 * v['share']:.1f} %", v["nodes"]]
                for op, v in prof["ops"].items() if v["share"] >= 0.005]  # fmt: skip
        out += (
            f"**{model} {config['variant']}**, batch {batch}, tile {config['tile']}: "
            f"{prof['run_ms']:.0f} ms a run (median of {config['runs']}, "
            f"{prof['run_ms'] / int(batch):.0f} ms a tile); convolutions "
            f"{100 * conv:.0f} % of kernel time\n\n"
            + harness.table(["operator", "ms per run", "share", "nodes"], rows)
            + "\n"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["r18", "r34"], choices=["r18", "r34"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--variant", choices=["fp32", "int8"], default="fp32")
    p.add_argument("--tile", type=int, default=384)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR)
    p.add_argument("--quick", action="store_true", help="tile 64, batch 1, 1 run")
    args = p.parse_args(argv)
    if args.quick:
        args.tile, args.batches, args.runs = 64, [1], 1
    results: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}, "models": {}}
    with tempfile.TemporaryDirectory(prefix="cloudseg-profile-") as tmp:
        for model in args.models:
            path = export_random(model, args.tile, Path(tmp) / f"{model}.onnx", args.variant)
            for batch in args.batches:
                prof = profile(path, batch, args.tile, args.runs)
                results["models"][f"{model} batch {batch}"] = prof
    name = "profile_ort" if args.variant == "fp32" else f"profile_ort_{args.variant}"
    path = harness.write_results(name, results, render, args.out)
    print((args.out / f"{name}.md").read_text())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
