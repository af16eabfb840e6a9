"""The synthetic Collection 2 Level-2 folder: USGS's layout, readable as a real one is."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from cloudseg.data import qa
from cloudseg.data.landsat import open_scene
from cloudseg.data.mtl import read_mtl
from cloudseg.data.synthetic import SceneSpec, make_scene
from cloudseg.data.synthetic_level2 import SR_ADD, SR_MULT, level2_product_id, write_level2_folder


@pytest.fixture(scope="module")
def level2(tmp_path_factory):
    synthetic = make_scene(SceneSpec(seed=8, height=200, width=240, cloud_fraction=0.35))
    folder = tmp_path_factory.mktemp("l2") / level2_product_id(synthetic)
    return synthetic, write_level2_folder(synthetic, folder), folder


def test_files_are_named_as_usgs_names_them(level2) -> None:
    synthetic, paths, folder = level2
    pid = level2_product_id(synthetic)
    assert pid.startswith("LC08_L2SP_") and pid.endswith("_02_T1")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{pid}_SR_B{n}.TIF" for n in (2, 3, 4, 5)]
        + [f"{pid}_QA_PIXEL.TIF", f"{pid}_MTL.txt", f"{pid}_MTL.json", f"{pid}_cloudmask_truth.TIF"]
    )


def test_the_reader_sees_a_level2_product_with_its_qa(level2) -> None:
    synthetic, _, folder = level2
    scene = open_scene(folder)
    assert (scene.kind, scene.collection, scene.qa_layout) == ("L2", 2, "c2_qa_pixel")
    assert scene.value_kinds == ("surface_reflectance",) and scene.mtl.sr[2] == (SR_MULT, SR_ADD)
    with scene.open() as reader:
        window = Window(0, 0, scene.width, scene.height)
        raw, flags = reader.read(window), reader.read_qa(window)
    valid = synthetic.mask != 255
    np.testing.assert_array_equal(raw.any(axis=0), valid)
    np.testing.assert_array_equal(qa.usgs_cloud(flags)[valid], (synthetic.mask == 1)[valid])
    assert scene.mtl.cloud_cover == pytest.approx(synthetic.cloud_cover, abs=0.01)
    sr = scene.to_values(raw, "surface_reflectance")[:, valid]
    # reflectance as the product holds it: >= 0 (USGS lower bound), above 1.0 for thick cloud
    assert 0.0 <= sr.min() and 1.0 < sr.max() <= 1.61 and 0.02 < float(np.median(sr)) < 0.6


def test_text_and_json_mtl_agree(level2) -> None:
    _, paths, _ = level2
    text, doc = read_mtl(paths["MTL"]), read_mtl(paths["MTL_JSON"])
    assert (text.scene_id, text.processing_level, text.collection) == (
        doc.scene_id, doc.processing_level, doc.collection,
    )  # fmt: skip
    assert text.sr == doc.sr and text.toa == doc.toa and text.sun_elevation == doc.sun_elevation


def test_sr_bands_carry_fill_as_nodata(level2) -> None:
    _, paths, _ = level2
    with rasterio.open(paths["SR_B4"]) as ds:
        assert ds.nodata == 0 and ds.dtypes == ("uint16",) and ds.block_shapes == [(256, 256)]
