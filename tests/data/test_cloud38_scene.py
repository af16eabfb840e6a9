"""A 38-Cloud test scene read window by window equals the dataset's own stitching."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from cloudseg.bands import valid_pixels
from cloudseg.data import cloud38, cloud38_read, cloud38_stitch
from cloudseg.data.cloud38_scene import (
    Cloud38Scene,
    is_cloud38_path,
    open_cloud38_scene,
    split_scene_path,
)
from cloudseg.data.synthetic_dataset import write_38cloud_dataset
from cloudseg.errors import SceneError
from cloudseg.scene import Scene

SIZE, PATCH = 500, 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("c38") / "38cloud"
    write_38cloud_dataset(root, train_scenes=1, test_scenes=1, size=SIZE, seed=3, patch_size=PATCH)
    split = cloud38.find_split(root, "test")
    (scene,) = cloud38.scenes_of(cloud38.list_patches(split, "test"))
    stitched = cloud38_stitch.stitch_scene(root, "test", scene, kind="image")
    return root, scene, stitched


def test_scene_grid_matches_stitching(dataset):
    root, sid, stitched = dataset
    scene = open_cloud38_scene(root / "38-Cloud_test", sid)
    assert isinstance(scene, Cloud38Scene)
    assert (scene.height, scene.width) == stitched.shape[-2:] == (SIZE, SIZE)
    assert scene.grid == (6, 6) and scene.patch_size == PATCH and scene.block_shape == (96, 96)
    assert scene.offset == cloud38.pad_offsets(SIZE, SIZE, 6 * PATCH, 6 * PATCH, PATCH)
    assert (scene.value_kinds, scene.crs, scene.scene_id) == (("dn",), None, sid)
    assert isinstance(scene, Scene) and scene.source.endswith(f"38-Cloud_test::{sid}")
    assert scene.transform.is_identity


@pytest.mark.parametrize(
    "window",
    [
        Window(0, 0, SIZE, SIZE),  # whole scene
        Window(0, 0, 70, 50),  # top-left corner, inside the first patch
        Window(40, 30, 200, 150),  # crosses several patch borders both ways
        Window(SIZE - 61, SIZE - 83, 61, 83),  # bottom-right edge
        Window(57, 0, 1, SIZE),  # one column through every patch row
        Window(0, 250, SIZE, 17),  # a band of rows, as the writer reads
    ],
)
@pytest.mark.parametrize("cache", [None, 1])
def test_windows_equal_stitched_slices(dataset, window, cache):
    root, sid, stitched = dataset
    scene = open_cloud38_scene(root, sid)
    r, c, h, w = window.row_off, window.col_off, window.height, window.width
    with scene.open(cache_patches=cache) as reader:
        got = reader.read(window)
        again = reader.read(window)  # served from the cache this time
        valid = reader.valid(window)
    assert got.dtype == np.uint16 and got.shape == (4, h, w)
    np.testing.assert_array_equal(got, stitched[:, r : r + h, c : c + w])
    np.testing.assert_array_equal(again, got)
    np.testing.assert_array_equal(valid, valid_pixels(stitched[:, r : r + h, c : c + w]))


def test_boundless_fills_outside_with_zero(dataset):
    root, sid, stitched = dataset
    scene = open_cloud38_scene(f"{root / '38-Cloud_test'}::{sid}")
    with scene.open() as reader:
        with pytest.raises(ValueError, match="boundless"):
            reader.read(Window(SIZE - 10, 0, 20, 20))
        got = reader.read(Window(SIZE - 10, -5, 20, 20), boundless=True)
        assert not reader.valid(Window(SIZE, SIZE, 8, 8), boundless=True).any()
    expected = np.zeros((4, 20, 20), np.uint16)
    expected[:, 5:, :10] = stitched[:, :15, SIZE - 10 :]
    np.testing.assert_array_equal(got, expected)


def test_only_touched_patches_are_read(dataset, monkeypatch):
    root, sid, _ = dataset
    scene = open_cloud38_scene(root, sid)
    reads: list[str] = []
    original = cloud38_read.read_image
    monkeypatch.setattr(
        cloud38_read, "read_image", lambda r, s, p: reads.append(p) or original(r, s, p)
    )
    with scene.open() as reader:
        top, left = scene.offset
        # A window inside the padded grid's patch (2, 2) (1-based) only.
        reader.read(Window(PATCH - left + 1, PATCH - top + 1, 10, 10))
        reader.read(Window(PATCH - left + 5, PATCH - top + 5, 10, 10))
    assert reads == [cloud38.patch_name(2, 2, 6, sid)]


def test_without_scene_gt_the_scene_is_the_padded_grid(dataset, tmp_path):
    import shutil

    root, sid, _ = dataset
    copy = tmp_path / "copy"
    shutil.copytree(root / "38-Cloud_test", copy)
    (copy / cloud38.ENTIRE_SCENE_GT_DIR / cloud38.ENTIRE_SCENE_GT_FILE.format(scene=sid)).unlink()
    scene = open_cloud38_scene(copy)  # one scene: the id may be left out
    assert (scene.height, scene.width, scene.offset) == (6 * PATCH, 6 * PATCH, (0, 0))
    with scene.open() as reader:
        got = reader.read(Window(0, 0, 6 * PATCH, 6 * PATCH))
    np.testing.assert_array_equal(
        got, cloud38_stitch.stitch_scene(copy, "test", sid, kind="image", gt_shape=(576, 576))
    )


def test_profile_is_writable(dataset, tmp_path):
    root, sid, stitched = dataset
    scene = open_cloud38_scene(root, sid)
    profile = scene.profile()
    assert profile["count"] == 1 and profile["dtype"] == "uint16" and profile["crs"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp_path / "out.tif", "w", **profile) as ds:
            ds.write(stitched[0], 1)
        with rasterio.open(tmp_path / "out.tif") as ds:
            assert ds.shape == (SIZE, SIZE)
            np.testing.assert_array_equal(ds.read(1), stitched[0])


def test_paths_and_errors(dataset, tmp_path):
    root, sid, _ = dataset
    assert split_scene_path(f"/a/b::{sid}") == (root.__class__("/a/b"), sid)
    assert split_scene_path("/a/b") == (root.__class__("/a/b"), None)
    assert is_cloud38_path(root) and is_cloud38_path(f"{root}::{sid}")
    assert not is_cloud38_path(tmp_path)
    with pytest.raises(SceneError, match="lists no patch of scene nope"):
        open_cloud38_scene(root, "nope")
    with pytest.raises(SceneError, match="not a 38-Cloud"):
        open_cloud38_scene(tmp_path)
