"""Training step time in fp32 against bf16 autocast, both channels-last, on this machine's CPU.

``cloudseg-train --precision auto`` picks bf16 where the CPU has AMX or AVX512-BF16; this
measures what that choice buys: one optimiser step (forward, loss, backward, Adam) of each
model, the two precisions interleaved step by step in the same run, each from the same random
weights. The weights stay fp32 (autocast runs convolutions and matrix products in bf16, keeps
BatchNorm, the loss and the optimiser in fp32), as ``cloudseg.train.precision`` does. Then
the training of ``make demo`` (the same ``cloudseg-train`` command on the same synthetic
dataset) timed end to end in each precision, which is what a user waits for.

    .venv/bin/python benchmarks/train_step.py             # r18 and r34, batch 8, 128 px
    .venv/bin/python benchmarks/train_step.py --no-demo   # the steps only
    .venv/bin/python benchmarks/train_step.py --quick     # tiny, for the test suite
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness  # benchmarks/ is sys.path[0] when this file is run as a script


def step_fn(
    name: str, precision: str, model: Any, batch: int, size: int, seen: dict[str, str]
) -> Callable[[], None]:
    """One training step of ``model`` on a fixed random batch, under ``precision``; the dtype
    its logits came out in goes to ``seen[precision]`` (proof autocast did run)."""
    import torch
    from torch import nn

    from cloudseg.train.models import model_spec
    from cloudseg.train.precision import Precision

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 4, size, size, generator=gen).contiguous(
        memory_format=torch.channels_last
    )
    if model_spec(name).n_out == 1:  # fastai's r18: one logit, binary cross-entropy
        y: torch.Tensor = (torch.rand(batch, 1, size, size, generator=gen) > 0.5).float()
        loss_fn: nn.Module = nn.BCEWithLogitsLoss()
    else:  # r34: two logits, cross-entropy
        y = (torch.rand(batch, size, size, generator=gen) > 0.5).long()
        loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    where = Precision(precision, "cpu")

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with where.autocast():
            logits = model(x)
            loss = loss_fn(logits, y)
        seen[precision] = str(logits.dtype).removeprefix("torch.")
        loss.backward()
        opt.step()

    return step


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from cloudseg.train.models import build_model

    torch.manual_seed(0)
    base = build_model(name, img_size=args.size).to(memory_format=torch.channels_last)
    seen: dict[str, str] = {}
    cases = {
        p: step_fn(name, p, copy.deepcopy(base), args.batch, args.size, seen)
        for p in ("f32", "bf16")
    }
    times = harness.interleaved(cases, args.repeats, warmup=2, pause=args.pause)
    med = {p: harness.median(t) for p, t in times.items()}
    pixels = args.batch * args.size**2
    return {
        "model": name,
        "seconds": times,
        "median_s": med,
        "spread": {p: harness.spread(t) for p, t in times.items()},
        "mp_per_s": {p: pixels / s / 1e6 for p, s in med.items()},
        "bf16_speedup": med["f32"] / med["bf16"],
        "logits_dtype": seen,
    }


#: ``make demo``'s training set and training command (the Makefile's, less --stats and -q).
DEMO_DATA = ["--train-scenes", 6, "--test-scenes", 1, "--size", 1152, "--seed", 11]
DEMO_TRAIN = ["--model", "r18", "--no-pretrained", "--size", 128, "--epochs", 6,
              "--fine-tune-size", 256, "--fine-tune-epochs", 1, "--bs", 8, "--lr", 1e-3,
              "--cache", "--overwrite", "-q"]  # fmt: skip
QUICK_DEMO_DATA = ["--train-scenes", 2, "--test-scenes", 1, "--size", 256, "--patch-size", 128,
                   "--seed", 11]  # fmt: skip
QUICK_DEMO_TRAIN = ["--model", "r34", "--no-pretrained", "--size", 64, "--epochs", 1,
                    "--fine-tune-size", 0, "--bs", 4, "--lr", 1e-3, "--overwrite",
                    "-q"]  # fmt: skip


def demo_training(args: argparse.Namespace) -> dict[str, Any]:
    """``make demo``'s cloudseg-train in fp32 and in auto, on its dataset, alternately."""
    import json
    import tempfile

    data_args, train_args = (QUICK_DEMO_DATA, QUICK_DEMO_TRAIN) if args.quick else (
        DEMO_DATA, DEMO_TRAIN)  # fmt: skip
    runs: dict[str, list[float]] = {"fp32": [], "auto": []}
    precision: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="cloudseg-train-step-") as tmp:
        data = Path(tmp) / "38cloud"
        harness.run_with_peak_rss([*harness.cloudseg("synth"), "dataset", data, *data_args,
                                   "-q"])  # fmt: skip
        for _ in range(args.demo_repeats):
            for name in runs:
                run_dir = Path(tmp) / f"run-{name}"
                cmd = [*harness.cloudseg("train"), data, *train_args, "--precision", name,
                       "--out", run_dir]  # fmt: skip
                runs[name].append(harness.run_with_peak_rss(cmd)["seconds"])
                card = json.loads((run_dir / "card.json").read_text())
                precision[name] = card["training"]["history"]["precision"]
    med = {name: harness.median(t) for name, t in runs.items()}
    return {"command": ["cloudseg-train", "DATA", *map(str, train_args)], "seconds": runs,
            "median_s": med, "precision": precision,
            "auto_speedup": med["fp32"] / med["auto"]}  # fmt: skip


