"""``cloudseg-eval scenes``: masks against synthetic truth and 38-Cloud scene gts, in row blocks."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.errors import NotGeoreferencedWarning

from cloudseg.errors import DataError, MissingFileError
from cloudseg.eval_cli import main
from cloudseg.evaluate import evaluate_masks, find_truth, scene_id_of, score_mask
from cloudseg.metrics import Confusion

SID = "LC08_L1TP_000000_20200101_20200101_01_T1"


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = array.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8"
        ) as ds:
            ds.write(array.astype(np.uint8), 1)
    return path


def _expected(mask: np.ndarray, truth: np.ndarray, gt: bool = False) -> Confusion:
    valid = mask != 255 if gt else (mask != 255) & (truth != 255)
    p, t = (mask == 1)[valid], (truth != 0 if gt else truth == 1)[valid]
    return Confusion(
        int((p & t).sum()), int((p & ~t).sum()), int((~p & t).sum()), int((~p & ~t).sum())
    )


def test_known_counts_exact(tmp_path):
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    truth = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    m = _write(tmp_path / f"{SID}_cloudmask.tif", mask)
    t = _write(tmp_path / f"{SID}_cloudmask_truth.TIF", truth)
    c = score_mask(m, t)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 1, 3)


def test_nodata_in_either_is_excluded(tmp_path):
    mask = np.array([[1, 255, 0, 1], [0, 0, 255, 1]])
    truth = np.array([[1, 1, 255, 255], [0, 1, 1, 0]])
    m = _write(tmp_path / f"{SID}_cloudmask.tif", mask)
    t = _write(tmp_path / f"{SID}_cloudmask_truth.TIF", truth)
    c = score_mask(m, t)
    # counted: (0,0) tp; (1,0) tn; (1,1) fn; (1,3) fp
    assert (c.tp, c.fp, c.fn, c.tn) == (1, 1, 1, 1)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunk_boundaries_do_not_change_counts(tmp_path, chunk):
    rng = np.random.default_rng(0)
    mask = rng.choice([0, 1, 255], size=(203, 37), p=[0.45, 0.45, 0.1])
    truth = rng.choice([0, 1, 255], size=(203, 37), p=[0.45, 0.45, 0.1])
    m = _write(tmp_path / f"{SID}_cloudmask.tif", mask)
    t = _write(tmp_path / f"{SID}_cloudmask_truth.TIF", truth)
    rows: list[int] = []
    assert score_mask(m, t, chunk_rows=chunk, progress=rows.append) == _expected(mask, truth)
    assert sum(rows) == 203 and len(rows) == -(-203 // chunk)


@pytest.mark.parametrize("cloud", [1, 255])
def test_38cloud_scene_gt_0_1_or_0_255(tmp_path, cloud):
    rng = np.random.default_rng(1)
    mask = rng.choice([0, 1, 255], size=(50, 40))
    truth = rng.choice([0, cloud], size=(50, 40))
    m = _write(tmp_path / "masks" / f"{SID}_cloudmask.tif", mask)
    _write(
        tmp_path / "38-Cloud_test" / "Entire_scene_gts" / f"edited_corrected_gts_{SID}.TIF", truth
    )
    c = evaluate_masks([m], tmp_path / "38-Cloud_test", chunk_rows=16)[SID]
    assert c == _expected(mask, truth, gt=True)
    assert c.total == int((mask != 255).sum())  # 255 in a gt is cloud, not no data


def test_scene_gt_mixing_1_and_255_is_refused(tmp_path):
    m = _write(tmp_path / f"{SID}_cloudmask.tif", np.zeros((4, 4)))
    t = _write(tmp_path / f"edited_corrected_gts_{SID}.TIF", np.array([[1, 255, 0, 0]] * 4))
    with pytest.raises(DataError, match="both 1 and 255"):
        score_mask(m, t)


def test_truth_folder_lookup_by_scene_id(tmp_path):
    other = "LC08_L1TP_111111_20200101_20200101_01_T1"
    _write(tmp_path / "truths" / SID / f"{SID}_cloudmask_truth.TIF", np.ones((3, 3)))
    _write(tmp_path / "truths" / other / f"{other}_cloudmask_truth.TIF", np.zeros((3, 3)))
    m1 = _write(tmp_path / "out" / f"{SID}_cloudmask.tif", np.ones((3, 3)))
    m2 = _write(tmp_path / "out" / f"{other}_cloudmask.tif", np.ones((3, 3)))
    assert scene_id_of(m1) == SID
    assert find_truth(tmp_path / "truths", SID).parent.name == SID
    result = evaluate_masks([m1, m2], tmp_path / "truths")
    assert result[SID] == Confusion(tp=9)
    assert result[other] == Confusion(fp=9)
    with pytest.raises(MissingFileError, match="no truth for scene nope"):
        find_truth(tmp_path / "truths", "nope")


def test_cli_writes_report_and_prints(tmp_path):
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 0]])
    truth = np.array([[1, 0, 1, 0], [1, 0, 0, 0]])
    m = _write(tmp_path / f"{SID}_cloudmask.tif", mask)
    t = _write(tmp_path / "truth" / f"{SID}_cloudmask_truth.TIF", truth)
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["scenes", str(m), "--truth", str(t), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "mean_over_scenes: jaccard 0.4000" in res.output
    assert "pooled: jaccard 0.4000" in res.output
    data = json.loads((out / "scores.json").read_text())
    assert {k: data["per_scene"][SID][k] for k in ("tp", "fp", "fn", "tn")} == dict(
        tp=2, fp=2, fn=1, tn=3
    )
    lines = (out / "scores.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in lines] == ["scene", SID, "mean", "pooled"]


def test_cli_shape_mismatch_is_one_error_line(tmp_path):
    m = _write(tmp_path / f"{SID}_cloudmask.tif", np.zeros((4, 5)))
    t = _write(tmp_path / f"{SID}_cloudmask_truth.TIF", np.zeros((5, 4)))
    res = CliRunner().invoke(main, ["scenes", str(m), "--truth", str(t), "-q"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert str(m) in lines[0] and str(t) in lines[0]


def test_scene_evaluation_imports_no_torch():
    code = (
        "import sys\nimport cloudseg.eval_cli, cloudseg.evaluate\nprint('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
