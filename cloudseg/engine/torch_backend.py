"""The native PyTorch path as an engine backend: same tiles, blending and I/O as ONNX Runtime.

Imported only by :func:`cloudseg.engine.backends.make_backend` when the torch backend is chosen:
it needs the ``[train]`` extra (torch and the model definitions), which the base install lacks.
Loading and output decoding go through :mod:`cloudseg.train.predict`, the one place training,
evaluation and this backend share, so the comparison with ONNX Runtime is of backends only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cloudseg.card import ModelCard
from cloudseg.errors import MissingFileError, ModelError, ProviderError

try:
    import torch

    from cloudseg.train.predict import cloud_probability, load_checkpoint, load_run
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ProviderError(
        f"the torch backend needs PyTorch ({exc.name} is missing): pip install 'cloudseg[train]'"
    ) from None

DEVICES = ("cpu", "cuda")


class TorchBackend:
    """A trained cloudseg UNet in PyTorch, run in eval mode under ``torch.inference_mode``."""

    def __init__(self, model: Path, device: str = "cpu", batch: int = 4, tile: int = 384) -> None:
        """Load the model once.

        Args:
            model: a run folder (``best.pth`` + ``card.json``) or a ``state_dict`` file with
                the run's ``card.json`` beside it.
            device: ``"cpu"`` or ``"cuda"``.
            batch: tiles per forward pass.
            tile: tile height and width; a multiple of the card's ``size_multiple``.

        Raises:
            ProviderError: unknown device, or CUDA asked for but not available.
            MissingFileError: no run folder or checkpoint there.
            ModelError: no card beside a checkpoint, or weights that do not fit.
        """
        if device not in DEVICES:
            raise ProviderError(f"unknown torch device {device!r}; choose one of {DEVICES}")
        if device == "cuda" and not torch.cuda.is_available():
            raise ProviderError(
                "torch device 'cuda' could not be used: torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); not falling back "
                "to the CPU (use --provider torch with device cpu)"
            )
        self.name = "torch"
        self.device = torch.device(device)
        self.providers = [f"torch:{device}"]
        self.batch, self.tile = batch, tile
        net, self.card = _load(Path(model))
        if tile <= 0 or tile % self.card.size_multiple:
            raise ModelError(
                f"{model}: tile {tile} is not a positive multiple of {self.card.size_multiple}"
            )
        self.model = net.to(self.device).eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 4, tile, tile)`` float32, normalised -> ``(N, tile, tile)`` float32 in [0, 1]."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (4, self.tile, self.tile):
            raise ValueError(
                f"batch shape {batch.shape}; this backend runs (N, 4, {self.tile}, {self.tile})"
            )
        out = np.empty((len(batch), self.tile, self.tile), np.float32)
        with torch.inference_mode():
            for start in range(0, len(batch), self.batch):
                x = torch.from_numpy(batch[start : start + self.batch]).to(self.device)
                prob = cloud_probability(self.model(x), self.card)
                out[start : start + len(x)] = prob.float().cpu().numpy()
        return out

    def close(self) -> None:
        """Drop the model (and its device memory)."""
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _load(model: Path) -> tuple[torch.nn.Module, ModelCard]:
    if model.is_dir():
        return load_run(model)
    if not model.exists():
        raise MissingFileError(f"{model}: no run folder or checkpoint there")
    return load_checkpoint(model)
