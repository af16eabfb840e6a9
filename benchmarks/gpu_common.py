"""What every ``make gpu-check`` section shares: sizes, the budget's clock, the machine's facts,
and GPU utilisation sampled while a command runs."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness as h

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
#: The sections in the order they run (gpu_check.SECTIONS maps them to functions).
SECTION_NAMES = ("tests", "train", "end_to_end", "torch_model", "agreement", "ort_model", "compile")


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


@contextlib.contextmanager
def workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="cloudseg-gpu-check-") as tmp:
        yield Path(tmp)
