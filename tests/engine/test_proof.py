"""Reduced precision only where it is proven on the real reference scenes.

The proof runs every real reference scene through the engine in f32 and in the candidate
precision; one scene below 99.5 % agreement fails it. ``--precision auto`` runs the candidate
only with a kept, passing proof for that exact model file, runtime and CPU.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ukis_csmask")

from cloudseg.data.reference import reference_items, reference_root  # noqa: E402
from cloudseg.engine import proof  # noqa: E402
from cloudseg.engine.backend import BackendOptions  # noqa: E402
from cloudseg.engine.foreign.ukis_csmask import install_model  # noqa: E402
from cloudseg.engine.registry import make_backend  # noqa: E402
from cloudseg.errors import MissingFileError  # noqa: E402

try:
    ROOT = reference_root()
except MissingFileError:
    ROOT = None
pytestmark = pytest.mark.skipif(ROOT is None, reason="no real reference data (shared/data)")
#: Normalised input above this in every band: bright snow and thick cloud.
SNOW = 2.5


@pytest.fixture(scope="module")
def l1c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_model(tmp_path_factory.mktemp("ukis") / "models", level="l1c")


class _Corrupted:
    """A "reduced precision" that is exact except on bright tiles, where it flips the answer:
    the failure bf16 showed on real snow, made on purpose."""

    def __init__(self, inner, flip: bool) -> None:
        self.inner, self.flip = inner, flip
        self.name, self.card, self.options = inner.name, inner.card, inner.options
        self.providers, self.slots = inner.providers, inner.slots

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.inner.run(batch)
        if self.flip:
            bright = (batch.min(axis=1) > SNOW).mean(axis=(1, 2)) > 0.5
            out[bright, 0] = 1.0 - out[bright, 0]
        return out

    def describe(self):
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()


def _make(model: Path, flip: bool):
    def make(precision: str):
        backend = make_backend(model, "cpu", BackendOptions(tile=256, shadow=True))
        return backend if precision == "f32" else _Corrupted(backend, flip)

    return make


def _key(model: Path) -> proof.ProofKey:
    return proof.ProofKey(proof.sha256(model), "cpu", "test", "bf16", proof.cpu_hardware())


def test_the_reference_set_is_the_real_scenes() -> None:
    items = reference_items()
    biome = [i for i in items if i.group == "biome-l8"]
    assert len(biome) == 16 and all(i.truth is not None for i in biome)
    assert {i.name.split("_")[1] for i in items if i.group == "landsat-real"} == {
        "L1TP", "L2SP", "L2SR"}  # fmt: skip


def test_a_path_that_flips_one_scene_fails_the_proof(l1c: Path) -> None:
    result = proof.measure(_key(l1c), _make(l1c, flip=True))
    assert len(result.agreement) == 17  # 16 Biome tiles and the real Level-1 product
    worst, value = result.worst
    assert not result.passed and value < 0.5
    # most scenes agree exactly (the path flips only bright snow and thick-cloud tiles): the
    # worst scene decides, however good the mean
    assert sum(v == 1.0 for v in result.agreement.values()) >= 12
    assert np.mean(list(result.agreement.values())) > 0.8


def test_an_exact_path_passes_and_auto_then_runs_it(l1c: Path, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CLOUDSEG_HOME", str(tmp_path / "home"))
    key = _key(l1c)
    assert proof.resolve_auto(key) == ("f32", {"status": "unproven", "candidate": "bf16"})
    result = proof.measure(key, _make(l1c, flip=False))
    assert result.passed and result.worst[1] == 1.0
    proof.save(result)
    precision, status = proof.resolve_auto(key)
    assert precision == "bf16" and status["status"] == "proven"
    # another file, runtime or CPU is not covered by this proof
    for change in ({"runtime": "other 1.0"}, {"hardware": "cpu: other"}, {"sha256": "0" * 64}):
        assert proof.resolve_auto(dataclasses.replace(key, **change))[0] == "f32"
    # a failed proof kept for the same key replaces the passing one: auto is f32 again
    proof.save(proof.measure(key, _make(l1c, flip=True)))
    precision, status = proof.resolve_auto(key)
    assert precision == "f32" and status["status"] == "failed"


OPENVINO_AUTO = """
import io, json, logging, sys
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend
said = io.StringIO()
logging.getLogger("cloudseg.run").addHandler(logging.StreamHandler(said))
logging.getLogger("cloudseg.run").setLevel(logging.INFO)
backend = make_backend(sys.argv[1], "openvino", BackendOptions(tile=256))
print(json.dumps({"describe": backend.describe(), "said": said.getvalue()}))
"""


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="no openvino")
def test_openvino_auto_without_a_proof_runs_f32_and_says_so(l1c: Path) -> None:
    from isolated import run_python  # OpenVINO only in a child process (see conftest)

    got = run_python(OPENVINO_AUTO, l1c)  # the test home: no proof kept there
    assert got["describe"]["precision"] == "f32"
    if {"avx512_bf16", "amx_bf16"} & proof.cpu_flags():  # where bf16 would be the fast choice
        assert got["describe"]["precision_proof"] == {"status": "unproven", "candidate": "bf16"}
        assert "precision auto: f32, not bf16: no proof" in got["said"]
