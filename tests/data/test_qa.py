"""USGS quality bands: the three bit layouts decoded into one set of flags, and the two real
products' QA bands agreeing with their MTLs' CLOUD_COVER."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from cloudseg.data import qa
from cloudseg.data.landsat import open_scene
from cloudseg.errors import SceneError

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "landsat-real"
C2_L2 = REAL / "LC08_L2SP_001062_20201031_20201106_02_T2"
C1_L1 = REAL / "LC08_L1TP_016037_20170813_20170814_01_RT"


def bits(*set_bits: int, conf: dict[int, int] | None = None) -> int:
    value = sum(1 << b for b in set_bits)
    for bit, level in (conf or {}).items():
        value |= level << bit
    return value


@pytest.mark.parametrize(
    ("layout", "raw", "flags"),
    [
        ("c2_qa_pixel", bits(0), qa.FILL),
        ("c2_qa_pixel", bits(3, conf={8: 3}), qa.CLOUD),
        ("c2_qa_pixel", bits(1, 3), qa.CLOUD | qa.DILATED),
        ("c2_qa_pixel", bits(2, 3, conf={14: 3}), qa.CLOUD | qa.CIRRUS),
        ("c2_qa_pixel", bits(4, conf={10: 3}), qa.SHADOW),
        ("c2_qa_pixel", bits(6, 7), qa.CLEAR | qa.WATER),
        ("c1_bqa", bits(0), qa.FILL),
        ("c1_bqa", bits(4, conf={5: 3}), qa.CLOUD),
        ("c1_bqa", bits(conf={5: 1, 7: 3}), qa.SHADOW),  # shadow at high confidence
        ("c1_bqa", bits(conf={5: 1, 7: 2}), qa.CLEAR),  # medium shadow: not flagged
        ("c1_bqa", bits(conf={11: 3}), qa.CIRRUS),
        ("c1_bqa", 2720, qa.CLEAR),  # a real clear BQA value (low confidences everywhere)
        ("pre_bqa", bits(conf={14: 3}), qa.CLOUD),
        ("pre_bqa", bits(conf={14: 2}), qa.CLEAR),
        ("pre_bqa", bits(conf={4: 3}), qa.WATER | qa.CLEAR),
    ],
)
def test_each_layout_decodes_to_the_same_flags(layout: str, raw: int, flags: int) -> None:
    got = qa.decode(np.array([[raw]], np.uint16), layout)
    assert got.dtype == np.uint8 and int(got[0, 0]) == flags


def test_layout_comes_from_the_file_name_and_collection() -> None:
    assert qa.layout_for("x/LC08_..._QA_PIXEL.TIF", 2) == "c2_qa_pixel"
    assert qa.layout_for("LC08_..._BQA.TIF", 1) == "c1_bqa"
    assert qa.layout_for("LC80160372017225LGN00_BQA.TIF", 0) == "pre_bqa"
    with pytest.raises(SceneError, match="not a Landsat QA_PIXEL or BQA"):
        qa.layout_for("LC08_..._B4.TIF", 2)
    with pytest.raises(SceneError, match="unknown quality band layout"):
        qa.decode(np.zeros((1, 1), np.uint16), "c3")


def test_usgs_cloud_is_the_cloud_bit_not_cirrus_nor_fill() -> None:
    flags = np.array([qa.CLOUD, qa.CIRRUS, qa.CLOUD | qa.FILL, qa.DILATED, qa.SHADOW], np.uint8)
    assert qa.usgs_cloud(flags).tolist() == [True, False, False, False, False]
    assert qa.usgs_shadow(flags).tolist() == [False, False, False, False, True]


@pytest.mark.parametrize(
    ("folder", "layout"), [(C2_L2, "c2_qa_pixel"), (C1_L1, "c1_bqa")], ids=["c2-l2", "c1-l1"]
)
def test_real_quality_band_gives_the_mtl_cloud_cover(folder: Path, layout: str) -> None:
    """USGS's CLOUD_COVER is the QA band's cloud bit over valid pixels (the products' own)."""
    if not folder.is_dir():
        pytest.skip(f"real Landsat product not found at {folder}")
    scene = open_scene(folder)
    assert scene.qa_layout == layout
    with scene.open() as reader:
        window = Window(0, 0, scene.width, scene.height)
        raw, flags = reader.read(window), reader.read_qa(window)
    valid = raw.any(axis=0)
    np.testing.assert_array_equal(valid, flags & qa.FILL == 0)  # fill is exactly no data
    cover = 100 * qa.usgs_cloud(flags)[valid].mean()
    assert cover == pytest.approx(scene.mtl.cloud_cover, abs=0.1)
