"""Training and validation split of 38-Cloud patches, by scene.

Neighbouring patches of a scene are strongly correlated, so a patch-level split would leak: the
split keeps every scene on one side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from cloudseg.data.cloud38 import PatchId, scenes_of
from cloudseg.errors import DataError


class SceneSplit(NamedTuple):
    """Training and validation patches, with no scene on both sides."""

    train: list[PatchId]
    valid: list[PatchId]

    @property
    def train_scenes(self) -> list[str]:
        return scenes_of(self.train)

    @property
    def valid_scenes(self) -> list[str]:
        return scenes_of(self.valid)


def split_by_scene(patches: Sequence[PatchId], val_fraction: float, seed: int = 0) -> SceneSplit:
    """Split patches into training and validation by scene, reproducibly for a ``seed``.

    Neighbouring patches of a scene are strongly correlated, so a patch-level split would leak.
    With ``val_fraction`` > 0 and two or more scenes, each side gets at least one scene;
    ``val_fraction`` = 0 puts everything in training. Both lists keep the input order.
    """
    if not 0 <= val_fraction < 1:
        raise DataError(f"validation fraction {val_fraction} is not in [0, 1)")
    scenes = scenes_of(patches)
    n_valid = 0
    if val_fraction > 0 and len(scenes) >= 2:
        n_valid = min(max(round(val_fraction * len(scenes)), 1), len(scenes) - 1)
    order = np.random.default_rng(seed).permutation(len(scenes))
    valid_scenes = {scenes[i] for i in order[:n_valid]}
    return SceneSplit(
        [p for p in patches if p.scene not in valid_scenes],
        [p for p in patches if p.scene in valid_scenes],
    )
