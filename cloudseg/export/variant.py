"""int8 variants of any ONNX model with a card (ukis-csmask's included), calibrated on real pixels.

``cloudseg-export --model ukis-l1c --int8`` (or an ONNX file with a card) writes
``<model>-int8.onnx`` beside the model file, with the model's card inside it (variant ``int8``,
and the SHA-256 of the file it was made from). Steps:

1. **float16 graphs become float32 first.** ukis-csmask's models are float16 throughout (every
   initialiser, with casts at the input, the output and around each decoder ``Resize``); ONNX
   Runtime's quantiser calibrates and quantises float32 tensors only and rejects them as they
   are. :func:`cloudseg.export.fp16.to_float32` widens every float16 initialiser, constant and
   cast target. Widening changes the arithmetic too: without the float16 rounding between
   nodes, ukis-l1c's masks differ from the published model's on 3 % of a real snow tile.
2. **Calibration on real pixels**: the model's own input tensors (read, converted to its value
   kind and normalised by the engine itself, on the card's grid) from the real reference scenes
   that give its value kind (:mod:`cloudseg.data.reference`): the USGS products and every second
   Biome tile, so half of the Biome tiles a proof is judged on were never calibrated on.
3. ONNX Runtime static quantisation, QDQ (:func:`cloudseg.export.quantise.to_int8`); for a
   foreign graph only its dense convolutions are quantised (not depthwise ones, not the
   squeeze-excitation ``Mul``/``Sigmoid`` or ``Resize``): those carry little of the compute and
   most of the error. ``keep_float`` names more nodes (by a part of their name) to keep float.

Whether the variant is ever run is not decided here: ``cloudseg-eval prove --precision int8``
measures it against the float model on every real reference scene, and ``--precision auto``
runs it only when that proof passed (:mod:`cloudseg.engine.proof`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from cloudseg.atomic import atomic_path, check_writable
from cloudseg.card import read
from cloudseg.errors import DataError

log = logging.getLogger("cloudseg.export")

#: Tiles the calibration keeps at most (MinMax ranges; more adds time, not range).
CALIBRATION_TILES = 64


class _Recorder:
    """A backend wrapper that keeps every normalised batch the engine feeds the model."""

    def __init__(self, backend: Any) -> None:
        self.backend, self.batches = backend, []
        for name in ("name", "providers", "card", "options", "slots"):
            setattr(self, name, getattr(backend, name))

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(np.array(batch, np.float32))
        return self.backend.run(batch)

    def describe(self) -> dict[str, Any]:
        return self.backend.describe()

    def close(self) -> None:
        self.backend.close()


def calibration_tiles(
    model: Path, root: str | os.PathLike[str] | None = None, limit: int = CALIBRATION_TILES
) -> tuple[np.ndarray, list[str]]:
    """The model's input tiles from the real reference scenes it may calibrate on.

    Returns:
        ``(N, 4, T, T)`` float32 tiles as the engine feeds them, and the scenes' names.

    Raises:
        DataError: no reference scene gives the model's value kind.
    """
    from cloudseg.data.reference import reference_items
    from cloudseg.data.sources import open_any
    from cloudseg.engine import proof
    from cloudseg.engine.in_memory import predict_scene
    from cloudseg.engine.registry import make_backend

    card = read(model)
    items = [i for i in reference_items(root) if proof.fits(card, i)]
    biome = [i for i in items if i.group == "biome-l8"]
    chosen = [i for i in items if i not in biome] + biome[::2]
    if not chosen:
        raise DataError(
            f"no real reference scene gives {card.value_kind} values to calibrate "
            f"{card.name} on (cloudseg-eval prove --help: the reference folder)"
        )
    recorder = _Recorder(make_backend(model, "cpu", proof.options_for(
        "f32", card.tile_size, False, None)))  # fmt: skip
    try:
        for item in chosen:
            predict_scene(open_any(item.path), recorder, card, proof.reference_spec(card))
    finally:
        recorder.close()
    tiles = np.concatenate(recorder.batches)
    keep = np.random.default_rng(0).permutation(len(tiles))[:limit]
    return tiles[np.sort(keep)], [i.name for i in chosen]


def foreign_float_nodes(graph: onnx.ModelProto, keep_float: tuple[str, ...] = ()) -> list[str]:
    """Nodes of a foreign graph kept float: depthwise convolutions, and any whose name holds
    one of ``keep_float``."""
    out = []
    for node in graph.graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if (node.op_type == "Conv" and groups > 1) or any(k in node.name for k in keep_float):
            out.append(node.name)
    return out


def write_int8(
    model: Path,
    out: Path | None = None,
    root: str | os.PathLike[str] | None = None,
    keep_float: tuple[str, ...] = (),
    overwrite: bool = False,
) -> Path:
    """Write the int8 variant of the ONNX file ``model`` (it must have a card).

    Args:
        model: the float model (float16 graphs are widened first).
        out: the variant's file (default ``<model>-int8.onnx`` beside it).
        root: the real reference folder (default :func:`cloudseg.data.reference.default_root`).
        keep_float: parts of node names to keep in float.
        overwrite: replace an existing variant.

    Returns:
        The variant's path.

    Raises:
        OutputExistsError: ``out`` exists without ``overwrite``.
        DataError: no real pixels to calibrate on.
    """
    from cloudseg.engine.proof import sha256
    from cloudseg.export.fp16 import to_float32
    from cloudseg.export.onnx_export import append_card
    from cloudseg.export.quantise import to_int8
    from cloudseg.home import variant_path

    model = Path(model)
    # beside the file named (a link into ukis-csmask's package: beside the link, in the home)
    out = Path(out) if out is not None else variant_path(model, "int8")
    check_writable(out, overwrite)
    card = read(model)
    tiles, scenes = calibration_tiles(model, root)
    log.info("int8 %s: calibrating on %d real tiles of %d scenes", card.name, len(tiles),
             len(scenes))  # fmt: skip
    graph, widened = to_float32(onnx.load_model(str(model)))
    with atomic_path(out, overwrite=overwrite) as tmp:
        to_int8(
            graph,
            tmp,
            tiles,
            op_types=("Conv",),
            keep_float=lambda prepared: foreign_float_nodes(prepared, keep_float),
        )
        export = dict(card.extra.get("export", {}))
        export |= {
            "variant": "int8",
            "derived_from": {"file": model.name, "sha256": sha256(model)},
            "calibration": {"tiles": len(tiles), "scenes": scenes},
            "widened_from_float16": widened,
            "quantised": "Conv (dense), QDQ U8S8 per channel; float: depthwise, head"
            + (f", nodes named {', '.join(keep_float)}" if keep_float else ""),
        }
        append_card(tmp, dataclasses.replace(card, extra={**card.extra, "export": export}))
    return out
