"""Backends: one small interface, ``run(batch) -> cloud probability``, over ONNX Runtime or torch.

:class:`OrtBackend` runs an ONNX file on the CPU, CUDA or TensorRT provider through IO binding:
input and output buffers of the one fixed batch shape ``(batch, 4, tile, tile)`` are allocated
once on the provider's device and reused, and a short last batch is padded up to that shape, so
cuDNN's EXHAUSTIVE search and TensorRT's engine see a single shape and never rebuild. The CPU path
runs the same binding code, which is how it is tested here (no GPU where this is built).

Logits become probabilities here, in numpy, not inside the graph: the ONNX file stays the exact
artifact export checked for parity (and foreign models run unmodified with a sidecar card); the
TensorRT engine cache stays keyed to that file; the cost is a few elementwise passes over
``(N, C, tile, tile)``, small beside the UNet. (Folding a Sigmoid/Softmax in would halve the
device-to-host copy for 2-class models on a GPU; worth measuring there.)

The torch path (:class:`cloudseg.engine.torch_backend.TorchBackend`) is imported only by
:func:`make_backend`, so importing this module never imports torch.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import (
    Fail,
    InvalidGraph,
    InvalidProtobuf,
    NoSuchFile,
)

from cloudseg import card as model_card
from cloudseg.card import ModelCard
from cloudseg.engine import providers as prov
from cloudseg.errors import MissingFileError, ModelError

N_BANDS = 4
TORCH_SUFFIXES = (".pth", ".pt")


class Backend(Protocol):
    """What the pipeline needs from a model runner.

    Attributes:
        name: ``"cpu"``, ``"cuda"``, ``"tensorrt"`` or ``"torch"``.
        providers: what actually runs (ORT providers in session order, or ``torch:<device>``).
        card: the model card (input transform, output kind, threshold).
    """

    name: str
    providers: list[str]
    card: ModelCard

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 4, H, W)`` float32, already normalised -> ``(N, H, W)`` float32 in ``[0, 1]``."""
        ...

    def close(self) -> None:
        """Release the session or model and its device buffers."""
        ...


