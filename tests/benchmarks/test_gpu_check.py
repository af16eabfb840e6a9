"""``make gpu-check`` (benchmarks/gpu_check.sh and gpu_check.py).

On this machine there is no GPU: the wrapper and the script must each say so in one line and
exit 0, writing nothing. ``--cpu-smoke`` runs the script's sections on the CPU at tiny sizes,
torch and ONNX Runtime's CPU provider standing in for the GPU paths: that is the part of the
check that can be proven here (the CUDA-only calls are the GPU machine's to prove).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


def no_gpu_here() -> bool:
    return (
        shutil.which("nvidia-smi") is None
        or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0
    )


pytestmark = pytest.mark.skipif(not no_gpu_here(), reason="a GPU answers here")


def test_wrapper_without_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin"}  # no nvidia-smi on this PATH
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "gpu-check: no NVIDIA GPU here (nvidia-smi lists none); nothing measured"
    ]


def test_script_without_cuda_says_so_and_writes_nothing(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = proc.stdout.splitlines()
    assert line.startswith("gpu-check: no CUDA device here") and "nothing measured" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cpu_smoke_runs_every_section_but_compile(tmp_path: Path) -> None:
    sections = ["train", "end_to_end", "torch_model", "agreement", "ort_model"]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke", "--out", str(out), "--sections", *sections],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu.json").read_text())
    s = doc["sections"]
    assert set(s) == set(sections) and not any("failed" in v for v in s.values()), s
    assert doc["facts"]["providers"]["cpu"] == "loads"
    tensorrt = doc["facts"]["providers"]["tensorrt"]
    assert "libnvinfer" in tensorrt or "no NVIDIA driver" in tensorrt
    assert s["train"]["seconds"] > 0 and s["train"]["precision"]
    for label, case in s["end_to_end"]["cases"].items():
        assert [r["run"] for r in case["runs"]] == ["cold", "warm"], label
        assert all(r["scene_mp_per_s"] > 0 and r["tiles_run"] > 0 for r in case["runs"])
    grid = {(r["model"], r["precision"], r["batch"]) for r in s["torch_model"]["rows"]}
    assert len(grid) == 2 * 2 * 2  # r18, r34 x f32, bf16 x batch 1, 2
    assert all(r["median_s"] > 0 and r["tflop_per_s"] > 0 for r in s["torch_model"]["rows"])
    # fp32 on the same CPU through another runtime: the same masks
    agree = s["agreement"]["cases"]
    assert agree["torch f32"]["agreement"] == 1.0 and agree["ort cpu fp32"]["agreement"] > 0.999
    assert {r["model"] for r in s["ort_model"]["rows"]} == {"r18", "r34"}
    assert (out / "gpu.md").read_text().count("|") > 50
