"""The readers on two real USGS products (reduced in size by their publishers): a Collection 2
Level-2 scene with QA_PIXEL and a Collection 1 Level-1 real-time scene with BQA. Skipped where
``../shared/data/landsat-real`` is absent."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.windows import Window
from test_qa import C1_L1, C2_L2

from cloudseg.data.landsat import open_scene
from cloudseg.data.mtl import SR_VALID_DN
from cloudseg.errors import SceneError
from cloudseg.scene import Scene


@pytest.fixture(params=[C2_L2, C1_L1], ids=["c2-l2", "c1-l1"])
def real(request):
    if not request.param.is_dir():
        pytest.skip(f"real Landsat product not found at {request.param}")
    return open_scene(request.param)


def test_real_products_open_as_scenes(real) -> None:
    assert isinstance(real, Scene)
    assert real.scene_id == real.path.name and real.crs.to_epsg() in (32617, 32620)
    if real.kind == "L2":
        assert real.collection == 2 and real.value_kinds == ("surface_reflectance",)
        assert real.product == "a Landsat 8 Collection 2 Level-2 (surface reflectance) product"
        assert real.mtl.sr[4] == (2.75e-05, -0.2)  # LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
        assert real.mtl.toa[4] == (2e-05, -0.1)  # the Level-1 coefficients kept apart
    else:
        assert real.collection == 1 and real.value_kinds == ("dn", "toa_reflectance")
        assert real.product == "a Landsat 8 Collection 1 Level-1 (digital numbers) product"


def test_real_values_convert_as_the_mtl_says(real) -> None:
    with real.open() as reader:
        raw = reader.read(Window(0, 0, real.width, real.height))
    valid = raw.any(axis=0)
    kind = real.value_kinds[-1]
    values = real.to_values(raw, kind)
    assert values.dtype == np.float32 and (values[:, ~valid] == 0).all()
    if kind == "surface_reflectance":
        # Values as the product has them: nothing below USGS's lower bound (reflectance 0),
        # and bright cloud and snow above 1.0 reach the model unclipped, exactly M * DN + A.
        lo, hi = (v * 2.75e-05 - 0.2 for v in SR_VALID_DN)
        assert values[:, valid].min() >= lo - 1e-6
        bright = raw > SR_VALID_DN[1]
        assert bright.any(), "the real Level-2 products hold DN above 43636"
        np.testing.assert_allclose(values[bright], raw[bright] * 2.75e-05 - 0.2, rtol=1e-6)
        assert values[bright].min() > hi
    else:
        assert 0.0 < float(np.median(values[:, valid])) < 1.0
    asked = "dn" if kind == "surface_reflectance" else "surface_reflectance"
    with pytest.raises(SceneError, match=f"cannot give {asked} values"):
        real.to_values(raw, asked)


def test_coarse_read_samples_every_kth_pixel(real) -> None:
    with real.open() as reader:
        whole = reader.read(Window(0, 0, real.width, real.height))
        coarse = reader.read_coarse(8)
    assert coarse.shape == (4, -(-real.height // 8), -(-real.width // 8))
    assert abs(coarse.any(axis=0).mean() - whole.any(axis=0).mean()) < 0.05
