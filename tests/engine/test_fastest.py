"""``--precision auto`` runs the fastest path whose masks are proven, measured here once.

Fake backends stand in for the runtimes (their speed is set by a sleep), so these tests decide
the choice itself: which paths are candidates, that the fastest is run, that speeds are kept
and not measured again, and that a path that fails to start is left out only under auto.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cloudseg.engine import fastest, proof
from cloudseg.engine.backend import BackendOptions
from cloudseg.errors import ProviderError

OPTIONS = BackendOptions(batch=1, tile=32, precision="auto")


class _Fake:
    """A backend whose every call takes ``seconds``."""

    def __init__(self, file: Path, provider: str, options: BackendOptions, seconds: float):
        self.name, self.file, self.options, self.seconds = provider, file, options, seconds
        self.closed = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return np.zeros((len(batch), 1, *batch.shape[2:]), np.float32)

    def close(self) -> None:
        self.closed = True


class _Maker:
    """Builds fakes; ``seconds[(file name, provider)]`` sets each path's speed."""

    def __init__(self, seconds: dict[tuple[str, str], float], fail: set[str] = frozenset()):
        self.seconds, self.fail, self.built = seconds, fail, []

    def __call__(self, file: Path, provider: str, options: BackendOptions) -> _Fake:
        if provider in self.fail:
            raise ProviderError(f"{provider} cannot start here")
        backend = _Fake(file, provider, options, self.seconds[(file.name, provider)])
        self.built.append(backend)
        return backend


@pytest.fixture(autouse=True)
def _short_measurements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastest, "MEASURE_SECONDS", 0.1)


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    # contents unique to the test: proofs and speeds are kept by the files' SHA-256
    path.write_text(f"float model {tmp_path}")
    (tmp_path / "m-int8.onnx").write_text(f"int8 model {tmp_path}")
    return path


def _prove(path: fastest.RunPath, passed: bool) -> None:
    agreement = 1.0 if passed else 0.9
    proof.save(proof.Proof(path.key(), {"scene": agreement}))


def test_reduced_paths_are_candidates_only_with_a_passing_proof(model: Path) -> None:
    int8 = fastest.RunPath(model.with_name("m-int8.onnx"), "cpu", "int8")
    paths, left_out = fastest.candidates(model, ["cpu"])
    assert paths == [fastest.RunPath(model, "cpu", "f32")]
    assert left_out == {"cpu int8": "no proof here"}
    _prove(int8, passed=False)
    paths, left_out = fastest.candidates(model, ["cpu"])
    assert int8 not in paths and left_out["cpu int8"].startswith("failed its proof, scene 90.00")
    _prove(int8, passed=True)
    paths, left_out = fastest.candidates(model, ["cpu"])
    assert paths[1] == int8 and left_out == {}


def test_the_fastest_proven_path_runs_and_its_speed_is_kept(model: Path) -> None:
    _prove(fastest.RunPath(model.with_name("m-int8.onnx"), "cpu", "int8"), passed=True)
    make = _Maker({("m.onnx", "cpu"): 0.02, ("m-int8.onnx", "cpu"): 0.005})
    backend, chosen = fastest.open_fastest(model, ["cpu"], OPTIONS, make)
    assert backend.file.name == "m-int8.onnx" and not backend.closed
    assert backend.options.precision == "f32"  # an int8 file runs its float parts in f32
    assert chosen["path"]["precision"] == "int8"
    rates = chosen["measured"]
    assert rates["cpu int8"] > 2 * rates["cpu f32"]
    assert [b.closed for b in make.built] == [True, False]
    # measured once: a second run builds only the chosen path, from the kept speeds
    again = _Maker(make.seconds)
    backend, chosen = fastest.open_fastest(model, ["cpu"], OPTIONS, again)
    assert [b.file.name for b in again.built] == ["m-int8.onnx"]
    assert chosen["measured"] == rates
    # another tile is another measurement
    other = _Maker(make.seconds)
    fastest.open_fastest(model, ["cpu"], BackendOptions(batch=1, tile=64), other)
    assert len(other.built) == 2  # both measured again, the faster kept open


def test_a_single_candidate_is_not_measured(model: Path) -> None:
    make = _Maker({("m.onnx", "cpu"): 0.0})
    backend, chosen = fastest.open_fastest(model, ["cpu"], OPTIONS, make)
    assert len(make.built) == 1 and chosen["megapixels_per_second"] is None
    assert not proof.proofs_dir().joinpath(f"{proof.sha256(model)}.speed.json").exists()


def test_a_path_that_does_not_start_is_left_out_only_under_auto(model: Path) -> None:
    _prove(fastest.RunPath(model, "openvino", proof.native_precision()), passed=False)
    make = _Maker({("m.onnx", "cpu"): 0.0}, fail={"openvino"})
    backend, chosen = fastest.open_fastest(model, ["openvino", "cpu"], OPTIONS, make,
                                           tolerate=True)  # fmt: skip
    assert backend.name == "cpu"
    assert chosen["not_candidates"]["openvino f32"] == "does not start: openvino cannot start here"
    with pytest.raises(ProviderError, match="openvino cannot start here"):
        fastest.open_fastest(model, ["openvino", "cpu"], OPTIONS, make)


def test_an_int8_file_named_as_the_model_runs_as_itself_and_says_int8(tmp_path: Path) -> None:
    import dataclasses

    from onnx_models import B1, W1, card_for, conv_model

    card = card_for(tile=64)
    card = dataclasses.replace(card, extra={"export": {"variant": "int8"}})
    model = conv_model(tmp_path / "m-int8.onnx", W1[None], B1, card)
    paths, left_out = fastest.candidates(model, ["cpu"])
    assert paths == [fastest.RunPath(model, "cpu", "int8")] and left_out == {}
    assert paths[0].options(OPTIONS).precision == "f32"
