"""The Python API: ``cloudseg.predict`` on arrays and DataArrays gives ``cloudseg-run``'s mask of
the same real scene, pixel for pixel, in bounded memory; ``mask_scenes`` is the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from isolated import run_python
from onnx_models import B1, W1, card_for, conv_model

import cloudseg
from cloudseg.errors import CloudsegError

BIOME = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "biome-l8"
#: Half cloud, half clear (truth 48.7 % cloud): a mask that is all one class would show.
SCENE = BIOME / "LC08_L1TP_110010_20160101_20170101_01_T1"
#: predict with every default but the model, in a child: auto may run OpenVINO, which must not
#: be imported in the test process (tests/helpers/isolated.py).
PREDICT_DEFAULTS = """
import sys, json, numpy as np, cloudseg
toa = cloudseg.read_scene(sys.argv[1])
mask = cloudseg.predict(toa, model="ukis-l1c")
codes = cloudseg.predict(toa.values, model="ukis-l1c")
np.save(sys.argv[2], np.stack([mask.values, codes]))
print(json.dumps({"type": type(codes).__name__, "dims": mask.dims, "crs": str(mask.rio.crs),
                  "transform": list(mask.rio.transform())[:6], "nodata": int(mask.rio.nodata),
                  "x_equal": bool((mask.x == toa.x).all())}))
"""


@pytest.fixture(scope="module")
def toa() -> xr.DataArray:
    return cloudseg.read_scene(SCENE)


def test_predict_equals_cloudseg_run_on_a_real_scene(toa: xr.DataArray, tmp_path: Path) -> None:
    out = tmp_path / "run"
    subprocess.run(
        [Path(sys.executable).parent / "cloudseg-run", str(SCENE), "--model", "ukis-l1c",
         "--out", str(out), "-q"], check=True, capture_output=True,
    )  # fmt: skip
    with rasterio.open(out / f"{SCENE.name}_cloudmask.tif") as ds:
        written, crs, transform = ds.read(1), ds.crs, ds.transform
    assert 0.2 < (written == 1).mean() < 0.8  # both classes: equality below means something

    got = run_python(PREDICT_DEFAULTS, SCENE, tmp_path / "masks.npy")
    from_dataarray, from_numpy = np.load(tmp_path / "masks.npy")
    np.testing.assert_array_equal(from_dataarray, written)
    np.testing.assert_array_equal(from_numpy, written)
    assert got == {"type": "ndarray", "dims": ["y", "x"], "crs": str(crs), "nodata": 255,
                   "transform": list(transform)[:6], "x_equal": True}  # fmt: skip


def test_bands_are_found_by_name_in_any_order(toa: xr.DataArray) -> None:
    """Landsat asset names, other bands beside them, a size-1 time axis, bands last: the same
    mask as the contract's order."""
    want = cloudseg.predict(toa, model="ukis-l1c", provider="cpu")
    swir = toa.sel(band="nir").assign_coords(band="swir16")
    odd = xr.concat([toa.sel(band=["nir", "blue"]), swir, toa.sel(band=["green", "red"])], "band")
    odd = odd.assign_coords(band=["nir08", "B2", "swir16", "green", "SR_B4"])
    odd = odd.transpose("y", "x", "band").expand_dims(time=1)
    got = cloudseg.predict(odd, model="ukis-l1c", provider="cpu")
    np.testing.assert_array_equal(got.values, want.values)
    # a GeoTIFF stack through rioxarray: bands 1..4, named by their descriptions
    descriptions = ("red", "green", "blue", "nir")
    numbered = toa.assign_coords(band=[1, 2, 3, 4]).assign_attrs(long_name=descriptions)
    got = cloudseg.predict(numbered, model="ukis-l1c", provider="cpu")
    np.testing.assert_array_equal(got.values, want.values)
    # a dask-backed array is read window by window, to the same mask
    lazy = cloudseg.predict(toa.chunk({"y": 100, "x": 100}), model="ukis-l1c", provider="cpu")
    np.testing.assert_array_equal(lazy.values, want.values)


