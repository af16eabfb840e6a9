"""The run ledger at archive scale: a record costs the same at the 20,000th scene as at the
first, a killed run loses nothing, a resumed run skips finished scenes without opening them,
and --keep-going holds from the very first scene."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from test_remote import _local_scenes, models, run_cli  # noqa: F401  (models: a fixture)

from cloudseg.engine.ledger import LEDGER, Ledger
from cloudseg.engine.report import REPORT_JSON, RunReport, SceneEntry

N = 20_000
CHUNK = 2_000


def _median_record_seconds(report: RunReport, specs: list[str]) -> float:
    seconds = []
    for spec in specs:
        start = time.perf_counter()
        report.record(SceneEntry(spec, "failed", error=f"{spec}: does not exist"))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def test_recording_costs_the_same_at_every_scale(tmp_path: Path) -> None:
    """20,000 failed scenes recorded one by one: the last 2,000 cost what the first 2,000 did
    (the report used to be rewritten whole after each: 3.4x slower at 4,000 than at 1,000).
    First and last chunks are measured in alternating rounds and the best round of each kept,
    so a load spike elsewhere on the machine cannot decide the ratio."""
    specs = [f"/archive/scene_{i:05d}" for i in range(N + 3 * CHUNK)]
    report = RunReport(tmp_path / "big", {"tile": 256}, specs, {"model": "m"})
    _median_record_seconds(report, specs[: N - CHUNK])
    firsts, lasts = [], []
    for k in range(3):
        fresh = RunReport(tmp_path / f"fresh{k}", {"tile": 256}, specs, {"model": "m"})
        firsts.append(_median_record_seconds(fresh, specs[:CHUNK]))
        fresh.close()
        at = N - CHUNK + k * CHUNK  # the 20,000th scene and on
        lasts.append(_median_record_seconds(report, specs[at : at + CHUNK]))
    report.close()
    first, last = min(firsts), min(lasts)
    print(f"median record: first {CHUNK} {first * 1e6:.0f} us, last {CHUNK} {last * 1e6:.0f} us")
    assert last <= 1.5 * first
    exported = json.loads((tmp_path / "big" / REPORT_JSON).read_text())
    assert exported["counts"]["failed"] == N + 2 * CHUNK
    assert exported["scenes"][-1]["scene"] == specs[N + 2 * CHUNK - 1]


def test_a_recorded_scene_survives_the_process(tmp_path: Path) -> None:
    """Each record is committed as it is made: another connection (a resumed run after a kill)
    sees it before the writer closes, or ever exports."""
    report = RunReport(tmp_path, {}, ["a", "b"], {"model": "m"})
    report.record(SceneEntry("a", "done", "A", 1.0, 12.5, outputs=[str(tmp_path / "a.tif")]))
    seen = Ledger(tmp_path).rows()
    assert [(r["scene"], r["status"], r["cloud_cover"]) for r in seen] == [("a", "done", 12.5)]
    assert not (tmp_path / REPORT_JSON).exists()  # not exported yet: the ledger is the state
    report.close()


def test_a_resumed_archive_skips_finished_scenes_without_opening_them(models, tmp_path):  # noqa: F811
    """20,000 scenes the ledger says are done (paths that do not even exist): --skip-existing
    answers from the ledger at under 5 ms a scene, and never opens one (it would fail)."""
    (real,) = _local_scenes(tmp_path, 1)
    out = tmp_path / "out"
    args = ("--model", models["dn"], "--out", out, "--tile", "64", "--skip-existing")
    code, output = run_cli(real, *args)
    assert code == 0, output
    ledger = Ledger(out)
    (done,) = ledger.rows()
    fake = [str(tmp_path / "gone" / f"scene_{i:05d}") for i in range(N)]
    for spec in fake:
        ledger.record(done | {"scene": spec})
    ledger.close()
    manifest = tmp_path / "archive.txt"
    manifest.write_text("\n".join([str(real), *fake]) + "\n")
    start = time.perf_counter()
    code, output = run_cli(f"@{manifest}", *args)
    per_scene = (time.perf_counter() - start) / (N + 1)
    print(f"resumed {N + 1} finished scenes: {per_scene * 1e3:.3f} ms a scene")
    assert code == 0, output
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["counts"] == {"done": 0, "skipped": N + 1, "failed": 0}
    assert per_scene < 0.005


def test_keep_going_holds_from_a_bad_first_scene(models, tmp_path):  # noqa: F811
    """The first scene does not open: with --keep-going the rest are masked (the first that
    opens plans the tiles) and the bad one is in the report; without, one line and exit 1."""
    scenes = _local_scenes(tmp_path, 2)
    manifest = tmp_path / "m.txt"
    manifest.write_text("\n".join([str(tmp_path / "missing"), *map(str, scenes)]) + "\n")
    out = tmp_path / "out"
    code, output = run_cli(f"@{manifest}", "--model", models["dn"], "--out", out, "--tile", "64",
                           "--keep-going")  # fmt: skip
    assert code == 1 and output.strip().splitlines()[-1].startswith("Error: 1 of 3 scenes failed")
    report = json.loads((out / REPORT_JSON).read_text())
    assert [e["status"] for e in report["scenes"]] == ["failed", "done", "done"]
    assert "missing" in report["scenes"][0]["error"]
    assert len(list(out.glob("*_cloudmask.tif"))) == 2 and (out / LEDGER).is_file()
    code, output = run_cli(f"@{manifest}", "--model", models["dn"], "--out", tmp_path / "o2",
                           "--tile", "64")  # fmt: skip
    assert code == 1 and output.count("Error:") == 1 and "missing" in output


def test_ctrl_c_after_every_scene_ended_is_not_an_interrupted_run(models, tmp_path, monkeypatch):  # noqa: F811
    """Ctrl-C landing while the finished run closes (every file written): exit 0, the report
    exported, no "interrupted"."""
    (scene,) = _local_scenes(tmp_path, 1)
    original = RunReport.close
    calls = []

    def interrupted_once(self) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(RunReport, "close", interrupted_once)
    out = tmp_path / "out"
    code, output = run_cli(scene, "--model", models["dn"], "--out", out, "--tile", "64")
    assert code == 0 and "interrupted" not in output.replace("interrupted while closing", "")
    assert json.loads((out / REPORT_JSON).read_text())["counts"]["done"] == 1
    assert len(list(out.glob("*_cloudmask.tif"))) == 1
