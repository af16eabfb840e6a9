import json
import sys
import warnings
from pathlib import Path

import fake_cloud38
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from cloudseg.eda import BandMoments, run_eda
from cloudseg.eda_cli import main

BANDS = ("red", "green", "blue", "nir")


@pytest.fixture(scope="session")
def fake(tmp_path_factory):
    return fake_cloud38.write_dataset(tmp_path_factory.mktemp("fake38_eda"))


def _eda(args: list[str]):
    return CliRunner().invoke(main, [*args, "--quiet"])


def _read_patch_directly(split_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The patch's bands and mask read with rasterio alone, not through cloudseg."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        bands = []
        for band in BANDS:
            with rasterio.open(split_dir / f"train_{band}" / f"{band}_{name}.TIF") as src:
                bands.append(src.read(1))
        with rasterio.open(split_dir / "train_gt" / f"gt_{name}.TIF") as src:
            mask = src.read(1) == 255
    return np.stack(bands), mask


def _expected(patches: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    images = [image for image, _ in patches]
    valid = [np.any(image != 0, axis=0) for image in images]
    cloud = [mask & v for (_, mask), v in zip(patches, valid, strict=True)]
    pixels = np.concatenate([im[:, v] for im, v in zip(images, valid, strict=True)], axis=1)
    pixels = pixels.astype(np.float64) / 65535
    return {
        "mean": pixels.mean(axis=1),
        "std": pixels.std(axis=1),
        "n": pixels.shape[1],
        "cloud_share": sum(int(c.sum()) for c in cloud) / sum(int(v.sum()) for v in valid),
        "empty": sum(not v.any() for v in valid),
        "cloud_free": sum(v.any() and not c.any() for c, v in zip(cloud, valid, strict=True)),
    }


def _check_report(out: Path, expected: dict, n_patches: int) -> dict:
    for name in ("summary.md", "summary.json", "band_stats.json"):
        assert (out / name).is_file(), name
    stats = json.loads((out / "band_stats.json").read_text())
    assert stats["bands"] == list(BANDS)
    assert stats["scale"] == pytest.approx(1 / 65535, rel=1e-12)
    np.testing.assert_allclose(stats["mean"], expected["mean"], rtol=1e-6)
    np.testing.assert_allclose(stats["std"], expected["std"], rtol=1e-6)
    assert stats["n_pixels"] == expected["n"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_patches"] == n_patches
    assert summary["n_empty"] == expected["empty"]
    assert summary["n_cloud_free"] == expected["cloud_free"]
    assert summary["cloud_share"] == pytest.approx(expected["cloud_share"], rel=1e-12)
    assert sum(summary["cloud_fraction_histogram"]["counts"]) == n_patches - expected["empty"]
    with Image.open(out / "cloud_fraction_hist.png") as hist:
        assert hist.format == "PNG" and hist.size == (640, 400)
    with Image.open(out / "samples.png") as grid:
        assert grid.format == "PNG" and grid.mode == "RGB"
        assert grid.size[0] in (192, 384, 576, 768) and grid.size[1] % (192 + 16) == 0
        assert np.asarray(grid).std() > 10  # a picture, not a blank sheet
    assert "cloud share of valid pixels" in (out / "summary.md").read_text()
    return summary


def test_eda_on_the_real_sample(sample, tmp_path):
    result = _eda([str(sample), "--out", str(tmp_path / "eda")])
    assert result.exit_code == 0, result.output
    split_dir = sample / "38-Cloud_training"
    names = [line.strip() for line in (split_dir / "training_patches_38-Cloud.csv").open()][1:]
    names = [n for n in names if n]
    patches = [_read_patch_directly(split_dir, n) for n in names]
    expected = _expected(patches)
    assert expected["empty"] == 3
    summary = _check_report(tmp_path / "eda", expected, n_patches=12)
    assert len(summary["per_scene"]) == 12 and len(summary["samples"]) == 9


def test_eda_on_the_fake_dataset(fake, tmp_path):
    out = tmp_path / "eda"
    result = _eda([str(fake.root), "--out", str(out), "--samples", "6"])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    names = fake.names["train"]
    summary = _check_report(out, _expected([fake.patches[n] for n in names]), len(names))
    assert len(summary["samples"]) == 6
    for scene in summary["per_scene"]:
        bands, cloud = fake.scenes[scene["scene"]]
        valid = np.any(bands != 0, axis=0)
        assert scene["valid_pixels"] == int(valid.sum())
        assert scene["cloud_share"] == pytest.approx((cloud & valid).sum() / valid.sum())


def test_eda_of_a_split_without_ground_truth(fake, tmp_path):
    summary = run_eda(fake.root, tmp_path / "eda", split="test", samples=2)
    assert summary["cloud_share"] is None and not summary["has_ground_truth"]
    files = {p.name for p in (tmp_path / "eda").iterdir()}
    assert files == {"band_stats.json", "samples.png", "summary.json", "summary.md"}
    assert "no patch ground truth" in (tmp_path / "eda" / "summary.md").read_text()


def test_histogram_falls_back_to_pillow_without_matplotlib(fake, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now raises ImportError
    summary = run_eda(fake.root, tmp_path / "eda", samples=0)
    assert summary["plots"] == "pillow"
    with Image.open(tmp_path / "eda" / "cloud_fraction_hist.png") as hist:
        assert hist.size == (640, 400)
    assert not (tmp_path / "eda" / "samples.png").exists()
    assert "drawn with pillow" in (tmp_path / "eda" / "summary.md").read_text()


def test_existing_out_is_refused_and_left_intact(fake, tmp_path):
    out = tmp_path / "eda"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _eda([str(fake.root), "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {out} exists; pass --overwrite to replace it"
    ]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"
    result = _eda([str(fake.root), "--out", str(out), "--overwrite", "--samples", "0"])
    assert result.exit_code == 0, result.output
    assert not (out / "keep.txt").exists() and (out / "summary.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["eda"]  # no temporary left behind


@pytest.mark.parametrize("breakage", sorted(fake_cloud38.BREAKAGES))
def test_bad_input_is_one_line_and_exit_1(tmp_path, breakage):
    split_dir = fake_cloud38.write_one_patch_dataset(tmp_path / "ds")
    culprit = fake_cloud38.BREAKAGES[breakage](split_dir)
    result = _eda([str(tmp_path / "ds"), "--out", str(tmp_path / "eda")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert str(culprit) in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "eda").exists()


def test_not_a_dataset_is_one_line(tmp_path):
    result = _eda([str(tmp_path), "--out", str(tmp_path / "eda")])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path}: not a 38-Cloud dataset")
    assert len(result.output.strip().splitlines()) == 1


def test_help_has_an_example():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "cloudseg-eda data/38-Cloud --out" in result.output


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=8).filter(lambda s: sum(s) > 1),
    seed=st.integers(0, 1000),
)
@settings(max_examples=40, deadline=None)
def test_band_moments_stream_equals_numpy(sizes, seed):
    rng = np.random.default_rng(seed)
    # A large common offset is where a naive sum of squares loses every digit.
    chunks = [1e4 + rng.random((4, n)) for n in sizes]
    moments = BandMoments()
    for chunk in chunks:
        moments.add(chunk)
    everything = np.concatenate(chunks, axis=1)
    assert moments.n == everything.shape[1]
    np.testing.assert_allclose(moments.mean, everything.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(moments.std, everything.std(axis=1), rtol=1e-6)
