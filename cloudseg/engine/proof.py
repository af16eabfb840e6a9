"""Proofs that a reduced precision gives the masks fp32 gives, on every real reference scene.

A fast path earns its place by proof (DESIGN.md, principle 2). ``--precision auto`` runs a model
in bf16 (or fp16) only when a proof for exactly that model file, runtime and version, precision
and hardware says it agreed with the same runtime in fp32 on at least :data:`MIN_AGREEMENT` of
the valid pixels of **every** real reference scene (the worst scene decides, not the mean).
Unproven means fp32, said in one line. Why it matters: ukis-l1c in OpenVINO bf16 turns a real
snow tile with 4.8 % cloud into 99.6 % cloud, while the other 14 Biome tiles agree to 99.7 %.

Proofs are measured once (:func:`measure`, ``cloudseg-eval prove``) and kept in
``$CLOUDSEG_HOME/proofs/<sha256 of the model>.json``, one record per key; ``cloudseg-info
--models`` shows them and every run summary records the one it used.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudseg.atomic import atomic_path
from cloudseg.card import ModelCard
from cloudseg.data.reference import ReferenceItem, reference_items
from cloudseg.data.sources import open_any
from cloudseg.engine.backend import Backend, BackendOptions
from cloudseg.engine.in_memory import Prediction, predict_scene
from cloudseg.engine.tiling import TileSpec
from cloudseg.errors import CloudsegError, MissingFileError
from cloudseg.home import proofs_dir

log = logging.getLogger("cloudseg.run")

#: The bar: agreement with fp32 on the valid pixels of the worst reference scene.
MIN_AGREEMENT = 0.995
#: CPU flags that decide how reduced precisions run (native bf16, int8 dot products).
PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni", "avx_vnni", "avx512_fp16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``); empty where that file is absent."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: CPU flags that make bf16 native rather than emulated (OpenVINO lists BF16 on any AVX-512 CPU).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_precision() -> str:
    """bf16 on CPUs with native bf16 (AVX512-BF16 or AMX), else f32: the fastest precision
    this CPU runs, before any proof that it gives the same masks."""
    return "bf16" if cpu_flags() & set(BF16_FLAGS) else "f32"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_hardware() -> str:
    """The CPU as a proof key: its name and the flags that change reduced-precision kernels."""
    flags = sorted(cpu_flags() & set(PRECISION_FLAGS))
    return f"cpu: {cpu_name()} [{' '.join(flags) or 'no bf16/vnni'}]"


def sha256(path: Path) -> str:
    """SHA-256 of a model file, or of a run folder's ``best.pth``.

    Hashed once per file version in a process (keyed by its resolved path, size and mtime):
    ``--precision auto`` asks for the same files' keys several times at start-up (each proof
    and each speed looked up), and a model is up to 100 MB.
    """
    path = Path(path)
    file = (path / "best.pth" if path.is_dir() else path).resolve()
    stat = file.stat()
    return _file_sha256(file, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(file: Path, size: int, mtime_ns: int) -> str:
    from cloudseg.engine.foreign.ukis_csmask import sha256 as file_sha256

    return file_sha256(file)


def runtime_of(provider: str) -> str:
    """The runtime and version that proofs and summaries name for ``provider``, read without
    importing it (OpenVINO must not be imported just to be asked): ``openvino 2026.4.1``,
    ``onnxruntime 1.31.1``."""
    if provider == "openvino":
        try:
            return f"openvino {importlib.metadata.version('openvino')}"
        except importlib.metadata.PackageNotFoundError:
            return "openvino (not installed)"
    import onnxruntime as ort

    return f"onnxruntime {ort.__version__}"


@dataclass(frozen=True)
class ProofKey:
    """What a proof is about: exactly this file, on this runtime, in this precision, here."""

    sha256: str
    provider: str  # cpu, openvino, torch, cuda, tensorrt
    runtime: str  # e.g. "openvino 2026.4.1"
    precision: str  # bf16, f16, int8 (what is proven against f32)
    hardware: str  # cpu_hardware(), or the GPU's name

    def matches(self, record: dict[str, Any]) -> bool:
        return all(record.get(k) == v for k, v in asdict(self).items())


@dataclass
class Proof:
    """One measured proof: the agreement of every reference scene, and the verdict."""

    key: ProofKey
    agreement: dict[str, float]  # scene name -> fraction of valid pixels equal to fp32
    measured: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat(
        timespec="seconds"))  # fmt: skip
    reference: str = ""

    @property
    def worst(self) -> tuple[str, float]:
        name = min(self.agreement, key=self.agreement.__getitem__)
        return name, self.agreement[name]

    @property
    def passed(self) -> bool:
        return bool(self.agreement) and self.worst[1] >= MIN_AGREEMENT

    def as_dict(self) -> dict[str, Any]:
        name, value = self.worst
        return asdict(self.key) | {
            "passed": self.passed, "min_agreement": MIN_AGREEMENT, "worst_scene": name,
            "worst_agreement": value, "agreement": self.agreement, "measured": self.measured,
            "reference": self.reference,
        }  # fmt: skip

    def line(self) -> str:
        """One line for ``cloudseg-info`` and logs."""
        name, value = self.worst
        verdict = "proven" if self.passed else "NOT proven"
        return (f"{self.key.provider} {self.key.precision}: {verdict} (worst of "
                f"{len(self.agreement)} real scenes {name} {100 * value:.2f} % equal to f32, "
                f"bar {100 * MIN_AGREEMENT:.1f} %)")  # fmt: skip


def candidate_file(model: Path, precision: str) -> Path:
    """The file a precision is proven (and run) with: ``model`` itself, or for ``int8`` its
    ``-int8`` variant beside it.

    Raises:
        MissingFileError: the int8 variant is not there (the message says how to make it).
    """
    from cloudseg.home import variant_path

    if precision != "int8":
        return Path(model)
    if Path(model).is_dir():
        raise MissingFileError(f"{model}: int8 runs an ONNX file; export the run first "
                               "(cloudseg-export --int8)")  # fmt: skip
    file = variant_path(Path(model), "int8")
    if not file.is_file():
        raise MissingFileError(f"{file}: no int8 variant of {Path(model).name}; make it with "
                               f"cloudseg-export --model MODEL --int8")  # fmt: skip
    return file


def key_for(backend: Backend, model: Path, precision: str) -> ProofKey:
    """The key a proof of ``backend`` (built in ``precision``) is kept under: the same one its
    ``--precision auto`` looks up."""
    info = backend.describe()
    hardware = f"gpu: {info['gpu']}" if info.get("gpu") else cpu_hardware()
    return ProofKey(sha256(model), backend.name, info["runtime"], precision, hardware)


def _store(digest: str, kind: str = "") -> Path:
    """``proofs/<sha256>.json`` (proofs), or ``proofs/<sha256>.<kind>.json`` (e.g. speeds)."""
    return proofs_dir() / f"{digest}{'.' + kind if kind else ''}.json"


def load_records(digest: str, kind: str = "") -> list[dict[str, Any]]:
    """Every proof (or ``kind`` record) kept for the model with SHA-256 ``digest`` (none: an
    empty list)."""
    try:
        records = json.loads(_store(digest, kind).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return records if isinstance(records, list) else []


def write_records(digest: str, records: list[dict[str, Any]], kind: str = "") -> Path:
    """Replace the records kept for ``digest`` (of ``kind``), written atomically."""
    path = _store(digest, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(records, indent=2) + "\n")
    return path


def find(key: ProofKey) -> dict[str, Any] | None:
    """The kept proof for ``key``, or None."""
    return next((r for r in load_records(key.sha256) if key.matches(r)), None)


def save(proof: Proof) -> Path:
    """Keep ``proof`` (replacing one with the same key), written atomically."""
    records = [r for r in load_records(proof.key.sha256) if not proof.key.matches(r)]
    return write_records(proof.key.sha256, [*records, proof.as_dict()])


def agreement(a: Prediction, b: Prediction) -> float:
    """Fraction of ``a``'s valid pixels whose mask code ``b`` gives too (1.0 with none valid)."""
    valid = a.valid
    n = int(valid.sum())
    return 1.0 if n == 0 else float((a.codes[valid] == b.codes[valid]).sum() / n)


