"""The r18 pipeline: a fastai ``Learner`` on the ResNet18 ``DynamicUnet``, in two stages.

1. Rate: ``config.lr``, or ``lr_find`` with fastai's ``valley`` suggestion (its default since 2.5:
   a point inside the longest stretch of falling loss, so one noisy dip does not decide it as it
   does ``minimum``, and ``steep`` follows the noise of small batches); plot in ``lr_find.png``;
   no usable suggestion (too few points, nan) falls back to 1e-3 with a log line.
2. Stage 1 at ``size``: ``fit_one_cycle(epochs, lr)``. With ImageNet weights the body is frozen
   (``learn.freeze()``: stem, decoder, head and the body's BatchNorms train, see
   :func:`cloudseg.train.models.param_groups`); from scratch everything trains from the start.
3. Stage 2 at ``fine_tune_size`` (progressive resizing; skipped when None or with 0 epochs; an
   equal size fine-tunes without resizing): ``unfreeze`` and lower rates, because the model is
   trained and only adapts to the larger scale: ``slice(lr/100, lr/10)`` when pretrained (the
   ImageNet body moves ten times slower than the decoder: discriminative rates, as fastai's
   ``fine_tune``), ``lr/10`` for every group from scratch, where the body is nothing special.

Each stage keeps its best epoch on validation ``dice`` in ``best.pth`` (a CPU ``state_dict``;
in the end the best at the size the engine runs at). Also written: ``log.csv`` (every epoch),
``history.png``, ``valid_batch.png``. Ctrl-C returns early with ``interrupted=True``.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from fastai.callback.progress import ProgressCallback
from fastai.callback.schedule import valley
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat
from fastcore.basics import noop

from cloudseg.cli_options import progress_disabled
from cloudseg.errors import DataError, ModelError
from cloudseg.train.augment import AugmentSpec
from cloudseg.train.common import TrainConfig, TrainResult, pick_device, seed_everything
from cloudseg.train.data import PatchDataset, TrainData
from cloudseg.train.fastai_callbacks import BinaryScore, EpochLog, SaveBest
from cloudseg.train.fastai_precision import apply_precision
from cloudseg.train.models import build_model, check_input_size, param_groups
from cloudseg.train.plots import plot_history
from cloudseg.train.precision import resolve as resolve_precision
from cloudseg.train.run_files import (
    BATCH_PLOT,
    HISTORY_PLOT,
    load_weights,
    plot_valid_batch,
    write_log,
)
from cloudseg.train.runs import BEST_WEIGHTS, LOG

log = logging.getLogger("cloudseg.train")

LR_FALLBACK = 1e-3


@dataclass(frozen=True)
class Stage:
    """One ``fit_one_cycle``: at which tile size, how long, at which rates, body frozen or not."""

    number: int
    size: int
    epochs: int
    lrs: float | slice  # a slice gives the body .start and the stem, decoder and head .stop
    frozen: bool

    @property
    def peak_lr(self) -> float:
        """One-cycle maximum of the decoder and head group (the rate ``log.csv`` shows)."""
        return self.lrs.stop if isinstance(self.lrs, slice) else self.lrs

    def record(self) -> dict[str, Any]:
        """For the card, keyed as the r34 pipeline keys its stages."""
        body_lr = self.lrs.start if isinstance(self.lrs, slice) else self.lrs
        return {"stage": self.number, "size": self.size, "epochs": self.epochs,
                "lr": self.peak_lr, "body_lr": body_lr, "frozen_body": self.frozen}  # fmt: skip


def train(config: TrainConfig, data: TrainData, run_dir: Path) -> TrainResult:
    """Train r18 on ``data`` as the module docstring says, writing into ``run_dir``.

    Returns:
        ``scores`` (``dice``, ``jaccard``, ``accuracy``, ``loss``) of the checkpoint kept in
        ``best.pth`` (empty if no epoch finished), ``history`` (``lr_find`` and one entry per
        stage) and ``interrupted``.
    """
    run_dir = Path(run_dir)
    plan_stages(config, lr=1.0)  # refuse bad sizes before any work
    if len(data.train) < config.bs or not data.valid:  # batches of bs only; best needs valid
        raise DataError(f"r18 needs >= {config.bs} training and >= 1 validation patches")
    plt.switch_backend("Agg")  # lr_find draws with pyplot; never open a window
    seed_everything(config.seed)
    quiet = is_quiet(config)
    learn = make_learner(config, data, run_dir, quiet)
    precision = resolve_precision(config.precision, learn.dls.device)
    apply_precision(learn, precision)
    log.info("r18: training in %s on %s", precision.label, learn.dls.device)
    rows: list[dict[str, float]] = []
    done: list[tuple[Stage, SaveBest]] = []  # stages started, with their checkpoint keepers
    history: dict[str, Any] = {
        "lr_find": None,
        "precision": precision.label,
        "memory_format": "channels_last",
    }
    interrupted = False
    try:
        lr = config.lr
        if lr is None:
            lr, history["lr_find"] = find_lr(learn, config.lr_find_iters, run_dir / "lr_find.png")
        for stage in plan_stages(config, lr):
            if stage.size != learn.dls.train.dataset.size:
                learn.dls = dataloaders(config, data, stage.size)
            if stage.frozen:
                learn.freeze()
            else:
                learn.unfreeze()
            done.append((stage, SaveBest(run_dir / BEST_WEIGHTS, first_epoch=len(rows))))
            epoch_log = EpochLog(stage, rows, run_dir / LOG, announce=quiet)
            learn.fit_one_cycle(stage.epochs, stage.lrs, cbs=[done[-1][1], epoch_log])
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted after %d epoch(s); keeping %s", len(rows), run_dir / BEST_WEIGHTS)
    return _finish(learn, run_dir, rows, done, history, interrupted)


def make_learner(config: TrainConfig, data: TrainData, run_dir: Path, quiet: bool) -> Learner:
    """The Learner at ``config.size``: BCE on one logit, binary scores, r18's parameter groups."""
    learn = Learner(
        dataloaders(config, data, config.size),
        build_model("r18", pretrained=config.pretrained, img_size=config.size),
        loss_func=BCEWithLogitsLossFlat(),
        metrics=[BinaryScore("accuracy"), BinaryScore("dice"), BinaryScore("jaccard")],
        splitter=param_groups,
        path=run_dir,
        model_dir=".",
    )
    if config.pretrained:  # lr_find measures the model stage 1 trains: body frozen
        learn.freeze()
    if quiet:  # bars and printed tables flood logs; EpochLog logs one line per epoch instead
        learn.remove_cb(ProgressCallback)
        learn.logger = noop  # what fastai's own no_logging() sets
    return learn


