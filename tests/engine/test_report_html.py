"""The HTML run report: a run of three scenes, one of which fails, leaves ``cloudseg-run.html``
that names every scene and the failure, holds its thumbnails inline and refers to nothing
outside itself, and that a real browser (headless Chromium) draws and reads; a single scene
gets none."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_remote import _local_scenes, models, run_cli  # noqa: F401  (models: a fixture)

from cloudseg.engine.report import REPORT_JSON, RunReport, SceneEntry
from cloudseg.engine.report_html import REPORT_HTML

BROWSER_SECONDS = 60


class Page(HTMLParser):
    """The text of a page and every URL it refers to (``src`` and ``href``)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.text: list[str] = []
        self.urls: list[str] = []
        self.images: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") and value is not None:
                self.urls.append(value)
                if tag == "img":
                    self.images.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def words(self) -> str:
        return " ".join(" ".join(self.text).split())


@pytest.fixture(scope="module")
def run_of_three(models, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # noqa: F811
    """Two synthetic scenes around one that does not exist, under --keep-going.

    Returns:
        ``(report folder, the exported JSON report)``.
    """
    root = tmp_path_factory.mktemp("html-run")
    first, last = _local_scenes(root, 2)
    out = root / "out"
    code, output = run_cli(first, root / "missing-scene", last, "--model", models["dn"],
                           "--out", out, "--tile", "64", "--keep-going")  # fmt: skip
    assert code == 1 and "1 of 3 scenes failed" in output, output
    report = json.loads((out / REPORT_JSON).read_text())
    assert [e["status"] for e in report["scenes"]] == ["done", "failed", "done"]
    return out, report


def _names(scene: dict) -> str:
    """What the page must show for a scene: its id, or its spec where it never opened."""
    return scene["scene_id"] or scene["scene"]


def test_the_page_names_every_scene_and_refers_to_nothing_outside(run_of_three) -> None:
    out, report = run_of_three
    html = (out / REPORT_HTML).read_text(encoding="utf-8")
    page = Page(html)
    for scene in report["scenes"]:
        assert _names(scene) in page.words, f"{_names(scene)} is not on the page"
    (failed,) = [s for s in report["scenes"] if s["status"] == "failed"]
    assert "missing-scene" in failed["error"] and failed["error"] in page.words
    external = [u for u in page.urls if not u.startswith("data:")]
    assert not external, f"the page refers outside itself: {external}"
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower()
    done = [s for s in report["scenes"] if s["status"] == "done"]
    assert len(page.images) == len(done), "one thumbnail per scene done, none for the failed"
    for uri in page.images:
        assert uri.startswith("data:image/jpeg;base64,")
    assert "<svg" in html and html.count("<rect") == 10  # the cloud-cover histogram's bins
    assert len(html) < 200_000


def _browser() -> str:
    """Debian's chromium: CI installs it (a failure there), elsewhere the test is skipped."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: .ci/run must install Debian's chromium")
        pytest.skip("chromium is not installed (CI installs it)")
    return found


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
               page.resolve().as_uri()]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_SECONDS)
    assert done.returncode == 0, f"chromium exited {done.returncode}: {done.stderr[-2000:]}"
    return done


def test_a_browser_draws_the_page_and_reads_every_scene(run_of_three, tmp_path) -> None:
    out, report = run_of_three
    page = out / REPORT_HTML
    shot = tmp_path / "page.png"
    _chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,1600")
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    # Text alone draws a few hundred shades; the thumbnails, thousands.
    assert colours > 2000 and pixels.std() > 20, f"a blank page? {colours} colours"
    dom = _chromium(page, tmp_path / "profile", "--dump-dom").stdout
    words = Page(dom).words
    for scene in report["scenes"]:
        assert _names(scene) in words, f"{_names(scene)} is not in the browser's DOM"


def test_one_scene_gets_no_page_and_two_do(tmp_path) -> None:
    for specs in (["a"], ["a", "b"]):
        folder = tmp_path / str(len(specs))
        report = RunReport(folder, {"model": "m.onnx"}, specs)
        for spec in specs:
            report.record(SceneEntry(spec, "failed", error=f"{spec}: <does not exist>"))
        report.close()
        assert (folder / REPORT_JSON).is_file()
        assert (folder / REPORT_HTML).is_file() == (len(specs) > 1)
    html = (tmp_path / "2" / REPORT_HTML).read_text()
    assert "b: &lt;does not exist&gt;" in html and "<does not exist>" not in html
