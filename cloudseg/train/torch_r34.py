"""Train the r34 UNet with a plain PyTorch loop (no fastai), in two stages of progressive resizing.

Stage 1 trains at ``config.size``; stage 2, when ``config.fine_tune_size`` is larger, continues
from stage 1's best weights at that size (the tile size the engine runs at) for
``config.fine_tune_epochs``. The run folder gets ``best.pth`` (the best stage-2 ``state_dict`` on
validation Jaccard, ties to the lower loss), ``log.csv`` (one row per epoch, the fastai pipeline's
columns), ``history.png`` and ``valid_batch.png``.

Choices:

* Adam at ``config.lr`` or :data:`DEFAULT_LR` (1e-3): Adam's own default step, which a BatchNorm
  UNet takes well; the plain pipeline has no ``lr_find`` (fastai's tool), so a fixed documented
  value keeps runs comparable. Stage 2 uses ``lr / 10`` (:data:`FINE_TUNE_LR_FACTOR`): the
  weights are already trained and only need to adapt to the larger size.
* OneCycleLR per stage (warm-up over the first quarter, then cosine annealing, momentum cycled
  the other way), as fastai's ``fit_one_cycle`` does, so the two pipelines train alike.
* Pretrained bodies: ImageNet features survive only if the random decoder does not push large
  early gradients into them, so the body is frozen for the first epoch (:func:`freeze_body`:
  stem, BatchNorms, decoder and head still train), when stage 1 has more than one epoch, and
  then gets ``lr / 10`` of the decoder's lr, fastai's discriminative rates. From scratch
  everything trains at one lr from the start: there is nothing to protect.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm  # not tqdm.auto: its asyncio class calls iter() on the loader again

from cloudseg.cli_options import progress_disabled
from cloudseg.errors import DataError, ModelError
from cloudseg.metrics import Confusion
from cloudseg.train.augment import AugmentSpec
from cloudseg.train.common import TrainConfig, TrainResult, pick_device, seed_everything
from cloudseg.train.data import PatchDataset, TrainData
from cloudseg.train.models import build_model, check_input_size, freeze_body, param_groups, unfreeze
from cloudseg.train.plots import plot_history
from cloudseg.train.precision import Precision
from cloudseg.train.precision import resolve as resolve_precision
from cloudseg.train.run_files import (
    BATCH_PLOT,
    HISTORY_PLOT,
    load_weights,
    plot_valid_batch,
    save_weights,
    write_log,
)
from cloudseg.train.runs import BEST_WEIGHTS, LOG

log = logging.getLogger("cloudseg.train")

DEFAULT_LR = 1e-3
FINE_TUNE_LR_FACTOR = 0.1
BODY_LR_FACTOR = 0.1  # pretrained body vs stem/decoder/head
FROZEN_EPOCHS = 1
PCT_START = 0.25  # fastai's fit_one_cycle default


@dataclass(frozen=True)
class Stage:
    """One training stage: number (1, 2), patch size, epochs, peak lrs, epochs with frozen body."""

    number: int
    size: int
    epochs: int
    lr: float  # stem, decoder and head (the ``lr`` column of log.csv)
    body_lr: float
    frozen_epochs: int = 0


@dataclass
class Best:
    """The best epoch of one stage on validation so far (0: none yet)."""

    epoch: int = 0
    scores: dict[str, float] = field(default_factory=dict)

    def beaten_by(self, scores: dict[str, float]) -> bool:
        """Higher Jaccard wins; on a tie, lower loss; nan (no cloud anywhere) ranks lowest."""
        return not self.epoch or _rank(scores) > _rank(self.scores)


def _rank(scores: dict[str, float]) -> tuple[float, float]:
    jaccard = scores["jaccard"]
    return (jaccard if math.isfinite(jaccard) else -1.0, -scores["loss"])


def plan(config: TrainConfig) -> list[Stage]:
    """The stages ``config`` asks for; refuses sizes the UNet cannot take and empty runs."""
    if config.epochs < 1:
        raise ModelError(f"epochs must be at least 1, got {config.epochs}")
    lr = config.lr if config.lr is not None else DEFAULT_LR
    body = BODY_LR_FACTOR if config.pretrained else 1.0
    frozen = FROZEN_EPOCHS if config.pretrained and config.epochs > FROZEN_EPOCHS else 0
    check_input_size(config.size, config.size)
    stages = [Stage(1, config.size, config.epochs, lr, lr * body, frozen)]
    fine = config.fine_tune_size
    if fine is not None and config.fine_tune_epochs > 0:
        # Same rule as fastai_r18: a larger size is progressive resizing, an equal one plain
        # fine-tuning at a lower rate, a smaller one a mistake.
        check_input_size(fine, fine)
        if fine < config.size:
            raise ModelError(
                f"fine-tune size {fine} is smaller than the first stage's {config.size}"
            )
        lr *= FINE_TUNE_LR_FACTOR
        stages.append(Stage(2, fine, config.fine_tune_epochs, lr, lr * body))
    return stages


def train(config: TrainConfig, data: TrainData, run_dir: Path) -> TrainResult:
    """Train r34 on ``data`` and write the run into ``run_dir``; Ctrl-C stops cleanly.

    Returns:
        The validation scores of the checkpoint kept in ``best.pth`` (Jaccard, dice, accuracy,
        precision, recall, specificity, loss) and a JSON-ready ``history``. On Ctrl-C,
        ``interrupted`` is set and the scores are the best so far (empty if no epoch finished).

    Raises:
        ModelError: ``config.model`` is not r34, a size is not a multiple of 32, no epochs, or
            ``config.pretrained`` without the cached ImageNet weights.
        DataError: no validation patches to choose the checkpoint with.
    """
    if config.model != "r34":
        raise ModelError(f"torch_r34 trains r34 only, not {config.model!r}")
    if not data.valid:
        raise DataError(f"{data.root}: r34 needs validation patches to keep the best checkpoint")
    stages, run_dir = plan(config), Path(run_dir)
    seed_everything(config.seed)  # before build_model: the decoder's initial weights repeat too
    device = pick_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one patch shape per stage: tune once, reuse
    precision = resolve_precision(config.precision, device)
    # Channels-last: the layout oneDNN's and cuDNN's fast convolutions want (see precision.py).
    model = build_model("r34", config.pretrained).to(device, memory_format=torch.channels_last)
    log.info("r34: training in %s on %s", precision.label, device)
    loaders = _loaders(config, data, device)
    quiet = progress_disabled(config.quiet)
    rows: list[dict[str, Any]] = []
    bests: list[tuple[Stage, Best]] = []
    interrupted = False
    try:
        for stage in stages:
            bests.append((stage, Best()))
            _fit_stage(
                model, stage, bests[-1][1], loaders, (device, precision), run_dir, rows, quiet
            )
    except KeyboardInterrupt:
        interrupted = True
        log.warning("r34: interrupted after %d epoch(s); best.pth holds the best so far", len(rows))
    unfreeze(model)
    done = [(s, b) for s, b in bests if b.epoch]
    if rows:
        write_log(rows, run_dir / LOG)  # again: Ctrl-C may have cut the last write short
        plot_history(rows, run_dir / HISTORY_PLOT, title="r34")
    if done:
        model.load_state_dict(load_weights(run_dir / BEST_WEIGHTS))
        valid_ds = loaders[1].dataset
        valid_ds.size = done[-1][0].size
        plot_valid_batch(model, valid_ds, run_dir / BATCH_PLOT, lambda z: z.softmax(1)[:, 1])
    history = {
        "precision": precision.label,
        "memory_format": "channels_last",
        "optimizer": "Adam",
        "scheduler": f"OneCycleLR(pct_start={PCT_START})",
        "epochs_run": len(rows),
        "kept_stage": done[-1][0].number if done else None,
        "stages": [_record(stage, best) for stage, best in bests],
    }
    return TrainResult(dict(done[-1][1].scores) if done else {}, history, interrupted)


def _record(stage: Stage, best: Best) -> dict[str, Any]:
    """A stage and its best epoch for the card, keyed as the fastai pipeline keys them."""
    record: dict[str, Any] = {"stage": stage.number, **asdict(stage)}
    del record["number"]
    # nan (a score with nothing to count) is not JSON; the card gets null instead.
    best_scores = {k: (v if math.isfinite(v) else None) for k, v in best.scores.items()}
    return {**record, "best_epoch": best.epoch or None, "best": best_scores}


def _loaders(
    config: TrainConfig, data: TrainData, device: torch.device
) -> tuple[DataLoader, DataLoader]:
    """Augmented, shuffled training batches and plain validation batches."""
    ds: dict[str, Any] = dict(size=config.size, target="classes", cache=config.cache)
    train_ds = PatchDataset(
        data.root, data.train, data.transform, augment_spec=AugmentSpec(), seed=config.seed, **ds
    )
    valid_ds = PatchDataset(data.root, data.valid, data.transform, **ds)
    # Workers copy the dataset when an epoch's iterator starts, so fresh workers see the
    # ``epoch`` and ``size`` set before it; persistent workers would keep the first copies.
    dl: dict[str, Any] = dict(
        batch_size=config.bs, num_workers=config.workers, persistent_workers=False,
        pin_memory=device.type == "cuda",
    )  # fmt: skip
    shuffle = torch.Generator().manual_seed(config.seed)
    # A last batch of one patch gives BatchNorm noisy statistics; keep it if it is all there is.
    drop_last = len(train_ds) > config.bs
    return (
        DataLoader(train_ds, shuffle=True, generator=shuffle, drop_last=drop_last, **dl),
        DataLoader(valid_ds, shuffle=False, **dl),
    )


def _fit_stage(
    model: nn.Module,
    stage: Stage,
    best: Best,
    loaders: tuple[DataLoader, DataLoader],
    where: tuple[torch.device, Precision],
    run_dir: Path,
    rows: list[dict[str, Any]],
    quiet: bool,
) -> None:
    """Train one stage, saving ``best.pth`` and appending to ``rows`` and log.csv per epoch."""
    device, precision = where
    best_path, (train_dl, valid_dl) = run_dir / BEST_WEIGHTS, loaders
    if stage.number > 1:  # continue from the best weights of the stage before
        model.load_state_dict(load_weights(best_path))
    for dl in loaders:
        dl.dataset.size = stage.size  # the datasets' raw-patch caches stay valid
    opt, sched = _optimiser(model, stage, len(train_dl))
    step = _Step(opt, sched, precision.scaler())
    loss_fn = nn.CrossEntropyLoss()
    for i in range(stage.epochs):
        if i < stage.frozen_epochs:
            freeze_body(model)
        else:
            unfreeze(model)
        epoch = len(rows) + 1  # numbered on across stages
        train_dl.dataset.epoch = epoch - 1  # seeds this epoch's augmentation
        desc = "" if quiet else f"stage {stage.number} epoch {epoch} ({stage.size} px)"
        tr = _epoch(model, train_dl, loss_fn, (device, precision), step, desc)
        va = _epoch(model, valid_dl, loss_fn, (device, precision))
        kept = best.beaten_by(va)
        if kept:  # saved before it is recorded: Ctrl-C between the two keeps them consistent
            save_weights(model, best_path)
            best.epoch, best.scores = epoch, va
        rows.append(_row(stage, epoch, tr, va))
        write_log(rows, run_dir / LOG)
        log.info(
            "r34 stage %d epoch %d (%d px): train loss %.4f acc %.4f | valid loss %.4f "
            "acc %.4f dice %.4f jaccard %.4f%s", stage.number, epoch, stage.size,
            tr["loss"], tr["accuracy"], va["loss"], va["accuracy"], va["dice"],
            va["jaccard"], " (best so far)" if kept else "",
        )  # fmt: skip


def _optimiser(
    model: nn.Module, stage: Stage, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam over ``param_groups`` (body, then stem + decoder + head) with a OneCycle schedule."""
    lrs = [stage.body_lr, stage.lr]
    groups = [{"params": p, "lr": lr} for p, lr in zip(param_groups(model), lrs, strict=True)]
    opt = torch.optim.Adam(groups)
    total = max(1, stage.epochs * steps_per_epoch)
    # OneCycleLR divides by its warm-up length, pct_start * total - 1 steps, so a warm-up of
    # exactly one step raises ZeroDivisionError (pytorch/pytorch#180187): lengthen it by half.
    pct = PCT_START if PCT_START * total != 1 else 1.5 / total
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=total, pct_start=pct)
    return opt, sched


