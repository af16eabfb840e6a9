"""The layering ARCHITECTURE.md describes is what import-linter enforces, and it bites.

``make lint`` runs ``lint-imports`` over the package; these tests run it too, on the real tree
(every contract kept) and on a copy with one forbidden import planted in an engine module (the
layers contract broken, naming the import).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # ahead of the editable install's path
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_contract_is_kept_on_the_tree() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_engine_module_importing_export_breaks_the_layers(tmp_path: Path) -> None:
    shutil.copytree(
        ROOT / "cloudseg", tmp_path / "cloudseg", ignore=shutil.ignore_patterns("*.pyc")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    tiling = tmp_path / "cloudseg" / "engine" / "tiling.py"
    tiling.write_text(tiling.read_text() + "\nfrom cloudseg.export import parity  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "Layers: export above train above engine above data BROKEN" in done.stdout
    assert "cloudseg.engine.tiling -> cloudseg.export.parity" in done.stdout


def test_architecture_md_describes_the_contracts_as_configured() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    for contract in contracts["contracts"]:
        assert contract["name"] in text, contract["name"]
        for module in contract.get("layers", []) + contract.get("source_modules", []):
            assert f"`{module}`" in text, module
        for ignored in contract.get("ignore_imports", []):
            assert ignored in text, ignored
