"""The model card: everything the engine needs to run a model, and nothing it must guess.

Stored as one JSON object in the ONNX file's ``metadata_props`` under :data:`METADATA_KEY`, or, for
an ONNX model made elsewhere, in a sidecar ``<model>.card.json``. Training writes the same object
as ``card.json`` in its run folder; export completes it.

The input transform is ``x = ((raw * scale + offset) - mean) / std`` per band, where ``raw`` is
what ``value_kind`` names: Level-1 digital numbers (``"dn"``) or top-of-atmosphere reflectance
(``"toa_reflectance"``), in the order of ``bands``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.bands import check_band
from cloudseg.errors import ModelError

METADATA_KEY = "cloudseg"
SIDECAR_SUFFIX = ".card.json"
VALUE_KINDS = ("dn", "toa_reflectance")
OUTPUT_KINDS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class InputTransform:
    """Per-band affine normalisation: ``((raw * scale + offset) - mean) / std``."""

    scale: float
    offset: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Normalise ``(..., B, H, W)`` raw values into float32 model input."""
        return self.standardise(
            raw.astype(np.float32) * np.float32(self.scale) + np.float32(self.offset)
        )

    def standardise(self, scaled: np.ndarray) -> np.ndarray:
        """The second step alone: ``(scaled - mean) / std`` for values already scaled."""
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        return (scaled.astype(np.float32, copy=False) - mean) / std


@dataclass(frozen=True)
class ModelCard:
    """What a model is, what it eats and what it returns. See the module docstring."""

    name: str
    architecture: str
    bands: tuple[str, ...]
    value_kind: str
    transform: InputTransform
    output_kind: str
    classes: tuple[str, ...]
    cloud_classes: tuple[str, ...]
    threshold: float = 0.5
    tile_size: int = 384
    size_multiple: int = 32
    training: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ModelError(f"model card {self.name!r}: {'; '.join(problems)}")

    @property
    def cloud_class_indices(self) -> list[int]:
        """Output channels whose probabilities add up to "cloud" (softmax cards)."""
        return [self.classes.index(c) for c in self.cloud_classes]

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))

    def to_json(self) -> str:
        # Strict JSON: an undefined score (NaN) is written as null, never as the bare NaN token.
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "card") -> ModelCard:
        """Build a card from parsed JSON, with one-line errors naming ``source``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{source}: unknown model card fields {unknown}")
        try:
            values = dict(data)
            values["transform"] = InputTransform(
                scale=float(data["transform"]["scale"]),
                offset=float(data["transform"]["offset"]),
                mean=tuple(float(v) for v in data["transform"]["mean"]),
                std=tuple(float(v) for v in data["transform"]["std"]),
            )
            for key in ("bands", "classes", "cloud_classes"):
                values[key] = tuple(data[key])
            return cls(**values)
        except KeyError as exc:
            raise ModelError(f"{source}: model card lacks field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"{source}: malformed model card: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "card") -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: model card is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{source}: model card must be a JSON object")
        return cls.from_dict(data, source)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (an undefined score) replaced by None."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_finite(v) for v in value)
    return value


def _problems(card: ModelCard) -> list[str]:
    out = []
    for band in card.bands:
        try:
            check_band(band)
        except ValueError as exc:
            out.append(str(exc))
    n = len(card.bands)
    if len(card.transform.mean) != n or len(card.transform.std) != n:
        out.append(f"transform needs {n} means and stds, one per band")
    if any(s <= 0 for s in card.transform.std):
        out.append("every std must be positive")
    if card.value_kind not in VALUE_KINDS:
        out.append(f"value_kind must be one of {VALUE_KINDS}, got {card.value_kind!r}")
    if card.output_kind not in OUTPUT_KINDS:
        out.append(f"output_kind must be one of {OUTPUT_KINDS}, got {card.output_kind!r}")
    if card.output_kind == "sigmoid" and len(card.classes) != 1:
        out.append("a sigmoid card has exactly one class (the cloud logit)")
    missing = [c for c in card.cloud_classes if c not in card.classes]
    if missing or not card.cloud_classes:
        out.append(
            f"cloud_classes {list(card.cloud_classes)} must be a non-empty subset of classes"
        )
    if not 0.0 < card.threshold < 1.0:
        out.append(f"threshold must lie in (0, 1), got {card.threshold}")
    if card.tile_size <= 0 or card.size_multiple <= 0 or card.tile_size % card.size_multiple:
        out.append(
            f"tile_size {card.tile_size} must be a positive multiple of {card.size_multiple}"
        )
    return out


def sidecar_path(model_path: str | os.PathLike[str]) -> Path:
    """``model.onnx`` -> ``model.onnx.card.json``."""
    path = Path(model_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_json(card: ModelCard, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(card.to_json() + "\n")


def read_json(path: str | os.PathLike[str]) -> ModelCard:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelError(f"{path}: no model card there") from None
    return ModelCard.from_json(text, source=str(path))
