"""Proof that an exported file computes what the PyTorch model computes.

fp32 parity (issue 4): on the same inputs, ONNX Runtime (CPU) and PyTorch logits differ by at most
:data:`LOGIT_ATOL` anywhere, and their cloud masks agree at every pixel whose decision margin is
above :data:`MARGIN`. The decision margin is the cloud log-odds minus the threshold's:
``logit - logit(t)`` for a sigmoid card, ``logsumexp(cloud logits) - logsumexp(other logits) -
logit(t)`` for a softmax card; its sign is the mask and it is 0 on the threshold, where a 1e-6
difference may flip a pixel either way. Pixels with a margin within :data:`MARGIN` are left out.

Variants (fp16, int8) are held to mask agreement instead: the share of valid pixels (any band
non-zero) of held-out patches where the variant's mask equals the fp32 file's, at least
:data:`MIN_AGREEMENT`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from cloudseg.card import ModelCard
from cloudseg.errors import ProviderError
from cloudseg.export.onnx_export import INPUT_NAME

LOGIT_ATOL = 1e-4
MARGIN = 1e-3
MIN_AGREEMENT = 0.995
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Parity:
    """fp32 parity figures of one export."""

    max_abs_diff: float  # largest |ORT - PyTorch| over every logit
    mask_mismatches: int  # pixels with |margin| > MARGIN whose masks differ
    decided_pixels: int  # pixels with |margin| > MARGIN
    pixels: int
    inputs: tuple[str, ...]  # what was compared, e.g. "random 2x4x64x64"

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= LOGIT_ATOL and self.mask_mismatches == 0

    def summary(self) -> str:
        return (
            f"max |logit diff| {self.max_abs_diff:.1e} (limit {LOGIT_ATOL:.0e}), "
            f"{self.mask_mismatches:,} mask mismatches in {self.decided_pixels:,} decided pixels "
            f"of {self.pixels:,} ({', '.join(self.inputs)})"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "inputs": list(self.inputs), "logit_atol": LOGIT_ATOL}


@dataclass(frozen=True)
class Agreement:
    """Mask agreement of a variant with the fp32 file, on valid pixels of held-out patches."""

    variant: str
    share: float
    valid_pixels: int
    patches: int
    source: str  # where the patches came from
    cloud_share: float = float("nan")  # of valid pixels the reference calls cloud

    @property
    def decisions_vary(self) -> bool:
        """The reference calls between 5 % and 95 % of the pixels cloud: an agreement figure
        on such masks means something (a constant mask agrees with any near-constant one)."""
        return 0.05 <= self.cloud_share <= 0.95

    @property
    def passed(self) -> bool:
        return self.share >= MIN_AGREEMENT

    def summary(self) -> str:
        return (
            f"mask agreement with fp32 {100 * self.share:.3f} % (minimum "
            f"{100 * MIN_AGREEMENT:.1f} %) of {self.valid_pixels:,} valid pixels in "
            f"{self.patches} {self.source} ({100 * self.cloud_share:.1f} % cloud in fp32)"
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "with": "fp32", "minimum": MIN_AGREEMENT}


def session(model: Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session over a file or serialised model, with ORT's default (full) optimisations."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    src = str(model) if isinstance(model, Path) else model
    sess = ort.InferenceSession(src, sess_options=options, providers=[CPU])
    if sess.get_providers()[0] != CPU:  # never compare against another provider by accident
        raise ProviderError(f"ONNX Runtime gave {sess.get_providers()} instead of {CPU}")
    return sess


def run_onnx(sess: ort.InferenceSession, x: np.ndarray, batch: int = 2) -> np.ndarray:
    """``(N, 4, H, W)`` float32 -> ``(N, C, H, W)`` float32 logits, ``batch`` at a time."""
    out = [sess.run(None, {INPUT_NAME: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float32, copy=False)


@torch.no_grad()
def run_torch(model: nn.Module, x: np.ndarray, batch: int = 2) -> np.ndarray:
    """The PyTorch model (eval mode, CPU) on the same input as :func:`run_onnx`."""
    out = [model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


def decision_margin(logits: np.ndarray, card: ModelCard) -> np.ndarray:
    """``(N, C, H, W)`` logits -> ``(N, H, W)`` float64 margin: > 0 is cloud (module docstring)."""
    z = logits.astype(np.float64)
    t = card.threshold
    if card.output_kind == "sigmoid":
        log_odds = z[:, 0]
    else:
        cloud = card.cloud_class_indices
        other = [i for i in range(z.shape[1]) if i not in cloud]
        log_odds = _logsumexp(z[:, cloud]) - (_logsumexp(z[:, other]) if other else -np.inf)
    return log_odds - math.log(t / (1 - t))


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


def check_parity(
    model: nn.Module,
    sess: ort.InferenceSession,
    card: ModelCard,
    inputs: Sequence[tuple[str, np.ndarray]],
) -> Parity:
    """Compare ``model`` (PyTorch, eval) with ``sess`` (the exported file) on ``inputs``.

    Args:
        inputs: ``(description, (N, 4, H, W) float32 normalised input)`` pairs.
    """
    worst, mismatches, decided, pixels = 0.0, 0, 0, 0
    for _, x in inputs:
        ref, got = run_torch(model, x), run_onnx(sess, x)
        if got.shape != ref.shape:
            return Parity(math.inf, -1, 0, 0, (f"ONNX shape {got.shape} != {ref.shape}",))
        worst = max(worst, float(np.abs(ref - got).max()))
        margin_ref, margin_got = decision_margin(ref, card), decision_margin(got, card)
        sure = np.abs(margin_ref) > MARGIN
        mismatches += int(np.count_nonzero(((margin_ref > 0) != (margin_got > 0)) & sure))
        decided += int(np.count_nonzero(sure))
        pixels += margin_ref.size
    return Parity(worst, mismatches, decided, pixels, tuple(name for name, _ in inputs))


def mask_agreement(
    reference: ort.InferenceSession,
    candidate: ort.InferenceSession,
    card: ModelCard,
    raw: np.ndarray,
    variant: str,
    source: str,
) -> Agreement:
    """Agreement of ``candidate``'s cloud mask with ``reference``'s on valid pixels.

    Args:
        raw: ``(N, 4, H, W)`` patches in the card's value kind (uint16 DN for ours); they are
            normalised with the card's transform; pixels with every band 0 are no data.
    """
    x = card.transform.apply(raw)
    valid = np.any(raw != 0, axis=1)
    ref = decision_margin(run_onnx(reference, x), card) > 0
    got = decision_margin(run_onnx(candidate, x), card) > 0
    n_valid = int(np.count_nonzero(valid))
    same = int(np.count_nonzero((ref == got) & valid))
    share = same / n_valid if n_valid else 0.0
    cloud = int(np.count_nonzero(ref & valid)) / n_valid if n_valid else float("nan")
    return Agreement(variant, share, n_valid, len(raw), source, cloud)


def random_inputs(
    sizes: Sequence[tuple[int, int, int]], seed: int = 0
) -> list[tuple[str, np.ndarray]]:
    """Standard-normal inputs (the scale of normalised bands), one per ``(batch, h, w)``."""
    rng = np.random.default_rng(seed)
    return [
        (f"random {n}x4x{h}x{w}", rng.standard_normal((n, 4, h, w), dtype=np.float32))
        for n, h, w in sizes
    ]
