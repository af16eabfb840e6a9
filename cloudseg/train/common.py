"""What both training pipelines share: the run configuration, device, seeding and the run card.

A run folder ends up holding ``best.pth`` (the best ``state_dict``), ``card.json`` (model card
fields export needs), ``log.csv`` and plots; see :mod:`cloudseg.train.runs`.
"""

from __future__ import annotations

import json
import platform
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cloudseg
from cloudseg.card import ModelCard, write_json
from cloudseg.data.synthetic_dataset import data_origin
from cloudseg.train.data import TrainData
from cloudseg.train.models import MODELS
from cloudseg.train.runs import CARD


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run is asked to do, built once by the CLI."""

    model: str
    data_dir: Path
    size: int = 192  # first stage: patches resized from 384 (progressive resizing)
    fine_tune_size: int | None = 384  # second stage at this size; None skips it
    epochs: int = 10
    fine_tune_epochs: int = 5
    bs: int = 8
    lr: float | None = None  # None: r18 uses lr_find's suggestion, r34 uses 1e-3
    limit: int | None = None
    seed: int = 0
    pretrained: bool = True
    nonempty: bool = False
    val_fraction: float = 0.2
    stats: Path | None = None
    workers: int = 0
    cache: bool = False
    lr_find_iters: int = 100
    quiet: bool = False
    precision: str = "auto"  # cloudseg.train.precision: auto, f32, bf16, f16

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


@dataclass
class TrainResult:
    """What a pipeline hands back to the CLI, which writes ``card.json`` from it.

    ``scores`` are the validation scores of the checkpoint kept in ``best.pth`` (keys from
    :data:`cloudseg.metrics.SCORES` that were measured, plus ``loss``); ``history`` holds
    per-stage facts worth keeping in the card (learning rates, sizes, epochs run, lr_find's
    suggestion). ``interrupted`` is set when Ctrl-C stopped training early.
    """

    scores: dict[str, float]
    history: dict[str, Any]
    interrupted: bool = False


def pick_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch so a run repeats on the same machine."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (fastai and libraries draw from the global state)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    out = {
        "cloudseg": cloudseg.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        import fastai

        out["fastai"] = fastai.__version__
    except ImportError:  # r34 runs without fastai
        pass
    return out


def run_card(
    config: TrainConfig,
    data: TrainData,
    scores: dict[str, Any],
    history: dict[str, Any] | None = None,
) -> ModelCard:
    """The model card of a run: export completes it with ONNX facts and export time."""
    spec = MODELS[config.model]
    return ModelCard(
        name=f"cloudseg-{spec.name}",
        architecture=spec.architecture,
        bands=("red", "green", "blue", "nir"),
        value_kind="dn",
        transform=data.transform,
        output_kind=spec.output_kind,
        classes=spec.classes,
        cloud_classes=spec.cloud_classes,
        threshold=0.5,
        tile_size=config.fine_tune_size or config.size,
        size_multiple=spec.size_multiple,
        training={
            # "synthetic" or "real": a model trained on synthetic scenes only gets a warning on
            # real products, and is never the default for them (cloudseg.engine.models)
            "data_origin": data_origin(data.root),
            "data": str(data.root),
            "train_patches": len(data.train),
            "valid_patches": len(data.valid),
            "train_scenes": data.train_scenes,
            "valid_scenes": data.valid_scenes,
            "normalisation": data.stats_source,
            "config": config.to_dict(),
            **({"history": history} if history else {}),
        },
        scores=scores,
        versions=versions(),
    )


def save_run_card(run_dir: Path, card: ModelCard) -> Path:
    path = Path(run_dir) / CARD
    write_json(card, path)
    return path


def load_run_card(run_dir: Path) -> ModelCard:
    from cloudseg.card import read_json

    return read_json(Path(run_dir) / CARD)


def dump_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")
