"""Check and calibration patches: held-out scenes never calibrate, empty patches are skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloudseg.data.cloud38 import parse_patch_name
from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import MissingFileError
from cloudseg.export.samples import dataset_patches, fit, synthetic_patches
from cloudseg.home import default_model_path, variant_path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("samples") / "38cloud"
    write_38cloud_dataset(root, train_scenes=4, test_scenes=0, size=200, seed=3, patch_size=96)
    return root


def test_calibration_and_held_out_patches_come_from_different_scenes(dataset):
    calib, held = dataset_patches(dataset, 64, calib_count=100, held_out_count=100, seed=0)
    scenes = [{parse_patch_name(n).scene for n in s.names} for s in (calib, held)]
    assert scenes[0] and scenes[1] and not scenes[0] & scenes[1]
    for patches in (calib, held):
        assert patches.raw.shape[1:] == (4, 64, 64) and patches.raw.dtype == np.uint16
        assert all(np.any(p) for p in patches.raw)  # no all-no-data patch
    assert "held-out" in held.source and "calibration" in calib.source


def test_counts_are_capped_and_repeatable(dataset):
    first = dataset_patches(dataset, 96, calib_count=3, held_out_count=2, seed=1)
    again = dataset_patches(dataset, 96, calib_count=3, held_out_count=2, seed=1)
    assert [len(s) for s in first] == [3, 2]
    assert [s.names for s in first] == [s.names for s in again]


def test_not_a_dataset(tmp_path):
    with pytest.raises(MissingFileError, match="not a 38-Cloud-layout folder"):
        dataset_patches(tmp_path, 64, 1, 1)


def test_fit_crops_the_centre_and_pads_with_no_data():
    image = np.arange(4 * 6 * 6, dtype=np.uint16).reshape(4, 6, 6)
    assert np.array_equal(fit(image, 4), image[:, 1:5, 1:5])
    padded = fit(image, 8)
    assert np.array_equal(padded[:, 1:7, 1:7], image) and padded[:, 0].sum() == 0


def test_synthetic_patches_are_non_empty_dn():
    patches = synthetic_patches(5, 64, seed=2)
    assert patches.raw.shape == (5, 4, 64, 64) and patches.raw.dtype == np.uint16
    assert all(np.any(p) for p in patches.raw)


def test_default_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("CLOUDSEG_HOME", str(tmp_path))
    assert default_model_path("r18") == tmp_path / "models" / "cloudseg-r18.onnx"
    assert default_model_path("r34", "int8") == tmp_path / "models" / "cloudseg-r34-int8.onnx"
    assert variant_path(Path("a/m.onnx"), "fp16") == Path("a/m-fp16.onnx")
