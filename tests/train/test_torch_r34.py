"""r34 plain-PyTorch training: run files, kept checkpoint, reproducibility, Ctrl-C, freezing.

Runs are tiny (5 training and 3 validation patches of 3 synthetic scenes, 64 then 96 px, batch 2,
one epoch per stage) so the file stays well under a minute on two CPU cores.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import DataError, ModelError
from cloudseg.metrics import SCORES, Confusion
from cloudseg.train import torch_r34
from cloudseg.train.common import TrainConfig, TrainResult
from cloudseg.train.data import PatchDataset, TrainData, prepare_data
from cloudseg.train.models import build_model
from cloudseg.train.run_files import LOG_COLUMNS
from cloudseg.train.torch_r34 import train


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a small shared box, OpenMP threads waiting on a core another
    process holds made each batch 20-40 times slower. Runs compared for reproducibility must
    use the same thread count anyway: 1 and 2 threads differ by about 1e-6 in the loss."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 768 x 768 training scenes: 2 x 2 patches of 384 each."""
    root = tmp_path_factory.mktemp("r34") / "38cloud"
    write_38cloud_dataset(root, train_scenes=3, test_scenes=0, size=768, seed=0)
    return root


@pytest.fixture(scope="module")
def data(dataset: Path) -> TrainData:
    data = prepare_data(dataset, seed=0, limit=8)
    assert data.train and data.valid  # two scenes train, one validates
    return data


def tiny(dataset: Path, **changes: object) -> TrainConfig:
    config = TrainConfig(
        "r34", dataset, size=64, fine_tune_size=96, epochs=1, fine_tune_epochs=1, bs=2,
        pretrained=False, quiet=True,
    )  # fmt: skip
    return config.with_(**changes)


@pytest.fixture(scope="module")
def run(
    dataset: Path, data: TrainData, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, TrainResult]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, train(tiny(dataset), data, run_dir)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def no_partial_files(run_dir: Path) -> bool:
    return not [p for p in run_dir.iterdir() if p.name.endswith(".part")]


def test_run_writes_checkpoint_log_and_plots(run: tuple[Path, TrainResult]) -> None:
    run_dir, result = run
    assert not result.interrupted
    for name in ("history.png", "valid_batch.png"):
        with Image.open(run_dir / name) as image:
            image.verify()
    assert no_partial_files(run_dir)
    columns, rows = read_rows(run_dir / "log.csv")
    assert tuple(columns) == LOG_COLUMNS
    assert [(r["stage"], r["epoch"], r["size"]) for r in rows] == [
        ("1", "1", "64"),
        ("2", "2", "96"),
    ]
    assert [float(r["lr"]) for r in rows] == pytest.approx([1e-3, 1e-4])  # stage 2: lr / 10


def test_kept_checkpoint_is_the_best_of_stage_2(run: tuple[Path, TrainResult]) -> None:
    run_dir, result = run
    _, rows = read_rows(run_dir / "log.csv")
    stage2 = [r for r in rows if r["stage"] == "2"]
    best = max(stage2, key=lambda r: float(r["valid_jaccard"]))
    assert result.scores["jaccard"] == float(best["valid_jaccard"])
    assert result.scores["loss"] == float(best["valid_loss"])
    assert set(result.scores) == {*SCORES, "loss"}
    assert result.history["kept_stage"] == 2
    stages = result.history["stages"]
    assert [(s["stage"], s["size"], s["best_epoch"]) for s in stages] == [(1, 64, 1), (2, 96, 2)]
    json.dumps(result.history, allow_nan=False)  # goes into the model card as it is
    assert [s["frozen_epochs"] for s in result.history["stages"]] == [0, 0]  # not pretrained


def test_checkpoint_loads_strictly_and_reproduces_its_scores(
    run: tuple[Path, TrainResult], data: TrainData
) -> None:
    run_dir, result = run
    model = build_model("r34")
    model.load_state_dict(torch.load(run_dir / "best.pth", weights_only=True), strict=True)
    model.eval()
    valid = PatchDataset(data.root, data.valid, data.transform, 96, target="classes")
    confusion = Confusion()
    with torch.no_grad():
        for x, y in valid:
            pred = model(x[None]).argmax(1)[0] == 1
            confusion.add(pred.numpy(), y.numpy() == 1)
    # Batch size changes float summation order; a flipped pixel moves Jaccard by about 1e-4.
    assert confusion.scores()["jaccard"] == pytest.approx(result.scores["jaccard"], abs=1e-3)


