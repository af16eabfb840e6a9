"""Shared by every test: helper modules in ``tests/helpers`` are importable by name, and the
path of the real 38-Cloud sample that CI lays beside the checkout."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

#: ``../shared/data/38cloud-sample`` relative to the repository: 12 real 38-Cloud patches.
SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "38cloud-sample"


@pytest.fixture(scope="session")
def trained_r34(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small r34 trained 5 epochs at 64 px on synthetic data (about 40 s here), once per run.

    Returns:
        ``(run folder, dataset root)``; the run folder holds ``best.pth`` and ``card.json``.
    """
    from cloudseg.data.synthetic_dataset import write_38cloud_dataset
    from cloudseg.train import torch_r34
    from cloudseg.train.common import TrainConfig, run_card, save_run_card
    from cloudseg.train.data import prepare_data

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
    return run_dir, root


@pytest.fixture(scope="session")
def sample() -> Path:
    """The real 38-Cloud sample; the test is skipped where it is absent."""
    if not (SAMPLE / "38-Cloud_training").is_dir():
        pytest.skip(f"38-Cloud sample not found at {SAMPLE}")
    return SAMPLE
