"""What every benchmark shares: interleaved repeats, medians, machine facts, peak RSS, results.

This machine is shared and noisy, so no figure stands alone: every claim is a ratio of things
measured in the same run, interleaved (A B A B ...) so that a burst of load from another job hits
every case alike, and reported as the median of the repeats after warm-up.

Results go to ``benchmarks/results/<name>.json`` (every repeat, the machine, the command line)
and ``<name>.md`` (the tables); ``benchmarks/readme.py`` pastes the tables into the README.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO = BENCH_DIR.parent


def interleaved(
    cases: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1, pause: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each case, run round-robin: ``warmup`` untimed rounds, then
    ``repeats`` timed ones, each round calling every case once in order.

    ``pause``: seconds to sleep (untimed) before each timed call. In-process cases need it: a
    thread pool keeps spinning for a while after its work is done (ONNX Runtime's intra-op
    pool, OpenMP's), taking cores from whichever case runs next. Measured here: int8 r34 at
    batch 1 took 51 ms a call alone, 96 ms right after an fp32 session's call, 61 ms after a
    0.5 s pause.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> float:
    """Relative spread of the repeats: (max - min) / median; shown so noise is visible."""
    m = median(values)
    return float((max(values) - min(values)) / m) if m else 0.0


def matmul_gflops(repeats: int, n: int = 2048, precision: str = "fp32") -> list[float]:
    """A ceiling of this machine: GFLOP/s (GOP/s for int8) of an ``n x n`` matrix product in
    torch on all cores, one figure per repeat: ``fp32`` (MKL / oneDNN), ``bf16`` (oneDNN on the
    AMX / AVX512-BF16 units where the CPU has them) or ``int8`` (``torch._int_mm``, int32
    accumulation; VNNI / AMX-INT8). Called between the cases it bounds."""
    import torch

    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
        product = torch._int_mm
    else:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        product = torch.mm
    product(a, b)  # warm-up: thread pool, first-touch pages, kernels picked
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(a, b)
        out.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")
                return [f for f in wanted if f in flags]
    except OSError:
        pass
    return []


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # not installed: reported as absent
        return None


#: What a result depends on: a run with uncommitted edits here is not a record of the code (the
#: results and READMEs beside the scripts are not code).
CODE_PATHS = ("benchmarks/*.py", "benchmarks/*.sh", "cloudseg")


def _git_commit() -> str | None:
    """The commit the scripts ran at, ``+dirty`` if code (not docs) had uncommitted edits."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "--",
             *CODE_PATHS],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        # A copy of the tree without .git (the GPU machine's): the commit it was copied from,
        # when whoever started the run says so.
        return os.environ.get("CLOUDSEG_COMMIT")


def machine() -> dict[str, Any]:
    """Facts that decide the figures: CPU, cores, memory, load, library versions, commit."""
    mem_kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": {
            m: _version(m)
            for m in (
                "torch",
                "onnxruntime-gpu",
                "onnxruntime",
                "openvino",
                "numpy",
                "rasterio",
                "fastai",
                "ray",
            )
            if _version(m)
        },
        "gpu": _gpu(),
        "commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _gpu() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # torch absent or CUDA unusable: no GPU to report
        return None


def command_line() -> str:
    """How this run was started, as a command a reader can paste (from the repository root)."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *sys.argv[1:]])


def markdown(doc: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> str:
    """``<name>.md`` of a result: a line naming the command, time, commit and machine, then the
    tables ``render`` draws from the JSON document alone (so the two cannot disagree)."""
    facts = doc["machine"]
    head = (
        f"`{doc['command']}` — {facts['date']}, commit {facts['commit']}, "
        f"{facts['cpu']} ({facts['cores']} cores, {', '.join(facts['cpu_flags'])}), "
        f"GPU: {facts['gpu'] or 'none'}, load average {facts['load_average'][0]}\n\n"
    )
    return head + render(doc).rstrip() + "\n"


def write_results(
    name: str,
    results: dict[str, Any],
    render: Callable[[dict[str, Any]], str],
    out_dir: Path,
) -> Path:
    """Write ``<name>.json`` (results + machine + command + script) and ``<name>.md``
    (:func:`markdown`); returns the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "script": Path(sys.argv[0]).stem,
        "command": command_line(),
        "machine": machine(),
        **results,
    }
    doc = json.loads(json.dumps(doc, default=str))  # what the file holds, for render
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(markdown(doc, render))
    return json_path


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; floats shown to 3 significant figures."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def raise_if_failed(code: int, cmd: Sequence[str], err: str) -> None:
    if code != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise RuntimeError(f"{shlex.join(map(str, cmd))} exited {code}:\n{tail}")


