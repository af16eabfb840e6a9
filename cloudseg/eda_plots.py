"""Pictures for the EDA report: false-colour patches with mask outlines, and a histogram.

The sample grid is drawn with Pillow (a base dependency). The histogram uses matplotlib when it
is installed (the ``[train]`` extra) and falls back to a plain Pillow bar chart otherwise, so
``cloudseg-eda`` works on an engine-only install.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cloudseg.bands import valid_pixels
from cloudseg.quicklook import false_colour_rgb

OUTLINE_RGB = (255, 255, 0)
TILE = 192
CAPTION = 16


def outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``(H, W)`` bool ``mask`` with a 4-neighbour outside it; the patch edge is not."""
    padded = np.pad(mask, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def false_colour(image: np.ndarray, mask: np.ndarray | None, size: int = TILE) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 picture of a ``(4, H, W)`` uint16 patch, mask outlined.

    No-data pixels stay black. The outline is drawn after downsampling so that it stays visible
    at the tile's size.
    """
    valid = valid_pixels(image)
    rgb = false_colour_rgb(image, valid)
    picture = np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BOX)).copy()
    if mask is not None:
        small_mask, small_valid = _shrink_bool(mask, size), _shrink_bool(valid, size)
        # No-data counts as inside the mask, so only cloud edges against clear land are drawn,
        # not the scene's black margin.
        picture[outline(small_mask | ~small_valid) & small_mask] = OUTLINE_RGB
    return picture


def _shrink_bool(a: np.ndarray, size: int) -> np.ndarray:
    small = Image.fromarray(a.astype(np.uint8) * 255).resize((size, size), Image.Resampling.NEAREST)
    return np.asarray(small) > 0


def sample_grid(tiles: Sequence[tuple[np.ndarray, str]], columns: int = 4) -> Image.Image:
    """Tiles (``(S, S, 3)`` uint8 and a caption) laid out in a grid with captions below."""
    size = tiles[0][0].shape[0]
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * size, rows * (size + CAPTION)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, caption) in enumerate(tiles):
        x, y = (i % columns) * size, (i // columns) * (size + CAPTION)
        sheet.paste(Image.fromarray(tile), (x, y))
        draw.text((x + 3, y + size + 2), caption, fill="black")
    return sheet


def histogram_png(fractions: Sequence[float], edges: np.ndarray, path: Path) -> str:
    """Draw the histogram of per-patch cloud fractions to ``path``.

    Returns:
        ``"matplotlib"`` or ``"pillow"``: the library that drew it.
    """
    counts, _ = np.histogram(np.asarray(fractions, dtype=float), bins=edges)
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        _histogram_pillow(counts, edges, path)
        return "pillow"
    # Figure without pyplot: no global backend state, no GUI, safe in threads and tests.
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.add_subplot()
    ax.bar(edges[:-1] * 100, counts, width=np.diff(edges) * 100, align="edge", edgecolor="black")
    ax.set_xlabel("cloud share of valid pixels in a patch (%)")
    ax.set_ylabel("non-empty patches")
    ax.set_title(f"Cloud fraction per patch (n = {len(fractions)})")
    ax.set_xlim(0, 100)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, format="png")
    return "matplotlib"


def _histogram_pillow(counts: np.ndarray, edges: np.ndarray, path: Path) -> None:
    width, height, margin = 640, 400, 50
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    top = max(int(counts.max()), 1) if counts.size else 1
    bar_w = plot_w / max(len(counts), 1)
    for i, count in enumerate(counts):
        x0 = margin + i * bar_w
        y0 = height - margin - plot_h * count / top
        draw.rectangle([x0, y0, x0 + bar_w - 1, height - margin], fill=(70, 130, 180))
    draw.line([margin, height - margin, width - margin, height - margin], fill="black")
    draw.line([margin, margin, margin, height - margin], fill="black")
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = margin + plot_w * (frac - edges[0]) / (edges[-1] - edges[0])
        draw.text((x - 8, height - margin + 5), f"{frac * 100:.0f}%", fill="black")
    draw.text((5, margin - 20), f"max {top} patches", fill="black")
    draw.text((margin, height - 20), "cloud share of valid pixels per patch", fill="black")
    draw.text((margin, 10), f"Cloud fraction per patch (n = {int(counts.sum())})", fill="black")
    sheet.save(path, format="PNG")
