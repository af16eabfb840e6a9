"""The run ledger: every scene's fate in an embedded SQLite database in the run's folder.

``cloudseg-run.sqlite`` holds one row per scene, written as each scene ends, in WAL mode: a
commit appends to the write-ahead log without rewriting anything, so recording a scene costs the
same at the 10th scene and the 100,000th, and a run killed at any point loses no scene that
ended (the log survives the process; SQLite replays it on the next open). A resumed run reads
it: ``--skip-existing`` answers from here first, without opening a scene that ended ``done``
with the same run key.

One run writes a folder's ledger at a time (two runs into one ``--out`` would also race for the
same output files).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LEDGER = "cloudseg-run.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS scenes (
    scene TEXT PRIMARY KEY,      -- the SCENE argument as given (path, URL, item)
    status TEXT NOT NULL,        -- done, skipped, failed
    scene_id TEXT,
    seconds REAL,
    cloud_cover REAL,
    error TEXT,
    outputs TEXT NOT NULL,       -- JSON list of paths
    attempts INTEGER NOT NULL,
    run_key TEXT,                -- JSON: the model and options that made the outputs
    updated TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)
"""
COLUMNS = ("scene", "status", "scene_id", "seconds", "cloud_cover", "error", "outputs",
           "attempts", "run_key")  # fmt: skip


def canonical(key: Any) -> str:
    """A run key as the text the ledger compares: JSON with sorted keys."""
    return json.dumps(key, sort_keys=True, default=str)


class Ledger:
    """The SQLite ledger of one output folder (thread-safe: one connection, one lock)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LEDGER
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL: a commit appends; NORMAL: no fsync per commit (a killed process loses nothing,
        # only a power cut could lose the last commits).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def record(self, row: dict[str, Any]) -> None:
        """Insert or replace one scene's row (``row`` has :data:`COLUMNS`)."""
        values = [row.get(c) for c in COLUMNS]
        values[COLUMNS.index("outputs")] = json.dumps(list(row.get("outputs") or []))
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO scenes ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                values,
            )

    def finished(self, scene: str, key: str) -> dict[str, Any] | None:
        """The row of ``scene`` if it ended done (or skipped as done) with run key ``key``."""
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM scenes WHERE scene = ? AND run_key = ? "
                "AND status IN ('done', 'skipped')",
                (scene, key),
            ).fetchone()
        if found is None:
            return None
        row = dict(zip(COLUMNS, found, strict=True))
        row["outputs"] = json.loads(row["outputs"])
        return row

    def rows(self, scenes: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every row (or those of ``scenes``), outputs decoded."""
        with self._lock:
            found = self._db.execute(f"SELECT {', '.join(COLUMNS)} FROM scenes").fetchall()
        wanted = None if scenes is None else set(scenes)
        out = []
        for values in found:
            row = dict(zip(COLUMNS, values, strict=True))
            if wanted is None or row["scene"] in wanted:
                row["outputs"] = json.loads(row["outputs"])
                out.append(row)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()