@dataclass
class _Step:
    """One optimiser step: Adam, the one-cycle schedule, and for fp16 the gradient scaler."""

    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None

    def __call__(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:  # fp16: scale the loss so small gradients survive, unscale before the step
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        self.sched.step()


class _Meter:
    """Loss and confusion counts of one pass, summed on the device (no sync per batch)."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.counts = torch.zeros(4, dtype=torch.int64, device=device)  # tp, fp, fn, tn
        self.n = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add a batch: mean ``loss``, ``(N, 2, H, W)`` logits, ``(N, H, W)`` int64 classes."""
        self.loss += loss.detach().double() * len(y)  # every patch has the same pixel count
        self.n += len(y)
        pred, truth = logits.detach().argmax(1) == 1, y == 1  # cloud is class 1
        tp, n_pred, n_true = (pred & truth).sum(), pred.sum(), truth.sum()
        tn = pred.numel() - n_pred - n_true + tp
        self.counts += torch.stack([tp, n_pred - tp, n_true - tp, tn])

    def confusion(self) -> Confusion:
        return Confusion(*self.counts.tolist())

    def scores(self) -> dict[str, float]:
        return {**self.confusion().scores(), "loss": self.loss.item() / max(self.n, 1)}


def _epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    where: tuple[torch.device, Precision],
    step: _Step | None = None,
    desc: str = "",
) -> dict[str, float]:
    """One pass: training when ``step`` (optimiser, scheduler) is given, with scores from the
    training logits (augmented batches, train-mode BatchNorm); else validation, in eval mode
    without gradients. A progress bar shows training unless ``desc`` is empty."""
    device, precision = where
    model.train(step is not None)
    meter = _Meter(device)
    bar = tqdm(loader, desc=desc, disable=not desc, leave=False, unit="batch")
    with torch.set_grad_enabled(step is not None):
        for i, (x, y) in enumerate(bar):
            x = x.to(device, non_blocking=True, memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with precision.autocast():
                logits = model(x)
            logits = logits.float()  # the loss and the scores in fp32, whatever computed them
            loss = loss_fn(logits, y)
            if step is not None:
                step(loss)
            meter.add(loss, logits, y)
            if desc and i % 10 == 0:  # .item() waits for the GPU: not every batch
                bar.set_postfix(loss=f"{loss.item():.4f}")
    return meter.scores()


def _row(stage: Stage, epoch: int, tr: dict[str, float], va: dict[str, float]) -> dict[str, Any]:
    return {
        "stage": stage.number, "epoch": epoch, "size": stage.size, "lr": stage.lr,
        "train_loss": tr["loss"], "valid_loss": va["loss"], "train_accuracy": tr["accuracy"],
        "valid_accuracy": va["accuracy"], "valid_dice": va["dice"], "valid_jaccard": va["jaccard"],
    }  # fmt: skip
