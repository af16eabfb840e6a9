"""Peak memory does not grow with scene height: the engine holds a band of rows, not the scene.

Each run is a fresh subprocess reporting its own peak RSS. The scenes are wide enough that one
scene-sized float32 array (what a whole-scene accumulator would cost) would add about 70 MB to
the taller one, well above the 10 % allowed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from onnx_models import B1, W1, card_for, conv_model
from rasterio.transform import from_origin
from rasterio.windows import Window

WIDTH = 3000

RUNNER = """
import json, resource, sys
from cloudseg.engine.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps({"peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_tall_stack(path: Path, height: int) -> Path:
    """A smooth 4-band uint16 GeoTIFF written in row blocks (it never exists whole in memory)."""
    profile = dict(driver="GTiff", width=WIDTH, height=height, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=from_origin(500000, 4600000, 30, 30),
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    x = np.linspace(0, 6 * np.pi, WIDTH, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for row0 in range(0, height, 512):
            n = min(512, height - row0)
            y = np.arange(row0, row0 + n, dtype=np.float32)[:, None] / 300
            field = (8000 + 6000 * np.sin(x[None] + y)).astype(np.uint16)
            ds.write(np.stack([field] * 4), window=Window(0, row0, WIDTH, n))
    return path


def peak_rss_mib(stack: Path, model: Path, out: Path) -> float:
    args = [str(stack), "--model", str(model), "--out", str(out), "--tile", "256", "-q"]
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert (out / f"{stack.stem}_cloudmask.tif").is_file(), done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"] / 1024


def test_peak_rss_flat_in_scene_height(tmp_path):
    model = conv_model(tmp_path / "conv.onnx", W1[None] * 1e-4, B1, card_for(tile=256))
    short = peak_rss_mib(write_tall_stack(tmp_path / "short.tif", 3000), model, tmp_path / "a")
    tall = peak_rss_mib(write_tall_stack(tmp_path / "tall.tif", 6000), model, tmp_path / "b")
    print(f"peak RSS: 3000 rows {short:.0f} MiB, 6000 rows {tall:.0f} MiB")
    assert tall <= short * 1.10
