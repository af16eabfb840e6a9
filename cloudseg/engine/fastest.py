"""``--precision auto`` on the CPU: the fastest path whose masks are proven, measured here.

A path is a model file, a CPU provider and a precision:

* the model in f32 on each CPU provider that loads (ONNX Runtime's ``cpu``, ``openvino``): the
  reference arithmetic, needing no proof;
* the model in bf16 on OpenVINO, where the CPU runs bf16 natively (AVX512-BF16 or AMX);
* the model's ``-int8`` file (``cloudseg-export --int8``) on ``cpu`` and on ``openvino``
  (OpenVINO runs the QDQ file's convolutions in int8).

A reduced path is a candidate only with a passing proof (:mod:`cloudseg.engine.proof`) for
exactly that file, runtime, precision and CPU. Each candidate's speed (megapixels a second at
the run's tile, batch and threads, on one fixed random batch) is measured once, by the first run
that needs it, and kept beside the proofs under the same key plus those settings
(``$CLOUDSEG_HOME/proofs/<sha256>.speed.json``); auto runs the fastest and says in one line
which, how fast, and what else was there.

GPUs are outside this choice: when CUDA or TensorRT loads, the GPU provider runs (as
:data:`cloudseg.engine.registry.AUTO_ORDER` says), since no CPU path comes near it and timing a
TensorRT build at start-up would cost minutes. A torch run folder keeps its own backend's rule.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.card import read
from cloudseg.engine import proof
from cloudseg.engine.backend import N_BANDS, Backend, BackendOptions
from cloudseg.errors import CloudsegError, ProviderError
from cloudseg.home import variant_path

log = logging.getLogger("cloudseg.run")

#: The kind of record speeds are kept as, beside the proofs (``<sha256>.speed.json``).
SPEED = "speed"
#: The CPU providers auto measures against each other.
CPU_PROVIDERS = ("openvino", "cpu")
#: A speed measurement runs at least this long and this many batches (after one warm-up).
MEASURE_SECONDS, MEASURE_CALLS = 1.0, 3


@dataclass(frozen=True)
class RunPath:
    """One way to run a model here: which file, on which provider, in which precision."""

    file: Path
    provider: str
    precision: str  # f32, bf16, int8

    @property
    def label(self) -> str:
        return f"{self.provider} {self.precision}"

    def options(self, base: BackendOptions) -> BackendOptions:
        """The backend options for this path (an int8 file runs with its float parts f32)."""
        return replace(base, precision="f32" if self.precision == "int8" else self.precision)

    def key(self) -> proof.ProofKey:
        """The proof key of this path (hashes the file)."""
        return proof.ProofKey(proof.sha256(self.file), self.provider,
                              proof.runtime_of(self.provider), self.precision,
                              proof.cpu_hardware())  # fmt: skip


def own_precision(model: Path) -> str:
    """``int8`` for an ``-int8`` file given as the model itself (its card says so), else
    ``f32``: what a path on the file itself is called in the line auto writes."""
    try:
        variant = read(model).extra.get("export", {}).get("variant")
    except (CloudsegError, OSError, ValueError):
        return "f32"
    return "int8" if variant == "int8" else "f32"


def candidates(model: Path, providers: list[str]) -> tuple[list[RunPath], dict[str, str]]:
    """The paths auto may run ``model`` on among ``providers``, and why others may not.

    Returns:
        The candidates (f32 first, then proven reduced paths), and a reason per path left out.
    """
    paths, left_out = [], {}
    own = own_precision(Path(model))
    int8 = variant_path(Path(model), "int8")
    for provider in (p for p in providers if p in CPU_PROVIDERS):
        paths.append(RunPath(Path(model), provider, own))
        if own != "f32":  # an -int8 file named as the model: it is what the user asked for
            continue
        reduced = []
        if provider == "openvino" and proof.native_precision() == "bf16":
            reduced.append(RunPath(Path(model), provider, "bf16"))
        if int8.is_file():
            reduced.append(RunPath(int8, provider, "int8"))
        for path in reduced:
            record = proof.find(path.key())
            if record is not None and record.get("passed"):
                paths.append(path)
            else:
                left_out[path.label] = (
                    "no proof here" if record is None else
                    f"failed its proof, {record['worst_scene']} "
                    f"{100 * record['worst_agreement']:.2f} % equal to f32"
                )  # fmt: skip
    return paths, left_out


def _speed_key(path: RunPath, options: BackendOptions) -> dict[str, Any]:
    return asdict(path.key()) | {"tile": options.tile, "batch": options.batch,
                                 "threads": options.threads}  # fmt: skip


def kept_speed(key: dict[str, Any]) -> float | None:
    """The MP/s kept for ``key`` (:func:`_speed_key`), or None."""
    for record in proof.load_records(key["sha256"], SPEED):
        if all(record.get(k) == v for k, v in key.items()):
            return float(record["megapixels_per_second"])
    return None


def keep_speed(key: dict[str, Any], rate: float) -> None:
    """Keep ``rate`` for ``key``, replacing an older one, written atomically."""
    records = [r for r in proof.load_records(key["sha256"], SPEED)
               if not all(r.get(k) == v for k, v in key.items())]  # fmt: skip
    measured = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    records.append(key | {"megapixels_per_second": round(rate, 4), "measured": measured})
    proof.write_records(key["sha256"], records, SPEED)


def measure_speed(backend: Backend) -> float:
    """Megapixels a second ``backend`` runs one fixed random batch at (after a warm-up)."""
    opts = backend.options
    batch = np.random.default_rng(0).normal(
        size=(opts.batch, N_BANDS, opts.tile, opts.tile)).astype(np.float32)  # fmt: skip
    backend.run(batch)
    calls, start = 0, time.perf_counter()
    while calls < MEASURE_CALLS or time.perf_counter() - start < MEASURE_SECONDS:
        backend.run(batch)
        calls += 1
    return calls * batch[:, 0].size / 1e6 / (time.perf_counter() - start)


def open_fastest(
    model: Path,
    providers: list[str],
    options: BackendOptions,
    make: Callable[[Path, str, BackendOptions], Backend],
    tolerate: bool = False,
) -> tuple[Backend, dict[str, Any]]:
    """Build the backend of the fastest candidate path; what was chosen, for the summary.

    Speeds not kept yet are measured now, each on a backend that is closed unless it is the
    fastest so far (so at most two are open at once). One candidate only: nothing is measured.

    Args:
        tolerate: a path whose backend fails to start is left out (``--provider auto``)
            instead of failing the run.

    Raises:
        ProviderError: a path failed to start (not ``tolerate``), or every one did.
    """
    paths, left_out = candidates(model, providers)
    rates: dict[RunPath, float] = {}
    best: tuple[RunPath, Backend] | None = None
    for path in paths:
        key = _speed_key(path, options)
        rate = kept_speed(key) if len(paths) > 1 else None
        if rate is None:
            try:
                backend = make(path.file, path.provider, path.options(options))
            except ProviderError as exc:
                if not tolerate:
                    raise
                left_out[path.label] = f"does not start: {exc}"
                continue
            if len(paths) == 1:
                return backend, _chosen(path, None, {}, left_out)
            rate = measure_speed(backend)
            keep_speed(key, rate)
            if best is None or rate > rates[best[0]]:
                if best is not None:
                    best[1].close()
                best = (path, backend)
            else:
                backend.close()
        rates[path] = rate
    if not rates:
        raise ProviderError("no provider loads here: " + "; ".join(
            f"{k}: {v}" for k, v in left_out.items()))  # fmt: skip
    fastest = max(rates, key=rates.__getitem__)
    if best is not None and best[0] != fastest:
        best[1].close()
        best = None
    backend = best[1] if best is not None else make(
        fastest.file, fastest.provider, fastest.options(options))  # fmt: skip
    return backend, _chosen(fastest, rates[fastest], rates, left_out)


def _chosen(
    path: RunPath, rate: float | None, rates: dict[RunPath, float], left_out: dict[str, str]
) -> dict[str, Any]:
    others = ", ".join(f"{p.label} {r:.2f}" for p, r in sorted(
        rates.items(), key=lambda kv: -kv[1]) if p != path)  # fmt: skip
    not_run = "; ".join(f"{label}: {why}" for label, why in left_out.items())
    speed = f", {rate:.2f} MP/s here" if rate is not None else ""
    log.info("auto: %s (%s)%s, the fastest proven path%s%s", path.label, path.file.name, speed,
             f" (others, MP/s: {others})" if others else "",
             f"; not candidates: {not_run}" if not_run else "")  # fmt: skip
    return {
        "path": {"provider": path.provider, "precision": path.precision, "file": str(path.file)},
        "megapixels_per_second": rate,
        "measured": {p.label: round(r, 4) for p, r in rates.items()},
        "not_candidates": left_out,
    }
