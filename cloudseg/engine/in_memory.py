"""A scene through the engine into arrays instead of files: for small scenes that are judged,
not written (the real reference items of :mod:`cloudseg.engine.proof`, benchmarks/accuracy.py),
and for :func:`cloudseg.predict`, which keeps only the mask codes (and probabilities if asked).

It is the same road as ``cloudseg-run`` (:func:`cloudseg.engine.pipeline.run_scene`: tiles read
and normalised as the card says, batched, run, blended) with a sink that keeps the rows, so an
answer judged here is the answer ``cloudseg-run`` writes. The arrays are scene-sized: use it for
scenes that fit in memory (the reference items are at most 512 x 512 px).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudseg.card import ModelCard
from cloudseg.engine.backend import Backend
from cloudseg.engine.pipeline import SceneJob, run_scene
from cloudseg.engine.summary import NODATA, mask_codes
from cloudseg.engine.tiling import TileSpec
from cloudseg.scene import Scene


@dataclass
class Prediction:
    """One scene's blended answer.

    Attributes:
        probabilities: ``(K, H, W)`` float32: cloud, and cloud shadow when ``K = 2``.
        valid: ``(H, W)`` bool, the pixels with data.
        threshold: cloud where ``probabilities[0] > threshold``.
    """

    probabilities: np.ndarray
    valid: np.ndarray
    threshold: float

    @property
    def cloud(self) -> np.ndarray:
        """``(H, W)`` bool cloud, False where no data."""
        return (self.probabilities[0] > self.threshold) & self.valid

    @property
    def codes(self) -> np.ndarray:
        """``(H, W)`` uint8 mask codes, by the rule ``cloudseg-run`` writes them with."""
        shadow = self.probabilities[1] if len(self.probabilities) == 2 else None
        return mask_codes(self.probabilities[0], shadow, self.valid, self.threshold)[0]


class _KeepRows:
    """A :class:`cloudseg.engine.pipeline.RowSink` that keeps every row in memory."""

    def __init__(self, height: int, width: int, channels: int) -> None:
        self.probabilities = np.zeros((channels, height, width), np.float32)
        self.valid = np.zeros((height, width), bool)

    def write_rows(self, row0, probs, valid, threshold, bands=None, qa=None) -> None:  # noqa: ANN001
        rows = slice(row0, row0 + probs.shape[1])
        self.probabilities[:, rows] = probs
        self.valid[rows] = valid


class _KeepCodes:
    """A :class:`cloudseg.engine.pipeline.RowSink` that keeps uint8 mask codes (1 byte a pixel)
    and, if asked, the float32 probabilities: nothing else scene-sized."""

    def __init__(self, height: int, width: int, channels: int, probabilities: bool) -> None:
        self.codes = np.full((height, width), NODATA, np.uint8)
        self.probabilities = (
            np.full((channels, height, width), np.nan, np.float32) if probabilities else None
        )

    def write_rows(self, row0, probs, valid, threshold, bands=None, qa=None) -> None:  # noqa: ANN001
        rows = slice(row0, row0 + probs.shape[1])
        shadow = probs[1] if len(probs) == 2 else None
        self.codes[rows] = mask_codes(probs[0], shadow, valid, threshold)[0]
        if self.probabilities is not None:
            self.probabilities[:, rows] = np.where(valid, probs, np.float32(np.nan))


def mask_scene(
    job: SceneJob, backend: Backend, threshold: float, probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """The mask codes ``cloudseg-run`` would write for ``job``'s scene, in memory.

    Returns:
        ``(codes, probs)``: ``(H, W)`` uint8 codes (:data:`cloudseg.engine.summary.MASK_CODES`)
        and, if asked, ``(K, H, W)`` float32 probabilities (NaN where no data), else None.
    """
    scene = job.scene
    channels = 2 if backend.options.shadow else 1
    sink = _KeepCodes(scene.height, scene.width, channels, probabilities)
    run_scene(job, backend, sink, threshold)
    return sink.codes, sink.probabilities


def predict_scene(
    scene: Scene, backend: Backend, card: ModelCard, spec: TileSpec, threshold: float | None = None
) -> Prediction:
    """``scene`` through ``backend`` on the grid ``spec``, blended as ``cloudseg-run`` blends.

    Raises:
        SceneError: the scene cannot give the card's value kind.
    """
    job = SceneJob.start(scene, card, spec, readers=1, lookahead=4)
    sink = _KeepRows(scene.height, scene.width, 2 if backend.options.shadow else 1)
    threshold = card.threshold if threshold is None else threshold
    run_scene(job, backend, sink, threshold)
    return Prediction(sink.probabilities, sink.valid, threshold)
