"""int8 variants of ONNX models with a card, float16 graphs included, calibrated on real pixels.

ukis-csmask's models are float16 graphs; the stand-in here is the trained r34 fixture made
float16 the same way (float32 input and output, casts inside), so the test is fast and still
checks what matters: the graph is widened before ONNX Runtime's quantiser sees it, the
calibration tiles are the model's own inputs from real scenes, and the card says what was done.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from cloudseg.card import read
from cloudseg.data.reference import reference_root
from cloudseg.engine import proof
from cloudseg.errors import MissingFileError
from cloudseg.export.fp16 import to_float32, to_fp16
from cloudseg.export.onnx_export import append_card

try:
    ROOT = reference_root()
except MissingFileError:
    ROOT = None
pytestmark = pytest.mark.skipif(ROOT is None, reason="no real reference data (shared/data)")


@pytest.fixture(scope="module")
def half(r34_run: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained r34 as a float16 graph with its card, like ukis-csmask's files."""
    _, path = r34_run
    model = to_fp16(onnx.load(str(path)))
    del model.metadata_props[:]
    out = tmp_path_factory.mktemp("half") / "r34-half.onnx"
    onnx.save(model, str(out))
    append_card(out, read(path))
    return out


@pytest.fixture(scope="module")
def int8(half: Path) -> Path:
    from cloudseg.export.variant import write_int8

    return write_int8(half, root=ROOT)


def _float16_types(model: onnx.ModelProto) -> int:
    graph = model.graph
    return sum(t.data_type == TensorProto.FLOAT16 for t in graph.initializer) + sum(
        a.i == TensorProto.FLOAT16 for n in graph.node if n.op_type == "Cast" for a in n.attribute
    )


def test_widening_a_float16_graph_leaves_no_float16(half: Path) -> None:
    model = onnx.load(str(half))
    assert _float16_types(model) > 50
    wide, widened = to_float32(model)
    onnx.checker.check_model(wide)
    assert widened and _float16_types(wide) == 0
    assert to_float32(wide)[1] is False


def test_the_int8_variant_is_calibrated_on_real_tiles_and_says_so(half: Path, int8: Path) -> None:
    from cloudseg.export.variant import calibration_tiles

    tiles, scenes = calibration_tiles(half, ROOT)
    card = read(half)
    assert tiles.shape[1:] == (4, card.tile_size, card.tile_size) and 8 <= len(tiles) <= 64
    biome = [s for s in scenes if s.startswith("LC08_L1TP") and s.endswith("_01_T1")]
    assert 0 < len(biome) <= 8  # every second Biome tile: the other half is never calibrated on
    out = int8
    assert out == half.with_name("r34-half-int8.onnx")
    variant = read(out)
    export = variant.extra["export"]
    assert export["variant"] == "int8" and export["widened_from_float16"] is True
    assert export["derived_from"] == {"file": half.name, "sha256": proof.sha256(half)}
    assert export["calibration"]["scenes"] == scenes
    quantised = onnx.load(str(out))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in quantised.graph.node}
    assert _float16_types(quantised) == 0
    assert dataclasses.replace(variant, extra={}) == dataclasses.replace(card, extra={})


def test_the_variant_keeps_the_float_models_masks_on_a_real_tile(half: Path, int8: Path) -> None:
    """The r34 fixture (learned on synthetic scenes) in int8 against float on a real tile
    it was not calibrated on: a loose bar, the proof is the real gate."""
    from cloudseg.data.reference import reference_items
    from cloudseg.data.sources import open_any
    from cloudseg.engine.in_memory import predict_scene
    from cloudseg.engine.registry import make_backend

    item = [i for i in reference_items(ROOT) if i.group == "biome-l8"][1]  # odd: not calibrated
    card = read(half)
    spec = proof.reference_spec(card)
    codes = []
    for file in (half, int8):
        backend = make_backend(file, "cpu", proof.options_for("f32", card.tile_size, False, 1))
        codes.append(predict_scene(open_any(item.path), backend, card, spec))
        backend.close()
    agreement = proof.agreement(*codes)
    print(f"int8 vs float on {item.name}: {agreement:.4f}")
    assert agreement >= 0.95
    assert not np.array_equal(codes[0].probabilities, codes[1].probabilities)
