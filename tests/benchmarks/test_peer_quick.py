"""``benchmarks/peer.py --quick`` runs end to end and writes well-formed results.

Only the structure is checked, never the figures: they depend on the machine and its load.
Skipped unless ukis-csmask is installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ukis_csmask")

SIDES = ("ukis", "cloudseg")


def test_peer_quick_writes_results(run_quick, tmp_path: Path) -> None:
    doc = run_quick("peer", "--scenes-dir", str(tmp_path / "scenes"))

    assert doc["scene"]["size"] == 512 and doc["settings"]["repeats"] == 2
    for side in SIDES:
        runs, med = doc[side]["runs"], doc[side]["median"]
        assert len(runs) == 2
        for figures in [*runs, med]:
            for key in ("seconds", "peak_rss_mib", "inner_seconds"):
                assert figures[key] > 0, (side, key)
        assert med["megapixels_per_second"] > 0
    assert doc["ukis"]["median"]["read_toa_seconds"] > 0
    assert set(doc["ratios"]) == {
        "wall_ukis_over_cloudseg",
        "inner_ukis_over_cloudseg",
        "peak_rss_cloudseg_over_ukis",
    }
    assert all(v > 0 for v in doc["ratios"].values())
    assert doc["targets"]["applies"] is False
    assert isinstance(doc["targets"]["faster"], bool)
    assert isinstance(doc["targets"]["rss_at_most_a_fifth"], bool)

    agreement = doc["agreement"]
    for key in ("cloudseg_vs_csmask", "cloudseg_vs_csmask_on_crop", "csmask_self_shifted_on_crop"):
        assert 0.0 <= agreement[key] <= 1.0, key
    assert agreement["valid_pixels"] > 0

    assert [row["size"] for row in doc["sweep"]] == [256, 512]
    for row in doc["sweep"]:
        for side in SIDES:
            assert row[f"{side}_seconds"] > 0 and row[f"{side}_peak_rss_mib"] > 0
