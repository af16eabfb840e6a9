"""Fixtures shared by the engine tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
import pytest

R34_TILE = 64


@pytest.fixture(scope="session")
def r34_run(trained_r34: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    """The trained r34 run (outputs that vary: see ``trained_r34``) and an ONNX export of the
    same weights at a fixed 64 px tile.

    Returns:
        ``(run folder, ONNX file)``.
    """
    from cloudseg.export.onnx_export import append_card, to_onnx
    from cloudseg.train.predict import load_run

    run, _ = trained_r34
    net, card = load_run(run)
    path = tmp_path_factory.mktemp("onnx") / "r34.onnx"
    onnx.save(to_onnx(net, tile=R34_TILE), str(path))
    append_card(path, dataclasses.replace(card, tile_size=R34_TILE, fixed_size=True))
    return run, path
