"""Synthetic scenes as bright as real ones where it matters: thick cloud above reflectance 1.0,
so that tests on synthetic scenes exercise the values that real products hold (and that a
reader clipping at 1.0 once threw away). The real products of ``../shared/data/landsat-real``
are the reference; the synthetic share above 1.0 is still lower than theirs (docs/providers.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from cloudseg.data.landsat import open_scene
from cloudseg.data.mtl import SR_VALID_DN
from cloudseg.data.synthetic import SceneSpec, make_scene
from cloudseg.data.synthetic_level2 import write_level2_folder
from cloudseg.data.synthetic_write import write_scene_folder

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "landsat-real"


def _values(folder: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    scene = open_scene(folder)
    with scene.open() as reader:
        raw = reader.read(Window(0, 0, scene.width, scene.height))
    valid = raw.any(axis=0)
    return raw[:, valid], scene.to_values(raw, kind)[:, valid]


@pytest.fixture(scope="module")
def cloudy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scene = make_scene(SceneSpec(seed=7, height=400, width=400, cloud_fraction=0.3))
    root = tmp_path_factory.mktemp("bright")
    write_scene_folder(scene, root / "l1")
    write_level2_folder(scene, root / "l2")
    return {"l1": root / "l1", "l2": root / "l2"}


def test_real_level2_products_hold_reflectance_above_one() -> None:
    products = sorted(REAL.glob("LC08_L2S*")) if REAL.is_dir() else []
    if not products:
        pytest.skip(f"no real Level-2 products at {REAL}")
    for product in products:
        raw, sr = _values(product, "surface_reflectance")
        assert (raw > SR_VALID_DN[1]).mean() > 0.01 and np.percentile(sr, 99) > 1.0


def test_synthetic_level2_thick_cloud_is_above_one_like_real(cloudy) -> None:
    raw, sr = _values(cloudy["l2"], "surface_reflectance")
    assert (raw > SR_VALID_DN[1]).any(), "no DN above USGS's upper bound: nothing tests it"
    assert sr.max() > 1.2 and np.percentile(sr, 99.9) > 1.0
    assert sr.min() >= 0.0  # nothing below USGS's lower bound reaches a model


def test_synthetic_level1_reaches_toa_above_one_like_real(cloudy) -> None:
    raw, toa = _values(cloudy["l1"], "toa_reflectance")
    assert toa.max() > 1.0 and raw.max() > 45000