def test_same_seed_repeats_the_run(
    run: tuple[Path, TrainResult], dataset: Path, data: TrainData, tmp_path: Path
) -> None:
    # Exact equality: on the CPU, with the same thread count, every kernel here is deterministic
    # (deterministic mode is on, so a nondeterministic op would raise instead of drifting).
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        train(tiny(dataset), data, tmp_path)
    finally:
        torch.use_deterministic_algorithms(previous)
    losses = ("train_loss", "valid_loss", "valid_jaccard")
    first, second = (read_rows(d / "log.csv")[1] for d in (run[0], tmp_path))
    assert [[r[k] for k in losses] for r in second] == [[r[k] for k in losses] for r in first]


def test_a_worker_process_sees_each_epoch_and_stage(
    run: tuple[Path, TrainResult], dataset: Path, data: TrainData, tmp_path: Path
) -> None:
    # Augmentation is seeded by (seed, epoch, patch), so a run with a worker process repeats the
    # in-process run only if every epoch's ``epoch`` and ``size`` reach the worker; persistent
    # workers would keep the copies made for the first epoch.
    train(tiny(dataset, workers=1), data, tmp_path)
    assert read_rows(tmp_path / "log.csv")[1] == read_rows(run[0] / "log.csv")[1]


def test_ctrl_c_keeps_best_checkpoint_and_writes_what_was_done(
    dataset: Path, data: TrainData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    getitem = PatchDataset.__getitem__

    def interrupt_in_epoch_2(self: PatchDataset, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment_spec is not None and self.epoch == 1:  # epoch 2 = stage 2's first
            raise KeyboardInterrupt
        return getitem(self, index)

    monkeypatch.setattr(PatchDataset, "__getitem__", interrupt_in_epoch_2)
    result = train(tiny(dataset), data, tmp_path)
    assert result.interrupted
    _, rows = read_rows(tmp_path / "log.csv")
    assert len(rows) == 1
    assert result.scores["jaccard"] == float(rows[0]["valid_jaccard"])
    assert result.history["kept_stage"] == 1 and result.history["epochs_run"] == 1
    build_model("r34").load_state_dict(torch.load(tmp_path / "best.pth", weights_only=True))
    assert (tmp_path / "history.png").is_file() and (tmp_path / "valid_batch.png").is_file()
    assert no_partial_files(tmp_path)


def test_pretrained_body_is_frozen_for_the_first_epoch_only(
    dataset: Path, data: TrainData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over env
    weights = tmp_path / "torch" / "hub" / "checkpoints" / "resnet34-b627a593.pth"
    weights.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet34().state_dict(), weights)
    calls: list[bool] = []  # after each freeze: does the body still train?
    freeze = torch_r34.freeze_body

    def spy(model: torch.nn.Module) -> None:
        freeze(model)
        calls.append(model.encoder.layer1[0].conv1.weight.requires_grad)

    monkeypatch.setattr(torch_r34, "freeze_body", spy)
    config = tiny(dataset, pretrained=True, epochs=2, fine_tune_size=None)
    result = train(config, data, tmp_path / "run")
    assert calls == [False]  # frozen once, in epoch 1
    assert result.history["stages"][0]["frozen_epochs"] == 1
    assert result.history["stages"][0]["body_lr"] == pytest.approx(1e-4)


def test_pretrained_without_cached_weights_raises(
    dataset: Path, data: TrainData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with pytest.raises(ModelError, match="ImageNet weights"):
        train(tiny(dataset, pretrained=True), data, tmp_path / "run")


def test_bad_sizes_and_missing_validation_are_refused(dataset: Path, data: TrainData) -> None:
    with pytest.raises(ModelError, match="multiple of 32"):
        torch_r34.plan(tiny(dataset, size=50))
    assert [s.size for s in torch_r34.plan(tiny(dataset, fine_tune_size=64))] == [64, 64]
    with pytest.raises(ModelError, match="smaller than the first stage's 96"):
        torch_r34.plan(tiny(dataset, size=96, fine_tune_size=64))
    no_valid = TrainData(data.root, data.train, [], data.transform, data.stats_source)
    with pytest.raises(DataError, match="validation"):
        train(tiny(dataset), no_valid, Path("unused"))


def test_meter_counts_match_confusion() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(3, 2, 8, 8)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 2, size=(3, 8, 8)))
    meter = torch_r34._Meter(torch.device("cpu"))
    meter.add(torch.tensor(0.5), logits, y)
    expected = Confusion().add(logits.argmax(1).numpy() == 1, y.numpy() == 1)
    assert meter.confusion() == expected
    assert meter.scores()["loss"] == pytest.approx(0.5)
