import shutil
import warnings
from pathlib import Path

import fake_cloud38
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.errors import NotGeoreferencedWarning

from cloudseg.data import cloud38, cloud38_read, cloud38_split
from cloudseg.data.cloud38 import PatchId
from cloudseg.errors import DataError, MissingFileError

EMPTY_SAMPLE_SCENES = {"011002", "044010", "059014"}


@pytest.fixture
def one_patch(tmp_path) -> Path:
    return fake_cloud38.write_one_patch_dataset(tmp_path / "ds")


def _read(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)


# --- the real sample ---------------------------------------------------------------------------


def test_sample_lists_12_patches(sample):
    patches = cloud38.list_patches(sample)
    assert len(patches) == 12
    assert len(cloud38.scenes_of(patches)) == 12
    assert cloud38.list_patches(sample / "38-Cloud_training") == patches


def test_sample_patches_read_as_the_band_contract(sample):
    split_dir = sample / "38-Cloud_training"
    for pid in cloud38.list_patches(sample):
        image, mask = cloud38_read.read_patch(sample, "train", pid)
        assert image.shape == (4, 384, 384) and image.dtype == np.uint16
        assert mask.shape == (384, 384) and mask.dtype == bool
        for i, band in enumerate(("red", "green", "blue", "nir")):
            np.testing.assert_array_equal(
                image[i], _read(split_dir / f"train_{band}" / f"{band}_{pid.name}.TIF")
            )
        np.testing.assert_array_equal(
            mask, _read(split_dir / "train_gt" / f"gt_{pid.name}.TIF") == 255
        )


def test_sample_empty_patches_are_the_three_in_the_margin(sample):
    patches = cloud38.list_patches(sample)
    empty = [
        p for p in patches if cloud38_read.is_empty(cloud38_read.read_image(sample, "train", p))
    ]
    assert {p.scene.split("_")[2] for p in empty} == EMPTY_SAMPLE_SCENES
    assert len(empty) == 3


def test_sample_reads_raise_no_georeferencing_warning(sample):
    pid = cloud38.list_patches(sample)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cloud38_read.read_patch(sample, "train", pid)
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]


def test_sample_names_parse():
    pid = cloud38.parse_patch_name("patch_51_3_by_3_LC08_L1TP_011002_20160620_20170323_01_T1")
    assert pid == PatchId(51, 3, 3, "LC08_L1TP_011002_20160620_20170323_01_T1")
    assert pid.ncols == 24
    assert pid.name == "patch_51_3_by_3_LC08_L1TP_011002_20160620_20170323_01_T1"


# --- names and lists ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["red_patch", "patch_1_1_by_1_", "patch_5_2_by_3_S1", "patch_4_1_by_3_S1", "patch_0_0_by_0_S"],
)
def test_bad_patch_names_raise_data_error_naming_them(bad):
    with pytest.raises(DataError, match=bad):
        cloud38.parse_patch_name(bad)


@given(
    row=st.integers(1, 40),
    ncols=st.integers(1, 40),
    data=st.data(),
    scene=st.from_regex(r"LC08_L1TP_\d{6}_\d{8}_\d{8}_0[12]_T[12]", fullmatch=True),
)
def test_patch_names_round_trip(row, ncols, data, scene):
    col = data.draw(st.integers(1, ncols))
    pid = cloud38.parse_patch_name(cloud38.patch_name(row, col, ncols, scene))
    assert (pid.row, pid.col, pid.scene) == (row, col, scene)
    assert pid.ncols in (None, ncols)


def test_csv_tolerates_bom_whitespace_crlf_and_blank_lines(tmp_path):
    names = ["patch_1_1_by_1_S1", "patch_4_2_by_1_S1"]
    csv_path = tmp_path / "p.csv"
    csv_path.write_bytes(
        (
            "\ufeffname \r\n " + names[0] + " \r\n\r\n" + names[1] + "\r\n" + names[0] + "\n\n\n"
        ).encode()
    )
    assert [p.name for p in cloud38.read_patch_csv(csv_path)] == names


