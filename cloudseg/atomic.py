"""Files appear whole or not at all: written under a temporary name, renamed when complete.

An output that exists already is refused unless ``overwrite`` is set, and the refusal happens
before any work, so nothing already on disk is lost or half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from cloudseg.errors import OutputExistsError


def check_writable(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(path)


def _temporary_sibling(path: Path) -> Path:
    # Same folder, so the final rename never crosses a file system; hidden, so a reader
    # globbing the folder never picks up a half-written file.
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")


#: What every temporary ends with: ``.<final name>.<8 hex>.part``.
PART_SUFFIX = ".part"


def remove_stale(path: str | os.PathLike[str]) -> list[Path]:
    """Remove temporaries of ``path`` that a killed run left behind (``.<name>.<hex>.part``).

    Call it only where this process is about to write ``path`` itself: another live writer of
    the same output would lose its temporary.

    Returns:
        The temporaries removed.
    """
    final = Path(path)
    return _remove_matching(final.parent, f".{glob_escape(final.name)}.*{PART_SUFFIX}")


def remove_stale_in(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove every temporary (``.<name>.<hex>.part``) a killed run left in ``folder``.

    For a run that owns ``folder`` (one run per output folder at a time): whatever options the
    killed run had, its half-written files go.
    """
    return _remove_matching(Path(folder), f".*{PART_SUFFIX}")


def _remove_matching(folder: Path, pattern: str) -> list[Path]:
    """Remove the files and folders in ``folder`` matching ``pattern``; returns them."""
    if not folder.is_dir():
        return []
    removed = []
    for stale in folder.glob(pattern):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters bracketed, for a literal match."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``path`` only if the block succeeds.

    Works for a file or a folder. On any exception (Ctrl-C included) the temporary is removed
    and an existing ``path`` is left untouched.
    """
    final = Path(path)
    check_writable(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(final)
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            # os.replace cannot replace a non-empty folder: move the old one aside first so a
            # failure between the two renames still leaves one complete copy on disk.
            old = _temporary_sibling(final)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