def test_probabilities_and_no_data(toa: xr.DataArray) -> None:
    arr = toa.values.copy()
    arr[:, 200:, :] = np.nan
    codes, probs = cloudseg.predict(arr, model="ukis-l1c", provider="cpu", probabilities=True)
    assert (codes[200:] == 255).all() and np.isnan(probs[:, 200:]).all()
    assert set(np.unique(codes[:200])) <= {0, 1}
    np.testing.assert_array_equal(codes[:200] == 1, probs[0, :200] > 0.5)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.ones((3, 64, 64), np.float32), {}, r"not \(4, height, width\)"),
        (np.ones((4, 64, 64), np.uint16), {}, "holds integers .* reads toa_reflectance"),
        (np.ones((4, 64, 64), np.float32), {"values": "dn"}, "trained on top-of-atmosphere"),
        (
            xr.DataArray(
                np.ones((4, 8, 8)),
                dims=("band", "y", "x"),
                coords={"band": ["red", "green", "blue", "swir"]},
            ),
            {},
            "none is nir",
        ),
        (
            xr.DataArray(
                np.ones((4, 2, 8, 8)),
                dims=("band", "time", "y", "x"),
                coords={"band": ["red", "green", "blue", "nir"]},
            ),
            {},
            "select one",
        ),
    ],  # fmt: skip
)
def test_bad_arrays_are_refused_in_one_line(data, kwargs, message) -> None:  # noqa: ANN001
    with pytest.raises(CloudsegError, match=message) as info:
        cloudseg.predict(data, model="ukis-l1c", provider="cpu", **kwargs)
    assert "\n" not in str(info.value)


def test_mask_scenes_is_cloudseg_run(tmp_path: Path) -> None:
    outcome = cloudseg.mask_scenes([SCENE], out=tmp_path, model="ukis-l1c", provider="cpu")
    (summary,) = outcome.summaries
    assert (
        summary["scene_id"] == SCENE.name and (tmp_path / f"{SCENE.name}_cloudmask.tif").is_file()
    )
    with pytest.raises(TypeError, match="no option tiles"):
        cloudseg.mask_scenes([SCENE], out=tmp_path, tiles=3)


TRACED_PEAKS = """
import json, sys, tracemalloc
import numpy as np, cloudseg

def peak(n):
    data = np.random.default_rng(0).integers(1, 20000, (4, n, n), dtype=np.uint16)
    tracemalloc.start()
    mask = cloudseg.predict(data, model=sys.argv[1], provider="cpu", precision="f32", tile=512)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return traced, mask.nbytes

peak(512)  # caches that fill once (weight windows, the session) are not the scene's
print(json.dumps([peak(2048), peak(4096)]))
"""


def test_predict_makes_no_scene_sized_copies(tmp_path: Path) -> None:
    """Besides the caller's input and the mask, memory grows with the tiles' row band, not the
    area: 2048 -> 4096 px adds 12.6 M pixels, and one float32 plane of the scene (4 bytes a
    pixel, 48 MiB more) fails this; the band and the mask grow about 1.7 bytes a pixel. In a
    fresh process, so no other test's threads allocate meanwhile."""
    model = conv_model(tmp_path / "conv.onnx", W1[None] * 1e-4, B1, card_for(tile=256))
    (small, small_mask), (large, large_mask) = run_python(TRACED_PEAKS, model)
    added = 4096**2 - 2048**2
    grown = large - small - (large_mask - small_mask)
    assert grown <= 2.5 * added, f"{grown / added:.2f} bytes a pixel ({small=}, {large=})"


DOCTESTS = """
import doctest, json, os, sys
os.chdir(sys.argv[1])  # the examples name ../shared/data from the repository's root
import cloudseg.api
result = doctest.testmod(cloudseg.api)
print(json.dumps([result.attempted, result.failed]))
"""


def test_the_api_examples_run() -> None:
    """The docstrings' examples, on real tiles, with every default (in a child: auto may run
    OpenVINO)."""
    attempted, failed = run_python(DOCTESTS, Path(__file__).resolve().parents[1])
    assert failed == 0 and attempted >= 10
