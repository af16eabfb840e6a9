"""Running a benchmark script with ``--quick``: what every smoke test of ``benchmarks/`` shares."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_quick(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``run_quick(name, *extra_args)`` runs ``benchmarks/<name>.py --quick --out tmp`` in a child
    and returns its JSON, after the checks every result must pass: the run succeeded, the table
    was written, the command that produced it and the machine are recorded. Only the structure
    is checked, never the figures: they depend on the machine and its load."""

    def run(name: str, *extra: str) -> dict[str, Any]:
        out = tmp_path / "results"
        cmd = [
            sys.executable,
            str(REPO / "benchmarks" / f"{name}.py"),
            "--quick",
            "--out",
            str(out),
        ]
        proc = subprocess.run([*cmd, *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        doc = json.loads((out / f"{name}.json").read_text())
        assert (out / f"{name}.md").read_text().count("|") > 10
        assert doc["benchmark"] == name
        assert f"{name}.py" in doc["command"] and "--quick" in doc["command"]
        assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
        return doc

    return run
