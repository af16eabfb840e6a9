"""A synthetic scene read back through the Landsat reader; cloudseg-info on bad input."""

import json
import shutil

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window

from cloudseg.bands import BANDS, LANDSAT8_BAND
from cloudseg.data.landsat import open_scene
from cloudseg.data.synthetic import SceneSpec, make_scene
from cloudseg.data.synthetic_write import write_scene_folder
from cloudseg.info_cli import main


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    scene = make_scene(SceneSpec(seed=3, height=300, width=360, cloud_fraction=0.4))
    folder = tmp_path_factory.mktemp("synth") / "scene"
    write_scene_folder(scene, folder)
    return folder, scene


def test_synthetic_scene_reads_back_in_band_contract_order(scene_dir):
    folder, synthetic = scene_dir
    scene = open_scene(folder)
    assert scene.kind == "L1" and scene.shape == (300, 360)
    assert scene.crs.to_string().startswith("EPSG:326")
    assert (scene.transform.a, scene.transform.e) == (30.0, -30.0)
    with scene.open() as reader:
        dn = reader.read(Window(0, 0, 360, 300))
        corner = reader.valid(Window(0, 0, 8, 8))
    np.testing.assert_array_equal(dn, synthetic.bands)
    # Each contract band came from the file of its Landsat band number.
    for i, band in enumerate(BANDS):
        with rasterio.open(next(folder.glob(f"*_B{LANDSAT8_BAND[band]}.TIF"))) as ds:
            np.testing.assert_array_equal(ds.read(1), dn[i])
    assert not corner.any(), "the rotated collar leaves the corner without data"
    assert scene.mtl is not None and scene.mtl.scene_id == scene.scene_id


def test_info_reports_scene_as_json(scene_dir):
    folder, _ = scene_dir
    result = CliRunner().invoke(main, [str(folder), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["width"] == 360 and info["height"] == 300 and info["pixel_size"] == [30.0, 30.0]
    assert list(info["bands"]) == list(BANDS)


def _copy(folder, tmp_path):
    out = tmp_path / "scene"
    shutil.copytree(folder, out)
    return out


def _band(folder, n):
    return next(folder.glob(f"*_B{n}.TIF"))


def _drop_nir(folder):
    _band(folder, 5).unlink()
    return "has no band B5 (nir)"


def _shrink_red(folder):
    path = _band(folder, 4)
    with rasterio.open(path) as ds:
        profile, data = ds.profile, ds.read(1)
    profile.update(height=data.shape[0] - 10)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data[:-10], 1)
    return "is 360 x 300 pixels but B4 (red) is 360 x 290"


def _not_a_tiff(folder):
    _band(folder, 3).write_text("this is not a GeoTIFF")
    return "is not a readable GeoTIFF"


@pytest.mark.parametrize("breakage", [_drop_nir, _shrink_red, _not_a_tiff])
def test_bad_scene_gives_one_line_and_exit_1(scene_dir, tmp_path, breakage):
    folder = _copy(scene_dir[0], tmp_path)
    expected = breakage(folder)
    result = CliRunner().invoke(main, [str(folder)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and expected in lines[0]
    assert "Traceback" not in result.output


def test_dataset_with_csv_naming_a_missing_patch(tmp_path):
    from cloudseg.data.synthetic_dataset import write_38cloud_dataset

    root = tmp_path / "ds"
    write_38cloud_dataset(root, train_scenes=2, test_scenes=1, size=400, seed=1)
    ok = CliRunner().invoke(main, [str(root), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["train"]["scenes"] == 2
    victim = next((root / "38-Cloud_training" / "train_nir").iterdir())
    victim.unlink()
    result = CliRunner().invoke(main, [str(root)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and victim.name in result.output


def test_models_text_is_one_line_per_model(tmp_path, monkeypatch):
    """Text output names each model's state in words, not as a Python dict."""
    from cloudseg.engine.models import NAMED

    monkeypatch.setenv("CLOUDSEG_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(main, ["--models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "models:"
    shown = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert set(NAMED) <= set(shown)
    for name in NAMED:
        assert shown[name].startswith(("available: ", "missing: ")), shown[name]
        assert "{" not in shown[name]
    # Nothing exported in an empty home: the models that need an export say so.
    exported = [n for n, m in NAMED.items() if m.source == "export"]
    assert exported and all(shown[n].startswith("missing: ") for n in exported)
