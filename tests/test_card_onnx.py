"""Model cards inside ONNX files: appended by export, read back without onnx, sidecar fallback,
clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cards import make_card
from onnx import TensorProto, helper

from cloudseg import card as card_mod
from cloudseg.card import METADATA_KEY, onnx_metadata, read, sidecar_path, write_json
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.export.onnx_export import append_card


def tiny_model(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A 1x1 Conv from 4 bands to 1 logit: a real, runnable ONNX file in a few hundred bytes."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, "h", "w"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 4, 1, 1], [0.25] * 4)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "g", [x], [y], [w]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def test_embedded_card_round_trips_and_matches_onnxruntime(tmp_path):
    card = make_card(scores={"jaccard": 0.91}, extra={"export": {"opset": 18}})
    path = tiny_model(tmp_path / "m.onnx", {"author": "test"})
    append_card(path, card)  # what cloudseg-export does: the checked graph bytes stay as they are
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert read(tmp_path / "m.onnx") == card
    meta = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert onnx_metadata(tmp_path / "m.onnx") == meta.get_modelmeta().custom_metadata_map
    assert [p.key for p in model.metadata_props] == ["author", METADATA_KEY]


def test_sidecar_is_read_when_no_card_is_embedded(tmp_path):
    path = tiny_model(tmp_path / "foreign.onnx")
    card = make_card(name="foreign")
    write_json(card, sidecar_path(path))
    assert read(path) == card


def test_embedded_card_wins_over_sidecar(tmp_path):
    path = tiny_model(tmp_path / "m.onnx", {METADATA_KEY: make_card(name="inside").to_json()})
    write_json(make_card(name="beside"), sidecar_path(path))
    assert read(path).name == "inside"


def test_no_card_says_where_to_put_one(tmp_path):
    path = tiny_model(tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match=r"no model card.*bare\.onnx\.card\.json"):
        read(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b'{"name": "not onnx"}', "not an ONNX model"),
        (b"\x08\x09", "no graph"),
    ],
)
def test_files_that_are_not_onnx_are_refused(tmp_path, content, message):
    path = tmp_path / "x.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        read(path)


def test_truncated_model_is_refused(tmp_path):
    path = tiny_model(tmp_path / "m.onnx", {METADATA_KEY: make_card().to_json()})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelError, match="not an ONNX model"):
        read(path)


def test_malformed_embedded_card_names_the_file(tmp_path):
    path = tiny_model(tmp_path / "m.onnx", {METADATA_KEY: '{"name": "x"}'})
    with pytest.raises(ModelError, match=r"m\.onnx \(metadata_props\['cloudseg'\]\): .*lacks"):
        read(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(MissingFileError, match="no model file"):
        read(tmp_path / "nothing.onnx")


def test_reader_needs_neither_onnx_nor_torch(tmp_path):
    path = tiny_model(tmp_path / "m.onnx", {METADATA_KEY: make_card().to_json()})
    code = (
        "import sys\n"
        "from cloudseg.card import read\n"
        "from cloudseg.home import default_model_path\n"
        f"assert read({str(path)!r}).name == 'r18-test'\n"
        "assert default_model_path('r18').name == 'cloudseg-r18.onnx'\n"
        "print(sorted(m for m in ('torch', 'onnx', 'fastai') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_reader_does_not_load_the_weights(tmp_path, monkeypatch):
    """The walk skips the graph by its length: a card is found in a large file in no time."""
    big = np.zeros(4_000_000, np.float32)  # 16 MB of weights
    model = onnx.load(str(tiny_model(tmp_path / "m.onnx")))
    model.graph.initializer.append(onnx.numpy_helper.from_array(big, "unused"))
    onnx.save(model, str(tmp_path / "big.onnx"))
    append_card(tmp_path / "big.onnx", make_card())
    calls = []
    real = card_mod._varint
    monkeypatch.setattr(card_mod, "_varint", lambda *a: calls.append(1) or real(*a))
    assert read(tmp_path / "big.onnx").name == "r18-test"
    assert len(calls) < 100  # a few varints per top-level field, none per weight
