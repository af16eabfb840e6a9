"""Run folders: where training writes, and where export looks for the newest run.

Runs live under :func:`cloudseg.home.runs_dir` (``$CLOUDSEG_HOME/runs/<model>-<timestamp>/``).
A run folder holds ``best.pth`` (a ``state_dict``), ``card.json``, ``log.csv`` and the
plots.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from cloudseg.errors import MissingFileError, OutputExistsError
from cloudseg.home import runs_dir

BEST_WEIGHTS = "best.pth"
CARD = "card.json"
LOG = "log.csv"


def new_run_dir(model: str, out: Path | None, overwrite: bool) -> Path:
    """Create the folder a run writes into.

    Args:
        model: model name (``r18``, ``r34``), used in the default folder name.
        out: chosen folder, or ``None`` for ``runs_dir()/<model>-<UTC timestamp>``.
        overwrite: allow ``out`` to exist already; its contents are then removed.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``overwrite`` is false.
    """
    if out is None:
        out = runs_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise OutputExistsError(out)
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def newest_run(model: str, root: Path | None = None) -> Path:
    """The most recent finished run of ``model`` (one holding best weights and a card)."""
    root = Path(root) if root is not None else runs_dir()
    candidates = [
        p for p in root.glob(f"{model}-*") if (p / BEST_WEIGHTS).is_file() and (p / CARD).is_file()
    ]
    if not candidates:
        raise MissingFileError(
            f"no finished {model} run under {root}: train one with "
            f"`cloudseg-train --model {model} DATA_DIR`, or pass --run/--checkpoint"
        )
    return max(candidates, key=lambda p: (p / BEST_WEIGHTS).stat().st_mtime)
