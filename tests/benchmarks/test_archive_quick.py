"""``benchmarks/archive.py --quick``: archive throughput three ways, and one call or many.

Only the structure is checked, never the figures: they depend on the machine and its load.
Slow (three cloudseg-run children per mode, Ray's start-up among them): ``make test-all``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

MODES = {"sequential", "overlapped", "ray (2 actors)"}


def test_archive_quick_writes_results(run_quick, tmp_path: Path) -> None:
    doc = run_quick("archive", "--scenes-dir", str(tmp_path / "scenes"))
    config = doc["config"]
    assert set(doc["throughput"]) == MODES
    for mode, row in doc["throughput"].items():
        assert len(row["runs"]) == config["repeats"], mode
        assert row["seconds"] > 0 and row["peak_rss_mib"] > 0, mode
        # scenes per hour is the manifest's scene count over the median wall time
        assert row["scenes_per_hour"] == pytest.approx(3600 * config["scenes"] / row["seconds"])
    many = doc["one_call_or_many"]
    assert many["scenes"] == config["small_scenes"]
    assert many["ratio"] == pytest.approx(
        many["sum_of_single_calls_seconds"] / many["one_call_seconds"]
    )
    ledger = doc["ledger"]
    assert [r["scenes"] for r in ledger["failing"]] == config["ledger_sizes"]
    assert all(r["ms_per_entry"] > 0 for r in ledger["failing"])
    assert ledger["resume"]["scenes"] == config["ledger_sizes"][-1] + 1
    assert ledger["resume"]["ms_per_scene"] > 0