def render(doc: dict[str, Any]) -> str:
    cfg = doc["config"]
    rows = [
        [r["model"], r["median_s"]["f32"] * 1e3, f"{100 * r['spread']['f32']:.0f} %",
         r["median_s"]["bf16"] * 1e3, f"{100 * r['spread']['bf16']:.0f} %",
         r["bf16_speedup"]]
        for r in doc["rows"]
    ]  # fmt: skip
    head = ["model", "fp32 ms a step", "spread", "bf16 ms a step", "spread", "bf16 speed-up"]
    return (
        f"**One training step** (forward, loss, backward, Adam) at batch {cfg['batch']}, "
        f"{cfg['size']} px, channels-last, random weights; fp32 and bf16 autocast interleaved, "
        f"median of {cfg['repeats']} steps each. `--precision auto` picks "
        f"**{doc['auto_precision']}** on this machine.\n\n" + harness.table(head, rows)
    ) + render_demo(doc.get("demo"))


def render_demo(demo: dict[str, Any] | None) -> str:
    if demo is None:
        return ""
    n = len(demo["seconds"]["fp32"])
    return (
        f"\n**make demo's training** (`{' '.join(demo['command'])}`), end to end, fp32 and "
        f"auto alternately, median of {n}: fp32 {demo['median_s']['fp32']:.0f} s, auto "
        f"({demo['precision']['auto']}) {demo['median_s']['auto']:.0f} s: "
        f"{demo['auto_speedup']:.2f}x.\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["r18", "r34"], choices=["r18", "r34"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="patch side, a multiple of 32")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--pause", type=float, default=0.2, help="untimed sleep before each step")
    p.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time make demo's training in fp32 and auto",
    )
    p.add_argument("--demo-repeats", type=int, default=1)
    p.add_argument("--out", type=Path, default=harness.RESULTS_DIR)
    p.add_argument(
        "--quick",
        action="store_true",
        help="r34 only, batch 2, 64 px, 2 steps; a one-epoch r34 run for the demo",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batch, args.size, args.repeats, args.pause = ["r34"], 2, 64, 2, 0.0
    import torch

    from cloudseg.train.precision import resolve

    results = {
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "auto_precision": resolve("auto", torch.device("cpu")).label,
        "rows": [measure(name, args) for name in args.models],
    }
    if args.demo:
        results["demo"] = demo_training(args)
    harness.write_results("train_step", results, render, args.out)
    print((args.out / "train_step.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
