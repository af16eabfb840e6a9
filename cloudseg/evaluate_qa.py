"""Score a mask against the scene's own USGS quality band: ``cloudseg-eval scenes --truth qa``.

The truth is the QA band's cloud bit (:data:`cloudseg.data.qa.USGS_CLOUD`, CFMask's call: what
the MTL's ``CLOUD_COVER`` counts), on pixels the mask and the QA band both call valid. The scene
of a mask is named by the summary ``cloudseg-run`` wrote beside it (``<id>_summary.json``:
``scene``), or given with ``--scene``. Both rasters are read in bands of rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import rasterio
from rasterio.windows import Window

from cloudseg.data import qa
from cloudseg.data.sources import open_any
from cloudseg.engine.summary import CLOUD, NODATA
from cloudseg.errors import DataError, MissingFileError
from cloudseg.evaluate import (
    CHUNK_ROWS,
    MASK_SUFFIX,
    MASK_VALUES,
    check_values,
    read_window,
    scene_id_of,
)
from cloudseg.metrics import Confusion

SUMMARY_SUFFIX = "_summary.json"


def scene_of(mask: Path) -> str:
    """The scene a mask was made from, as its summary (beside it) names it."""
    name = Path(mask).name
    stem = name[: -len(MASK_SUFFIX)] if name.lower().endswith(MASK_SUFFIX) else Path(mask).stem
    summary = Path(mask).with_name(stem + SUMMARY_SUFFIX)
    if not summary.is_file():
        raise MissingFileError(
            f"{mask}: no {summary.name} beside it to name its scene; pass --scene SCENE"
        )
    try:
        return str(json.loads(summary.read_text())["scene"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise DataError(f"{summary}: not a cloudseg-run summary ({exc})") from None


def score_against_qa(
    mask: Path,
    scene_spec: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> Confusion:
    """Confusion counts of ``mask``'s cloud against the scene's QA cloud bit.

    Raises:
        DataError: the scene has no quality band, or its grid differs from the mask's.
    """
    scene = open_any(scene_spec or scene_of(mask))
    confusion = Confusion()
    with rasterio.open(mask) as mds, scene.open() as reader:
        if (mds.height, mds.width) != (scene.height, scene.width):
            raise DataError(
                f"mask {mask} is {mds.height} x {mds.width} pixels but scene {scene.source} is "
                f"{scene.height} x {scene.width}"
            )
        for row in range(0, mds.height, chunk_rows):
            window = Window(0, row, mds.width, min(chunk_rows, mds.height - row))
            m = read_window(mds, mask, window)
            check_values(mask, m, MASK_VALUES, set())
            flags = reader.read_qa(window)
            if flags is None:
                raise DataError(
                    f"{scene.source}: {scene.product} has no quality band (QA_PIXEL or BQA) "
                    "to score against"
                )
            valid = (m != NODATA) & (flags & qa.FILL == 0)
            confusion.add(m == CLOUD, qa.usgs_cloud(flags), valid)
            if progress is not None:
                progress(int(window.height))
    return confusion


def evaluate_against_qa(
    masks: list[Path],
    scene: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Confusion]:
    """Confusion counts per scene id of each mask against its scene's QA cloud bit."""
    if scene is not None and len(masks) > 1:
        raise DataError(f"--scene names one scene but {len(masks)} masks were given")
    out = {}
    for mask in masks:
        out[scene_id_of(mask)] = score_against_qa(mask, scene, chunk_rows, progress)
    return out
