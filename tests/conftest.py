"""Shared by every test: helper modules in ``tests/helpers`` are importable by name, and the
path of the real 38-Cloud sample that CI lays beside the checkout."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

#: ``../shared/data/38cloud-sample`` relative to the repository: 12 real 38-Cloud patches.
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "38cloud-sample"


@pytest.fixture(scope="session")
def sample() -> Path:
    """The real 38-Cloud sample; the test is skipped where it is absent."""
    if not (SAMPLE / "38-Cloud_training").is_dir():
        pytest.skip(f"38-Cloud sample not found at {SAMPLE}")
    return SAMPLE
