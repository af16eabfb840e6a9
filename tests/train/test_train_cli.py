"""cloudseg-train end to end (tiny r34 run), the run folder, and cloudseg-eval on patches."""

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cloudseg.card import ModelCard
from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import MissingFileError, ModelError
from cloudseg.eval_cli import main as eval_main
from cloudseg.train.cli import main as train_main
from cloudseg.train.evaluate_patches import evaluate
from cloudseg.train.models import build_model
from cloudseg.train.predict import load_run, load_state_dict, predict
from cloudseg.train.runs import newest_run

TINY = [
    "--size",
    "64",
    "--fine-tune-size",
    "96",
    "--epochs",
    "1",
    "--fine-tune-epochs",
    "1",
    "--bs",
    "2",
    "--no-pretrained",
    "--limit",
    "8",
    "-q",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "ds"
    write_38cloud_dataset(root, train_scenes=3, test_scenes=1, size=300, seed=4, patch_size=96)
    return root


@pytest.fixture(scope="module")
def run_dir(dataset, tmp_path_factory):
    torch.set_num_threads(1)  # two cores shared with other work: one thread is steadier
    out = tmp_path_factory.mktemp("runs") / "r34-run"
    result = CliRunner().invoke(
        train_main, ["--model", "r34", str(dataset), "--out", str(out), *TINY]
    )
    assert result.exit_code == 0, result.output
    return out


def test_run_folder_holds_weights_card_log_and_plots(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"best.pth", "card.json", "log.csv", "history.png", "valid_batch.png"} <= names
    card = ModelCard.from_json((run_dir / "card.json").read_text())
    assert card.name == "cloudseg-r34" and card.output_kind == "softmax"
    assert card.classes == ("clear", "cloud") and card.cloud_classes == ("cloud",)
    assert card.tile_size == 96 and card.value_kind == "dn"
    assert card.training["config"]["seed"] == 0 and card.training["valid_patches"] > 0
    # trained on cloudseg-synth data, and the card says so (never the default for real scenes)
    assert card.training["data_origin"] == "synthetic"
    assert set(card.training["train_scenes"]).isdisjoint(card.training["valid_scenes"])
    jaccard = card.scores["jaccard"]
    assert jaccard is None or 0.0 <= jaccard <= 1.0
    assert "torch" in card.versions


def test_second_run_into_the_same_folder_is_refused(run_dir, dataset):
    before = (run_dir / "best.pth").read_bytes()
    result = CliRunner().invoke(
        train_main, ["--model", "r34", str(dataset), "--out", str(run_dir), *TINY]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {run_dir} exists; pass --overwrite to replace it"
    ]
    assert (run_dir / "best.pth").read_bytes() == before


def test_load_run_predicts_probabilities(run_dir, dataset):
    from cloudseg.data import cloud38, cloud38_read

    model, card = load_run(run_dir)
    patches = cloud38.list_patches(dataset, "train")[:2]
    raw = np.stack([cloud38_read.read_image(dataset, "train", p) for p in patches])
    prob = predict(model, card, raw)
    assert prob.shape == (2, 96, 96) and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_checkpoint_of_the_other_architecture_is_refused(run_dir):
    with pytest.raises(ModelError, match="does not fit this architecture"):
        load_state_dict(build_model("r18", img_size=64), run_dir / "best.pth")


def test_newest_run_follows_cloudseg_home(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDSEG_HOME", str(tmp_path))
    with pytest.raises(MissingFileError, match="no finished r34 run"):
        newest_run("r34")
    assert newest_run("r34", run_dir.parent) == run_dir


def _perfect(dataset):
    """A predictor that returns the truth, to check the evaluation's bookkeeping."""
    from cloudseg.data import cloud38, cloud38_read

    truth = {}
    for pid in cloud38.list_patches(dataset, "train"):
        image, mask = cloud38_read.read_patch(dataset, "train", pid)
        truth[image.tobytes()] = mask
    return lambda raw: np.stack([truth[r.tobytes()].astype(np.float32) for r in raw])


def test_evaluate_train_split_with_a_perfect_predictor_scores_one(dataset):
    confusions = evaluate(dataset, "train", _perfect(dataset), 0.5, progress=False)
    assert len(confusions) == 3
    for c in confusions.values():
        assert c.fp == 0 and c.fn == 0 and c.total > 0


def test_eval_cli_on_the_test_split_stitches_scenes(run_dir, dataset, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        eval_main,
        ["patches", str(run_dir), str(dataset), "--split", "test", "--out", str(out), "-q"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "scores.json").read_text())
    ((scene, scores),) = report["per_scene"].items()
    # Every valid pixel of the 300 x 300 test scene was counted once.
    assert 0 < scores["tp"] + scores["fp"] + scores["fn"] + scores["tn"] <= 300 * 300
    acc = report["mean_over_scenes"]["accuracy"]
    assert math.isclose(acc, scores["accuracy"])
    assert (out / "scores.csv").read_text().splitlines()[0].startswith("scene,jaccard")


def test_missing_imagenet_weights_is_one_line_before_any_output(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    out = tmp_path / "run"
    args = ["--model", "r18", str(dataset), "--out", str(out), "-q"]
    result = CliRunner().invoke(train_main, args)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: ImageNet weights for resnet18 not found at ")
    assert str(tmp_path / "torch-home") in line and "--no-pretrained" in line
    assert not out.exists()
