"""OpenVINO keeps its compiled model in ``$CLOUDSEG_HOME/openvino-cache``: a second run of the
same model, shape and precision loads it instead of compiling (ukis-l1c here: 0.91 s -> 0.44 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("ukis_csmask")

from cloudseg.engine.foreign.ukis_csmask import install_model  # noqa: E402


@pytest.fixture(scope="module")
def l1c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_model(tmp_path_factory.mktemp("ukis") / "models", level="l1c")


OPENVINO_TWICE = """
import json, sys, time
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend
from cloudseg.home import openvino_cache_dir
seconds = []
for _ in range(2):
    start = time.perf_counter()
    make_backend(sys.argv[1], "openvino", BackendOptions(tile=256, precision="f32")).close()
    seconds.append(time.perf_counter() - start)
print(json.dumps({"cache": [p.name for p in openvino_cache_dir().iterdir()], "s": seconds}))
"""


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="no openvino")
def test_openvino_keeps_its_compiled_model_in_the_cloudseg_home(l1c: Path, tmp_path) -> None:
    """The first run compiles and stores the model in $CLOUDSEG_HOME/openvino-cache; the second
    loads it from there (the cache is what is checked, not the time)."""
    import os

    from isolated import run_python

    home = tmp_path / "home"
    os.environ["CLOUDSEG_HOME"], before = str(home), os.environ["CLOUDSEG_HOME"]
    try:
        got = run_python(OPENVINO_TWICE, l1c)
    finally:
        os.environ["CLOUDSEG_HOME"] = before
    assert any(name.endswith(".blob") for name in got["cache"]), got