def test_csv_with_bad_name_says_file_and_line(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("name\npatch_1_1_by_1_S1\nnot_a_patch\n")
    with pytest.raises(DataError, match=r"p\.csv, line 3: 'not_a_patch'"):
        cloud38.read_patch_csv(csv_path)


def test_csv_without_name_column(tmp_path):
    (tmp_path / "p.csv").write_text("id\n1\n")
    with pytest.raises(DataError, match="no 'name' column"):
        cloud38.read_patch_csv(tmp_path / "p.csv")


def test_fake_lists_patches_in_csv_order(fake):
    patches = cloud38.list_patches(fake.root)
    assert [p.name for p in patches] == fake.names["train"]
    assert [p.name for p in cloud38.list_patches(fake.root, "test")] == fake.names["test"]


def test_fake_nonempty_list(fake, tmp_path):
    nonempty = [p.name for p in cloud38.list_patches(fake.root, nonempty=True)]
    expected = [n for n in fake.names["train"] if fake.patches[n][0].any()]
    assert nonempty == expected and len(expected) == len(fake.names["train"]) - 2
    # Some copies keep the list inside the split folder: found there too.
    copy = tmp_path / "copy"
    shutil.copytree(fake.root / "38-Cloud_training", copy / "38-Cloud_training")
    shutil.copy(fake.root / "training_patches_38-cloud_nonempty.csv", copy / "38-Cloud_training")
    assert [p.name for p in cloud38.list_patches(copy, nonempty=True, check=False)] == expected


def test_95_cloud_additional_folder(one_patch, tmp_path):
    """95-Cloud's extra scenes: own folder names; its nonempty list also names 38-Cloud patches."""
    root = tmp_path / "95cloud"
    extra = root / "95-cloud_training_only_additional_to38-cloud"
    extra.mkdir(parents=True)
    for band in ("red", "green", "blue", "nir", "gt"):
        shutil.copytree(one_patch / f"train_{band}", extra / f"train_{band}_additional_to38cloud")
    name = cloud38.list_patches(one_patch)[0].name
    (extra / "training_patches_95-cloud_additional_to_38-cloud.csv").write_text(f"name\n{name}\n")
    other = "patch_1_1_by_1_LC08_L1TP_011002_20160620_20170323_01_T1"  # a 38-Cloud patch
    (extra / "training_patches_95-cloud_nonempty.csv").write_text(f"name\n{other}\n{name}\n")
    assert [p.name for p in cloud38.list_patches(root, "train95", nonempty=True)] == [name]
    image, mask = cloud38_read.read_patch(root, "train95", name)
    assert image.shape == (4, 384, 384) and mask.shape == (384, 384)
    assert cloud38.band_file(root, "train95", "nir", name) == (
        extra / "train_nir_additional_to38cloud" / f"nir_{name}.TIF"
    )


def test_fake_patches_read_back(fake):
    for name in fake.names["train"]:
        image, mask = cloud38_read.read_patch(fake.root, "train", name)
        np.testing.assert_array_equal(image, fake.patches[name][0])
        np.testing.assert_array_equal(mask, fake.patches[name][1])
    image, mask = cloud38_read.read_patch(fake.root, "test", fake.names["test"][0])
    assert mask is None
    np.testing.assert_array_equal(image, fake.patches[fake.names["test"][0]][0])


def test_unknown_folder_and_split(tmp_path):
    with pytest.raises(MissingFileError, match=str(tmp_path / "nope")):
        cloud38.list_patches(tmp_path / "nope")
    with pytest.raises(MissingFileError, match="not a 38-Cloud dataset"):
        cloud38.list_patches(tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        cloud38.list_patches(tmp_path, "valid")


# --- split by scene ----------------------------------------------------------------------------


def test_fake_split_by_scene(fake):
    patches = cloud38.list_patches(fake.root)
    split = cloud38_split.split_by_scene(patches, 0.3, seed=1)
    assert not set(split.train_scenes) & set(split.valid_scenes)
    assert len(split.train_scenes) >= 1 and len(split.valid_scenes) >= 1
    assert sorted(split.train + split.valid, key=patches.index) == patches
    assert cloud38_split.split_by_scene(patches, 0.3, seed=1) == split


@given(
    n_scenes=st.integers(1, 30),
    fraction=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60)
def test_split_by_scene_properties(n_scenes, fraction, seed):
    patches = [PatchId(i + 1, 1, i + 1, f"S{s:03d}") for s in range(n_scenes) for i in range(3)]
    train, valid = cloud38_split.split_by_scene(patches, fraction, seed)
    assert not {p.scene for p in train} & {p.scene for p in valid}
    assert len(train) + len(valid) == len(patches)
    if n_scenes >= 2 and fraction > 0:
        assert train and valid
    if fraction == 0:
        assert not valid
    assert cloud38_split.split_by_scene(patches, fraction, seed) == (train, valid)


def test_entire_scene_gt_with_other_values_is_refused(tmp_path):
    split_dir = fake_cloud38.write_one_patch_dataset(tmp_path)
    path = next((split_dir / "Entire_scene_gts").iterdir())
    fake_cloud38.write_tif(path, np.full((384, 384), 7, dtype=np.uint8))
    scene = path.stem.removeprefix("edited_corrected_gts_")
    with pytest.raises(DataError, match=str(path)):
        cloud38_read.read_scene_gt(tmp_path, "train", scene)


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("breakage", sorted(fake_cloud38.BREAKAGES))
def test_bad_input_gives_data_error_naming_the_file(one_patch, breakage):
    culprit = fake_cloud38.BREAKAGES[breakage](one_patch)
    with pytest.raises(DataError) as info:
        for pid in cloud38.list_patches(one_patch.parent):
            cloud38_read.read_patch(one_patch.parent, "train", pid)
    assert str(culprit) in str(info.value)
    assert "\n" not in str(info.value)
