"""The backend contract: ``run(batch) -> cloud probability``, whatever runs the model.

Every provider (:mod:`cloudseg.engine.registry`) is one class with the :class:`Backend` shape,
built once per ``cloudseg-run`` from the model path and one :class:`BackendOptions`, and reused
for every tile of every scene. Logits become probabilities here, in numpy, not inside the graph:
the ONNX file stays the exact artifact export checked for parity (and foreign models run
unmodified with a sidecar card); the cost is a few elementwise passes over ``(N, C, tile, tile)``,
small beside the UNet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cloudseg.card import DEFAULT_TILE, ModelCard
from cloudseg.errors import ModelError

N_BANDS = 4
#: ``--precision`` choices (OpenVINO's inference precision, torch's autocast dtype).
PRECISIONS = ("auto", "f32", "bf16", "f16")


@dataclass(frozen=True)
class BackendOptions:
    """How to run the model, built once by the CLI; each backend reads what applies to it.

    Attributes:
        batch: tiles per inference call (short last batches are padded: one shape only).
        tile: tile height and width in pixels (checked against the card).
        threads: intra-op CPU threads; None: every core (CPU providers) or the runtime's default.
        device: GPU ordinal: for cuda and tensorrt (None: 0); for torch, None runs on the CPU
            and N on CUDA device N.
        precision: ``auto``, ``f32``, ``bf16`` or ``f16`` (openvino and torch; see each backend).
        fp16: TensorRT float16 kernels (``--fp16``).
        trt_cache: TensorRT engine and timing caches; None: :func:`cloudseg.home.trt_cache_dir`.
        slots: concurrent calls the backend accepts (buffers or infer requests); None: its own
            default (1 on the CPU, 2 on GPUs and OpenVINO).
        shadow: also return cloud-shadow probability (the card must have a shadow class).
    """

    batch: int = 1
    tile: int = DEFAULT_TILE
    threads: int | None = None
    device: int | None = None
    precision: str = "auto"
    fp16: bool = False
    trt_cache: Path | None = None
    slots: int | None = None
    shadow: bool = False

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ModelError(f"batch must be at least 1, got {self.batch}")
        if self.precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if self.device is not None and self.device < 0:
            raise ModelError(f"device must be a GPU number >= 0, got {self.device}")
        if self.threads is not None and self.threads < 1:
            raise ModelError(f"threads must be at least 1, got {self.threads}")

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


class Backend(Protocol):
    """What the pipeline needs from a model runner.

    Attributes:
        name: the provider name it was made for (``cpu``, ``cuda``, ``tensorrt``, ``openvino``,
            ``torch``).
        providers: what actually runs (ORT providers in session order, ``openvino:CPU``,
            ``torch:cuda:0``).
        card: the model card (input transform, output kind, threshold).
        options: the options it runs with.
        slots: how many :meth:`run` calls may be in flight at once (the pipeline keeps that
            many batches going so that reading and blending overlap inference).
        dynamic_shapes: :meth:`run` also takes tiles trimmed below ``tile`` (multiples of the
            card's size multiple): the pipeline then trims edge tiles to their valid pixels
            (:func:`cloudseg.engine.tiling.trim`). False for fixed-shape runtimes.
    """

    name: str
    providers: list[str]
    card: ModelCard
    options: BackendOptions
    slots: int
    dynamic_shapes: bool

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 4, H, W)`` float32, already normalised -> ``(N, K, H, W)`` float32 in
        ``[0, 1]``: cloud probability, and cloud-shadow probability when ``options.shadow``
        (``K = 2``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What ran, for the summary: provider, precision, device, threads, versions."""
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


def mask_channels(card: ModelCard, shadow: bool) -> int:
    """Probability planes a backend returns: 1 (cloud), or 2 (cloud, shadow) with ``shadow``.

    Raises:
        ModelError: ``shadow`` asked of a model without a cloud-shadow class.
    """
    if shadow and not card.shadow_classes:
        raise ModelError(
            f"model {card.name} has no cloud-shadow class (classes {', '.join(card.classes)}); "
            "--shadow needs one, e.g. --model ukis-l1c or ukis-l2a"
        )
    return 2 if shadow else 1


def class_probabilities(logits: np.ndarray, card: ModelCard, shadow: bool) -> np.ndarray:
    """``(N, C, H, W)`` logits -> ``(N, K, H, W)`` float32: cloud, then (``shadow``) shadow.

    Softmax over the C classes (sigmoid for a one-logit card), summed over the card's cloud
    classes and, for the second plane, its shadow classes.
    """
    cloud = cloud_probability(logits, card)
    if not shadow:
        return cloud[:, None]
    logits = np.asarray(logits, dtype=np.float32)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    shade = (e[:, card.shadow_class_indices].sum(axis=1) / e.sum(axis=1)).astype(np.float32)
    return np.stack([cloud, shade], axis=1)


def check_batch(batch: np.ndarray, tile: int, card: ModelCard | None = None) -> np.ndarray:
    """``batch`` as C-contiguous float32 ``(N, 4, tile, tile)``; else a ValueError naming it.

    With ``card`` (a backend whose :attr:`Backend.dynamic_shapes` is true), a trimmed batch
    ``(N, 4, h, w)`` with ``h, w <= tile`` in multiples of the card's size multiple passes too.
    """
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim == 4 and batch.shape[1] == N_BANDS and card is not None:
        h, w = batch.shape[2:]
        m = card.size_multiple
        if 0 < h <= tile and 0 < w <= tile and h % m == 0 and w % m == 0:
            return batch
    if batch.ndim != 4 or batch.shape[1:] != (N_BANDS, tile, tile):
        raise ValueError(f"batch shape {batch.shape}; this backend runs (N, 4, {tile}, {tile})")
    return batch


def chunks(batch: np.ndarray, size: int, staging: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Split ``batch`` into runs of exactly ``size`` tiles; a short last one is padded.

    Args:
        batch: ``(N, ...)`` input.
        size: the one batch size the runtime sees.
        staging: ``(size, ...)`` buffer the short last chunk is copied into (its padding rows
            keep whatever they held: their outputs are discarded).

    Returns:
        ``(chunk, n)`` pairs: ``chunk`` has ``size`` rows, the first ``n`` of them real.
    """
    out = []
    for start in range(0, len(batch), size):
        chunk = batch[start : start + size]
        n = len(chunk)
        if n < size:
            staging[:n] = chunk
            chunk = staging
        out.append((chunk, n))
    return out
