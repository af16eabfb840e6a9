import json

import numpy as np
import pytest
from cards import make_card

from cloudseg.card import InputTransform, ModelCard, read_json, sidecar_path, write_json
from cloudseg.errors import ModelError


def test_json_round_trip(tmp_path):
    card = make_card(scores={"jaccard": 0.9}, versions={"torch": "2.14.1"})
    path = tmp_path / "card.json"
    write_json(card, path)
    assert read_json(path) == card
    assert json.loads(path.read_text())["transform"]["std"] == [0.05, 0.05, 0.05, 0.1]


def test_transform_matches_formula():
    t = InputTransform(0.5, 1.0, (1.0, 2.0), (2.0, 4.0))
    raw = np.array([[[4.0]], [[10.0]]])
    assert t.apply(raw)[:, 0, 0].tolist() == [(4 * 0.5 + 1 - 1) / 2, (10 * 0.5 + 1 - 2) / 4]
    assert t.apply(raw).dtype == np.float32


def test_softmax_cloud_class_indices():
    card = make_card(
        output_kind="softmax", classes=("clear", "cloud", "shadow"), cloud_classes=("cloud",)
    )
    assert card.cloud_class_indices == [1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bands": ("red", "green", "blue", "swir")}, "unknown band 'swir'"),
        ({"value_kind": "radiance"}, "value_kind must be one of"),
        ({"output_kind": "argmax"}, "output_kind must be one of"),
        ({"cloud_classes": ("haze",)}, "must be a non-empty subset"),
        ({"threshold": 1.5}, "threshold must lie in"),
        ({"tile_size": 100}, "multiple of 32"),
        ({"transform": InputTransform(1, 0, (0, 0, 0), (1, 1, 1))}, "4 means and stds"),
    ],
)
def test_invalid_cards_name_the_problem(changes, message):
    with pytest.raises(ModelError, match=message):
        make_card(**changes)


def test_missing_field_and_bad_json_are_one_line_errors(tmp_path):
    data = make_card().to_dict()
    del data["bands"]
    with pytest.raises(ModelError, match="lacks field 'bands'"):
        ModelCard.from_dict(data, "x.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ModelError, match="bad.json: model card is not valid JSON"):
        read_json(bad)


def test_sidecar_name():
    assert sidecar_path("/m/model_4b.onnx").name == "model_4b.onnx.card.json"


def test_undefined_scores_are_written_as_null(tmp_path):
    card = make_card(scores={"precision": float("nan"), "jaccard": 0.5})
    path = tmp_path / "card.json"
    write_json(card, path)
    assert '"precision": null' in path.read_text()
    assert json.loads(path.read_text())["scores"] == {"precision": None, "jaccard": 0.5}
