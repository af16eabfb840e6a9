"""Confusion counts accumulated chunk by chunk, and the scores the 38-Cloud papers report.

A whole scene never has to be in memory: add windows of prediction and truth to a
:class:`Confusion` as they are produced, then read the scores. Two ways to summarise many scenes:
``per_scene_mean`` (score each scene, then average: the 38-Cloud / Cloud-Net protocol) and
``pooled`` (add all counts, then score once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

#: Score names, in the order tables show them.
SCORES = ("jaccard", "precision", "recall", "specificity", "accuracy", "dice")


@dataclass
class Confusion:
    """Binary confusion counts (cloud is the positive class)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(
        self, pred: np.ndarray, truth: np.ndarray, valid: np.ndarray | None = None
    ) -> Confusion:
        """Add one chunk.

        Args:
            pred: ``(...)`` bool (or 0/1) predicted cloud.
            truth: same shape, bool (or 0/1) true cloud.
            valid: same shape bool; pixels where it is false (no data) are not counted.

        Returns:
            ``self``, so calls chain.
        """
        if pred.shape != truth.shape or (valid is not None and valid.shape != pred.shape):
            raise ValueError(
                f"shapes differ: pred {pred.shape}, truth {truth.shape}"
                + (f", valid {valid.shape}" if valid is not None else "")
            )
        p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
        if valid is not None:
            v = np.asarray(valid, dtype=bool)
            p, t = p[v], t[v]
        tp = int(np.count_nonzero(p & t))
        n_pred, n_true = int(np.count_nonzero(p)), int(np.count_nonzero(t))
        self.tp += tp
        self.fp += n_pred - tp
        self.fn += n_true - tp
        self.tn += p.size - n_pred - n_true + tp
        return self

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def scores(self) -> dict[str, float]:
        """Scores in ``[0, 1]``; a ratio whose denominator is 0 is ``nan`` (undefined, not 0)."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return {
            "jaccard": _ratio(tp, tp + fp + fn),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "accuracy": _ratio(tp + tn, self.total),
            "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        }


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def per_scene_mean(confusions: Mapping[str, Confusion] | Iterable[Confusion]) -> dict[str, float]:
    """Score each scene, then average each score over the scenes where it is defined."""
    items = confusions.values() if isinstance(confusions, Mapping) else confusions
    table = [c.scores() for c in items]
    if not table:
        raise ValueError("no scenes to average")
    out = {}
    for name in SCORES:
        values = np.array([row[name] for row in table], dtype=float)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def pooled(confusions: Mapping[str, Confusion] | Iterable[Confusion]) -> dict[str, float]:
    """Add every scene's counts, then score once."""
    items = confusions.values() if isinstance(confusions, Mapping) else confusions
    return sum(items, Confusion()).scores()