def reference_spec(card: ModelCard) -> TileSpec:
    """The grid proofs are measured on: the card's own tile and overlap."""
    return TileSpec(card.tile_size, card.default_overlap(card.tile_size))


def fits(card: ModelCard, item: ReferenceItem) -> bool:
    """True when ``item`` can give the values ``card`` reads (Level-2 items for a Level-2
    model, and so on)."""
    try:
        return card.value_kind in open_any(item.path).value_kinds
    except CloudsegError:
        return False


def measure(
    key: ProofKey,
    make: Callable[[str], Backend],
    root: str | os.PathLike[str] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Proof:
    """Run every fitting reference scene in f32 and in ``key.precision``; compare the masks.

    Args:
        key: what is proven.
        make: builds the backend for a precision (``"f32"`` or ``key.precision``); the same
            provider, tile and shadow setting both times.
        root: the reference folder (default :func:`cloudseg.data.reference.default_root`).
        progress: called with each scene's name and agreement.

    Raises:
        CloudsegError: no reference scene fits the model's value kind.
    """
    items = reference_items(root)
    base, fast = make("f32"), make(key.precision)
    try:
        card = base.card
        fitting = [item for item in items if fits(card, item)]
        if not fitting:
            raise CloudsegError(
                f"no real reference scene gives {card.value_kind} values for {card.name}"
            )
        spec, result = reference_spec(card), {}
        for item in fitting:
            scene = open_any(item.path)
            value = agreement(predict_scene(scene, base, card, spec),
                              predict_scene(scene, fast, card, spec))  # fmt: skip
            result[item.name] = round(value, 6)
            if progress is not None:
                progress(item.name, value)
    finally:
        base.close()
        fast.close()
    folder = str(Path(items[0].path).parents[1]) if items else ""
    return Proof(key, result, reference=folder)


def resolve_auto(key: ProofKey) -> tuple[str, dict[str, Any]]:
    """The precision ``--precision auto`` runs: ``key.precision`` when a kept proof passed,
    else ``f32``; and what to record in the run summary. Says which in one log line."""
    record = find(key)
    if record is not None and record.get("passed"):
        log.info("precision auto: %s, proven on %d real scenes (worst %s %.2f %%)",
                 key.precision, len(record["agreement"]), record["worst_scene"],
                 100 * record["worst_agreement"])  # fmt: skip
        return key.precision, {"status": "proven", **_brief(record)}
    if record is not None:
        why = (f"it failed its proof ({record['worst_scene']}: "
               f"{100 * record['worst_agreement']:.2f} % equal to f32)")  # fmt: skip
        status = {"status": "failed", **_brief(record)}
    else:
        why = "no proof for this model, runtime and CPU"
        status = {"status": "unproven"}
    log.info("precision auto: f32, not %s: %s (cloudseg-eval prove --model MODEL --provider "
             "%s --precision %s measures it)", key.precision, why, key.provider,
             key.precision)  # fmt: skip
    return "f32", status | {"candidate": key.precision}


def choose_precision(
    asked: str, candidate: str, key: Callable[[], ProofKey]
) -> tuple[str, dict[str, Any]]:
    """What a backend runs for ``--precision asked``, and what its summary records: ``asked``
    itself unless it is ``auto``; for ``auto`` the device's fast ``candidate`` only when it is
    proven (:func:`resolve_auto`), f32 when the candidate is f32 anyway. ``key`` is built only
    when a proof is looked up (it hashes the model file)."""
    if asked != "auto":
        return asked, {"status": "asked"}
    if candidate == "f32":
        return "f32", {"status": "reference precision"}
    return resolve_auto(key())


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record[k] for k in ("precision", "worst_scene", "worst_agreement", "measured")}


def options_for(precision: str, tile: int, shadow: bool, threads: int | None) -> BackendOptions:
    """Backend options for a proof run: one tile per call, the given precision."""
    return BackendOptions(batch=1, tile=tile, precision=precision, shadow=shadow, threads=threads)


def summary_of(records: list[dict[str, Any]]) -> list[str]:
    """One line per kept proof, for ``cloudseg-info --models``."""
    lines = []
    for r in records:
        verdict = "proven" if r.get("passed") else "NOT proven"
        lines.append(f"{r['provider']} {r['precision']} ({r['runtime']}): {verdict}, worst "
                     f"{r['worst_scene']} {100 * r['worst_agreement']:.2f} % on "
                     f"{len(r['agreement'])} real scenes, {r['hardware']}")  # fmt: skip
    return lines


__all__ = [
    "MIN_AGREEMENT", "Proof", "ProofKey", "agreement", "cpu_hardware", "find", "measure",
    "resolve_auto", "save", "sha256",
]  # fmt: skip
