"""The fastai r18 pipeline on a tiny synthetic 38-Cloud dataset: files, checkpoint, scores, quiet.

Training runs at 64 px then 96 px with batches of 2 on a handful of patches, so the whole file
stays well under a minute on two CPU cores.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import DataError, ModelError
from cloudseg.metrics import Confusion
from cloudseg.train import pretrained
from cloudseg.train.common import TrainConfig, TrainResult
from cloudseg.train.data import PatchDataset, TrainData, prepare_data
from cloudseg.train.fastai_callbacks import BinaryScore
from cloudseg.train.fastai_r18 import (
    LR_FALLBACK,
    is_quiet,
    plan_stages,
    suggest_lr,
    train,
)
from cloudseg.train.models import build_model
from cloudseg.train.run_files import LOG_COLUMNS

FIGURES = ("history.png", "valid_batch.png")


@pytest.fixture(scope="session")
def data(tmp_path_factory: pytest.TempPathFactory) -> TrainData:
    """3 synthetic scenes of 768 x 768 (2 x 2 patches each): 2 training and 2 validation patches."""
    root = tmp_path_factory.mktemp("r18") / "38cloud"
    write_38cloud_dataset(root, train_scenes=3, test_scenes=0, size=768, seed=3)
    full = prepare_data(root, val_fraction=0.34, limit=8)
    data = dataclasses.replace(full, train=full.train[:2], valid=full.valid[:2])
    assert len(data.train) == len(data.valid) == 2
    return data


def tiny_config(root: Path, **changes: object) -> TrainConfig:
    config = TrainConfig(
        "r18", root, size=64, fine_tune_size=96, epochs=1, fine_tune_epochs=1, bs=2,
        pretrained=False, lr_find_iters=5, quiet=True, cache=True,
    )  # fmt: skip
    return config.with_(**changes)


@pytest.fixture(scope="module")
def lr_find_run(data: TrainData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full run with lr_find, its stdout/stderr and its log records."""
    run_dir = tmp_path_factory.mktemp("run")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cloudseg.train")
    logger.addHandler(handler)
    old_level, out, err = logger.level, io.StringIO(), io.StringIO()
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = train(tiny_config(data.root), data, run_dir)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return {"dir": run_dir, "result": result, "out": out.getvalue() + err.getvalue(),
            "records": records}  # fmt: skip


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == LOG_COLUMNS
        return list(reader)


def check_weights(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    assert all(v.device.type == "cpu" for v in state.values())
    build_model("r18").load_state_dict(state, strict=True)


def check_scores(result: TrainResult) -> None:
    assert set(result.scores) == {"dice", "jaccard", "accuracy", "loss"}
    for name, value in result.scores.items():
        assert math.isfinite(value), name
        assert name == "loss" or 0.0 <= value <= 1.0, name


def test_run_writes_every_file(lr_find_run: dict) -> None:
    run_dir, result = lr_find_run["dir"], lr_find_run["result"]
    assert not result.interrupted
    for name in ("lr_find.png", *FIGURES):
        with Image.open(run_dir / name) as image:
            image.verify()
    rows = read_rows(run_dir / "log.csv")
    assert [tuple(r.values())[:3] for r in rows] == [("1", "1", "64"), ("2", "2", "96")]
    check_weights(run_dir / "best.pth")
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["best.pth", "log.csv", "lr_find.png", *FIGURES]
    )  # nothing left behind by lr_find or the atomic writes


def test_run_scores_are_the_kept_checkpoints(lr_find_run: dict) -> None:
    result, rows = lr_find_run["result"], read_rows(lr_find_run["dir"] / "log.csv")
    check_scores(result)
    best = max((r for r in rows if r["stage"] == "2"), key=lambda r: float(r["valid_dice"]))
    assert result.scores["dice"] == pytest.approx(float(best["valid_dice"]))
    assert result.scores["loss"] == pytest.approx(float(best["valid_loss"]))
    # 5 iterations leave lr_find too few points: the fallback rate is used and recorded.
    assert result.history["lr_find"] == {
        "method": "valley", "iters": 5, "suggestion": None, "lr": LR_FALLBACK,
    }  # fmt: skip
    stages = result.history["stages"]
    assert [(s["size"], s["lr"], s["epochs_done"]) for s in stages] == [
        (64, LR_FALLBACK, 1), (96, LR_FALLBACK / 10, 1),
    ]  # fmt: skip
    assert stages[1]["best"] == pytest.approx(result.scores) and stages[1]["best_epoch"] == 2
    assert stages[0]["best"]["dice"] == pytest.approx(float(rows[0]["valid_dice"]))


def test_quiet_run_prints_nothing_and_logs_each_epoch(lr_find_run: dict) -> None:
    assert lr_find_run["out"] == ""
    epochs = [r for r in lr_find_run["records"] if r.getMessage().startswith("stage ")]
    assert len(epochs) == 2


@pytest.fixture
def fake_imagenet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Random torchvision ResNet18 weights as the cached ImageNet file, in a private TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    state = torchvision.models.resnet18().state_dict()
    path = pretrained.checkpoint_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return state


