"""The run report: every scene's fate, in the run ledger as each scene ends, exported for people.

The state of a run lives in :mod:`cloudseg.engine.ledger` (``cloudseg-run.sqlite``, one row per
scene, written as the scene ends: a killed run loses nothing, and a record costs the same at any
scale). ``cloudseg-run.json`` (the run's options and one entry per scene) and
``cloudseg-run.csv`` (scene, status, seconds, cloud cover, error) are exported from it,
atomically, at the end of the run and at most every :data:`EXPORT_EVERY` seconds while it goes
(and never more than a tenth of the run's time), so their cost does not grow with the square of
the archive. At the end of a run of more than one scene, ``cloudseg-run.html`` too
(:mod:`cloudseg.engine.report_html`: the same entries, for a person; written once, as it reads
every scene's preview). A scene's status is ``done``, ``skipped`` (``--skip-existing``: the
ledger, or the files on disk, say it was made with the same model and options) or ``failed``
(with the one-line reason).

:func:`run_key` is what "the same model and options" means: the model's card (name, export
time, file) and every option that changes the outputs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudseg.atomic import atomic_path
from cloudseg.card import ModelCard
from cloudseg.engine.ledger import Ledger, canonical
from cloudseg.engine.report_html import write_html
from cloudseg.errors import OutputError

REPORT_JSON = "cloudseg-run.json"
REPORT_CSV = "cloudseg-run.csv"
#: Seconds between exports of the JSON and CSV while a run goes (and at its end).
EXPORT_EVERY = 5.0
CSV_COLUMNS = ("scene", "scene_id", "status", "seconds", "cloud_cover", "error")
#: Options whose change changes the outputs (a scene made with others is not "existing").
OUTPUT_OPTIONS = (
    "tile", "overlap", "threshold", "shadow", "dilate", "probabilities", "vector",
)  # fmt: skip


def run_key(card: ModelCard, model: Path, options: dict[str, Any]) -> dict[str, Any]:
    """What identifies the outputs of a run: the model and the options that shape them."""
    export = card.extra.get("export", {})
    return {
        "model": {
            "name": card.name,
            "file": str(model),
            "exported_at": export.get("exported_at"),
            "sha256": card.extra.get("sha256"),
        },  # fmt: skip
        **{k: options.get(k) for k in OUTPUT_OPTIONS},
    }


@dataclass
class SceneEntry:
    """One scene's fate."""

    scene: str
    status: str  # "done", "skipped", "failed"
    scene_id: str | None = None
    seconds: float | None = None
    cloud_cover: float | None = None
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    attempts: int = 1


class RunReport:
    """Entries of one run: each recorded in the ledger at once, the JSON and CSV exported from
    time to time and at :meth:`close` (thread-safe)."""

    def __init__(
        self,
        folder: Path,
        options: dict[str, Any],
        order: list[str] | None = None,
        key: dict[str, Any] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.options = options
        self.key = canonical(key) if key is not None else None
        self._order = {spec: i for i, spec in enumerate(order or [])}
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._entries: dict[str, SceneEntry] = {}
        self._lock = threading.Lock()
        self._last_export = time.monotonic()
        self._export_cost = 0.0
        self._opened = time.monotonic()
        try:
            self.ledger = Ledger(self.folder)
        except (OSError, sqlite3.Error) as exc:
            raise OutputError(f"{self.folder}: cannot keep the run ledger there ({exc})") from None

    def record(self, entry: SceneEntry) -> None:
        """Add (or replace, for a scene retried) ``entry``: in the ledger now, in the exported
        report at the next export."""
        row = asdict(entry) | {"run_key": self.key if entry.status != "failed" else None}
        try:
            self.ledger.record(row)
        except sqlite3.Error as exc:
            raise OutputError(f"{self.ledger.path}: cannot record {entry.scene} ({exc})") from None
        with self._lock:
            self._entries[entry.scene] = entry
            now = time.monotonic()
            # Exports cost O(scenes): at most every EXPORT_EVERY s and a tenth of the time.
            if now - self._last_export >= max(EXPORT_EVERY, 10 * self._export_cost):
                self._write()

    def finished(self, spec: str) -> SceneEntry | None:
        """``spec``'s ledger entry if it ended done with this run's key and its outputs are all
        still there; None otherwise (the scene must be opened and checked)."""
        if self.key is None:
            return None
        row = self.ledger.finished(spec, self.key)
        if row is None or not row["outputs"] or not all(map(os.path.isfile, row["outputs"])):
            return None
        return SceneEntry(spec, "skipped", row["scene_id"], 0.0, row["cloud_cover"],
                          outputs=row["outputs"])  # fmt: skip

    @property
    def entries(self) -> list[SceneEntry]:
        """This run's entries, in the order the scenes were given."""
        with self._lock:
            return self._in_order()

    def _in_order(self) -> list[SceneEntry]:
        """The entries in the order the scenes were given (caller holds the lock): they end
        out of order when scenes overlap."""
        return sorted(self._entries.values(),
                      key=lambda e: self._order.get(e.scene, len(self._order)))  # fmt: skip

    @property
    def failed(self) -> list[SceneEntry]:
        return [e for e in self.entries if e.status == "failed"]

    def counts(self) -> dict[str, int]:
        return _counts(self.entries)

    def close(self) -> None:
        """Export the report a last time (with the HTML page, for more than one scene) and
        close the ledger."""
        with self._lock:
            self._write(final=len(self._order) > 1)
        self.ledger.close()

    def _write(self, final: bool = False) -> None:
        """Export ``cloudseg-run.json`` and ``.csv``, and with ``final`` ``cloudseg-run.html``
        (caller holds the lock). The page reads every preview, so it is left out of the
        exports while the run goes."""
        start = time.monotonic()
        entries = self._in_order()
        doc = {
            "started": self.started,
            "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "options": self.options,
            "counts": _counts(entries),
            "ledger": str(self.ledger.path),
            "scenes": [asdict(e) for e in entries],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / REPORT_JSON, overwrite=True) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for e in entries:
            writer.writerow(
                [getattr(e, c) if getattr(e, c) is not None else "" for c in CSV_COLUMNS]
            )
        with atomic_path(self.folder / REPORT_CSV, overwrite=True) as tmp:
            tmp.write_text(text.getvalue())
        if final:
            key = json.loads(self.key) if self.key else {}  # no key: no scene opened
            model = key.get("model", {"file": self.options.get("model")})
            write_html(self.folder, doc, model, time.monotonic() - self._opened)
        self._last_export = time.monotonic()
        self._export_cost = self._last_export - start


def _counts(entries: list[SceneEntry]) -> dict[str, int]:
    """Scenes per status (done, skipped and failed always present)."""
    out = {"done": 0, "skipped": 0, "failed": 0}
    for entry in entries:
        out[entry.status] = out.get(entry.status, 0) + 1
    return out


@dataclass
class RunOutcome:
    """What a run did: the summaries of the scenes this process masked (Ray's workers keep
    theirs beside the outputs), and the report of every scene."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    report: RunReport | None = None
