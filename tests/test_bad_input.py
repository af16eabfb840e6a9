"""Bad input, one class of failure per test: one ``Error:`` line naming the problem, exit code 1
(click's usage errors included), no traceback, and nothing already on disk lost."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cloudseg.data.synthetic_cli import main as synth_main
from cloudseg.eda_cli import main as eda_main
from cloudseg.engine.cli import main as run_main
from cloudseg.eval_cli import main as eval_main
from cloudseg.export.cli import main as export_main
from cloudseg.info_cli import main as info_main
from cloudseg.train.cli import main as train_main

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SAMPLE = DATA / "38cloud-sample"
BIOME = DATA / "biome-l8" / "LC08_L1TP_117017_20160101_20170101_01_T1"
#: A folder no process can create files in, as root or not.
UNWRITABLE = Path("/proc/cloudseg-test-out")


def one_line(result, code: int) -> str:
    """The command failed with ``code`` and said so in exactly one ``Error:`` line."""
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert result.exit_code == code, result.output
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert not any(ln.startswith("Usage:") for ln in lines), result.output
    return errors[0]


@pytest.mark.parametrize(
    "command, args, says",
    [
        (run_main, ["x", "--tile", "-64"], "--tile"),
        (run_main, ["x", "--batch", "0"], "--batch"),
        (run_main, ["x", "--threshold", "2"], "--threshold"),
        (run_main, ["x", "--threshold", "nan"], "not a finite number"),
        (run_main, ["x", "--memory-budget", "nan"], "not a finite number"),
        (run_main, ["x", "--precision", "nonsense"], "--precision"),
        (run_main, ["x", "--dilate", "-1"], "--dilate"),
        (train_main, ["--model", "r34", "d", "--epochs", "-1"], "--epochs"),
        (train_main, ["--model", "r34", "d", "--bs", "0"], "--bs"),
        (eval_main, ["scenes"], "Missing argument"),
        (synth_main, ["scene"], "Missing argument"),
        (eda_main, [], "Missing argument"),
        (export_main, ["--model", "r99"], "--model"),
        (info_main, [], "give a PATH"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line(command, args, says) -> None:
    assert says in one_line(CliRunner().invoke(command, args), 1)


@pytest.mark.parametrize(
    "command, args",
    [
        (run_main, [str(BIOME), "--provider", "cpu", "-q", "--out", str(UNWRITABLE)]),
        (synth_main, ["scene", str(UNWRITABLE), "--size", "64", "-q"]),
        (eda_main, [str(SAMPLE), "--out", str(UNWRITABLE), "-q"]),
    ],
    ids=["run", "synth", "eda"],
)  # fmt: skip
def test_an_unwritable_out_is_one_line(command, args) -> None:
    if not BIOME.is_dir():
        pytest.skip("no real data")
    assert str(UNWRITABLE) in one_line(CliRunner().invoke(command, args), 1)


def test_an_explicit_tile_over_the_memory_budget_is_refused_before_any_allocation(
    tmp_path,
) -> None:
    from onnx_models import B1, W1, card_for, conv_model

    model = conv_model(tmp_path / "dn.onnx", W1[None], B1, card_for(tile=64))
    result = CliRunner().invoke(run_main, [
        str(BIOME), "--model", str(model), "--tile", "8192", "--provider", "cpu",
        "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    assert "--tile 8192 needs about" in one_line(result, 1)


def test_eval_never_replaces_earlier_scores_without_overwrite(tmp_path) -> None:
    truth = BIOME / f"{BIOME.name}_truth.TIF"
    mask = tmp_path / f"{BIOME.name}_cloudmask.tif"
    mask.write_bytes(truth.read_bytes())  # the truth as a mask: a perfect score
    scores = tmp_path / "scores.json"
    scores.write_text('{"earlier": true}')
    result = CliRunner().invoke(eval_main, ["scenes", str(mask), "--truth", str(truth), "-q"])
    assert "--overwrite" in one_line(result, 1)
    assert json.loads(scores.read_text()) == {"earlier": True}
    result = CliRunner().invoke(eval_main, ["scenes", str(mask), "--truth", str(truth), "-q",
                                            "--overwrite"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(scores.read_text())["pooled"]["accuracy"] == 1.0


def test_a_failed_overwrite_of_a_training_run_leaves_the_run_byte_for_byte(tmp_path) -> None:
    """Training fails mid-run (a patch truncated after the options were checked): the earlier
    run in --out is exactly as it was, and no temporary is left."""
    import shutil

    from cloudseg.data.synthetic_dataset import write_38cloud_dataset

    data = tmp_path / "data"
    write_38cloud_dataset(data, train_scenes=2, test_scenes=0, size=192, patch_size=64, seed=3)
    for band in sorted((data / "38-Cloud_training" / "train_red").glob("*.TIF")):
        band.write_bytes(band.read_bytes()[:200])  # every red band cut short
    run = tmp_path / "run"
    run.mkdir()
    before = {"best.pth": b"weights", "card.json": b'{"name": "earlier"}', "log.csv": b"epoch\n"}
    for name, content in before.items():
        (run / name).write_bytes(content)
    result = CliRunner().invoke(train_main, [
        "--model", "r34", str(data), "--out", str(run), "--overwrite", "--no-pretrained",
        "--size", "64", "--fine-tune-size", "0", "--epochs", "1", "--bs", "2", "-q",
    ])  # fmt: skip
    one_line(result, 1)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
    shutil.rmtree(data)


def test_a_checkpoint_that_is_not_tensors_is_one_line_without_unsafe_advice(tmp_path) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(bytes(range(256)) * 4)
    from onnx_models import card_for

    from cloudseg.card import write_json

    write_json(card_for("softmax", name="cloudseg-r18", tile=64), tmp_path / "card.json")
    result = CliRunner().invoke(export_main, ["--model", "r18", "--checkpoint", str(garbage),
                                              "--out", str(tmp_path / "m.onnx")])  # fmt: skip
    line = one_line(result, 1)
    assert str(garbage) in line and "weights_only" not in result.output


def test_an_unreachable_ray_address_is_one_line_within_seconds(tmp_path) -> None:
    pytest.importorskip("ray")
    start = time.monotonic()
    result = CliRunner().invoke(run_main, [str(BIOME), "--ray", "127.0.0.1:1", "-q",
                                           "--out", str(tmp_path / "o")])  # fmt: skip
    assert "no Ray cluster answers there" in one_line(result, 1)
    assert time.monotonic() - start < 30


def test_a_nested_manifest_is_refused_naming_its_line(tmp_path) -> None:
    inner = tmp_path / "inner.txt"
    inner.write_text(str(BIOME) + "\n")
    outer = tmp_path / "outer.txt"
    outer.write_text(f"# scenes\n{BIOME}\n@{inner}\n")
    result = CliRunner().invoke(run_main, [f"@{outer}", "-q", "--out", str(tmp_path / "o")])
    assert f"{outer}, line 3" in one_line(result, 1)


def test_info_finds_a_truncated_patch(tmp_path) -> None:
    import shutil

    if not SAMPLE.is_dir():
        pytest.skip("no real 38-Cloud sample")
    copy = tmp_path / "sample"
    shutil.copytree(SAMPLE, copy)
    band = sorted((copy / "38-Cloud_training" / "train_nir").glob("*.TIF"))[4]
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 3])
    line = one_line(CliRunner().invoke(info_main, [str(copy)]), 1)
    assert band.name in line and "truncated or corrupt" in line


def test_nan_probabilities_are_written_as_no_data(tmp_path) -> None:
    """A model that answers NaN for some pixels: those pixels are 255 in the probability file,
    never a number cast from NaN (numpy warns, and the value is whatever the cast gives)."""
    import rasterio

    from cloudseg.data.landsat import open_scene
    from cloudseg.data.synthetic import SceneSpec, make_scene
    from cloudseg.data.synthetic_write import write_scene_folder
    from cloudseg.engine.outputs import OutputPaths, SceneWriter

    folder = tmp_path / "scene"
    write_scene_folder(make_scene(SceneSpec(seed=2, height=40, width=50)), folder)
    scene = open_scene(folder)
    prob = np.full((40, 50), 0.7, np.float32)
    prob[5:10] = np.nan
    paths = OutputPaths.for_scene(tmp_path / "out", scene.scene_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # "invalid value encountered in cast"
        with SceneWriter(paths, scene.profile(), True) as writer:
            writer.write_rows(0, prob, np.ones((40, 50), bool), 0.5)
            writer.finish({})
    with rasterio.open(paths.prob) as src:
        written = src.read(1)
    assert (written[5:10] == 255).all() and (written[:5] == 70).all()