def cloud_probability(logits: np.ndarray, card: ModelCard) -> np.ndarray:
    """``(N, C, H, W)`` logits -> ``(N, H, W)`` float32 cloud probability, as the card says.

    Sigmoid of the single logit, or softmax over the C classes summed over the card's cloud
    classes; both computed without overflow for any finite logit.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if card.output_kind == "sigmoid":
        x = logits[:, 0]
        e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    cloud = e[:, card.cloud_class_indices].sum(axis=1)
    return (cloud / e.sum(axis=1)).astype(np.float32)


class _Slot:
    """One IO binding with its own input and output buffers, allocated once on the device."""

    def __init__(
        self,
        session: ort.InferenceSession,
        names: tuple[str, str],
        shapes: tuple[tuple[int, ...], tuple[int, ...]],
        device: str,
    ) -> None:
        self.binding = session.io_binding()
        self.input = ort.OrtValue.ortvalue_from_shape_and_type(shapes[0], np.float32, device, 0)
        self.output = ort.OrtValue.ortvalue_from_shape_and_type(shapes[1], np.float32, device, 0)
        self.binding.bind_ortvalue_input(names[0], self.input)
        self.binding.bind_ortvalue_output(names[1], self.output)
        # Host staging for a short last batch, zeroed once; the padding rows are discarded.
        self.staging = np.zeros(shapes[0], np.float32)


class OrtBackend:
    """An ONNX model on one ONNX Runtime provider, fed fixed-shape batches through IO binding.

    Concurrency: ``slots`` independent bindings (2 on GPUs, 1 on the CPU) are handed out per
    call, so two pipeline threads can call :meth:`run` at once: one copies its batch in (or its
    logits out and through numpy) while the other's batch computes. One caller gets no overlap
    inside :meth:`run`; the pipeline's reader and writer threads run beside it either way.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        provider: str = "cpu",
        batch: int = 4,
        tile: int = 384,
        threads: int | None = None,
        fp16_trt: bool = False,
        cache_dir: Path | None = None,
        slots: int | None = None,
    ) -> None:
        """Build the session once, check it, and allocate the buffers.

        Args:
            model_path: ONNX file with input ``(batch, 4, H, W)`` float32 and a card (embedded or
                sidecar ``<model>.card.json``).
            provider: ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
            batch: tiles per run; every run has this batch size (short batches are padded).
            tile: tile height and width; a multiple of the card's ``size_multiple``.
            threads: intra-op threads; default all cores (CPU) or ORT's default (GPU).
            fp16_trt: TensorRT float16 kernels.
            cache_dir: TensorRT engine and timing caches (default ``$CLOUDSEG_HOME/trt-cache``).
            slots: IO bindings for concurrent callers; default 2 on GPUs, 1 on the CPU.

        Raises:
            ProviderError: unknown provider, or the requested one did not load.
            MissingFileError: no file at ``model_path``.
            ModelError: not an ONNX model, no card, or not ``(N, 4, tile, tile)`` float32 in.
        """
        self.name = prov.check_name(provider)
        self.path = Path(model_path)
        if batch < 1:
            raise ModelError(f"batch must be at least 1, got {batch}")
        if not self.path.is_file():
            raise MissingFileError(f"{self.path}: no model file there")
        self.card = model_card.read(self.path)  # cheap, and refuses non-ONNX bytes first
        if tile <= 0 or tile % self.card.size_multiple:
            raise ModelError(
                f"{self.path}: tile {tile} is not a positive multiple of the card's "
                f"size_multiple {self.card.size_multiple}"
            )
        self.batch, self.tile = batch, tile
        preload_note = "" if provider == "cpu" else prov.preload_gpu_libraries()
        self.session = self._session(provider, threads, fp16_trt, cache_dir)
        self.providers = self.session.get_providers()
        prov.check_loaded(provider, self.providers, preload_note)
        names, shapes = self._check_io()
        device = prov.DEVICES[provider]
        count = slots or (1 if provider == "cpu" else 2)
        self._slots: queue.Queue[_Slot] = queue.Queue()
        for _ in range(count):
            self._slots.put(_Slot(self.session, names, shapes, device))

    def _session(
        self, provider: str, threads: int | None, fp16_trt: bool, cache_dir: Path | None
    ) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # A conv net is one chain of ops: parallelism is inside each op (intra-op), so inter-op
        # threads would only compete for the same cores.
        options.inter_op_num_threads = 1
        if threads or provider == "cpu":
            options.intra_op_num_threads = threads or os.cpu_count() or 1
        # The input name is needed for TensorRT's profile shapes before the real session exists;
        # ``image`` is our exporter's name, a foreign model's comes from a cheap CPU session.
        input_name = "image" if provider != "tensorrt" else self._input_name()
        providers = prov.provider_list(
            provider, input_name, self.batch, self.tile, fp16_trt, cache_dir
        )
        printed = io.StringIO()
        try:
            # ORT's Python layer prints "EP Error ... Falling back" on stdout when a provider
            # fails; check_loaded reports it as one line instead.
            with contextlib.redirect_stdout(printed):
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
            ``(N, tile, tile)`` float32 in ``[0, 1]``.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (N_BANDS, self.tile, self.tile):
            raise ValueError(
                f"batch shape {batch.shape}; this backend runs (N, 4, {self.tile}, {self.tile})"
            )
        out = np.empty((len(batch), self.tile, self.tile), np.float32)
        slot = self._slots.get()  # blocks while every slot is busy with another caller
        try:
            for start in range(0, len(batch), self.batch):
                chunk = batch[start : start + self.batch]
                n = len(chunk)
                if n < self.batch:  # one shape only: pad, run, discard the padding
                    slot.staging[:n] = chunk
                    chunk = slot.staging
                slot.input.update_inplace(chunk)  # host -> bound input buffer, no reallocation
                self.session.run_with_iobinding(slot.binding)
                slot.binding.synchronize_outputs()
                # .numpy() copies device -> host on GPUs; on the CPU it reads the buffer in place.
                out[start : start + n] = cloud_probability(slot.output.numpy()[:n], self.card)
        finally:
            self._slots.put(slot)
        return out

    def close(self) -> None:
        """Drop the buffers and the session (device memory is freed with them)."""
        self._slots = queue.Queue()
        self.session = None  # type: ignore[assignment]
        self.providers = []

    def __repr__(self) -> str:
        where = self.providers[0] if self.providers else "closed"
        return f"OrtBackend({self.path.name}, {where}, batch={self.batch}, tile={self.tile})"


def is_torch_model(model: str | os.PathLike[str]) -> bool:
    """A run folder or a ``.pth``/``.pt`` checkpoint: something only the torch backend runs."""
    path = Path(model)
    return path.is_dir() or path.suffix in TORCH_SUFFIXES


def make_backend(
    model: str | os.PathLike[str], provider: str, batch: int, tile: int, **options: Any
) -> Backend:
    """The backend for ``--model`` and ``--provider``.

    ``provider="torch"``, a run folder or a ``.pth`` checkpoint give the torch backend (on
    ``options["device"]``, default ``"cuda"`` when ``provider`` is ``"cuda"``, else the CPU);
    anything else is an ONNX file for :class:`OrtBackend`, with ``options`` passed on.
    """
    if provider == "torch" or is_torch_model(model):
        if provider not in ("torch", "cpu", "cuda"):
            prov.check_name(provider)
            raise ModelError(
                f"{model}: a PyTorch run or checkpoint runs with --provider torch, cpu or cuda, "
                f"not {provider}; export it to ONNX for {provider}"
            )
        # Imported here: torch takes seconds to load and is not part of the base install.
        from cloudseg.engine.torch_backend import TorchBackend

        device = options.pop("device", "cuda" if provider == "cuda" else "cpu")
        return TorchBackend(Path(model), device=device, batch=batch, tile=tile)
    return OrtBackend(model, provider, batch, tile, **options)
