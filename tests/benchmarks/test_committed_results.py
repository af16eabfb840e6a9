"""The committed benchmark results are what the committed scripts print.

Three ways a results table can lie, each a test: its ``.md`` was edited by hand (it must be
exactly what the script's ``render`` draws from the ``.json`` beside it), the README's block
was not refreshed (``readme.py --check``, in test_harness), or the script changed after the run
(the commit the run recorded must be clean and the script and harness unchanged since).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402

RESULTS = sorted((BENCH_DIR / "results").glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_table_is_drawn_from_its_json(path: Path) -> None:
    doc = load(path)
    script = importlib.import_module(doc["script"])
    assert harness.markdown(doc, script.render) == path.with_suffix(".md").read_text(), (
        f"results/{path.stem}.md is not what benchmarks/{doc['script']}.py draws from its json"
    )


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


@pytest.mark.parametrize("path", RESULTS, ids=[p.stem for p in RESULTS])
def test_result_was_made_by_the_committed_script(path: Path) -> None:
    doc = load(path)
    commit = doc["machine"]["commit"]
    assert commit, f"{path.name}: no commit recorded"
    assert not commit.endswith("+dirty"), f"{path.name}: run with uncommitted code ({commit})"
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone (shallow?)")
    sources = [f"benchmarks/{doc['script']}.py", "benchmarks/harness.py"]
    diff = _git("diff", "--stat", commit, "HEAD", "--", *sources)
    assert diff.returncode == 0 and not diff.stdout.strip(), (
        f"{path.name} was made at {commit}; since then:\n{diff.stdout}rerun the benchmark"
    )
