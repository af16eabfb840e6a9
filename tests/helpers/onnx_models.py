"""Tiny ONNX models whose output is a known function of the input, with sidecar cards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cloudseg.card import InputTransform, ModelCard, sidecar_path, write_json

TILE = 32
W1 = np.array([0.5, -1.0, 2.0, 0.25], np.float32)  # one logit = W1 . bands + B1
B1 = np.float32(-0.3)
W2 = np.array([[1.0, 0.0, -0.5, 0.2], [-0.3, 0.7, 0.1, 1.5]], np.float32)  # clear, cloud


def card_for(
    output_kind: str = "sigmoid", name: str = "test-conv", tile: int = TILE, **changes: object
) -> ModelCard:
    default = ("cloud",) if output_kind == "sigmoid" else ("clear", "cloud")
    fields: dict = {
        "name": name,
        "architecture": "one 1x1 convolution (test)",
        "bands": ("red", "green", "blue", "nir"),
        "value_kind": "dn",
        "transform": InputTransform(1.0, 0.0, (0.0,) * 4, (1.0,) * 4),
        "output_kind": output_kind,
        "classes": default,
        "cloud_classes": ("cloud",),
        "tile_size": tile,
        "size_multiple": 32,
    }
    return ModelCard(**(fields | changes))


def conv_model(path: Path, weights: np.ndarray, bias: np.ndarray, card: ModelCard | None) -> Path:
    """``image (batch, C_in, H, W) -> logits (batch, C_out, H, W)``: one 1x1 Conv, sidecar card."""
    c_out, c_in = weights.shape
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"])],
        "conv1x1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", c_in, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", c_out, "h", "w"])],
        [
            numpy_helper.from_array(weights.reshape(c_out, c_in, 1, 1), "w"),
            numpy_helper.from_array(np.asarray(bias, np.float32).reshape(c_out), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if card is not None:
        write_json(card, sidecar_path(path))
    return path
