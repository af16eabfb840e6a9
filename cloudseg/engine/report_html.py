"""The run report for people: ``cloudseg-run.html``, one page that needs nothing but itself.

``cloudseg-run.json`` and ``.csv`` are for programs; a person checking a run of many scenes wants
to see them: the model and options, each scene's preview, cloud cover, status and time, why the
failed ones failed, how cloud cover spread, and what the run cost. The page is meant to be mailed,
archived or opened on a machine without network, so it holds everything inline: thumbnails as
base64 data URIs, the histogram as SVG, the style in the page; no script and no URL at all.
Every string that came from the run (paths, ids, errors, options) is escaped.

The page is rendered from the same document as the JSON export, plus the scenes' summaries and
previews beside their masks; only :class:`cloudseg.engine.report.RunReport` writes it, at the
end of a run of more than one scene (a single scene has its preview and summary already).
"""

from __future__ import annotations

import base64
import io
import json
import statistics
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from cloudseg.atomic import atomic_path

REPORT_HTML = "cloudseg-run.html"
#: Longest side of a thumbnail (px): the page stays small (a preview is up to 1,024 px).
THUMB_SIDE = 256
#: Scenes given a thumbnail at most (about 30 kB each in base64), so the page of an archive of
#: 20,000 scenes stays one a browser opens (~25 MB; the scenes past it are listed without).
MAX_THUMBNAILS = 500
#: Cloud-cover histogram bins, percent: [0, 10), [10, 20), ..., [90, 100].
BIN_WIDTH = 10
STAGES = ("read", "infer", "blend", "write")

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{margin:0 0 4px}h2{margin:24px 0 8px}.muted{color:#666}
table{border-collapse:collapse}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{width:260px;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card img{display:block;max-width:256px;max-height:256px;margin-bottom:6px;background:#000}
.none{height:64px;display:flex;align-items:center;justify-content:center;background:#eee;
color:#888;margin-bottom:6px}
.id{font-weight:600;word-break:break-all}.spec{font-size:12px;color:#666;word-break:break-all}
.status{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px}
.done{background:#2e7d32}.skipped{background:#607d8b}.failed{background:#c62828}
.error{color:#c62828;word-break:break-word}
"""


def write_html(
    folder: Path, doc: Mapping[str, Any], model: Mapping[str, Any], wall: float | None = None
) -> Path:
    """Write ``folder / cloudseg-run.html`` atomically (a reader never sees half a page)."""
    path = Path(folder) / REPORT_HTML
    page = render_html(doc, model, wall)
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render_html(doc: Mapping[str, Any], model: Mapping[str, Any], wall: float | None = None) -> str:
    """The page for ``doc`` (the JSON export: options, counts, scenes) and ``model`` (name,
    file, ...); ``wall`` is the run's time in seconds, if known."""
    if not isinstance(model, Mapping):  # a run key that names the model only
        model = {"name": model}
    scenes: Sequence[Mapping[str, Any]] = doc["scenes"]
    done = [s for s in scenes if s["status"] == "done"]
    summaries = [_summary(s) for s in done]
    # The backend is the same for every scene of a run: the first summary's says which.
    backend = next((s["backend"] for s in summaries if s and "backend" in s), {})
    covers = [s["cloud_cover"] for s in done if s.get("cloud_cover") is not None]
    thumbs = MAX_THUMBNAILS
    cards = []
    for scene in scenes:
        preview = _output(scene, "_preview.png") if scene["status"] != "failed" else None
        uri = _thumbnail(preview) if preview is not None and thumbs > 0 else None
        thumbs -= uri is not None
        cards.append(_card(scene, uri))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>cloudseg run: {_e(_counts_text(doc['counts']))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>cloudseg run</h1>",
        f'<p class="muted">started {_e(doc.get("started"))}, updated {_e(doc.get("updated"))}</p>',
        "<h2>Model</h2>",
        _table({"name": model.get("name"), "file": model.get("file"), **model, **backend}),
        "<h2>Totals</h2>",
        _table(_totals(scenes, done, summaries, wall)),
        f"<h2>Cloud cover of the {len(covers)} scenes done</h2>",
        histogram_svg(covers),
        f"<h2>Scenes ({len(scenes)})</h2>",
        '<div class="cards">',
        *cards,
        "</div>",
        "<h2>Options</h2>",
        _table(doc.get("options", {})),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def histogram_svg(covers: Sequence[float], width: int = 520, height: int = 220) -> str:
    """Inline SVG bars of scenes per :data:`BIN_WIDTH` % of cloud cover (100 % in the last)."""
    bins = 100 // BIN_WIDTH
    counts = [0] * bins
    for cover in covers:
        counts[min(int(cover // BIN_WIDTH), bins - 1)] += 1
    left, base, bar = 30, height - 30, (width - 40) / bins
    scale = (base - 20) / max(*counts, 1)
    text = '<text font-size="11" text-anchor="{}" x="{:.1f}" y="{:.1f}">{}</text>'
    out = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="cloud cover histogram">',
        f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#444"/>',
    ]
    for i, n in enumerate(counts):
        x, h, lo = left + i * bar, n * scale, i * BIN_WIDTH
        out.append(
            f'<rect x="{x + 2:.1f}" y="{base - h:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" '
            f'fill="#4a90c2"><title>{lo}-{lo + BIN_WIDTH} %: {n} scenes</title></rect>'
        )
        out.append(text.format("middle", x, base + 14, lo))
        if n:
            out.append(text.format("middle", x + bar / 2, base - h - 4, n))
    out.append(text.format("end", width - 10, base + 14, "100 %") + "</svg>")
    return "\n".join(out)


def _thumbnail(preview: Path) -> str | None:
    """``preview`` shrunk to :data:`THUMB_SIDE` as a JPEG data URI, or None if it cannot be
    read (gone, or not an image). JPEG: 256 px false colour of the real reference tiles took
    ~23 kB at quality 85, PNG ~145 kB."""
    try:
        with Image.open(preview) as image:
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, "JPEG", quality=85)
    except OSError:  # PIL's UnidentifiedImageError included
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _card(scene: Mapping[str, Any], uri: str | None) -> str:
    """One scene: thumbnail (or why none), id, spec, status, cloud cover, seconds, error."""
    status = str(scene["status"])
    if uri is not None:
        picture = f'<img src="{_e(uri)}" alt="preview of {_e(scene.get("scene_id"))}">'
    else:
        picture = f'<div class="none">{"failed" if status == "failed" else "no preview"}</div>'
    facts = f'<span class="status {_e(status)}">{_e(status)}</span>'
    if status != "failed":
        facts += f" cloud {_percent(scene.get('cloud_cover'))}"
        facts += f" &middot; {_seconds(scene.get('seconds'))}"
    lines = [
        '<div class="card">',
        picture,
        f'<div class="id">{_e(scene.get("scene_id") or scene["scene"])}</div>',
        f'<div class="spec">{_e(scene["scene"])}</div>',
        facts,
    ]
    if scene.get("error"):
        lines.append(f'<div class="error">{_e(scene["error"])}</div>')
    return "\n".join([*lines, "</div>"])


def _totals(
    scenes: Sequence[Mapping[str, Any]],
    done: Sequence[Mapping[str, Any]],
    summaries: Sequence[dict[str, Any] | None],
    wall: float | None,
) -> dict[str, Any]:
    """Counts and times: scenes overlap, so the scenes' seconds add up to more than the run's."""
    seconds = [s["seconds"] for s in done if s.get("seconds") is not None]
    stages = {k: sum(s.get("seconds", {}).get(k, 0.0) for s in summaries if s) for k in STAGES}
    counts = {k: sum(s["status"] == k for s in scenes) for k in ("done", "skipped", "failed")}
    return {
        "scenes": f"{len(scenes)}: {_counts_text(counts)}",
        "run time": _seconds(wall),
        "seconds of the scenes done, summed": _seconds(sum(seconds) if seconds else None),
        "per scene done: median / mean / max": " / ".join(
            _seconds(f(seconds) if seconds else None)
            for f in (statistics.median, statistics.mean, max)
        ),
        "stages, summed (read and write over threads)": ", ".join(
            f"{k} {_seconds(v)}" for k, v in stages.items()
        ),
    }


def _summary(scene: Mapping[str, Any]) -> dict[str, Any] | None:
    """The scene's ``<id>_summary.json`` (per-stage seconds, provider), if it can be read."""
    path = _output(scene, "_summary.json")
    try:
        return json.loads(path.read_text()) if path is not None else None
    except (OSError, ValueError):
        return None


def _output(scene: Mapping[str, Any], suffix: str) -> Path | None:
    return next((Path(p) for p in scene.get("outputs") or () if str(p).endswith(suffix)), None)


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_text(v))}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {k}" for k, n in counts.items())


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _e(value: Any) -> str:
    """Escaped text for an element or a quoted attribute."""
    return escape("" if value is None else str(value), quote=True)
