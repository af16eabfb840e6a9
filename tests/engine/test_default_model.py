"""The right model by default: with no --model, a real product gets a model trained on real
data (ukis-l1c for Level-1, ukis-l2a for Level-2), said in one line; a model trained on synthetic
scenes only gets one warning line on a real product."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("ukis_csmask")

from cloudseg.card import read_json, write_json  # noqa: E402
from cloudseg.data.landsat import open_scene  # noqa: E402
from cloudseg.data.synthetic import SceneSpec, make_scene  # noqa: E402
from cloudseg.data.synthetic_write import write_scene_folder  # noqa: E402
from cloudseg.engine import models  # noqa: E402
from cloudseg.engine.cli import main as run_main  # noqa: E402
from cloudseg.engine.foreign.ukis_csmask import card_for_file, packaged_model  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BIOME = DATA / "biome-l8" / "LC08_L1TP_117017_20160101_20170101_01_T1"  # SnowIce_01
LEVEL2 = DATA / "landsat-real" / "LC08_L2SP_001062_20201031_20201106_02_T2"
pytestmark = pytest.mark.skipif(not BIOME.is_dir(), reason=f"no real data at {DATA}")


def test_a_real_level1_scene_gets_ukis_l1c_and_says_so(tmp_path: Path, caplog) -> None:
    with caplog.at_level("INFO", logger="cloudseg.run"):
        result = CliRunner().invoke(run_main, [str(BIOME), "--out", str(tmp_path), "-q",
                                               "--provider", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "model: ukis-l1c, the default for a Landsat 8 Collection 1 Level-1" in caplog.text
    summary = json.loads(next(tmp_path.glob("*_summary.json")).read_text())
    assert Path(summary["model"]).name == "model_4b_l1c.onnx"
    # the snow tile that bf16 turned into 99.6 % cloud: fp32 finds 4.8 %
    assert summary["cloud_cover"] < 10


def test_level2_gets_ukis_l2a_and_synthetic_scenes_the_exported_model() -> None:
    assert models.default_for(open_scene(LEVEL2))[1].startswith("ukis-l2a, the default")


def _warn(run: Path, scene) -> str | None:  # noqa: ANN001
    return models.warn_if_synthetic(read_json(run / "card.json"), run, scene)


def test_a_model_trained_on_synthetic_data_warns_on_real_products(tmp_path: Path) -> None:
    card = card_for_file(packaged_model("l1c"))
    run = tmp_path / "run"
    run.mkdir()
    write_json(dataclasses.replace(card, training={"data_origin": "synthetic"}), run / "card.json")
    warning = _warn(run, open_scene(BIOME))
    assert warning is not None and "trained on synthetic scenes only" in warning
    assert "--model ukis-l1c" in warning
    synthetic = tmp_path / "synthetic"
    write_scene_folder(make_scene(SceneSpec(seed=3, height=64, width=64)), synthetic)
    assert _warn(run, open_scene(synthetic)) is None
    # a model trained on real data never warns
    write_json(dataclasses.replace(card, training={"data_origin": "real"}), run / "card.json")
    assert _warn(run, open_scene(BIOME)) is None
