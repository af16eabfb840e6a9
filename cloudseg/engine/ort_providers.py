"""ONNX Runtime execution providers: names, options, GPU library preloading, why one won't load.

The engine's ``cpu``, ``cuda`` and ``tensorrt`` map to ONNX Runtime provider lists here (see
:func:`provider_list`); :class:`cloudseg.engine.ort_backend.OrtBackend` builds the session and then
refuses to run unless the requested provider is the one that actually loaded. ONNX Runtime itself
drops a provider it cannot load and carries on with the CPU (with a log line on stderr); we turn
that into a :class:`~cloudseg.errors.ProviderError` whose one line says what is missing.

GPU libraries come from pip wheels (the ``[tensorrt]`` extra, see ``pyproject.toml``):
:func:`preload_gpu_libraries` loads CUDA and cuDNN through ONNX Runtime's ``preload_dlls`` and
the TensorRT 10 runtime from its ``tensorrt_libs`` wheel, so a machine with only the NVIDIA
driver runs ``--provider cuda|tensorrt``. CUDA and TensorRT options follow the provider docs
(onnxruntime.ai, "CUDA Execution Provider", "TensorRT Execution Provider").
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
from onnxruntime.capi.onnxruntime_pybind11_state import EPFail, Fail, RuntimeException

from cloudseg.errors import ProviderError
from cloudseg.home import trt_cache_dir

#: ``--provider`` name -> the ONNX Runtime provider that must come first in the session.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
#: Where each provider's tensors live, for ``OrtValue.ortvalue_from_shape_and_type``.
DEVICES = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}

#: The TensorRT major ONNX Runtime's provider links against (``libnvinfer.so.10``): check with
#: ``readelf -d onnxruntime/capi/libonnxruntime_providers_tensorrt.so | grep nvinfer``.
TENSORRT_MAJOR = 10
#: Libraries of the TensorRT runtime wheel, loaded in this order (plugins and parser need
#: libnvinfer; the builder resource is dlopen'ed by libnvinfer when it builds an engine).
TENSORRT_LIBRARIES = (
    f"libnvinfer.so.{TENSORRT_MAJOR}",
    f"libnvinfer_plugin.so.{TENSORRT_MAJOR}",
    f"libnvonnxparser.so.{TENSORRT_MAJOR}",
)
#: Overrides the folder the TensorRT libraries are loaded from (a system install).
TENSORRT_DIR_ENV = "CLOUDSEG_TENSORRT_LIBS"

#: A serialised 89-byte ONNX model (one Relu on ``x: (1, 4, 8, 8)``, opset 18), made with
#: ``onnx.helper``: enough to ask a provider to start without the ``onnx`` package or a real model.
PROBE_MODEL = (
    b'\x08\t:O\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x05probeZ\x1b\n\x01x\x12\x16\n\x14\x08\x01'
    b"\x12\x10\n\x02\x08\x01\n\x02\x08\x04\n\x02\x08\x08\n\x02\x08\x08b\x1b\n\x01y\x12\x16\n\x14"
    b"\x08\x01\x12\x10\n\x02\x08\x01\n\x02\x08\x04\n\x02\x08\x08\n\x02\x08\x08B\x04\n\x00\x10\x12"
)

_loaded_tensorrt: list[ctypes.CDLL] = []  # kept alive: unloading would break the provider


def check_name(provider: str) -> str:
    """``provider`` itself when it is one of :data:`PROVIDERS`, else a one-line ProviderError."""
    if provider not in PROVIDERS:
        raise ProviderError(
            f"unknown ONNX Runtime provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
    return provider


def provider_list(
    provider: str,
    input_name: str,
    batch: int,
    tile: int,
    *,
    device: int = 0,
    fp16_trt: bool = False,
    cache_dir: Path | None = None,
) -> list[str | tuple[str, dict[str, Any]]]:
    """The ``providers=`` argument of ``InferenceSession`` for one ``--provider`` name.

    Args:
        provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        input_name: the graph's image input, for TensorRT's profile shapes.
        batch: the one batch size the engine runs (last batches are padded up to it).
        tile: tile height and width in pixels.
        device: GPU ordinal.
        fp16_trt: let TensorRT build float16 kernels.
        cache_dir: TensorRT engine and timing caches; default :func:`cloudseg.home.trt_cache_dir`.

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
            "device_id": device,
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
    cache = Path(cache_dir or trt_cache_dir())  # created by the backend, not by a probe
    # One profile: any batch from 1 to ``batch`` at the fixed tile; opt = the size we always run.
    low, high = f"{input_name}:1x4x{tile}x{tile}", f"{input_name}:{batch}x4x{tile}x{tile}"
    trt = (
        "TensorrtExecutionProvider",
        {
            "device_id": device,
            "trt_fp16_enable": fp16_trt,
            # Building an engine takes minutes; the caches make every later start fast. ORT keys
            # cached engines by model and profile; they are invalid after an ORT, TensorRT or GPU
            # change, when the cache folder must be emptied.
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


def tensorrt_dir() -> Path | None:
    """Folder of the TensorRT runtime libraries: ``$CLOUDSEG_TENSORRT_LIBS``, else the
    ``tensorrt_libs`` wheel's (found without importing it: its own loader hides failures)."""
    override = os.environ.get(TENSORRT_DIR_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("tensorrt_libs")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def preload_tensorrt() -> str:
    """Load the TensorRT 10 runtime libraries globally, so the TensorRT provider finds them.

    ``libonnxruntime_providers_tensorrt.so`` needs ``libnvinfer.so.10`` and
    ``libnvonnxparser.so.10``; the dynamic loader matches those names against libraries already
    loaded, so loading them by absolute path (``RTLD_GLOBAL``) works without ``LD_LIBRARY_PATH``
    (which would have to be set before Python starts).

    Returns:
        "" on success (or when nothing is there to load: the system loader may still find a
        system TensorRT), else what failed, for the error message.
    """
    if _loaded_tensorrt:
        return ""
    folder = tensorrt_dir()
    if folder is None or not folder.is_dir():
        return ""
    problems = []
    for name in TENSORRT_LIBRARIES:
        path = folder / name
        if not path.exists():
            problems.append(f"{name} is not in {folder}")
            continue
        try:
            _loaded_tensorrt.append(ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL))
        except OSError as exc:
            problems.append(str(exc))
    return "; ".join(problems)


def preload_gpu_libraries(provider: str) -> str:
    """Load pip-installed CUDA/cuDNN (and for TensorRT, TensorRT) before a GPU session.

    ``onnxruntime.preload_dlls()`` (ORT >= 1.21) loads CUDA and cuDNN from the ``nvidia-*``
    wheels (the ``[tensorrt]`` extra, or the ones a CUDA build of torch brings). Its docs: unneeded
    when torch (same CUDA major) was imported first, so it is skipped then, and skipped when no
    ``nvidia`` package is installed (a system CUDA on the library path is found by the loader).

    Returns:
        What went wrong (``preload_dlls`` prints its failures), for the error message; "" if
        nothing did.
    """
    notes = []
    if hasattr(ort, "preload_dlls") and "torch" not in sys.modules:
        if importlib.util.find_spec("nvidia") is not None:
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                ort.preload_dlls()
            notes.append(" ".join(out.getvalue().split()))
    if provider == "tensorrt":
        notes.append(preload_tensorrt())
    return "; ".join(n for n in notes if n)


def driver_missing() -> str | None:
    """``no NVIDIA driver here (...)`` when the driver's library does not load, else None."""
    name = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return f"no NVIDIA driver here ({' '.join(str(exc).split())})"
    return None


def why_missing(provider: str) -> str:
    """A short reason why ``provider`` (``cuda``/``tensorrt``) did not load in this process.

    ONNX Runtime logs the reason on stderr only; loading its provider library again with
    ``ctypes`` gives the same dynamic-loader message (e.g. ``libnvinfer.so.10: cannot open
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
        reason = (str(exc).split(": ", 1)[-1] if str(library) in str(exc) else str(exc)).strip()
        if "libcuda.so" in reason:  # the driver's own library: no pip package provides it
            return f"no NVIDIA driver here ({reason})"
        hint = " (pip install 'cloudseg[tensorrt]', or make install-gpu)"
        return f"{what} libraries could not be loaded: {reason}{hint}"
    return f"the {what} libraries load, but the provider did not start (no GPU or driver?)"


def check_loaded(provider: str, loaded: list[str], preload_note: str = "") -> None:
    """Raise unless ``loaded[0]`` (``session.get_providers()``) is the requested provider.

    Raises:
        ProviderError: one line naming the request, what is missing, and what exists.
    """
    wanted = PROVIDERS[provider]
    if loaded and loaded[0] == wanted:
        return
    note = f"; preloading said: {preload_note}" if preload_note else ""
    raise ProviderError(
        f"provider {provider!r} ({wanted}) could not be used: {why_missing(provider)}{note}; "
        f"onnxruntime offers {', '.join(ort.get_available_providers())}, but the session loaded "
        f"only {', '.join(loaded) or 'nothing'}; not falling back to the CPU (use --provider cpu)"
    )


def probe(provider: str, device: int = 0) -> str | None:
    """None if ``provider`` starts a session here, else the one-line reason it does not."""
    check_name(provider)
    if provider == "cpu":
        return None
    if PROVIDERS[provider] not in ort.get_available_providers():
        return why_missing(provider)
    # The driver first: without it nothing GPU can start, and preloading CUDA, cuDNN and
    # TensorRT's libraries to find that out put 200 MB into every run on a machine without one.
    if (reason := driver_missing()) is not None:
        return reason
    note = preload_gpu_libraries(provider)
    providers = provider_list(provider, "x", 1, 8, device=device)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            session = ort.InferenceSession(PROBE_MODEL, providers=providers)
        check_loaded(provider, session.get_providers(), note)
    except ProviderError as exc:
        return str(exc).split("could not be used: ", 1)[-1].split("; onnxruntime offers")[0]
    except (Fail, EPFail, RuntimeException, RuntimeError) as exc:  # a provider that fails to start
        return f"the session did not start ({' '.join(str(exc).split())[:200]})"
    return None
