"""Fixtures shared by the engine tests."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from cloudseg.card import InputTransform, ModelCard, write_json

R34_TILE = 64


@pytest.fixture(scope="session")
def r34_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny untrained r34 run folder and the ONNX export of the same weights."""
    import torch

    from cloudseg.card import embed
    from cloudseg.export.onnx_export import to_onnx
    from cloudseg.train.models import MODELS, build_model

    torch.manual_seed(0)
    net = build_model("r34", pretrained=False).eval()
    spec = MODELS["r34"]
    card = ModelCard(
        name="cloudseg-r34",
        architecture=spec.architecture,
        bands=("red", "green", "blue", "nir"),
        value_kind="dn",
        transform=InputTransform(1 / 65535, 0.0, (0.26, 0.25, 0.27, 0.29), (0.11, 0.1, 0.11, 0.11)),
        output_kind=spec.output_kind,
        classes=spec.classes,
        cloud_classes=spec.cloud_classes,
        tile_size=R34_TILE,
    )
    run = tmp_path_factory.mktemp("run")
    torch.save(net.state_dict(), run / "best.pth")
    write_json(card, run / "card.json")
    path = run / "r34.onnx"
    onnx.save(embed(to_onnx(net, tile=R34_TILE), card), str(path))
    return run, path
