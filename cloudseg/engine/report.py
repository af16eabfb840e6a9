"""The run report: every scene's fate, rewritten whole as each scene finishes.

``cloudseg-run.json`` (the run's options and one entry per scene) and ``cloudseg-run.csv``
(scene, status, seconds, cloud cover, error) in the run's output folder. Both are replaced
atomically after every scene, so a run killed at any point leaves a report of what finished.
A scene's status is ``done``, ``skipped`` (``--skip-existing`` found its outputs, made with the
same model and options) or ``failed`` (with the one-line reason).

:func:`run_key` is what "the same model and options" means: the model's card (name, export
time, file) and every option that changes the outputs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cloudseg.atomic import atomic_path
from cloudseg.card import ModelCard

REPORT_JSON = "cloudseg-run.json"
REPORT_CSV = "cloudseg-run.csv"
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
    """Entries of one run, written to ``folder`` after every change (thread-safe)."""

    def __init__(
        self, folder: Path, options: dict[str, Any], order: list[str] | None = None
    ) -> None:
        self.folder = Path(folder)
        self.options = options
        self._order = {spec: i for i, spec in enumerate(order or [])}
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.entries: list[SceneEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: SceneEntry) -> None:
        """Add (or replace, for a scene retried) ``entry`` and rewrite both files."""
        with self._lock:
            self.entries = [e for e in self.entries if e.scene != entry.scene] + [entry]
            # In the order the scenes were given (they finish out of order when overlapped).
            self.entries.sort(key=lambda e: self._order.get(e.scene, len(self._order)))
            self._write()

    @property
    def failed(self) -> list[SceneEntry]:
        return [e for e in self.entries if e.status == "failed"]

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0}
        for entry in self.entries:
            out[entry.status] = out.get(entry.status, 0) + 1
        return out

    def _write(self) -> None:
        doc = {
            "started": self.started,
            "updated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "options": self.options,
            "counts": self.counts(),
            "scenes": [asdict(e) for e in self.entries],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / REPORT_JSON, overwrite=True) as tmp:
            tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(CSV_COLUMNS)
        for e in self.entries:
            writer.writerow(
                [getattr(e, c) if getattr(e, c) is not None else "" for c in CSV_COLUMNS]
            )
        with atomic_path(self.folder / REPORT_CSV, overwrite=True) as tmp:
            tmp.write_text(text.getvalue())


@dataclass
class RunOutcome:
    """What a run did: the summaries of the scenes this process masked (Ray's workers keep
    theirs beside the outputs), and the report of every scene."""

    summaries: list[dict[str, Any]] = field(default_factory=list)
    report: RunReport | None = None
