"""fastai callbacks and metrics of the r18 pipeline (:mod:`cloudseg.train.fastai_r18`).

``BinaryScore`` scores a one-logit model properly (fastai's ``Dice`` takes an argmax over one
channel); ``SaveBest`` keeps ``best.pth`` on the dice metric, written our way; ``EpochLog`` seeds
augmentation per epoch and writes ``log.csv`` rows with training-set loss and accuracy.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.tracker import SaveModelCallback, TrackerCallback
from fastai.learner import Learner, Metric

from cloudseg.metrics import SCORES, Confusion
from cloudseg.train.run_files import LOG_COLUMNS, load_weights, save_weights, write_log

if TYPE_CHECKING:
    from cloudseg.train.fastai_r18 import Stage

log = logging.getLogger("cloudseg.train")


class BinaryScore(Metric):
    """A :class:`~cloudseg.metrics.Confusion` score over the whole validation set.

    fastai's ``Dice`` and ``JaccardCoeff`` take an argmax over channels, which for a one-logit
    model always says "clear". Here cloud is ``logit > 0`` (probability > 0.5) and the counts of
    every batch are added before scoring once, so the score is the pooled one, not a batch mean.
    """

    def __init__(self, score: str) -> None:
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; expected one of {SCORES}")
        self.score = score
        self.counts = Confusion()

    def reset(self) -> None:
        self.counts = Confusion()

    def accumulate(self, learn: Learner) -> None:
        self.counts += confusion_of(learn.pred, learn.yb[0])

    @property
    def value(self) -> float:
        return self.counts.scores()[self.score]

    @property
    def name(self) -> str:
        return self.score


def confusion_of(logits: torch.Tensor, target: torch.Tensor) -> Confusion:
    """Counts of ``(N, 1, H, W)`` logits against ``(N, 1, H, W)`` 0/1 targets, on their device."""
    if logits.shape != target.shape:
        raise ValueError(f"shapes differ: logits {tuple(logits.shape)}, target {target.shape}")
    pred, truth = logits.detach() > 0, target > 0.5
    tp, n_pred, n_true = (int(t.sum()) for t in (pred & truth, pred, truth))
    return Confusion(tp, n_pred - tp, n_true - tp, pred.numel() - n_pred - n_true + tp)


class SaveBest(SaveModelCallback):
    """fastai's ``SaveModelCallback`` on ``dice``, writing ``best.pth`` our way.

    fastai's ``learn.save(with_opt=False)`` writes a plain ``state_dict``, but on the training
    device (a CUDA file needs ``map_location`` on a CPU box), non-atomically (Ctrl-C during the
    write breaks it) and with a ``print``. Here: CPU tensors, atomic, logged. A stage's first
    epoch always saves, so a ``nan`` dice (no cloud anywhere) still leaves a checkpoint.
    """

    def __init__(self, weights: Path, first_epoch: int = 0) -> None:
        super().__init__(monitor="dice", comp=np.greater, fname=weights.stem, with_opt=False)
        self.weights, self.first = weights, first_epoch  # epochs of earlier stages, for the log
        self.saved: dict[str, float] | None = None  # scores of what best.pth holds
        self.saved_epoch = 0

    def _save(self, name: str) -> None:
        save_weights(self.learn.model, self.weights)
        self.last_saved_path = self.weights

    def after_epoch(self) -> None:
        TrackerCallback.after_epoch(self)
        if self.new_best or self.saved is None:
            self._save(self.fname)
            v = last_values(self.recorder)
            self.saved = {k: float(v[k]) for k in ("dice", "jaccard", "accuracy")}
            self.saved["loss"] = float(v["valid_loss"])
            self.saved_epoch = self.first + self.epoch + 1
            log.info("saved %s: dice %.4f, epoch %d", self.weights, v["dice"], self.saved_epoch)

    def after_fit(self) -> None:
        # As fastai's: the next stage starts from this stage's best. fastai's loader would
        # unpickle with weights_only=False; a state_dict needs no pickle.
        if self.saved is not None:
            self.learn.model.load_state_dict(load_weights(self.weights, self.dls.device))


class EpochLog(Callback):
    """Per epoch: seeds augmentation, measures training loss and accuracy, writes a log row.

    Training loss is the mean over the epoch's batches (the recorder's is a smoothed running
    value), and accuracy is counted on the same batches, so both compare with validation.
    """

    order = SaveBest.order + 1  # after the Recorder has this epoch's values

    def __init__(self, stage: Stage, rows: list[dict], log_path: Path, announce: bool) -> None:
        self.stage, self.rows, self.log_path, self.announce = stage, rows, log_path, announce
        self.first = len(rows)  # epochs of earlier stages: epoch numbers continue

    def before_epoch(self) -> None:
        # PatchDataset seeds its augmentation with (seed, epoch, index): new draws every epoch.
        self.dls.train.dataset.epoch = self.first + self.epoch
        self.loss_sum, self.items, self.counts = 0.0, 0, Confusion()
        self.start = time.perf_counter()

    def after_batch(self) -> None:
        if self.training:
            self.loss_sum += float(self.learn.loss.detach()) * len(self.yb[0])
            self.items += len(self.yb[0])
            self.counts += confusion_of(self.pred, self.yb[0])

    def after_epoch(self) -> None:
        v = last_values(self.recorder)
        row = {
            "stage": self.stage.number, "epoch": self.first + self.epoch + 1,
            "size": self.stage.size, "lr": self.stage.peak_lr,
            "train_loss": self.loss_sum / max(self.items, 1), "valid_loss": v["valid_loss"],
            "train_accuracy": self.counts.scores()["accuracy"], "valid_accuracy": v["accuracy"],
            "valid_dice": v["dice"], "valid_jaccard": v["jaccard"],
        }  # fmt: skip
        self.rows.append(row)
        write_log(self.rows, self.log_path)
        if self.announce:
            scores = ", ".join(f"{k} {row[k]:.4f}" for k in LOG_COLUMNS[4:])
            took = time.perf_counter() - self.start
            at = (row["stage"], row["epoch"], row["size"])
            log.info("stage %d epoch %d (%d px): %s (%.1f s)", *at, scores, took)


def last_values(recorder: Any) -> dict[str, float]:
    """The recorder's values of the epoch just ended, by name (``train_loss``, ``dice``...)."""
    # metric_names is "epoch", the values' names, then "time", which the values lack.
    names = recorder.metric_names[1 : len(recorder.values[-1]) + 1]
    return dict(zip(names, recorder.values[-1], strict=True))
