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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h  # benchmarks/ is sys.path[0] when this file is run as a script
from gpu_common import (
    BUDGET_S,
    FULL,
    SECTION_NAMES,
    SMOKE,
    Context,
    OutOfTime,
    facts,
    one_line,
    workdir,
)
from gpu_models import agreement, compiled, ort_model, torch_model
from gpu_pipeline import end_to_end, gpu_tests, random_run, train
from gpu_report import render

__all__ = ["main", "render"]  # render: what readme.py and the tests draw gpu.md with


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
assert tuple(n for n, _, _ in SECTIONS) == SECTION_NAMES


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
