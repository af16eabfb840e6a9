"""ONNX Runtime backend: the exported file on the CPU, CUDA or TensorRT provider, via IO binding.

Input and output buffers of the one fixed batch shape ``(batch, 4, tile, tile)`` are allocated
once on the provider's device and reused, and a short last batch is padded up to that shape, so
cuDNN's EXHAUSTIVE search and TensorRT's engine see a single shape and never rebuild. The CPU
path runs the same binding code, which is how it is tested where no GPU is.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from cloudseg import card as model_card
from cloudseg.engine import ort_providers as prov
from cloudseg.engine.backend import (
    N_BANDS,
    BackendOptions,
    check_batch,
    chunks,
    class_probabilities,
    mask_channels,
)
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.home import trt_cache_dir


class _Slot:
    """One IO binding with its own input and output buffers, allocated once on the device."""

    def __init__(
        self,
        session: ort.InferenceSession,
        names: tuple[str, str],
        shapes: tuple[tuple[int, ...], tuple[int, ...]],
        device: str,
        device_id: int,
    ) -> None:
        self.binding = session.io_binding()
        new = ort.OrtValue.ortvalue_from_shape_and_type
        self.input = new(shapes[0], np.float32, device, device_id)
        self.output = new(shapes[1], np.float32, device, device_id)
        self.binding.bind_ortvalue_input(names[0], self.input)
        self.binding.bind_ortvalue_output(names[1], self.output)
        # Host staging for a short last batch; the padding rows are discarded.
        self.staging = np.zeros(shapes[0], np.float32)


class OrtBackend:
    """An ONNX model on one ONNX Runtime provider, fed fixed-shape batches through IO binding.

    Concurrency: ``slots`` independent bindings (2 on GPUs, 1 on the CPU) are handed out per
    call, so two pipeline threads can call :meth:`run` at once: one copies its batch in (or its
    logits out and through numpy) while the other's batch computes.
    """

    def __init__(
        self, model_path: str | os.PathLike[str], provider: str, options: BackendOptions
    ) -> None:
        """Build the session once, check it, and allocate the buffers.

        Args:
            model_path: ONNX file with input ``(batch, 4, H, W)`` float32 and a card (embedded or
                sidecar ``<model>.onnx.card.json``).
            provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
            options: batch, tile, threads, device, TensorRT fp16 and cache, slots.

        Raises:
            ProviderError: unknown provider, or the requested one did not load.
            MissingFileError: no file at ``model_path``.
            ModelError: not an ONNX model, no card, a tile the card refuses, or a graph that does
                not take ``(batch, 4, tile, tile)`` float32.
        """
        self.name = prov.check_name(provider)
        self.path = Path(model_path)
        self.options = options
        if not self.path.is_file():
            raise MissingFileError(f"{self.path}: no model file there")
        self.card = model_card.read(self.path)  # cheap, and refuses non-ONNX bytes first
        self.batch, self.tile = options.batch, self.card.check_tile(options.tile)
        self.channels = mask_channels(self.card, options.shadow)
        self.device = options.device or 0
        self.cache_dir = Path(options.trt_cache or trt_cache_dir())
        preload_note = "" if provider == "cpu" else prov.preload_gpu_libraries(provider)
        self.session = self._session()
        self.providers = self.session.get_providers()
        prov.check_loaded(provider, self.providers, preload_note)
        names, shapes = self._check_io()
        self._names = names
        # Trimmed edge tiles run outside the fixed-shape bindings, on the CPU only: a GPU
        # provider (cuDNN autotuning, TensorRT engines) is built for one shape.
        self.dynamic_shapes = provider == "cpu" and not self.card.fixed_size
        # Each new shape plans (and allocates) its own memory in ORT's arena; shrinking the
        # arena after a trimmed tile's run hands that back (130 MB over a 7800 px scene here).
        self._trimmed = ort.RunOptions()
        self._trimmed.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.slots = options.slots or (1 if provider == "cpu" else 2)
        self._slots: queue.Queue[_Slot] = queue.Queue()
        for _ in range(self.slots):
            device = prov.DEVICES[provider]
            self._slots.put(_Slot(self.session, names, shapes, device, self.device))

    def _session(self) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # A conv net is one chain of ops: parallelism is inside each op (intra-op), so inter-op
        # threads would only compete for the same cores.
        options.inter_op_num_threads = 1
        threads = self.options.threads
        if threads or self.name == "cpu":
            options.intra_op_num_threads = threads or os.cpu_count() or 1
        # The input name is needed for TensorRT's profile shapes before the real session exists;
        # ``image`` is our exporter's name, a foreign model's comes from a cheap CPU session.
        input_name = "image" if self.name != "tensorrt" else self._input_name()
        if self.name == "tensorrt":
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        providers = prov.provider_list(
            self.name, input_name, self.batch, self.tile, device=self.device,
            fp16_trt=self.options.fp16, cache_dir=self.cache_dir,
        )  # fmt: skip
        try:
            # ORT's Python layer prints "EP Error ... Falling back" on stdout when a provider
            # fails; check_loaded reports it as one line instead.
            with contextlib.redirect_stdout(io.StringIO()):
                return ort.InferenceSession(str(self.path), options, providers=providers)
        except NoSuchFile:
            raise MissingFileError(f"{self.path}: no model file there") from None
        except (InvalidProtobuf, InvalidGraph, Fail) as exc:
            reason = " ".join(str(exc).split())
            raise ModelError(
                f"{self.path}: ONNX Runtime cannot load this model ({reason})"
            ) from None

    def _input_name(self) -> str:
        try:
            probe = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except (NoSuchFile, InvalidProtobuf, InvalidGraph, Fail) as exc:
            raise ModelError(f"{self.path}: ONNX Runtime cannot load this model ({exc})") from None
        return probe.get_inputs()[0].name

    def _check_io(self) -> tuple[tuple[str, str], tuple[tuple[int, ...], tuple[int, ...]]]:
        """Input and output names and the fixed buffer shapes; refuses models that do not fit."""
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        shape, n_out = list(inp.shape), len(self.card.classes)
        if len(shape) != 4 or shape[1] != N_BANDS:
            raise ModelError(
                f"{self.path}: input {inp.name!r} has shape {shape}; the engine needs "
                f"(batch, {N_BANDS}, height, width): 4 bands (red, green, blue, nir)"
            )
        if inp.type != "tensor(float)":
            raise ModelError(f"{self.path}: input {inp.name!r} is {inp.type}, not float32")
        want = (self.batch, N_BANDS, self.tile, self.tile)
        if any(isinstance(d, int) and d != w for d, w in zip(shape, want, strict=True)):
            raise ModelError(f"{self.path}: input shape {shape} does not accept batches {want}")
        out_shape = list(out.shape)
        fixed_channels = isinstance(out_shape[1], int) if len(out_shape) == 4 else True
        if len(out_shape) != 4 or (fixed_channels and out_shape[1] != n_out):
            raise ModelError(
                f"{self.path}: output {out.name!r} has shape {out_shape}; the card's "
                f"{self.card.output_kind} output needs (batch, {n_out}, height, width)"
            )
        return (inp.name, out.name), (want, (self.batch, n_out, self.tile, self.tile))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Cloud probability of normalised tiles.

        Args:
            batch: ``(N, 4, tile, tile)`` float32, normalised as the card says; any N >= 1
                (run in chunks of ``self.batch``, the last one padded).

        Returns:
            ``(N, K, tile, tile)`` float32 in ``[0, 1]`` (see :class:`Backend`).
        """
        batch = check_batch(batch, self.tile, self.card if self.dynamic_shapes else None)
        if batch.shape[2:] != (self.tile, self.tile):  # a trimmed edge tile: its own shape
            logits = self.session.run([self._names[1]], {self._names[0]: batch}, self._trimmed)[0]
            return class_probabilities(logits, self.card, self.channels == 2)
        out = np.empty((len(batch), self.channels, self.tile, self.tile), np.float32)
        slot = self._slots.get()  # blocks while every slot is busy with another caller
        try:
            done = 0
            for chunk, n in chunks(batch, self.batch, slot.staging):
                slot.input.update_inplace(chunk)  # host -> bound input buffer, no reallocation
                self.session.run_with_iobinding(slot.binding)
                slot.binding.synchronize_outputs()
                # .numpy() copies device -> host on GPUs; on the CPU it reads the buffer in place.
                logits = slot.output.numpy()[:n]
                out[done : done + n] = class_probabilities(logits, self.card, self.channels == 2)
                done += n
        finally:
            self._slots.put(slot)
        return out

    def describe(self) -> dict[str, Any]:
        """Provider, device, precision and threads, for the summary."""
        info: dict[str, Any] = {
            "provider": self.name,
            "runtime": f"onnxruntime {ort.__version__}",
            "session_providers": list(self.providers),
            "precision": _file_precision(self.card),
            "threads": self.session.get_session_options().intra_op_num_threads or None,
        }
        if self.name != "cpu":
            info["device"] = self.device
        if self.name == "tensorrt":
            info |= {"fp16": self.options.fp16, "trt_cache": str(self.cache_dir)}
        return info

    def close(self) -> None:
        """Drop the buffers and the session (device memory is freed with them)."""
        self._slots = queue.Queue()
        self.session = None  # type: ignore[assignment]
        self.providers = []

    def __repr__(self) -> str:
        where = self.providers[0] if self.providers else "closed"
        return f"OrtBackend({self.path.name}, {where}, batch={self.batch}, tile={self.tile})"

    @classmethod
    def probe(cls, provider: str, device: int = 0) -> str | None:
        """None if ``provider`` loads here, else why not (see :func:`ort_providers.probe`)."""
        return prov.probe(provider, device)


def _file_precision(card: model_card.ModelCard) -> str:
    """What the ONNX file computes in: the variant export recorded (fp32, fp16, int8)."""
    return str(card.extra.get("export", {}).get("variant", "fp32"))