def _finish(
    learn: Learner,
    run_dir: Path,
    rows: list[dict[str, float]],
    done: list[tuple[Stage, SaveBest]],
    history: dict[str, Any],
    interrupted: bool,
) -> TrainResult:
    """Log and figures for the epochs done; scores of the checkpoint ``best.pth`` holds."""
    history["epochs_run"] = len(rows)
    history["stages"] = [
        {**stage.record(), "epochs_done": sum(r["stage"] == stage.number for r in rows),
         "best_epoch": saver.saved_epoch or None,
         "best": {k: _json_float(v) for k, v in (saver.saved or {}).items()} or None}
        for stage, saver in done
    ]  # fmt: skip
    write_log(rows, run_dir / LOG)
    if rows:
        plot_history(rows, run_dir / HISTORY_PLOT, title="r18")
    # A stage that saved nothing (stopped in its first epoch) left the previous stage's best.
    kept = next((saver.saved for _, saver in reversed(done) if saver.saved), None)
    if kept is None:
        return TrainResult({}, history, interrupted)
    learn.model.load_state_dict(load_weights(run_dir / BEST_WEIGHTS, learn.dls.device))
    plot_valid_batch(
        learn.model, learn.dls.valid.dataset, run_dir / BATCH_PLOT, lambda z: torch.sigmoid(z[:, 0])
    )
    return TrainResult(dict(kept), history, interrupted)