def test_ctrl_c_keeps_best_and_writes_what_was_done(
    data: TrainData,
    tmp_path: Path,
    fake_imagenet: dict[str, torch.Tensor],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Pretrained, lr given (no lr_find), Ctrl-C in the first batch of stage 2 (96 px)."""
    caplog.set_level(logging.INFO, "cloudseg.train")
    get_item = PatchDataset.__getitem__

    def interrupt_at_96(self: PatchDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size == 96 and self.augment_spec is not None:  # stage 2 training batches only
            raise KeyboardInterrupt
        return get_item(self, index)

    monkeypatch.setattr(PatchDataset, "__getitem__", interrupt_at_96)
    run_dir = tmp_path / "run"
    result = train(tiny_config(data.root, lr=1e-3, pretrained=True), data, run_dir)
    assert result.interrupted
    assert capsys.readouterr().out == ""
    assert "interrupted after 1 epoch(s)" in caplog.text
    assert not (run_dir / "lr_find.png").exists() and result.history["lr_find"] is None
    rows = read_rows(run_dir / "log.csv")
    assert [r["stage"] for r in rows] == ["1"]
    check_weights(run_dir / "best.pth")
    check_scores(result)
    assert result.scores["dice"] == pytest.approx(float(rows[0]["valid_dice"]))
    for name in FIGURES:
        assert (run_dir / name).is_file()
    stages = result.history["stages"]
    assert [(s["frozen_body"], s["lr"], s["body_lr"], s["epochs_done"]) for s in stages] == [
        (True, 1e-3, 1e-3, 1), (False, pytest.approx(1e-4), pytest.approx(1e-5), 0),
    ]  # fmt: skip
    assert stages[1]["best"] is None and result.history["epochs_run"] == 1
    # Stage 1 froze the body's convolutions; the stem (new NIR kernel) trained.
    best = torch.load(run_dir / "best.pth", weights_only=True)
    body = [k for k in fake_imagenet if k.startswith("layer") and "conv" in k]
    for key in body:
        torch.testing.assert_close(best[f"layers.0.{key}"], fake_imagenet[key], rtol=0, atol=0)
    assert not torch.equal(best["layers.0.conv1.weight"][:, :3], fake_imagenet["conv1.weight"])


def test_binary_scores_match_confusion() -> None:
    """Counts over two batches, at logit > 0, equal cloudseg.metrics.Confusion's."""
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(2, 1, 8, 8, generator=gen), (torch.rand(2, 1, 8, 8, generator=gen) > 0.6))
        for _ in range(2)
    ]
    expected = Confusion()
    metrics = [BinaryScore(name) for name in ("accuracy", "dice", "jaccard")]
    for metric in metrics:
        metric.reset()
    for logits, truth in batches:
        expected.add(logits.numpy() > 0, truth.numpy())
        learn = SimpleNamespace(pred=logits, yb=(truth.float(),))
        for metric in metrics:
            metric.accumulate(learn)
    assert expected.tp > 0 and expected.fp > 0 and expected.fn > 0
    for metric in metrics:
        assert metric.counts == expected
        assert metric.value == pytest.approx(expected.scores()[metric.name])
    assert [m.name for m in metrics] == ["accuracy", "dice", "jaccard"]


def test_binary_score_of_an_all_clear_batch_is_undefined() -> None:
    dice = BinaryScore("dice")
    dice.accumulate(SimpleNamespace(pred=-torch.ones(1, 1, 4, 4), yb=(torch.zeros(1, 1, 4, 4),)))
    assert math.isnan(dice.value)
    with pytest.raises(ValueError, match="unknown score"):
        BinaryScore("f1")


def test_suggest_lr() -> None:
    lrs = list(np.geomspace(1e-7, 10, 100))
    losses = [1.0 + (np.log10(lr) + 2.5) ** 2 / 10 for lr in lrs]  # a valley around 3e-3
    lr, point = suggest_lr(lrs, losses, 100)
    assert 1e-5 < lr < 3e-3 and point is not None and point[0] == lr
    assert math.isnan(suggest_lr(lrs[:7], losses[:7], 5)[0])  # too few points
    nan_early = losses[:12] + [float("nan")] * 88
    assert math.isnan(suggest_lr(lrs, nan_early, 100)[0])


def test_quiet_when_asked_on_ci_or_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config(Path("."), quiet=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stdout", SimpleNamespace(isatty=lambda: True))
    assert not is_quiet(config)
    assert is_quiet(config.with_(quiet=True))
    monkeypatch.setenv("CI", "true")
    assert is_quiet(config)
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stdout", SimpleNamespace(isatty=lambda: False))
    assert is_quiet(config)


def test_refuses_too_few_patches(data: TrainData, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="training"):
        train(tiny_config(data.root, bs=4), data, tmp_path)
    with pytest.raises(DataError, match="validation"):
        train(tiny_config(data.root), dataclasses.replace(data, valid=[]), tmp_path)


def test_stages() -> None:
    config = tiny_config(Path("."), pretrained=True, size=192, fine_tune_size=384)
    one, two = plan_stages(config, lr=1e-2)
    assert (one.size, one.lrs, one.frozen) == (192, 1e-2, True)
    assert (two.size, two.frozen, two.peak_lr) == (384, False, pytest.approx(1e-3))
    assert (two.lrs.start, two.lrs.stop) == pytest.approx((1e-4, 1e-3))
    assert [s.number for s in plan_stages(config.with_(fine_tune_size=None), 1e-2)] == [1]
    with pytest.raises(ModelError, match="multiple of 32"):
        plan_stages(config.with_(fine_tune_size=200), 1e-2)
    with pytest.raises(ModelError, match="smaller"):
        plan_stages(config.with_(fine_tune_size=128), 1e-2)
