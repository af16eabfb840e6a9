"""Training data: augmentation, the patch dataset, the scene split and normalisation."""

import json

import numpy as np
import pytest
import torch

from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import DataError
from cloudseg.train.augment import AugmentSpec, augment, dihedral
from cloudseg.train.data import PatchDataset, band_stats_transform, prepare_data


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data") / "ds"
    write_38cloud_dataset(root, train_scenes=3, test_scenes=1, size=200, seed=2, patch_size=96)
    return root


def test_dihedral_group_has_eight_distinct_elements_and_inverts():
    a = np.arange(12).reshape(3, 4)
    images = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(images) == 8
    # Rotations compose: four quarter turns give the identity.
    out = a
    for _ in range(4):
        out = dihedral(out, 1)
    np.testing.assert_array_equal(out, a)


def test_augment_moves_mask_with_image_and_keeps_no_data_zero():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 0.5, (4, 8, 8)).astype(np.float32)
    image[:, :2, :] = 0  # a no-data margin
    mask = np.zeros((8, 8), bool)
    mask[5, 6] = True
    image[:, 5, 6] = 0.9  # the cloud pixel is the bright one
    for seed in range(10):
        out, m = augment(image, mask, np.random.default_rng(seed), AugmentSpec())
        assert out.dtype == np.float32 and out.shape == image.shape
        assert m.sum() == 1
        # The brightest pixel is still where the mask says.
        assert np.unravel_index(out[0].argmax(), (8, 8)) == tuple(np.argwhere(m)[0])
        assert (out == 0).all(axis=0).sum() == 16
        valid = (out != 0).any(axis=0)
        assert out[:, valid].min() > 0


def test_prepare_data_splits_by_scene_and_measures_stats(dataset):
    data = prepare_data(dataset, val_fraction=0.34, seed=0)
    assert set(data.train_scenes).isdisjoint(data.valid_scenes)
    assert len(data.train_scenes) == 2 and len(data.valid_scenes) == 1
    assert len(data.transform.mean) == 4 and all(0 < s < 1 for s in data.transform.std)
    limited = prepare_data(dataset, val_fraction=0.34, seed=0, limit=10)
    assert len(limited.train) + len(limited.valid) == 10


def test_prepare_data_needs_two_scenes_for_validation(dataset, tmp_path):
    one = tmp_path / "one"
    write_38cloud_dataset(one, train_scenes=1, test_scenes=0, size=200, seed=2, patch_size=96)
    with pytest.raises(DataError, match="at least 2 scenes"):
        prepare_data(one, val_fraction=0.2)


def test_band_stats_json_is_used_and_checked(dataset, tmp_path):
    stats = {
        "bands": ["red", "green", "blue", "nir"],
        "scale": 1 / 65535,
        "mean": [0.1, 0.2, 0.3, 0.4],
        "std": [0.5, 0.5, 0.5, 0.5],
    }
    path = tmp_path / "band_stats.json"
    path.write_text(json.dumps(stats))
    assert band_stats_transform(path).mean == (0.1, 0.2, 0.3, 0.4)
    path.write_text(json.dumps({**stats, "bands": ["blue", "green", "red", "nir"]}))
    with pytest.raises(DataError, match="are not"):
        band_stats_transform(path)


@pytest.mark.parametrize(
    ("target", "y_shape", "y_dtype"),
    [("binary", (1, 64, 64), torch.float32), ("classes", (64, 64), torch.int64)],
)
def test_patch_dataset_items(dataset, target, y_shape, y_dtype):
    data = prepare_data(dataset, val_fraction=0.34, seed=0)
    ds = PatchDataset(data.root, data.train, data.transform, 64, target, AugmentSpec(), seed=1)
    x, y = ds[0]
    assert x.shape == (4, 64, 64) and x.dtype == torch.float32
    assert y.shape == y_shape and y.dtype == y_dtype
    assert set(torch.unique(y).tolist()) <= {0, 1}
    x2, _ = ds[0]
    torch.testing.assert_close(x, x2)  # same seed, epoch and index: the same draw
    ds.epoch = 1
    assert not torch.equal(ds[0][0], x) or not torch.equal(ds[1][0], ds[1][0] * 0)


def test_unaugmented_item_is_the_normalised_patch(dataset):
    from cloudseg.data import cloud38_read

    data = prepare_data(dataset, val_fraction=0.34, seed=0)
    ds = PatchDataset(data.root, data.valid, data.transform, 96, "binary")
    x, y = ds[0]
    image, mask = cloud38_read.read_patch(data.root, "train", data.valid[0])
    np.testing.assert_allclose(x.numpy(), data.transform.apply(image), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y[0].numpy(), mask.astype(np.float32))