# Runs argv[1:] as its own child and prints that child's exit status and peak RSS. Why a
# launcher: Linux keeps ru_maxrss across fork and exec, so a command spawned straight from this
# process starts with this process's high-water mark (a benchmark that has imported torch would
# inflate every figure). The launcher is a fresh, small interpreter; its child's peak is the
# command's own (floored at the launcher's ~10 MiB, far below anything measured).
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    except OSError as exc:
        print(exc, file=sys.stderr)
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)
"""


def run_with_peak_rss(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` in a child; wall seconds, its own peak RSS in MiB, stdout and stderr
    (spooled to files so a chatty child cannot block on a pipe).

    Raises:
        RuntimeError: the command failed (its stderr tail in the message).
    """
    import tempfile

    argv = [sys.executable, "-S", "-c", _LAUNCHER, *map(str, cmd)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=out, stderr=err, env=env, text=True, check=False)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    *lines, last = stderr.rstrip("\n").split("\n") or [""]
    code, maxrss_kib = (int(v) for v in last.split())
    stderr = "\n".join(lines) + ("\n" if lines else "")
    raise_if_failed(code, cmd, stderr)
    return {"seconds": wall, "peak_rss_mib": maxrss_kib / 1024, "stdout": stdout, "stderr": stderr}


def python_cmd(*args: str) -> list[str]:
    """``[python, *args]`` with this interpreter (the venv's), for child processes."""
    return [sys.executable, *args]


#: The venv's bin folder: cloudseg's console scripts sit beside its python.
BIN = Path(sys.executable).parent
#: Default cache of synthetic scenes and random models, reused across runs.
SCENE_CACHE = Path(tempfile.gettempdir()) / "cloudseg-bench"


def cached(target: Path, make: Callable[[Path], Path]) -> Path:
    """``target``, made by ``make(tmp)`` into a sibling temporary path and renamed when
    complete if it does not exist yet: an interrupted build never looks like a cached one."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        os.replace(make(tmp / target.name), target)
    except OSError:
        if not target.exists():  # not a concurrent run that got there first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


#: cloudseg's console scripts by name, for where cloudseg runs from a checkout on PYTHONPATH
#: without being pip-installed (the locked-down GPU machine of gpu_check.sh).
ENTRY_POINTS = {
    "synth": "cloudseg.data.synthetic_cli",
    "train": "cloudseg.train.cli",
    "export": "cloudseg.export.cli",
    "run": "cloudseg.engine.cli",
}


def cloudseg(name: str) -> list[Any]:
    """argv of ``cloudseg-<name>``: the venv's console script, else the same ``main`` through
    ``python -c``."""
    exe = BIN / f"cloudseg-{name}"
    if exe.exists():
        return [exe]
    main = f"import sys; sys.argv[0] = 'cloudseg-{name}'; from {ENTRY_POINTS[name]} import main"
    return [sys.executable, "-c", main + "; main()"]


def synthetic_scene(cache: Path, size: int, seed: int, cloud_fraction: float | None = None) -> Path:
    """A cached synthetic Level-1 scene folder from ``cloudseg-synth scene`` (its cloud fraction
    drawn from the seed unless given)."""
    cmd = [*cloudseg("synth"), "scene", None, "--size", size, "--seed", seed, "-q"]
    name = f"scene-{size}-seed{seed}"
    if cloud_fraction is not None:
        cmd += ["--cloud-fraction", cloud_fraction]
        name += f"-cloud{cloud_fraction}"

    def make(tmp: Path) -> Path:
        run_with_peak_rss([tmp if arg is None else arg for arg in cmd])
        return tmp

    return cached(cache / name, make)


def random_model(cache: Path, kind: str, tile: int) -> Path:
    """A cached random-weights ONNX export of ``kind`` at a fixed ``tile``: random weights cost
    what trained ones do, and the export (torch import, parity check) takes 20-60 s."""

    def make(tmp: Path) -> Path:
        cmd = [*cloudseg("export"), "--model", kind, "--random-init", "--tile", tile]
        run_with_peak_rss([*cmd, "--out", tmp])
        return tmp

    return cached(cache / f"{kind}-random-t{tile}.onnx", make)
