"""Providers by name: which backend runs each ``--provider``, and how ``auto`` picks one.

A provider is one line of :data:`PROVIDERS` naming the backend class that runs it (imported only
when used, so ``import cloudseg.engine`` pulls in neither OpenVINO nor torch). Adding a provider is
one module with a :class:`~cloudseg.engine.backend.Backend` class, which also answers
``probe(provider, device) -> None | reason``, plus one line here.

``auto`` takes the first of :data:`AUTO_ORDER` that loads here, fastest first, and says so; a
provider named on the command line never falls back to another.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cloudseg.engine.backend import Backend, BackendOptions
from cloudseg.errors import ModelError, ProviderError

log = logging.getLogger("cloudseg.run")

#: Model files only the torch backend runs: a run folder, or a checkpoint with its card beside it.
TORCH_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class Provider:
    """One ``--provider`` name and the backend that runs it."""

    name: str
    backend: str  # "module:Class"
    what: str  # for cloudseg-info --providers
    runs_onnx: bool = True


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("tensorrt", "cloudseg.engine.ort_backend:OrtBackend",
                 "ONNX Runtime, TensorRT execution provider (NVIDIA GPU, engine cache on disk)"),
        Provider("cuda", "cloudseg.engine.ort_backend:OrtBackend",
                 "ONNX Runtime, CUDA execution provider (NVIDIA GPU)"),
        Provider("openvino", "cloudseg.engine.openvino_backend:OpenVinoBackend",
                 "OpenVINO on the CPU (bf16 on AMX / AVX512-BF16 CPUs)"),
        Provider("cpu", "cloudseg.engine.ort_backend:OrtBackend",
                 "ONNX Runtime, CPU execution provider"),
        Provider("torch", "cloudseg.engine.torch_backend:TorchBackend",
                 "native PyTorch on the CPU or CUDA (run folders and checkpoints)",
                 runs_onnx=False),
    )
}  # fmt: skip
#: What ``--provider auto`` tries, fastest first.
AUTO_ORDER = ("tensorrt", "cuda", "openvino", "cpu")
AUTO = "auto"


def check_name(provider: str) -> str:
    """``provider`` itself if it is ``auto`` or in :data:`PROVIDERS`, else a one-line error."""
    if provider != AUTO and provider not in PROVIDERS:
        raise ProviderError(
            f"unknown provider {provider!r}; choose one of {AUTO}, {', '.join(PROVIDERS)}"
        )
    return provider


def backend_class(provider: str) -> type[Backend]:
    """The class that runs ``provider`` (imports its module)."""
    module, name = PROVIDERS[check_name(provider)].backend.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as exc:  # an optional runtime (openvino, torch) that is not installed
        raise ProviderError(f"provider {provider!r} cannot run here: {exc}") from None


def probe(provider: str, device: int | None = None) -> str | None:
    """None if ``provider`` loads here, else the one-line reason it does not.

    OpenVINO is probed without importing it (its runtime starts thread pools that make a later
    ``fork`` of this process unsafe, and a probe must not change the process it asks about).
    """
    if provider == "openvino":
        return openvino_missing()
    try:
        cls = backend_class(provider)
    except ProviderError as exc:
        return str(exc).split(": ", 1)[-1]
    return cls.probe(provider, device or 0)  # type: ignore[attr-defined]


def openvino_missing() -> str | None:
    """Why the openvino provider cannot run here, read from the installed package's files."""
    spec = importlib.util.find_spec("openvino")
    if spec is None or not spec.submodule_search_locations:
        return "the OpenVINO runtime is not installed (pip install 'cloudseg[openvino]')"
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not any(folder.glob("libs/libopenvino_intel_cpu_plugin.*")):
        return f"this OpenVINO ({folder}) has no CPU plugin (libopenvino_intel_cpu_plugin)"
    return None


def is_torch_model(model: str | os.PathLike[str]) -> bool:
    """A run folder or a ``.pth``/``.pt`` checkpoint: something only the torch backend runs."""
    path = Path(model)
    return path.is_dir() or path.suffix in TORCH_SUFFIXES


@dataclass
class Choice:
    """Which provider runs: what was asked, what to try in order, and why others were not."""

    requested: str
    candidates: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    chosen: str | None = None
    path: dict[str, object] | None = None  # precision auto: the fastest proven path (fastest.py)

    def as_dict(self) -> dict[str, object]:
        return {"requested": self.requested, "chosen": self.chosen, "skipped": self.skipped,
                **({"fastest_path": self.path} if self.path else {})}  # fmt: skip


