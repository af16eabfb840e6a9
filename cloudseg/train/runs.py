"""Run folders: where training writes, and where export looks for the newest run.

``$CLOUDSEG_HOME`` (default ``~/.cache/cloudseg``) holds ``runs/<model>-<timestamp>/`` and
``models/``. A run folder holds ``best.pth`` (a ``state_dict``), ``card.json``, ``log.csv`` and the
plots.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from cloudseg.errors import MissingFileError, OutputExistsError

HOME_ENV = "CLOUDSEG_HOME"
BEST_WEIGHTS = "best.pth"
CARD = "card.json"
LOG = "log.csv"


def cloudseg_home() -> Path:
    """``$CLOUDSEG_HOME``, or ``~/.cache/cloudseg``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "cloudseg").expanduser()


def runs_dir() -> Path:
    return cloudseg_home() / "runs"


def models_dir() -> Path:
    return cloudseg_home() / "models"


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
