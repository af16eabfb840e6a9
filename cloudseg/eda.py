"""Exploratory data analysis of a 38-Cloud-layout dataset.

One pass over the patches measures cloud share (overall, per scene, per patch), empty and
cloud-free patches, and the per-band mean and std of valid pixels of ``dn / 65535`` that training
normalises with (``band_stats.json``). A second, short pass reads the few sample patches drawn.
The report folder appears whole or not at all (:func:`cloudseg.atomic.atomic_path`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cloudseg.atomic import atomic_path
from cloudseg.bands import BANDS, valid_pixels
from cloudseg.data import cloud38, cloud38_read
from cloudseg.data.cloud38 import PatchId
from cloudseg.eda_plots import false_colour, histogram_png, sample_grid
from cloudseg.errors import DataError

#: Model input scale of Level-1 digital numbers (DESIGN.md, pixel values).
DN_SCALE = 1.0 / 65535.0
#: Bin edges of the per-patch cloud-fraction histogram: 20 bins of 5 %.
HIST_EDGES = np.linspace(0.0, 1.0, 21)

BAND_STATS_FILE = "band_stats.json"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
HISTOGRAM_PNG = "cloud_fraction_hist.png"
SAMPLES_PNG = "samples.png"


@dataclass
class BandMoments:
    """Streaming per-band count, mean and sum of squared deviations (Chan et al.'s merge).

    Merging per-patch moments keeps float64 accuracy over millions of pixels without holding
    them, where ``E[x^2] - E[x]^2`` would cancel catastrophically.
    """

    n: int = 0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(len(BANDS)))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(len(BANDS)))

    def add(self, pixels: np.ndarray) -> None:
        """Add ``(B, N)`` float64 pixel values."""
        k = pixels.shape[1]
        if k == 0:
            return
        mean_k = pixels.mean(axis=1)
        m2_k = np.square(pixels - mean_k[:, None]).sum(axis=1)
        total = self.n + k
        delta = mean_k - self.mean
        self.mean = self.mean + delta * (k / total)
        self.m2 = self.m2 + m2_k + np.square(delta) * (self.n * k / total)
        self.n = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per band, ``(B,)`` float64."""
        return np.sqrt(self.m2 / self.n)


@dataclass(frozen=True)
class PatchRecord:
    """What the EDA keeps of one patch: valid and cloud pixel counts."""

    pid: PatchId
    valid: int
    cloud: int | None  # None when the split has no patch ground truth

    @property
    def empty(self) -> bool:
        return self.valid == 0

    @property
    def fraction(self) -> float | None:
        """Cloud share of the patch's valid pixels; None if empty or without ground truth."""
        return None if self.empty or self.cloud is None else self.cloud / self.valid


def measure(
    root: Path, split: str, patches: Sequence[PatchId], progress: bool = False
) -> tuple[list[PatchRecord], BandMoments]:
    """Read every patch once: counts per patch, and band moments of valid ``dn / 65535``."""
    records = []
    moments = BandMoments()
    # leave=False: a failed run ends with one error line, not a half-drawn bar above it.
    for pid in tqdm(patches, desc="patches", unit="patch", disable=not progress, leave=False):
        image, mask = cloud38_read.read_patch(root, split, pid)
        valid = valid_pixels(image)
        moments.add(image[:, valid].astype(np.float64) * DN_SCALE)
        cloud = None if mask is None else int(np.count_nonzero(mask & valid))
        records.append(PatchRecord(pid, int(np.count_nonzero(valid)), cloud))
    return records, moments


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarise(records: Sequence[PatchRecord], moments: BandMoments) -> dict[str, Any]:
    """Counts and shares over patches and scenes, as written to ``summary.json``."""
    has_gt = all(r.cloud is not None for r in records)
    nonempty = [r for r in records if not r.empty]
    valid = sum(r.valid for r in records)
    cloud = sum(r.cloud or 0 for r in records) if has_gt else None
    fractions = [r.fraction for r in nonempty if r.fraction is not None]
    by_scene: dict[str, list[PatchRecord]] = {}
    for r in records:
        by_scene.setdefault(r.pid.scene, []).append(r)
    scenes = []
    for scene, mine in sorted(by_scene.items()):
        s_valid = sum(r.valid for r in mine)
        s_cloud = sum(r.cloud or 0 for r in mine) if has_gt else None
        scenes.append(
            {
                "scene": scene,
                "patches": len(mine),
                "empty": sum(r.empty for r in mine),
                "valid_pixels": s_valid,
                "cloud_pixels": s_cloud,
                "cloud_share": None if s_cloud is None else _share(s_cloud, s_valid),
            }
        )
    counts, _ = np.histogram(fractions, bins=HIST_EDGES)
    return {
        "has_ground_truth": has_gt,
        "n_patches": len(records),
        "n_empty": len(records) - len(nonempty),
        "n_cloud_free": sum(r.cloud == 0 for r in nonempty) if has_gt else None,
        "n_fully_cloudy": sum(r.cloud == r.valid for r in nonempty) if has_gt else None,
        "share_empty": _share(len(records) - len(nonempty), len(records)),
        "share_cloud_free_of_nonempty": (
            _share(sum(r.cloud == 0 for r in nonempty), len(nonempty)) if has_gt else None
        ),
        "valid_pixels": valid,
        "cloud_pixels": cloud,
        "cloud_share": None if cloud is None else _share(cloud, valid),
        "per_scene": scenes,
        "cloud_fraction_histogram": {
            "bin_edges": HIST_EDGES.tolist(),
            "counts": counts.tolist() if has_gt else None,
        },
        "band_stats": band_stats(moments),
    }


def band_stats(moments: BandMoments) -> dict[str, Any]:
    """The ``band_stats.json`` object training normalises with."""
    if moments.n == 0:
        raise DataError("every patch is empty (all bands 0): no valid pixels to measure")
    return {
        "bands": list(BANDS),
        "scale": DN_SCALE,
        "mean": moments.mean.tolist(),
        "std": moments.std.tolist(),
        "n_pixels": moments.n,
    }


def pick_samples(records: Sequence[PatchRecord], n: int) -> list[PatchRecord]:
    """Up to ``n`` non-empty patches spread evenly over the range of cloud fraction."""
    nonempty = sorted(
        (r for r in records if not r.empty), key=lambda r: (r.fraction or 0.0, r.pid.name)
    )
    if n <= 0 or not nonempty:
        return []
    if len(nonempty) <= n:
        return nonempty
    picks = np.unique(np.round(np.linspace(0, len(nonempty) - 1, n)).astype(int))
    return [nonempty[i] for i in picks]


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The human-readable report, ``summary.md``."""
    s = summary
    lines = [
        f"# EDA of {s['data_dir']} ({s['split']} split)",
        "",
        f"- patches: {s['n_patches']} from {len(s['per_scene'])} scenes",
        f"- empty patches (all bands 0): {s['n_empty']} ({_percent(s['share_empty'])})",
    ]
    if s["has_ground_truth"]:
        lines += [
            f"- cloud-free non-empty patches: {s['n_cloud_free']} "
            f"({_percent(s['share_cloud_free_of_nonempty'])} of non-empty)",
            f"- fully cloudy non-empty patches: {s['n_fully_cloudy']}",
            f"- cloud share of valid pixels: {_percent(s['cloud_share'])} "
            f"({s['cloud_pixels']} of {s['valid_pixels']})",
        ]
    else:
        lines.append("- no patch ground truth in this split: cloud statistics are not available")
    lines += ["", "## Per scene", "", "| scene | patches | empty | valid pixels | cloud share |"]
    lines.append("| --- | ---: | ---: | ---: | ---: |")
    for sc in s["per_scene"]:
        lines.append(
            f"| {sc['scene']} | {sc['patches']} | {sc['empty']} | {sc['valid_pixels']} "
            f"| {_percent(sc['cloud_share'])} |"
        )
    bs = s["band_stats"]
    lines += ["", f"## Bands (valid pixels of dn x {bs['scale']:.6g}, n = {bs['n_pixels']})", ""]
    lines += ["| band | mean | std |", "| --- | ---: | ---: |"]
    lines += [
        f"| {b} | {m:.6f} | {d:.6f} |"
        for b, m, d in zip(bs["bands"], bs["mean"], bs["std"], strict=True)
    ]
    lines += ["", "## Figures", ""]
    if HISTOGRAM_PNG in s["files"]:
        lines.append(f"![cloud fraction per patch]({HISTOGRAM_PNG}) (drawn with {s['plots']})")
    if SAMPLES_PNG in s["files"]:
        lines.append(
            f"![samples]({SAMPLES_PNG}) false colour NIR/red/green, 2-98 % stretch, "
            "cloud mask outlined in yellow"
        )
    if not {HISTOGRAM_PNG, SAMPLES_PNG} & set(s["files"]):
        lines.append("none (no ground truth and no samples asked for)")
    return "\n".join(lines) + "\n"


def run_eda(
    data_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    split: str = "train",
    samples: int = 16,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the EDA report of ``split`` of the dataset at ``data_dir`` into the folder ``out``.

    Writes ``summary.md``, ``summary.json``, ``band_stats.json``, ``cloud_fraction_hist.png``
    (when the split has ground truth) and ``samples.png`` (when ``samples`` > 0).

    Returns:
        The summary written to ``summary.json``.
    """
    with atomic_path(out, overwrite=overwrite) as tmp:
        patches = cloud38.list_patches(data_dir, split, check=True)
        if not patches:
            raise DataError(f"{data_dir}: the {split} patch list is empty")
        records, moments = measure(Path(data_dir), split, patches, progress)
        summary = {"data_dir": str(data_dir), "split": split, **summarise(records, moments)}
        tmp.mkdir()
        files = [BAND_STATS_FILE, SUMMARY_JSON, SUMMARY_MD]
        summary["plots"] = None
        if summary["has_ground_truth"]:
            fractions = [r.fraction for r in records if r.fraction is not None]
            summary["plots"] = histogram_png(fractions, HIST_EDGES, tmp / HISTOGRAM_PNG)
            files.append(HISTOGRAM_PNG)
        chosen = pick_samples(records, samples)
        if chosen:
            tiles = []
            for r in chosen:
                image, mask = cloud38_read.read_patch(data_dir, split, r.pid)
                label = r.pid.scene.split("_")[2] if r.pid.scene.count("_") >= 2 else r.pid.scene
                caption = f"{label} r{r.pid.row}c{r.pid.col} " + _percent(r.fraction)
                tiles.append((false_colour(image, mask), caption))
            sample_grid(tiles).save(tmp / SAMPLES_PNG)
            files.append(SAMPLES_PNG)
        summary["samples"] = [r.pid.name for r in chosen]
        summary["files"] = files
        (tmp / BAND_STATS_FILE).write_text(json.dumps(summary["band_stats"], indent=2) + "\n")
        (tmp / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
        (tmp / SUMMARY_MD).write_text(summary_markdown(summary))
    return summary
