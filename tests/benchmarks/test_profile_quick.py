"""``benchmarks/profile_ort.py --quick``: per-operator shares of a run, from ORT's profiler."""

import pytest


def test_profile_quick_writes_results(run_quick) -> None:
    doc = run_quick("profile_ort", "--models", "r34")
    prof = doc["models"]["r34 batch 1"]
    assert prof["run_ms"] > 0 and prof["kernel_ms"] > 0
    ops = prof["ops"]
    assert "Conv" in ops and all(v["nodes"] >= 1 and v["ms_per_run"] >= 0 for v in ops.values())
    assert sum(v["share"] for v in ops.values()) == pytest.approx(1.0)
