"""The writer's re-read of a scene's rows: one read per block row of the files, whatever pieces
the blender hands on, and the rows of each piece exactly."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from rasterio.windows import Window

from cloudseg.engine.pipeline import BlockRows

HEIGHT, WIDTH = 1000, 30


@dataclass
class Rows:
    """A scene whose pixel values are their row numbers, counting its reads."""

    block_shape: tuple[int, int] | None = (256, 256)
    height: int = HEIGHT
    width: int = WIDTH
    reads: list[tuple[int, int]] = field(default_factory=list)

    def read(self, window: Window) -> np.ndarray:
        row0, n = int(window.row_off), int(window.height)
        self.reads.append((row0, n))
        rows = np.arange(row0, row0 + n, dtype=np.uint16)[:, None]
        return np.broadcast_to(rows, (4, n, WIDTH)).copy()

    def read_qa(self, window: Window) -> np.ndarray:
        return np.full((int(window.height), WIDTH), 7, np.uint8)


@pytest.mark.parametrize("pieces", [[67] * 15, [1, 255, 256, 300, 188], [1000]])
def test_pieces_are_the_rows_asked_for_and_each_block_row_is_read_once(pieces) -> None:  # noqa: ANN001
    scene = Rows()
    rows = BlockRows(scene, scene)
    row0 = 0
    for n in [*pieces[:-1], HEIGHT - sum(pieces[:-1])]:
        raw, qa = rows.rows(row0, n)
        assert raw.shape == (4, n, WIDTH) and qa.shape == (n, WIDTH) and (qa == 7).all()
        np.testing.assert_array_equal(raw[2, :, 0], np.arange(row0, row0 + n))
        row0 += n
    assert scene.reads == [(0, 256), (256, 256), (512, 256), (768, 232)]


def test_a_scene_without_blocks_is_read_piece_by_piece() -> None:
    scene = Rows(block_shape=None)
    rows = BlockRows(scene, scene)
    for row0, n in [(0, 67), (67, 500), (567, 433)]:
        raw, _ = rows.rows(row0, n)
        np.testing.assert_array_equal(raw[0, :, 0], np.arange(row0, row0 + n))
    assert scene.reads == [(0, 67), (67, 500), (567, 433)]
