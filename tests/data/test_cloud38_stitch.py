"""Stitching a 38-Cloud scene back from its patches, as the dataset's evaluation does."""

import fake_cloud38
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudseg.data import cloud38, cloud38_read, cloud38_stitch
from cloudseg.data.cloud38 import PatchId
from cloudseg.errors import DataError


def _cut(array: np.ndarray, scene: str, size: int, grid=None):
    """Pad centred and cut, written out here independently of cloudseg."""
    h, w = array.shape[-2:]
    rows, cols = grid or (-(-h // size), -(-w // size))
    top, left = (rows * size - h) // 2, (cols * size - w) // 2
    pads = [(0, 0)] * (array.ndim - 2)
    pads += [(top, rows * size - h - top), (left, cols * size - w - left)]
    padded = np.pad(array, pads)
    return {
        PatchId((r - 1) * cols + c, r, c, scene): padded[
            ..., (r - 1) * size : r * size, (c - 1) * size : c * size
        ]
        for r in range(1, rows + 1)
        for c in range(1, cols + 1)
    }


def test_stitch_round_trip_of_an_odd_sized_scene():
    rng = np.random.default_rng(0)
    scene = rng.integers(1, 65535, size=(4, 700, 1000), dtype=np.uint16)
    patches = _cut(scene, "LC08_L1TP_002053_20160520_20170324_01_T1", 384)
    assert len(patches) == 2 * 3 and all(p.shape == (4, 384, 384) for p in patches.values())
    np.testing.assert_array_equal(cloud38_stitch.stitch(patches, (700, 1000)), scene)
    assert cloud38.pad_offsets(700, 1000) == ((768 - 700) // 2, (1152 - 1000) // 2)
    assert cloud38.grid_shape(700, 1000) == (2, 3)


def test_stitch_with_a_grid_wider_than_needed():
    mask = np.random.default_rng(1).random((500, 600)) > 0.5
    patches = _cut(mask, "S", 384, grid=(3, 4))
    np.testing.assert_array_equal(cloud38_stitch.stitch(patches, (500, 600)), mask)
    # Without its last row the grid's height is unknowable from names: it must be given.
    first_rows = {p: a for p, a in patches.items() if p.row < 3}
    expected = mask.copy()
    expected[2 * 384 - (3 * 384 - 500) // 2 :] = False
    np.testing.assert_array_equal(
        cloud38_stitch.stitch(first_rows, (500, 600), grid=(3, 4)), expected
    )


@given(
    h=st.integers(1, 60),
    w=st.integers(1, 60),
    size=st.integers(4, 16),
    lead=st.sampled_from([(), (2,)]),
)
@settings(max_examples=80, deadline=None)
def test_stitch_inverts_centred_padding(h, w, size, lead):
    scene = np.arange(np.prod(lead + (h, w)), dtype=np.int32).reshape(lead + (h, w)) + 1
    np.testing.assert_array_equal(cloud38_stitch.stitch(_cut(scene, "S", size), (h, w)), scene)


def test_stitch_rejects_mixed_scenes_and_small_grids():
    patches = _cut(np.ones((10, 10)), "S", 8)
    with pytest.raises(DataError, match="several scenes"):
        cloud38_stitch.stitch({**patches, PatchId(1, 1, 1, "T"): np.ones((8, 8))}, (10, 10))
    with pytest.raises(DataError, match="smaller than"):
        cloud38_stitch.stitch(patches, (20, 10))
    with pytest.raises(DataError, match="disagree on ncols"):
        cloud38_stitch.infer_grid([PatchId(5, 2, 1, "S"), PatchId(6, 2, 1, "S")])


def test_fake_stitch_scene_and_entire_scene_gt(fake):
    for scene, (bands, cloud) in fake.scenes.items():
        split = "test" if scene in fake_cloud38.TEST_SCENES else "train"
        np.testing.assert_array_equal(cloud38_read.read_scene_gt(fake.root, split, scene), cloud)
        image = cloud38_stitch.stitch_scene(fake.root, split, scene, kind="image")
        np.testing.assert_array_equal(image, bands)
        if split == "train":
            np.testing.assert_array_equal(
                cloud38_stitch.stitch_scene(fake.root, split, scene), cloud
            )
    with pytest.raises(DataError, match="no patch ground truth"):
        cloud38_stitch.stitch_scene(fake.root, "test", next(iter(fake_cloud38.TEST_SCENES)))