def dataloaders(config: TrainConfig, data: TrainData, size: int) -> DataLoaders:
    """Shuffled, augmented training patches and un-augmented validation patches at ``size``."""
    common = {"size": size, "target": "binary", "seed": config.seed, "cache": config.cache}
    train_ds = PatchDataset(data.root, data.train, data.transform, augment_spec=AugmentSpec(),
                            **common)  # fmt: skip
    valid_ds = PatchDataset(data.root, data.valid, data.transform, **common)
    device = pick_device()
    # from_dsets shuffles and drops the last partial batch of the first (training) set only.
    return DataLoaders.from_dsets(
        train_ds, valid_ds, bs=config.bs, num_workers=config.workers, device=device,
        pin_memory=device.type == "cuda",
    )  # fmt: skip


def find_lr(learn: Learner, iters: int, plot_path: Path) -> tuple[float, dict[str, Any]]:
    """Run ``lr_find``, save its plot, and return the rate to use and what to record."""
    learn.lr_find(num_it=iters, suggest_funcs=None, show_plot=False)
    suggestion, point = suggest_lr(learn.recorder.lrs, learn.recorder.losses, iters)
    learn.recorder.plot_lr_find(suggestions=[point] if point else None, nms=["valley"])
    fig = plt.gcf()
    fig.savefig(plot_path)
    plt.close(fig)
    lr = suggestion
    if not math.isfinite(suggestion) or suggestion <= 0:
        log.warning("lr_find gave no usable suggestion (%s); using %g", suggestion, LR_FALLBACK)
        lr = LR_FALLBACK
    else:
        log.info("lr_find suggests %.3g (valley)", lr)
    record = {"method": "valley", "iters": iters, "suggestion": _json_float(suggestion), "lr": lr}
    return lr, record


def suggest_lr(lrs: list[float], losses: list, num_it: int) -> tuple[float, tuple | None]:
    """fastai's ``valley`` on the record trimmed as ``lr_find`` trims it (first tenth, last 5,
    from the first nan on); under 3 points left ``valley`` fails or says the first rate: ``nan``.

    Returns:
        ``(suggestion or nan, (lr, loss) point to mark on the plot, or None)``.
    """
    lrs_t = torch.tensor([float(x) for x in lrs[num_it // 10 : -5]])
    losses_t = torch.tensor([float(x) for x in losses[num_it // 10 : -5]])
    bad = torch.nonzero(~torch.isfinite(losses_t))
    if len(bad):
        lrs_t, losses_t = lrs_t[: int(bad[0])], losses_t[: int(bad[0])]
    if len(losses_t) < 3:
        return float("nan"), None
    lr, point = valley(lrs_t, losses_t, num_it)
    return float(lr), (float(point[0]), float(point[1]))


def is_quiet(config: TrainConfig) -> bool:
    """No progress bars when asked, on CI, or when stdout is not a terminal (a log file)."""
    return progress_disabled(config.quiet) or not sys.stdout.isatty()


def plan_stages(config: TrainConfig, lr: float) -> list[Stage]:
    """Stage 1 at ``size``; stage 2 unfrozen at ``fine_tune_size`` at a tenth of the rate."""
    check_input_size(config.size, config.size)
    stages = [Stage(1, config.size, config.epochs, lr, frozen=config.pretrained)]
    ft = config.fine_tune_size
    if ft is not None and config.fine_tune_epochs > 0:
        check_input_size(ft, ft)
        if ft < config.size:
            raise ModelError(f"fine-tune size {ft} is smaller than the first stage's {config.size}")
        lrs = slice(lr / 100, lr / 10) if config.pretrained else lr / 10
        stages.append(Stage(2, ft, config.fine_tune_epochs, lrs, frozen=False))
    return stages


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
