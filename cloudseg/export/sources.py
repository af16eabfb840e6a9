"""Where the model to export comes from, and the model card that goes with it.

Three sources, exactly one per export:

* a run folder (``--run``, default the newest run of the model): ``best.pth`` and ``card.json``;
* a bare ``state_dict`` (``--checkpoint FILE``): its card must be a ``card.json`` beside it.
  Without one the export is refused: the card carries the input normalisation the model was
  trained with, which cannot be recovered from the weights, and a guessed one would give wrong
  masks with no error anywhere;
* ``--random-init``: an untrained model for smoke tests, with a card marked
  ``training.random_init = true`` whose transform is measured on ``--calib`` data when given,
  else :data:`GENERIC_MEAN` / :data:`GENERIC_STD`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cloudseg.bands import BANDS
from cloudseg.card import InputTransform, ModelCard, read_json
from cloudseg.data import cloud38
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.train.common import versions
from cloudseg.train.data import DN_SCALE, measure_transform
from cloudseg.train.models import build_model, model_spec
from cloudseg.train.predict import checkpoint_card, load_checkpoint, load_run, model_name_of
from cloudseg.train.runs import CARD, newest_run

#: Per-band mean and std of ``dn / 65535`` on valid pixels of 12 real 38-Cloud patches (the
#: sample the tests read, ``tests/conftest.py``: 0.259, 0.254, 0.271, 0.294 and 0.107, 0.101,
#: 0.105, 0.106), rounded: the right scale for Level-1 DN, for untrained smoke-test models only.
GENERIC_MEAN = (0.26, 0.25, 0.27, 0.29)
GENERIC_STD = (0.11, 0.10, 0.11, 0.11)


@dataclass(frozen=True)
class Source:
    """A model in eval mode on the CPU, its card, and a description for the card and log."""

    model: nn.Module
    card: ModelCard
    description: str


def load_source(
    model: str,
    run: Path | None = None,
    checkpoint: Path | None = None,
    random_init: bool = False,
    data: Path | None = None,
    tile: int | None = None,
    seed: int = 0,
) -> Source:
    """Load the model ``model`` (``r18``/``r34``) from the one source given (module docstring).

    Raises:
        ModelError: more than one source, a card of another model, a checkpoint that does not
            fit the architecture, or a checkpoint without ``card.json`` beside it.
        MissingFileError: no run folder, checkpoint or finished run.
    """
    model_spec(model)  # unknown names fail first
    if sum((run is not None, checkpoint is not None, random_init)) > 1:
        raise ModelError("give one of --run, --checkpoint and --random-init")
    if random_init:
        return _random_init(model, data, tile, seed)
    if checkpoint is not None:
        return _checkpoint(model, Path(checkpoint))
    if run is None:
        try:
            run = newest_run(model)
        except MissingFileError as exc:
            raise MissingFileError(f"{exc}, or --random-init for an untrained smoke test") from None
    run = Path(run)
    if not run.is_dir():
        raise MissingFileError(f"{run}: no such run folder")
    _same_model(model, read_json(run / CARD), run / CARD)  # before building the wrong model
    net, card = load_run(run)
    return Source(net, card, f"run {run}")


def _same_model(model: str, card: ModelCard, where: Path) -> None:
    if model_name_of(card) != model:
        raise ModelError(f"{where}: card is for {card.name!r}, but --model is {model}")


def _checkpoint(model: str, checkpoint: Path) -> Source:
    card = checkpoint_card(checkpoint)
    _same_model(model, card, checkpoint.parent / CARD)  # before building the wrong model
    net, card = load_checkpoint(checkpoint, card)
    return Source(net, card, f"checkpoint {checkpoint}")


def _random_init(model: str, data: Path | None, tile: int | None, seed: int) -> Source:
    spec = model_spec(model)
    torch.manual_seed(seed)  # the same untrained weights for the same seed
    tile_size = tile or spec.tile_size
    net = build_model(model, pretrained=False, img_size=tile_size).eval()
    if data is not None:
        folder = cloud38.find_split(data, "train")
        transform = measure_transform(folder, cloud38.list_patches(folder, "train"))
        normalisation = f"measured on {folder}"
    else:
        transform = InputTransform(DN_SCALE, 0.0, GENERIC_MEAN, GENERIC_STD)
        normalisation = "generic (cloudseg.export.sources.GENERIC_MEAN/STD)"
    card = ModelCard(
        name=f"cloudseg-{spec.name}",
        architecture=spec.architecture,
        bands=BANDS,
        value_kind="dn",
        transform=transform,
        output_kind=spec.output_kind,
        classes=spec.classes,
        cloud_classes=spec.cloud_classes,
        tile_size=tile_size,
        size_multiple=spec.size_multiple,
        training={
            "data_origin": "none",
            "random_init": True,
            "seed": seed,
            "normalisation": normalisation,
        },  # fmt: skip
        versions=versions(),
    )
    return Source(net, card, f"random init (seed {seed})")
