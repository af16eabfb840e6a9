"""The benchmark harness: interleaving, peak RSS of a child, tables, and the README composer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import readme  # noqa: E402


def test_interleaved_runs_cases_round_robin_after_warmup() -> None:
    calls: list[str] = []
    times = harness.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_median_and_spread() -> None:
    assert harness.median([3.0, 1.0, 2.0]) == 2.0
    assert harness.spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_peak_rss_is_the_childs_own() -> None:
    """A child that touches 400 MB reports at least that; a bare interpreter far less, even when
    this process holds 400 MB itself (Linux keeps ru_maxrss across fork and exec)."""
    import numpy as np

    big = harness.run_with_peak_rss(
        harness.python_cmd("-c", "import numpy as np; a = np.ones(50_000_000); print(a[-1])")
    )
    held = np.ones(50_000_000)
    small = harness.run_with_peak_rss(harness.python_cmd("-c", "print(1)"))
    del held
    assert big["stdout"].strip() == "1.0"
    assert big["peak_rss_mib"] > 380
    assert small["peak_rss_mib"] < 100
    assert big["seconds"] > 0


def test_failed_child_raises_with_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        harness.run_with_peak_rss(harness.python_cmd("-c", "raise SystemExit('boom')"))
    with pytest.raises(RuntimeError, match="exited 127:\n.*No such file"):
        harness.run_with_peak_rss(["/nonexistent/command"])


def test_table_formats_floats_to_three_figures() -> None:
    text = harness.table(["path", "MP/s"], [["ort", 0.123456], ["big", 12345.6], ["none", None]])
    assert text.splitlines()[2] == "| ort | 0.123 |"
    assert "| big | 12,346 |" in text and "| none |  |" in text


def test_write_results_records_command_and_machine(tmp_path: Path) -> None:
    import json

    def render(doc: dict) -> str:
        return f"| a | {doc['figure']} |\n"

    path = harness.write_results("demo", {"figure": 1.5}, render, tmp_path)
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "demo" and doc["figure"] == 1.5
    assert doc["script"] == Path(sys.argv[0]).stem
    assert doc["command"].startswith("python ")
    assert doc["machine"]["cores"] >= 1
    text = (tmp_path / "demo.md").read_text()
    assert text.endswith("| a | 1.5 |\n") and text == harness.markdown(doc, render)


def test_readme_blocks_are_replaced_by_results(tmp_path: Path) -> None:
    (tmp_path / "engine.md").write_text("| new |\n")
    text = (
        "intro\n<!-- results:engine -->\nold\n<!-- /results:engine -->\n"
        "<!-- results:peer -->\nx\n<!-- /results:peer -->\n"
    )
    out = readme.render(text, tmp_path)
    assert "<!-- results:engine -->\n| new |\n<!-- /results:engine -->" in out
    assert "_Not run yet: `python benchmarks/peer.py`._" in out
    assert out.startswith("intro\n") and "old" not in out


def test_committed_readme_tables_are_the_committed_results() -> None:
    """benchmarks/README.md's tables are exactly results/*.md (run benchmarks/readme.py)."""
    assert readme.main(["--check"]) == 0


def test_cached_builds_once_and_never_leaves_a_partial_target(tmp_path: Path) -> None:
    calls: list[Path] = []

    def make(tmp: Path) -> Path:
        calls.append(tmp)
        tmp.write_text("whole")
        return tmp

    target = tmp_path / "cache" / "thing"
    assert harness.cached(target, make) == target and target.read_text() == "whole"
    assert harness.cached(target, make) == target and len(calls) == 1

    def broken(tmp: Path) -> Path:
        tmp.write_text("half")
        raise RuntimeError("interrupted")

    other = tmp_path / "cache" / "other"
    with pytest.raises(RuntimeError, match="interrupted"):
        harness.cached(other, broken)
    assert sorted(p.name for p in other.parent.iterdir()) == ["thing"]
