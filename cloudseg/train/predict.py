"""Run a trained model from its run folder on raw 4-band patches, as the card says.

This is the native PyTorch path: training figures, ``cloudseg-eval patches`` and (later) the
engine's torch backend all go through it, so normalisation and output decoding live in one place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cloudseg.card import ModelCard, read_json
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.train.models import MODELS, build_model, check_input_size
from cloudseg.train.run_files import load_weights
from cloudseg.train.runs import BEST_WEIGHTS, CARD


def model_name_of(card: ModelCard) -> str:
    """``cloudseg-r18`` -> ``r18``; refuses cards of models this package cannot build."""
    name = card.name.removeprefix("cloudseg-")
    if name not in MODELS:
        raise ModelError(f"model card names {card.name!r}, not one of {sorted(MODELS)}")
    return name


def load_state_dict(model: nn.Module, path: Path) -> nn.Module:
    """Load a ``state_dict`` file into ``model``; a wrong architecture is a one-line error."""
    state = load_weights(path)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{path}: checkpoint does not fit this architecture "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected "
            f"weights, e.g. {(result.missing_keys or result.unexpected_keys)[0]!r})"
        )
    return model


def load_run(run_dir: Path) -> tuple[nn.Module, ModelCard]:
    """The best model of a run folder, in eval mode on the CPU, and its card."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MissingFileError(f"{run_dir}: no such run folder")
    card = read_json(run_dir / CARD)
    model = build_model(model_name_of(card), pretrained=False, img_size=card.tile_size)
    load_state_dict(model, run_dir / BEST_WEIGHTS)
    return model.eval(), card


def checkpoint_card(checkpoint: Path) -> ModelCard:
    """The card of a bare checkpoint: the run's ``card.json``, which must sit beside it.

    The card holds the input normalisation the model was trained with, which cannot be guessed
    from the weights, so a checkpoint without it is refused.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(f"{checkpoint}: no checkpoint there")
    card_path = checkpoint.parent / CARD
    if not card_path.is_file():
        raise ModelError(
            f"{checkpoint}: no {CARD} beside it; the card holds the input normalisation the "
            f"model was trained with and cannot be guessed: copy the run's {CARD} next to the "
            "checkpoint, or pass the run folder"
        )
    return read_json(card_path)


def load_checkpoint(checkpoint: Path, card: ModelCard | None = None) -> tuple[nn.Module, ModelCard]:
    """A bare ``state_dict`` file as an eval-mode model on the CPU, with its card."""
    card = card or checkpoint_card(checkpoint)
    model = build_model(model_name_of(card), pretrained=False, img_size=card.tile_size)
    return load_state_dict(model, Path(checkpoint)).eval(), card


def native_bf16(device: torch.device) -> bool:
    """bf16 runs natively here: a CPU with AVX512-BF16 or AMX, a GPU from Ampere on.

    (Elsewhere torch emulates bf16, slower than fp32.) Training and the engine's torch backend
    both pick their ``auto`` precision from this.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
    return any(caps.get(k) for k in ("avx512_bf16", "amx_bf16"))


def cloud_probability(logits: torch.Tensor, card: ModelCard) -> torch.Tensor:
    """``(N, C, H, W)`` logits -> ``(N, H, W)`` cloud probability, by the card's output kind."""
    if card.output_kind == "sigmoid":
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, card.cloud_class_indices].sum(dim=1)


@torch.no_grad()
def predict(
    model: nn.Module,
    card: ModelCard,
    raw: np.ndarray,
    batch_size: int = 4,
    device: torch.device | None = None,
) -> np.ndarray:
    """Cloud probability of raw patches.

    Args:
        model: in eval mode.
        card: gives the input transform and output kind.
        raw: ``(N, 4, H, W)`` values of the card's ``value_kind`` (uint16 DN for ours), H and W
            multiples of the card's ``size_multiple``.
        batch_size: patches per forward pass.
        device: where to run; the model's device by default.

    Returns:
        ``(N, H, W)`` float32 in ``[0, 1]``.
    """
    check_input_size(raw.shape[-2], raw.shape[-1], card.size_multiple)
    device = device or next(model.parameters()).device
    out = np.empty((raw.shape[0], *raw.shape[-2:]), dtype=np.float32)
    for start in range(0, len(raw), batch_size):
        x = torch.from_numpy(card.transform.apply(raw[start : start + batch_size])).to(device)
        prob = cloud_probability(model(x), card)
        out[start : start + batch_size] = prob.float().cpu().numpy()
    return out