def choose(provider: str, model: str | os.PathLike[str], device: int | None = None) -> Choice:
    """The providers to try: ``provider`` itself, or for ``auto`` every one of
    :data:`AUTO_ORDER` that loads here, fastest first (a run folder: torch).

    Raises:
        ProviderError: unknown name.
    """
    check_name(provider)
    if provider != AUTO:
        return Choice(provider, [provider])
    if is_torch_model(model):
        return Choice(AUTO, ["torch"])
    choice = Choice(AUTO, [])
    for name in AUTO_ORDER:
        why = probe(name, device)
        if why is None:
            choice.candidates.append(name)
        else:
            choice.skipped[name] = why
    return choice


def open_backend(
    model: str | os.PathLike[str],
    choice: Choice,
    options_for: Callable[[str], BackendOptions],
) -> Backend:
    """Build the first backend of ``choice`` that starts; a provider asked for by name is the
    only one tried (its failure is the error), ``auto`` moves on and says what it chose.

    With ``--precision auto`` on the CPU providers (an ONNX file, no GPU provider among the
    candidates) the fastest proven path runs instead (:mod:`cloudseg.engine.fastest`).

    Raises:
        ProviderError: the named provider, or under ``auto`` every candidate, failed to start.
    """
    if _fastest_applies(model, choice, options_for):
        return _open_fastest(model, choice, options_for)
    for name in choice.candidates:
        try:
            backend = make_backend(model, name, options_for(name))
        except ProviderError as exc:
            if choice.requested != AUTO:
                raise
            choice.skipped[name] = str(exc)
            continue
        choice.chosen = name
        if choice.requested == AUTO:
            why = "; ".join(f"{k}: {v}" for k, v in choice.skipped.items())
            log.info("provider auto: %s, the fastest that loads here%s", name,
                     f" (not {why})" if why else "")  # fmt: skip
        return backend
    reasons = "; ".join(f"{k}: {v}" for k, v in choice.skipped.items())
    raise ProviderError(f"no provider loads here: {reasons}")


def _fastest_applies(
    model: str | os.PathLike[str], choice: Choice, options_for: Callable[[str], BackendOptions]
) -> bool:
    from cloudseg.engine.fastest import CPU_PROVIDERS

    return (
        bool(choice.candidates)
        and not is_torch_model(model)
        and all(p in CPU_PROVIDERS for p in choice.candidates)
        and options_for(choice.candidates[0]).precision == "auto"
    )


def _open_fastest(
    model: str | os.PathLike[str], choice: Choice, options_for: Callable[[str], BackendOptions]
) -> Backend:
    from cloudseg.engine.fastest import open_fastest

    backend, chosen = open_fastest(
        Path(model),
        list(choice.candidates),
        options_for(choice.candidates[0]),
        make_backend,
        tolerate=choice.requested == AUTO,
    )
    choice.chosen, choice.path = backend.name, chosen
    return backend


def make_backend(model: str | os.PathLike[str], provider: str, options: BackendOptions) -> Backend:
    """The backend for ``--model`` and ``--provider`` (already resolved, not ``auto``).

    A run folder or ``.pth`` checkpoint runs on the torch backend (with ``--provider torch``,
    or ``cpu``/``cuda`` meaning torch on that device); anything else is an ONNX file.
    """
    check_name(provider)
    if provider == AUTO:
        return open_backend(model, choose(provider, model, options.device), lambda _: options)
    if provider == "torch" and not is_torch_model(model):
        raise ModelError(
            f"{model}: --provider torch runs a training run folder or a .pth checkpoint, not an "
            "ONNX file; run the ONNX file with --provider cpu, openvino, cuda or tensorrt"
        )
    if is_torch_model(model) and PROVIDERS[provider].runs_onnx:
        if provider not in ("cpu", "cuda"):
            raise ModelError(
                f"{model}: a PyTorch run or checkpoint runs with --provider torch, cpu or cuda, "
                f"not {provider}; export it to ONNX (cloudseg-export) for {provider}"
            )
        if provider == "cuda" and options.device is None:
            options = BackendOptions(**{**options.__dict__, "device": 0})
        provider = "torch"
    return backend_class(provider)(model, provider, options)  # type: ignore[call-arg]
