"""Shared by every test: helper modules in ``tests/helpers`` are importable by name, and the
path of the real 38-Cloud sample that CI lays beside the checkout."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

# The test session's own cloudseg home is set by the repository's conftest.py (the API's
# doctests need it too); tests that write proofs or speeds use model files of their own.

#: ``../shared/data/38cloud-sample`` relative to the repository: 12 real 38-Cloud patches.
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "38cloud-sample"


#: What the trained fixture must show on a held-out synthetic scene before any test may stand
#: on it: a cloud share well inside (0, 1) and probabilities spread over the range, so that a
#: test comparing masks or probabilities cannot pass on a near-constant (untrained) output.
LEARNED_CLOUD_SHARE = (0.15, 0.85)
LEARNED_MIN_STD = 0.15  # measured 0.244; an untrained r34: about 0.003


@pytest.fixture(scope="session")
def trained_r34(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small r34 trained 5 epochs at 64 px on synthetic data (about 40 s here), once per run.

    The fixture checks that the model learned (:data:`LEARNED_CLOUD_SHARE`,
    :data:`LEARNED_MIN_STD` on a held-out scene) and fails loudly otherwise: the seam, parity,
    int8 and backend tests below rely on outputs that vary.

    Returns:
        ``(run folder, dataset root)``; the run folder holds ``best.pth`` and ``card.json``.
    """
    from cloudseg.data.synthetic import SceneSpec, make_scene
    from cloudseg.data.synthetic_dataset import write_38cloud_dataset
    from cloudseg.train import torch_r34
    from cloudseg.train.common import TrainConfig, run_card, save_run_card
    from cloudseg.train.data import prepare_data
    from cloudseg.train.predict import load_run, predict

    root = tmp_path_factory.mktemp("synth") / "38cloud"
    write_38cloud_dataset(root, train_scenes=3, test_scenes=1, size=400, seed=0, patch_size=96)
    run_dir = tmp_path_factory.mktemp("runs") / "r34-test"
    run_dir.mkdir()
    data = prepare_data(root, seed=0)
    config = TrainConfig(
        "r34", root, size=64, fine_tune_size=None, epochs=5, bs=4, pretrained=False, quiet=True
    )
    result = torch_r34.train(config, data, run_dir)
    save_run_card(run_dir, run_card(config, data, result.scores, result.history))
    held_out = make_scene(SceneSpec(seed=123, height=256, width=256, cloud_fraction=0.4))
    model, card = load_run(run_dir)
    prob = predict(model, card, held_out.bands[None])[0][held_out.mask != 255]
    share, spread = float((prob > card.threshold).mean()), float(prob.std())
    assert LEARNED_CLOUD_SHARE[0] < share < LEARNED_CLOUD_SHARE[1], f"cloud share {share:.3f}"
    assert spread > LEARNED_MIN_STD, f"probability std {spread:.3f}: the fixture did not learn"
    return run_dir, root


def _gpu_missing() -> str | None:
    """Why GPU tests cannot run here (None: a CUDA device answers)."""
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except ImportError:
        pass
    import onnxruntime

    from cloudseg.engine.registry import probe

    onnxruntime.set_default_logger_severity(4)  # the probe's failure is reported as the reason
    why = probe("cuda")
    return None if why is None else f"no usable GPU here: {why}"


@pytest.hookimpl(trylast=True)  # after -m has deselected: no probe when no gpu test runs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``gpu`` skip with the reason on a machine without one (``make test-all``)."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    why = _gpu_missing()
    if why is not None:
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """No test may leave OpenVINO imported here: its thread pools make a later ``fork`` (the
    training tests' DataLoader workers) crash the run. Run it through ``isolated.run_python``."""
    if "openvino" in sys.modules:
        pytest.fail(f"{item.nodeid} imported openvino in the test process; use a subprocess")


@pytest.fixture(scope="session")
def sample() -> Path:
    """The real 38-Cloud sample; the test is skipped where it is absent."""
    if not (SAMPLE / "38-Cloud_training").is_dir():
        pytest.skip(f"38-Cloud sample not found at {SAMPLE}")
    return SAMPLE
