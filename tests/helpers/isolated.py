"""Run a piece of Python in a fresh interpreter and get its JSON answer back.

For code that must not run inside the pytest process: OpenVINO starts thread pools that make a
later ``fork`` of the process unsafe (the DataLoader workers of the training tests crashed the
whole run), so everything that imports OpenVINO runs here instead (``tests/conftest.py`` fails any
test that leaves it imported).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_python(code: str, *args: object, timeout: float = 300) -> Any:
    """``python -c code args...``; returns the JSON of its last stdout line.

    Raises:
        AssertionError: the child failed (its stderr tail in the message).
    """
    done = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    assert done.returncode == 0, f"child exited {done.returncode}:\n{tail}"
    return json.loads(done.stdout.strip().splitlines()[-1])
