"""Run folders: where training writes, and where export looks for the newest run.

Runs live under :func:`cloudseg.home.runs_dir` (``$CLOUDSEG_HOME/runs/<model>-<timestamp>/``).
A run folder holds ``best.pth`` (a ``state_dict``), ``card.json``, ``log.csv`` and the
plots.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from cloudseg.atomic import atomic_path
from cloudseg.errors import MissingFileError, OutputExistsError
from cloudseg.home import runs_dir

BEST_WEIGHTS = "best.pth"
CARD = "card.json"
LOG = "log.csv"


@contextlib.contextmanager
def new_run_dir(model: str, out: Path | None, overwrite: bool) -> Iterator[tuple[Path, Path]]:
    """The folder a run writes into: a temporary beside the final one, renamed into place when
    training ends (interrupted or not); on an error the temporary goes and an earlier run in
    ``out`` is left byte for byte (``--overwrite`` replaces it only with a finished run).

    Args:
        model: model name (``r18``, ``r34``), used in the default folder name.
        out: chosen folder, or ``None`` for ``runs_dir()/<model>-<UTC timestamp>``.
        overwrite: allow ``out`` to hold an earlier run, replaced once the new one is done.

    Yields:
        ``(final folder, folder to write now)``.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``overwrite`` is false.
    """
    if out is None:
        out = runs_dir() / f"{model}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(out, " and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputExistsError(out)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder holds nothing to keep; the finished run takes its place
    with atomic_path(out, overwrite=True) as tmp:
        tmp.mkdir(parents=True)
        yield out, tmp


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
