"""ONNX Runtime execution providers: names, options, DLL preloading, and why one did not load.

The engine's ``--provider`` names map to ONNX Runtime provider lists here (see
:func:`provider_list`); :class:`cloudseg.engine.backends.OrtBackend` builds the session and then
refuses to run unless the requested provider is the one that actually loaded. ONNX Runtime itself
drops a provider it cannot load and carries on with the CPU (with a log line on stderr); we turn
that into a :class:`~cloudseg.errors.ProviderError` whose one line says what is missing.

CUDA and TensorRT options follow the provider docs (onnxruntime.ai, "CUDA Execution Provider",
"TensorRT Execution Provider"); no GPU is available where this is built, so they are written to
those docs and only their failure path is exercised here.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import os
import sys
from pathlib import Path
from typing import Any

import onnxruntime as ort

from cloudseg.errors import ProviderError

#: ``--provider`` name -> the ONNX Runtime provider that must come first in the session.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
#: Where each provider's tensors live, for ``OrtValue.ortvalue_from_shape_and_type``.
DEVICES = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}
#: Mirrors ``cloudseg.train.runs.HOME_ENV``; the engine does not import ``train``.
HOME_ENV = "CLOUDSEG_HOME"


def check_name(provider: str) -> str:
    """``provider`` itself when it is one of :data:`PROVIDERS`, else a one-line ProviderError."""
    if provider not in PROVIDERS:
        raise ProviderError(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)} (or torch)"
        )
    return provider


def default_cache_dir() -> Path:
    """``$CLOUDSEG_HOME/trt-cache`` (``~/.cache/cloudseg/trt-cache``): TensorRT engines."""
    home = os.environ.get(HOME_ENV) or Path.home() / ".cache" / "cloudseg"
    return Path(home).expanduser() / "trt-cache"


def provider_list(
    provider: str,
    input_name: str,
    batch: int,
    tile: int,
    fp16_trt: bool = False,
    cache_dir: Path | None = None,
) -> list[str | tuple[str, dict[str, Any]]]:
    """The ``providers=`` argument of ``InferenceSession`` for one ``--provider`` name.

    Args:
        provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        input_name: the graph's image input, for TensorRT's profile shapes.
        batch: the one batch size the engine runs (last batches are padded up to it).
        tile: tile height and width in pixels.
        fp16_trt: let TensorRT build float16 kernels.
        cache_dir: TensorRT engine and timing caches; default :func:`default_cache_dir`.

    Returns:
        Provider names and ``(name, options)`` pairs, the requested one first. GPU lists end
        in the CUDA and CPU providers so that nodes TensorRT/CUDA cannot take still have a home;
        the session is refused anyway if the requested provider itself did not load.
    """
    check_name(provider)
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    cuda = (
        "CUDAExecutionProvider",
        {
            "device_id": 0,
            # EXHAUSTIVE benchmarks every cuDNN algorithm once per input shape and keeps the
            # fastest; the backend feeds exactly one shape (padded last batch), so the cost is
            # paid once per session and every later batch gets the best kernels.
            "cudnn_conv_algo_search": "EXHAUSTIVE",
            # Copies on the compute stream: ordered with compute without extra events (the
            # documented-safe default); overlap comes from the backend's buffer slots and the
            # pipeline's threads, not from a second stream.
            "do_copy_in_default_stream": True,
        },
    )
    if provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    cache = Path(cache_dir or default_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    # One profile: any batch from 1 to ``batch`` at the fixed tile; opt = the size we always run.
    low, high = f"{input_name}:1x4x{tile}x{tile}", f"{input_name}:{batch}x4x{tile}x{tile}"
    trt = (
        "TensorrtExecutionProvider",
        {
            "device_id": 0,
            "trt_fp16_enable": fp16_trt,
            # Building an engine takes minutes; the caches make every later start fast. ORT keys
            # cached engines by model and profile; they are invalid after an ORT, TensorRT or GPU
            # change (DESIGN.md), when the cache folder must be emptied.
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
            "trt_profile_min_shapes": low,
            "trt_profile_opt_shapes": high,
            "trt_profile_max_shapes": high,
        },
    )
    return [trt, cuda, "CPUExecutionProvider"]


def preload_gpu_libraries() -> str:
    """Load pip-installed CUDA/cuDNN libraries before a CUDA or TensorRT session, when needed.

    ``onnxruntime.preload_dlls()`` (ORT >= 1.21) loads them from the ``nvidia-*`` wheels that a
    CUDA build of torch brings along. Its docs: unneeded when torch (same CUDA major) was imported
    first, so it is skipped then, and skipped when no ``nvidia`` package is installed (system
    CUDA on the library path is found by the loader itself).

    Returns:
        What ``preload_dlls`` printed (it reports failures on stdout), for the error message.
    """
    if not hasattr(ort, "preload_dlls") or "torch" in sys.modules:
        return ""
    if importlib.util.find_spec("nvidia") is None:
        return ""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ort.preload_dlls()
    return out.getvalue().strip()


def why_missing(provider: str) -> str:
    """A short reason why ``provider`` (``cuda``/``tensorrt``) did not load in this process.

    ONNX Runtime logs the reason on stderr only; loading its provider library again with
    ``ctypes`` gives the same dynamic-loader message (e.g. ``libcublasLt.so.13: cannot open
    shared object file``) to put into our one line.
    """
    ort_name = PROVIDERS[provider]
    if ort_name not in ort.get_available_providers():
        return f"this onnxruntime build has no {ort_name} (install onnxruntime-gpu)"
    what = "TensorRT" if provider == "tensorrt" else "CUDA"
    stem = f"onnxruntime_providers_{provider}"
    name = f"{stem}.dll" if sys.platform == "win32" else f"lib{stem}.so"
    library = Path(ort.__file__).parent / "capi" / name
    try:
        ctypes.CDLL(str(library))
    except OSError as exc:
        reason = str(exc).split(": ", 1)[-1] if str(library) in str(exc) else str(exc)
        return f"{what} libraries could not be loaded ({reason.strip()})"
    return f"the {what} libraries load, but the provider did not start (no GPU or driver?)"


def check_loaded(provider: str, loaded: list[str], preload_note: str = "") -> None:
    """Raise unless ``loaded[0]`` (``session.get_providers()``) is the requested provider.

    Raises:
        ProviderError: one line naming the request, what is missing, and what exists.
    """
    wanted = PROVIDERS[provider]
    if loaded and loaded[0] == wanted:
        return
    note = f"; preload_dlls said: {' '.join(preload_note.split())}" if preload_note else ""
    raise ProviderError(
        f"provider {provider!r} ({wanted}) could not be used: {why_missing(provider)}{note}; "
        f"onnxruntime offers {', '.join(ort.get_available_providers())}, but the session loaded "
        f"only {', '.join(loaded) or 'nothing'}; not falling back to the CPU (use --provider cpu)"
    )
