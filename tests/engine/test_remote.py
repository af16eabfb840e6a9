"""Scenes over HTTP and archives of scenes: STAC items and COG URLs give the masks of their local
copies, a server that drops connections is retried then reported in one line, manifests with
--skip-existing and --keep-going, the run report, stale temporaries, and overlapped scenes.

A real HTTP server (``tests/helpers/range_server.py``, its own process) on 127.0.0.1 serves COGs
of synthetic scenes and STAC items pointing at them; nothing else is contacted.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from onnx_models import B1, W1, card_for, conv_model
from range_server import start
from stac_items import to_cogs, write_item

from cloudseg.card import InputTransform
from cloudseg.data.synthetic import SceneSpec, make_scene, random_spec
from cloudseg.data.synthetic_level2 import write_level2_folder
from cloudseg.data.synthetic_write import write_scene_folder
from cloudseg.engine.cli import main
from cloudseg.export.sources import GENERIC_MEAN, GENERIC_STD

FLAVOURS = ("stac-1.0", "stac-1.1", "stac-0.7")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of COG scenes (Level-1, Level-2, a 4-band stack) to serve."""
    root = tmp_path_factory.mktemp("www")
    for name, level, seed in (("l1", 1, 31), ("l2", 2, 32)):
        synthetic = make_scene(SceneSpec(seed=seed, height=230, width=250, cloud_fraction=0.35))
        folder = root / name
        (write_level2_folder if level == 2 else write_scene_folder)(synthetic, folder)
        to_cogs(folder)
    synthetic = make_scene(SceneSpec(seed=33, height=200, width=180))
    profile = dict(
        driver="GTiff",
        width=180,
        height=200,
        count=4,
        dtype="uint16",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(5e5, 4.6e6, 30, 30),
    )
    with rasterio.open(root / "stack.tif", "w", **profile) as ds:  # fmt: skip
        ds.write(synthetic.bands)
    shutil.copy(root / "stack.tif", root / "stack-local.tif")
    return root


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One-conv models reading Level-1 DN and surface reflectance."""
    folder = tmp_path_factory.mktemp("models")
    dn = dataclasses.replace(
        card_for(tile=64), transform=InputTransform(1 / 65535, 0.0, GENERIC_MEAN, GENERIC_STD)
    )
    sr = dataclasses.replace(dn, value_kind="surface_reflectance", name="test-sr",
                             transform=InputTransform(1.0, 0.0, (0.15, 0.15, 0.12, 0.3),
                                                      (0.1,) * 4))  # fmt: skip
    return {
        "dn": conv_model(folder / "dn.onnx", W1[None], B1, dn),
        "sr": conv_model(folder / "sr.onnx", W1[None], B1, sr),
    }


def run_cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*map(str, args), "-q", "--provider", "cpu"])
    return result.exit_code, result.output


def mask_of(out: Path, scene_id: str | None = None) -> np.ndarray:
    pattern = f"{scene_id}_cloudmask.tif" if scene_id else "*_cloudmask.tif"
    with rasterio.open(next(out.glob(pattern))) as ds:
        return ds.read(1)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_stac_item_over_http_gives_the_mask_of_the_local_copy(served, models, tmp_path, flavour):
    level = "l1" if flavour == "stac-1.0" else "l2"
    model = models["dn" if level == "l1" else "sr"]
    folder = served / level
    with start(served) as base:
        item = write_item(folder, f"{base}/{level}", served / f"{level}-{flavour}.json", flavour,
                          item_id=f"{level}-{flavour}-item")  # fmt: skip
        code, output = run_cli(f"{base}/{item.name}", "--model", model, "--out", tmp_path / "web",
                               "--tile", "64")  # fmt: skip
        assert code == 0, output
    code, output = run_cli(folder, "--model", model, "--out", tmp_path / "disk", "--tile", "64")
    assert code == 0, output
    remote = mask_of(tmp_path / "web", f"{level}-{flavour}-item")  # named by the item's id
    np.testing.assert_array_equal(remote, mask_of(tmp_path / "disk"))
    valid = remote != 255
    assert 0.05 < (remote[valid] == 1).mean() < 0.95  # a mask that varies: equality means much
    summary = json.loads(next((tmp_path / "web").glob("*_summary.json")).read_text())
    assert summary["scene"] == f"{base}/{item.name}"
    local = json.loads(next((tmp_path / "disk").glob("*_summary.json")).read_text())
    assert summary["product"] == local["product"]
    if level == "l2":  # the QA band came over the network too
        assert summary["usgs_qa"] == local["usgs_qa"]
        assert summary["product"].startswith("a Landsat 8 Collection 2 Level-2")


def test_cog_url_gives_the_mask_of_the_local_file(served, models, tmp_path):
    with start(served) as base:
        code, output = run_cli(f"{base}/stack.tif", "--model", models["dn"], "--out",
                               tmp_path / "web", "--tile", "64")  # fmt: skip
        assert code == 0, output
    code, output = run_cli(served / "stack-local.tif", "--model", models["dn"], "--out",
                           tmp_path / "disk", "--tile", "64")  # fmt: skip
    assert code == 0, output
    np.testing.assert_array_equal(mask_of(tmp_path / "web"), mask_of(tmp_path / "disk"))


def test_a_server_dropping_connections_is_retried_then_one_line_names_the_url(
    served, models, tmp_path
):
    log = tmp_path / "requests.log"
    folder = served / "l1"
    with start(served, drop="_B3.TIF", log=log) as base:
        item = write_item(folder, f"{base}/l1", served / "drop.json")
        code, output = run_cli(f"{base}/{item.name}", "--model", models["dn"], "--out",
                               tmp_path / "out", "--tile", "64")  # fmt: skip
    assert code == 1
    (line,) = output.strip().splitlines()
    b3 = next(p.name for p in folder.glob("*_B3.TIF"))
    assert line.startswith(f"Error: {base}/l1/{b3}: failed after 4 tries: ")
    assert line.endswith("connection failed (Remote end closed connection without response)")
    tries = [r for r in log.read_text().splitlines() if b3 in r]
    assert len(tries) >= 4  # opened again after each drop, with a growing delay


def _local_scenes(root: Path, count: int) -> list[Path]:
    folders = []
    for i in range(count):
        synthetic = make_scene(random_spec(40 + i, 144, cloud_fraction=0.3))
        folder = root / f"scene{i}"
        write_scene_folder(synthetic, folder)
        folders.append(folder)
    return folders


def test_manifest_keep_going_reports_the_bad_scene_and_skip_existing_runs_nothing(models, tmp_path):
    *good, spare = _local_scenes(tmp_path, 4)
    bad = spare.rename(tmp_path / "broken")
    band = next(bad.glob("*_B4.TIF"))
    band.write_bytes(band.read_bytes()[:4000])  # truncated: the header survives, pixels do not
    manifest = tmp_path / "scenes.txt"
    manifest.write_text("# an archive\n" + "\n".join(f.name for f in (good[0], bad, *good[1:])))
    out = tmp_path / "out"
    code, output = run_cli(f"@{manifest}", "--model", models["dn"], "--out", out, "--tile", "64",
                           "--keep-going")  # fmt: skip
    assert code == 1
    report = json.loads((out / "cloudseg-run.json").read_text())
    statuses = {Path(e["scene"]).name: e["status"] for e in report["scenes"]}
    assert statuses == {"scene0": "done", "broken": "failed", "scene1": "done", "scene2": "done"}
    failed = next(e for e in report["scenes"] if e["status"] == "failed")
    assert str(band) in failed["error"] and "truncated or corrupt" in failed["error"]
    assert output.strip().splitlines()[-1] == (
        f"Error: 1 of 4 scenes failed; see {out / 'cloudseg-run.json'}"
    )
    with open(out / "cloudseg-run.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows].count("done") == 3 and rows[0]["cloud_cover"]

    manifest.write_text("\n".join(f.name for f in good))
    masks = {p: p.stat().st_mtime_ns for p in out.glob("*_cloudmask.tif")}
    code, output = run_cli(f"@{manifest}", "--model", models["dn"], "--out", out, "--tile", "64",
                           "--skip-existing")  # fmt: skip
    assert code == 0, output
    report = json.loads((out / "cloudseg-run.json").read_text())
    assert [e["status"] for e in report["scenes"]] == ["skipped"] * 3
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_cloudmask.tif")} == masks
    assert "tiles_run" not in output  # no scene was run, so no summary line
    # Other options are other outputs: not skipped, and refused without --overwrite.
    code, output = run_cli(f"@{manifest}", "--model", models["dn"], "--out", out, "--tile", "64",
                           "--skip-existing", "--threshold", "0.3")  # fmt: skip
    assert code == 1 and "made with another model or options" in output


def test_stale_temporaries_of_a_killed_run_are_removed(models, tmp_path):
    (folder,) = _local_scenes(tmp_path, 1)
    out = tmp_path / "out"
    out.mkdir()
    scene_id = next(folder.glob("*_MTL.txt")).name.removesuffix("_MTL.txt")
    stale = [out / f".{scene_id}_cloudmask.tif.0badf00d.part",
             out / f".{scene_id}_preview.png.12345678.part"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"half a file")
    # a killed run's temporary of a scene this run does not mask, and of its report: a run owns
    # its --out, so every temporary a killed run left there goes, whatever that run's options
    stale += [out / ".another_scene_cloudmask.tif.0badf00d.part",
              out / ".cloudseg-run.json.89abcdef.part"]  # fmt: skip
    for path in stale:
        path.write_bytes(b"half a file")
    kept = out / "notes.txt"  # not a temporary: kept
    kept.write_text("mine")
    code, output = run_cli(folder, "--model", models["dn"], "--out", out, "--tile", "64")
    assert code == 0, output
    assert not any(p.exists() for p in stale) and kept.read_text() == "mine"
    assert (out / f"{scene_id}_cloudmask.tif").is_file()


def test_overlapped_scenes_give_what_one_by_one_gives(models, tmp_path):
    folders = _local_scenes(tmp_path, 3)
    for name, extra in (("overlapped", []), ("sequential", ["--sequential"])):
        code, output = run_cli(*folders, "--model", models["dn"], "--out", tmp_path / name,
                               "--tile", "64", *extra)  # fmt: skip
        assert code == 0, output
    for path in (tmp_path / "sequential").glob("*_cloudmask.tif"):
        scene_id = path.name.removesuffix("_cloudmask.tif")
        overlapped = mask_of(tmp_path / "overlapped", scene_id)
        np.testing.assert_array_equal(mask_of(path.parent, scene_id), overlapped)
    report = json.loads((tmp_path / "overlapped" / "cloudseg-run.json").read_text())
    assert report["counts"] == {"done": 3, "skipped": 0, "failed": 0}
