import numpy as np
import pytest

from cloudseg import bands


def test_contract_order_is_red_green_blue_nir_as_landsat_bands_4_3_2_5():
    assert bands.BANDS == ("red", "green", "blue", "nir")
    assert [bands.LANDSAT8_BAND[b] for b in bands.BANDS] == [4, 3, 2, 5]


def test_reorder_by_name():
    stack = np.stack([np.full((2, 2), v) for v in (2, 3, 4, 5)])  # blue, green, red, nir
    out = bands.reorder(stack, ["blue", "green", "red", "nir"])
    assert out[:, 0, 0].tolist() == [4, 3, 2, 5]
    same = bands.reorder(out, bands.BANDS)
    assert same is out


def test_reorder_refuses_unknown_band_and_wrong_count():
    with pytest.raises(ValueError, match="unknown band 'swir'"):
        bands.reorder(np.zeros((4, 1, 1)), ["red", "green", "blue", "swir"])
    with pytest.raises(ValueError, match="3 bands but 4 names"):
        bands.reorder(np.zeros((3, 1, 1)), bands.BANDS)


def test_valid_pixels_any_band_non_zero():
    dn = np.zeros((4, 2, 2), np.uint16)
    dn[3, 0, 1] = 7
    assert bands.valid_pixels(dn).tolist() == [[False, True], [False, False]]
