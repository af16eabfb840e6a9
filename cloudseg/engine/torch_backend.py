"""The native PyTorch path as an engine backend: same tiles, blending and I/O as ONNX Runtime.

Imported only through :mod:`cloudseg.engine.registry` when the torch backend is chosen: it needs
the ``[train]`` extra (torch and the model definitions), which the base install lacks. Loading and
output decoding go through :mod:`cloudseg.train.predict` (the one named exception to "the engine
never imports train"), so the comparison with ONNX Runtime is of backends only.

At its best on each device, because the benchmarks compare engine against native *best against
best*: channels-last memory format (oneDNN's and cuDNN's fast convolution layout), autocast to
bf16 or fp16 (``--precision``; ``auto`` picks bf16 on CPUs with AVX512-BF16/AMX and on GPUs that
support it, fp16 on older GPUs, fp32 elsewhere, and each only once proven on the real
reference scenes for this checkpoint: :mod:`cloudseg.engine.proof`), and on CUDA pinned host
buffers with non-blocking copies and a captured CUDA graph replayed for every batch (one fixed
shape: the pipeline pads the last batch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.card import ModelCard
from cloudseg.engine.backend import BackendOptions, check_batch, chunks, mask_channels
from cloudseg.engine.proof import ProofKey, choose_precision, cpu_hardware, sha256
from cloudseg.errors import MissingFileError, ProviderError

try:
    import torch

    from cloudseg.train.predict import cloud_probability, load_checkpoint, load_run, native_bf16
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ProviderError(
        f"the torch backend needs PyTorch ({exc.name} is missing): pip install 'cloudseg[train]'"
    ) from None

log = logging.getLogger("cloudseg.run")

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
#: Iterations run on a side stream before capturing a CUDA graph (cuDNN picks its kernels).
GRAPH_WARMUP = 3


def auto_precision(device: torch.device) -> str:
    """bf16 where it is native (AMX/AVX512-BF16 CPUs, GPUs from Ampere on), fp16 on older GPUs
    (tensor cores), fp32 on CPUs without bf16."""
    if native_bf16(device):
        return "bf16"
    return "f16" if device.type == "cuda" else "f32"


class TorchBackend:
    """A trained cloudseg UNet in PyTorch, run in eval mode under ``torch.inference_mode``."""

    def __init__(self, model: Path, provider: str = "torch", options: BackendOptions | None = None):
        """Load the model once, in the options' precision and device.

        Args:
            model: a run folder (``best.pth`` + ``card.json``) or a ``state_dict`` file with
                the run's ``card.json`` beside it.
            provider: ``"torch"``.
            options: batch, tile, device (None: CPU; N: CUDA device N), precision, threads.

        Raises:
            ProviderError: CUDA asked for but not available.
            MissingFileError: no run folder or checkpoint there.
            ModelError: no card beside a checkpoint, weights that do not fit, or a tile the
                card refuses.
        """
        options = options or BackendOptions()
        self.name, self.options = "torch", options
        if options.device is not None and not torch.cuda.is_available():
            raise ProviderError(
                f"torch device cuda:{options.device} could not be used: torch.cuda.is_available() "
                f"is False (torch {torch.__version__}, CUDA build {torch.version.cuda}); not "
                "falling back to the CPU (leave out --device to run torch on the CPU)"
            )
        self.device = torch.device("cpu" if options.device is None else f"cuda:{options.device}")
        if options.threads and self.device.type == "cpu":
            torch.set_num_threads(options.threads)
        net, self.card = _load(Path(model))
        self.batch, self.tile = options.batch, self.card.check_tile(options.tile)
        self.channels = mask_channels(self.card, options.shadow)
        candidate = auto_precision(self.device)  # proven, or f32 (cloudseg.engine.proof)
        self.precision, self.proof = choose_precision(
            options.precision, candidate, lambda: self._proof_key(Path(model), candidate)
        )
        self.dtype = DTYPES[self.precision]
        self.providers = [f"torch:{self.device}"]
        self.slots = 1
        self.dynamic_shapes = False  # one staging buffer (and CUDA graph) of one shape
        self.model = net.to(self.device).eval().to(memory_format=torch.channels_last)
        self._staging = np.zeros((self.batch, 4, self.tile, self.tile), np.float32)
        self._graph: _CudaGraph | None = None
        self.graph_note = "CPU" if self.device.type == "cpu" else ""
        if self.device.type == "cuda":
            self._graph = self._capture()

    def _proof_key(self, model: Path, precision: str) -> ProofKey:
        """What a proof of ``precision`` for this checkpoint on this device is kept under."""
        hardware = (cpu_hardware() if self.device.type == "cpu"
                    else f"gpu: {torch.cuda.get_device_name(self.device)}")  # fmt: skip
        return ProofKey(sha256(model), "torch", f"torch {torch.__version__}", precision, hardware)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 4, t, t)`` -> ``(N, K, t, t)`` float32 probabilities, on the device."""
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.precision != "f32"):
            logits = self.model(x)
        planes = [cloud_probability(logits.float(), self.card)]
        if self.channels == 2:
            shadow = self.card.shadow_class_indices
            planes.append(torch.softmax(logits.float(), dim=1)[:, shadow].sum(dim=1))
        return torch.stack(planes, dim=1)

    def _capture(self) -> _CudaGraph | None:
        try:
            return _CudaGraph(self._forward, (self.batch, 4, self.tile, self.tile), self.device)
        except RuntimeError as exc:  # some ops cannot be captured: run eagerly, and say so
            self.graph_note = f"not captured ({' '.join(str(exc).split())[:120]})"
            log.warning("torch backend: CUDA graph %s; running eagerly", self.graph_note)
            return None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 4, tile, tile)`` float32, normalised -> ``(N, K, tile, tile)`` in [0, 1]."""
        batch = check_batch(batch, self.tile)
        out = np.empty((len(batch), self.channels, self.tile, self.tile), np.float32)
        done = 0
        with torch.inference_mode():
            for chunk, n in chunks(batch, self.batch, self._staging):
                if self._graph is not None:
                    prob = self._graph.replay(chunk)
                else:
                    prob = self._forward(torch.from_numpy(chunk).to(self.device)).cpu().numpy()
                out[done : done + n] = prob[:n]
                done += n
        return out

    def describe(self) -> dict[str, Any]:
        """Device, precision, threads and versions, for the summary."""
        info = {
            "provider": "torch",
            "runtime": f"torch {torch.__version__}",
            "device": str(self.device),
            "precision": self.precision,
            "precision_proof": self.proof,
            "memory_format": "channels_last",
            "threads": torch.get_num_threads() if self.device.type == "cpu" else None,
        }
        if self.device.type == "cuda":
            info["cuda_graph"] = self._graph is not None or self.graph_note
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info

    def close(self) -> None:
        """Drop the model (and its device memory)."""
        self.model = None
        self._graph = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @classmethod
    def probe(cls, provider: str, device: int = 0) -> str | None:
        """Torch always loads once imported (this module's import fails without it)."""
        return None


class _CudaGraph:
    """One forward pass captured as a CUDA graph: static input and output, replayed per batch.

    The host side copies each batch into a pinned buffer, then to the static device input
    without blocking; ``replay`` launches the whole UNet as one graph (no per-kernel launch
    cost); the output is copied back to a pinned host buffer, and the stream synchronised once.
    """

    def __init__(self, forward: Any, shape: tuple[int, ...], device: torch.device) -> None:
        self.pinned_in = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        self.static_in = torch.zeros(shape, dtype=torch.float32, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP):
                forward(self.static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = forward(self.static_in)
        self.pinned_out = torch.empty(self.static_out.shape, dtype=torch.float32, pin_memory=True)

    def replay(self, chunk: np.ndarray) -> np.ndarray:
        self.pinned_in.numpy()[...] = chunk
        self.static_in.copy_(self.pinned_in, non_blocking=True)
        self.graph.replay()
        self.pinned_out.copy_(self.static_out, non_blocking=True)
        torch.cuda.current_stream(self.static_in.device).synchronize()
        return self.pinned_out.numpy()


def _load(model: Path) -> tuple[torch.nn.Module, ModelCard]:
    if model.is_dir():
        return load_run(model)
    if not model.exists():
        raise MissingFileError(f"{model}: no run folder or checkpoint there")
    return load_checkpoint(model)
