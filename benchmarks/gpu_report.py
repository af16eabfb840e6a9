"""The ``make gpu-check`` tables, drawn from its results document alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import harness as h
from gpu_common import MIN_AGREEMENT, SECTION_NAMES


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
    for name in SECTION_NAMES:
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
