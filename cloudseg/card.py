"""The model card: everything the engine needs to run a model, and nothing it must guess.

Stored as one JSON object in the ONNX file's ``metadata_props`` under :data:`METADATA_KEY`, or, for
an ONNX model made elsewhere, in a sidecar ``<model>.card.json``. Training writes the same object
as ``card.json`` in its run folder; export completes it.

The input transform is ``x = ((raw * scale + offset) - mean) / std`` per band, where ``raw`` is
what ``value_kind`` names (:data:`VALUE_KIND_WORDS`): Level-1 digital numbers (``"dn"``),
top-of-atmosphere reflectance (``"toa_reflectance"``, from a Level-1 scene and its MTL) or
surface reflectance (``"surface_reflectance"``, Collection 2 Level-2), in the order of ``bands``.

The card is also the one owner of *tile fit*: which tile sizes the model takes
(:meth:`ModelCard.check_tile`, :meth:`ModelCard.tile_sizes`) and the defaults the engine starts
from (:data:`DEFAULT_TILE`, :meth:`ModelCard.default_overlap`). Nothing else decides them.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cloudseg.bands import check_band
from cloudseg.errors import MissingFileError, ModelError

METADATA_KEY = "cloudseg"
SIDECAR_SUFFIX = ".card.json"
#: What a model eats, in a user's words (for refusals that name the mismatch).
VALUE_KIND_WORDS = {
    "dn": "Level-1 digital numbers",
    "toa_reflectance": "top-of-atmosphere reflectance (a Level-1 scene with its MTL)",
    "surface_reflectance": "surface reflectance (a Collection 2 Level-2 scene)",
}
VALUE_KINDS = tuple(VALUE_KIND_WORDS)
OUTPUT_KINDS = ("sigmoid", "softmax")

#: Tile side the cloudseg UNets are trained and exported at, and their total downsampling
#: (five stride-2 stages of a ResNet); cards of other models say their own.
DEFAULT_TILE = 384
DEFAULT_SIZE_MULTIPLE = 32
#: Pixels a tile overlaps each neighbour by on each side: about the UNets' effective receptive
#: field at full resolution (seams measured in docs/run.md: 384/32 keeps 99.92 %).
DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class InputTransform:
    """Per-band affine normalisation: ``((raw * scale + offset) - mean) / std``."""

    scale: float
    offset: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Normalise ``(..., B, H, W)`` raw values into float32 model input."""
        # In place on one new array: the same float32 operations in the same order as the
        # expression, without its three tile-sized temporaries per reader thread.
        out = raw.astype(np.float32)
        out *= np.float32(self.scale)
        out += np.float32(self.offset)
        out -= np.asarray(self.mean, np.float32)[:, None, None]
        out /= np.asarray(self.std, np.float32)[:, None, None]
        return out

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
    shadow_classes: tuple[str, ...] = ()  # softmax classes that are cloud shadow, if any
    tile_size: int = DEFAULT_TILE
    size_multiple: int = DEFAULT_SIZE_MULTIPLE
    fixed_size: bool = False  # the graph takes tile_size x tile_size only
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

    @property
    def shadow_class_indices(self) -> list[int]:
        """Output channels whose probabilities add up to "cloud shadow" (empty: no shadow)."""
        return [self.classes.index(c) for c in self.shadow_classes]

    def fits(self, tile: int) -> bool:
        """Whether the model takes ``tile x tile`` inputs."""
        if self.fixed_size:
            return tile == self.tile_size
        return tile > 0 and tile % self.size_multiple == 0

    def check_tile(self, tile: int) -> int:
        """``tile`` itself if the model takes it, else a one-line :class:`ModelError`."""
        if self.fits(tile):
            return tile
        if self.fixed_size:
            need = f"takes {self.tile_size} px tiles only (its graph has a fixed size)"
        else:
            need = f"needs tiles that are a positive multiple of {self.size_multiple} px"
        raise ModelError(f"tile {tile} does not fit model {self.name}: it {need}")

    def tile_sizes(self, smallest: int, largest: int) -> tuple[int, ...]:
        """Every tile side from ``smallest`` to ``largest`` px the model takes, ascending."""
        if self.fixed_size:
            return (self.tile_size,) if smallest <= self.tile_size <= largest else ()
        first = -(-max(smallest, 1) // self.size_multiple) * self.size_multiple
        return tuple(range(first, largest + 1, self.size_multiple))

    def default_overlap(self, tile: int) -> int:
        """:data:`DEFAULT_OVERLAP`, but at most a quarter of ``tile`` (small test tiles)."""
        return min(DEFAULT_OVERLAP, tile // 4)

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
            values["shadow_classes"] = tuple(data.get("shadow_classes", ()))
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
    if card.shadow_classes and card.output_kind != "softmax":
        out.append("only a softmax card can have shadow_classes")
    shadow = set(card.shadow_classes)
    if not shadow <= set(card.classes) or shadow & set(card.cloud_classes):
        out.append(f"shadow_classes {list(card.shadow_classes)} must be classes that are not cloud")
    if not 0.0 < card.threshold < 1.0:
        out.append(f"threshold must lie in (0, 1), got {card.threshold}")
    if not isinstance(card.fixed_size, bool):
        out.append(f"fixed_size must be true or false, got {card.fixed_size!r}")
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


# ---------------------------------------------------------------------------------------------
# Cards inside ONNX files
# ---------------------------------------------------------------------------------------------

# Field numbers of onnx.proto's ModelProto and StringStringEntryProto (stable since ONNX 1.0).
_GRAPH_FIELD, _METADATA_FIELD = 7, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


def read(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of an ONNX file: embedded first, else the sidecar ``<model>.card.json``.

    Reads the file's top-level protobuf fields only (see :func:`onnx_metadata`): no ``onnx``
    package, no inference session, no graph parsing, so it is cheap even for large models.

    Raises:
        MissingFileError: ``path`` is not a file.
        ModelError: the file is not an ONNX model, the card is malformed, or there is no card.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no model file there")
    metadata = onnx_metadata(path)
    if METADATA_KEY in metadata:
        return ModelCard.from_json(
            metadata[METADATA_KEY], source=f"{path} (metadata_props[{METADATA_KEY!r}])"
        )
    sidecar = sidecar_path(path)
    if sidecar.is_file():
        return read_json(sidecar)
    raise ModelError(
        f"{path}: no model card; the engine needs one (bands, input transform, output kind): "
        f"export with cloudseg-export, or write the card JSON to {sidecar}"
    )


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict, by walking its top-level protobuf fields.

    An ONNX file is one serialised ``ModelProto``; the graph (field 7, nearly all the bytes) is
    skipped by its length prefix, and only ``metadata_props`` (field 14) entries are decoded.
    ``onnxruntime``'s ``get_modelmeta().custom_metadata_map`` gives the same dict, but only after
    building a whole session.

    Raises:
        ModelError: the bytes are not a ``ModelProto`` (no graph, or broken wire format).
    """
    path = Path(path)
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise ModelError(f"{path}: empty file, not an ONNX model")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                top = list(_fields(buf, 0, len(buf)))
                if not any(number == _GRAPH_FIELD for number, _, _ in top):
                    raise ValueError("no graph")
                out = {}
                for number, start, end in top:
                    if number == _METADATA_FIELD:
                        entry = {k: buf[a:b].decode() for k, a, b in _fields(buf, start, end)}
                        out[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
                return out
            except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                raise ModelError(f"{path}: not an ONNX model ({exc})") from None


def _varint(buf: mmap.mmap, pos: int) -> tuple[int, int]:
    """Decode the protobuf varint at ``pos``; return it and the position after it."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("broken varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: mmap.mmap, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, end)`` of each length-delimited field of the message in
    ``buf[start:end]``; scalar fields are skipped, groups (unused by ONNX) refused."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated field")
            yield number, pos, pos + length
            pos += length
        else:
            raise ValueError(f"wire type {wire}")
    if pos != end:
        raise ValueError("truncated message")
