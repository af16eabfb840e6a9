"""The synthetic dataset writer and the 38-Cloud reader agree, at 38-Cloud's size and smaller."""

import numpy as np
import pytest

from cloudseg.data import cloud38, cloud38_read, cloud38_stitch
from cloudseg.data.synthetic import make_scene
from cloudseg.data.synthetic_dataset import dataset_specs, write_38cloud_dataset


@pytest.mark.parametrize(("size", "patch"), [(800, 384), (250, 96)])
def test_reader_reads_what_the_writer_wrote(tmp_path, size, patch):
    root = tmp_path / "ds"
    summary = write_38cloud_dataset(
        root, train_scenes=2, test_scenes=1, size=size, seed=5, patch_size=patch
    )
    train = cloud38.list_patches(root, "train")
    rows = -(-size // patch)
    assert len(train) == 2 * rows * rows
    assert sorted(cloud38.scenes_of(train)) == sorted(summary.scenes["train"])
    image, mask = cloud38_read.read_patch(root, "train", train[0])
    assert image.shape == (4, patch, patch) and image.dtype == np.uint16
    assert mask.shape == (patch, patch) and mask.dtype == bool

    # A test scene stitched back from its patches is the generated scene, crop for crop.
    split, spec = dataset_specs(2, 1, size, 5)[-1]
    assert split == "test"
    scene = make_scene(spec)
    stitched = cloud38_stitch.stitch_scene(root, "test", spec.product_id, kind="image")
    np.testing.assert_array_equal(stitched, scene.bands)
    truth = cloud38_read.read_scene_gt(root, "test", spec.product_id)
    np.testing.assert_array_equal(truth, scene.mask == 1)
