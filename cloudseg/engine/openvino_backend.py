"""OpenVINO backend: the same ONNX file and card on Intel's CPU runtime, in bf16 where it is native.

Why a second CPU runtime: on CPUs with AMX or AVX512-BF16, OpenVINO's CPU plugin runs the UNets'
convolutions on the bf16 matrix units (oneDNN ``brgconv_avx512_amx_bf16`` kernels), 3-4x ONNX
Runtime's fp32 on this project's own exports (docs/benchmarks.md). ONNX Runtime's CPU provider has
no bf16 convolutions.

* Precision (``--precision``): ``auto`` is bf16 only where the CPU has AVX512-BF16 or AMX
  (OpenVINO lists ``BF16`` among its capabilities on any AVX-512 CPU, where it is only
  emulated, so the CPU's own flags decide) **and** a proof on the real reference scenes passed
  for this model file, OpenVINO version and CPU (:mod:`cloudseg.engine.proof`); f32 otherwise,
  said in one line. ukis-l1c shows why: in bf16 its EfficientNet-B4 encoder drifts from f32
  from the first MBConv blocks on (relative error 5 % after block 1, over 50 % by block 4 on a
  real snow tile), and that tile's mask flips from 4.8 % to 99.6 % cloud. OpenVINO 2026.4's
  CPU plugin ignores per-node ``disable_fp16_compression`` marks under a bf16 hint, and
  ``EXECUTION_MODE_HINT=ACCURACY`` yields to an explicit hint, so no mixed setting exists
  through its API (benchmarks/README, accuracy). The effective precision is read back from the
  compiled model and a request the plugin ignored is refused, never passed off as honoured.
* One compiled model per run, reshaped to the one ``(batch, 4, tile, tile)`` shape, reused for
  every tile of every scene.
* Asynchronous infer requests: :attr:`slots` requests (default 2), each taken by one
  :meth:`run` call, started with ``start_async`` and waited on with the GIL released, so the
  pipeline's next batch (and its reading and blending) overlaps the current inference. Copies in
  and out of request tensors are serialised by one lock: two threads copying into different
  requests' tensors at once deadlocked here (each held what the other needed, every Python
  thread stopped), while waiting on two requests at once is safe.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg import card as model_card
from cloudseg.engine.backend import (
    N_BANDS,
    BackendOptions,
    check_batch,
    chunks,
    class_probabilities,
    mask_channels,
)
from cloudseg.engine.proof import (
    ProofKey,
    choose_precision,
    cpu_hardware,
    native_precision,
    runtime_of,
    sha256,
)
from cloudseg.errors import MissingFileError, ModelError, ProviderError
from cloudseg.home import openvino_cache_dir

# oneDNN keeps compiled kernels per shape (1024 by default), and a scene's trimmed edge tiles
# come in dozens of shapes: r34 int8 grew by 214 MB over 20 of them, by 141 MB with 64 kept, at
# the same speed. Read by oneDNN when it starts, so set before OpenVINO is imported; a value in
# the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

try:
    import openvino as ov
except ImportError:  # pragma: no cover - depends on the install
    raise ProviderError(
        "the openvino provider needs the OpenVINO runtime: pip install 'cloudseg[openvino]'"
    ) from None

DEVICE = "CPU"
#: ``--precision`` -> OpenVINO's ``INFERENCE_PRECISION_HINT`` value.
HINTS = {"f32": "f32", "bf16": "bf16", "f16": "f16"}


def runtime() -> str:
    """``openvino <version>``, as proofs and summaries name it (:func:`proof.runtime_of`)."""
    return runtime_of("openvino")


class OpenVinoBackend:
    """An ONNX model compiled once by OpenVINO for the CPU, run through async infer requests."""

    def __init__(
        self, model_path: str | os.PathLike[str], provider: str, options: BackendOptions
    ) -> None:
        """Read, reshape and compile the model; create the infer requests.

        Args:
            model_path: ONNX file with input ``(batch, 4, H, W)`` float32 and a card.
            provider: ``"openvino"``.
            options: batch, tile, threads, precision, slots (infer requests).

        Raises:
            MissingFileError: no file there.
            ModelError: not a model OpenVINO reads, no card, a tile the card refuses, not 4
                input bands, or a precision this CPU does not run.
        """
        self.name, self.options = "openvino", options
        self.path = Path(model_path)
        if not self.path.is_file():
            raise MissingFileError(f"{self.path}: no model file there")
        self.card = model_card.read(self.path)
        self.batch, self.tile = options.batch, self.card.check_tile(options.tile)
        self.channels = mask_channels(self.card, options.shadow)
        # auto: the CPU's native precision only when proven for this file here, else f32
        native = native_precision()
        self.precision, self.proof = choose_precision(
            options.precision, native,
            lambda: ProofKey(sha256(self.path), "openvino", runtime(), native, cpu_hardware()),
        )  # fmt: skip
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except RuntimeError as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ModelError(f"{self.path}: OpenVINO cannot read this model ({reason})") from None
        self._input = self._check_input(model)
        # A model of any size is compiled with dynamic height and width (and batch), so trimmed
        # edge tiles run on it too; one compiled model, one set of activation buffers. (A second,
        # dynamic model beside a static one held 230 MB more on a 7800 px scene; dynamic alone
        # ran full r34 int8 tiles within a few % of static here.) A fixed-size model: static.
        self.dynamic_shapes = not self.card.fixed_size
        tile_shape = [-1, N_BANDS, -1, -1] if self.dynamic_shapes else [
            self.batch, N_BANDS, self.tile, self.tile]  # fmt: skip
        model.reshape({self._input: tile_shape})
        self.threads = options.threads or os.cpu_count() or 1
        self.slots = options.slots or 2
        config = {
            "INFERENCE_PRECISION_HINT": HINTS[self.precision],
            # One stream using every thread per request: the UNet's convolutions parallelise
            # well, and a second in-flight request queues behind it so the CPU never idles
            # between batches.
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
            # The compiled model is kept on disk: a second run of the same model, shape and
            # precision loads it instead of compiling (ukis-l1c here: 0.91 s -> 0.44 s).
            "CACHE_DIR": str(openvino_cache_dir()),
        }
        if self.dynamic_shapes:
            # Executors are kept per input shape; OpenVINO's default keeps 5000. 16 keep the
            # full tile's hot among a scene's few dozen trimmed shapes (none: full tiles 20 %
            # slower here; 5000: 75 MB more for 5 % faster full tiles).
            config["CPU_RUNTIME_CACHE_CAPACITY"] = 16
        self._core, self._config = core, config
        try:
            self.compiled = core.compile_model(model, DEVICE, config)
        except RuntimeError as exc:  # e.g. an allocation the machine cannot make
            reason = " ".join(str(exc).split())[-200:]
            raise ProviderError(f"{self.path}: OpenVINO cannot compile it ({reason})") from None
        effective = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
        if effective != HINTS[self.precision]:
            raise ModelError(
                f"OpenVINO on this CPU runs {effective}, not the {self.precision} asked for "
                "(--precision auto picks what the CPU runs natively, once proven)"
            )
        self.providers = [f"openvino:{DEVICE}"]
        self._copy_lock = threading.Lock()
        self._requests: queue.Queue[Any] = queue.Queue()
        self._staging: dict[int, np.ndarray] = {}
        for _ in range(self.slots):
            request = self.compiled.create_infer_request()
            self._staging[id(request)] = np.zeros(
                (self.batch, N_BANDS, self.tile, self.tile), np.float32
            )
            self._requests.put(request)

    def _check_input(self, model: Any) -> str:
        inputs = model.inputs
        if len(inputs) != 1:
            raise ModelError(f"{self.path}: {len(inputs)} inputs; the engine feeds one image")
        shape = inputs[0].get_partial_shape()
        channels = shape[1] if shape.rank.is_static and shape.rank.get_length() == 4 else None
        name = inputs[0].get_any_name()
        if channels is None or (channels.is_static and channels.get_length() != N_BANDS):
            raise ModelError(
                f"{self.path}: input {name!r} has shape {shape}; the engine needs (batch, "
                f"{N_BANDS}, height, width): 4 bands (red, green, blue, nir)"
            )
        return name

    def _infer(self, request: Any, chunk: np.ndarray, n: int) -> np.ndarray:
        """Run ``chunk`` on ``request``; the probabilities of its first ``n`` tiles."""
        with self._copy_lock:
            # copied into the request's own tensor, reshaped to the chunk's shape (a trimmed
            # edge tile and a full tile take turns on the same request)
            request.start_async({0: chunk})
        request.wait()  # releases the GIL: other pipeline threads go on meanwhile
        with self._copy_lock:  # a view the next inference overwrites: copy it now
            logits = np.array(request.get_output_tensor(0).data[:n])
        return class_probabilities(logits, self.card, self.channels == 2)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of normalised tiles: ``(N, 4, tile, tile)`` -> ``(N, K, tile, tile)``,
        or of trimmed ones (``dynamic_shapes``) at their own size, in one call."""
        batch = check_batch(batch, self.tile, self.card if self.dynamic_shapes else None)
        request = self._requests.get()  # blocks while every request is busy
        try:
            if batch.shape[2:] != (self.tile, self.tile):
                return self._infer(request, batch, len(batch))
            out = np.empty((len(batch), self.channels, self.tile, self.tile), np.float32)
            done = 0
            for chunk, n in chunks(batch, self.batch, self._staging[id(request)]):
                out[done : done + n] = self._infer(request, chunk, n)
                done += n
        finally:
            self._requests.put(request)
        return out

    def describe(self) -> dict[str, Any]:
        """Runtime, precision (effective), threads and requests, for the summary."""
        return {
            "provider": "openvino",
            "runtime": runtime(),
            "device": DEVICE,
            "precision": self.precision,
            "precision_proof": self.proof,
            "threads": self.threads,
            "infer_requests": self.slots,
        }

    def close(self) -> None:
        """Drop the requests and the compiled model."""
        self._requests = queue.Queue()
        self.compiled = None

    @classmethod
    def probe(cls, provider: str, device: int = 0) -> str | None:
        """None when OpenVINO's CPU plugin is there (this module imported, so the package is)."""
        if DEVICE not in ov.Core().available_devices:
            return f"OpenVINO {ov.__version__.split('-')[0]} has no {DEVICE} device here"
        return None
