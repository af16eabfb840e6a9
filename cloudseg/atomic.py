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
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")


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
