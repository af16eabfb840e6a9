"""Peak memory does not grow with scene height: the engine holds a band of rows, not the scene.

Each run is a fresh subprocess reporting its own peak RSS, with GDAL's block cache capped below
the size of either scene so that both fill it, and a small preview (its size falls with height
at a fixed width). The tall scene has 24 M pixels more than the short one; the growth allowed is
0.4 byte per added pixel (9 MB; repeated runs of one scene differ by up to 5 MB here), so one
scene-sized uint8 array (24 MB more for the tall scene: a kept mask, say) fails the test, as
would a float32 accumulator (96 MB). Checked by planting such an array in the writer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from onnx_models import B1, W1, card_for, conv_model
from rasterio.transform import from_origin
from rasterio.windows import Window

WIDTH = 2000
SHORT, TALL = 2000, 14000
#: Allowed growth of peak RSS per pixel the tall scene adds (bytes).
BYTES_PER_ADDED_PIXEL = 0.4
#: GDAL block cache for these runs (MB): below either scene's 32 / 224 MB of band data.
CACHE_MB = 16

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
    """A 4-band uint16 GeoTIFF written in row blocks (it never exists whole in memory): a smooth
    field with noise, so that, like real bands, it barely compresses, and a cache of file bytes
    (GDAL's ``VSI_CACHE``, 64 MiB a file, once set for COGs) grows with the scene as it did."""
    profile = dict(driver="GTiff", width=WIDTH, height=height, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=from_origin(500000, 4600000, 30, 30),
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate")  # fmt: skip
    x = np.linspace(0, 6 * np.pi, WIDTH, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for row0 in range(0, height, 512):
            n = min(512, height - row0)
            y = np.arange(row0, row0 + n, dtype=np.float32)[:, None] / 300
            field = 8000 + 6000 * np.sin(x[None] + y)
            noise = np.random.default_rng(row0).integers(0, 4000, (4, n, WIDTH))
            ds.write((field[None] + noise).astype(np.uint16), window=Window(0, row0, WIDTH, n))
    return path


def peak_rss_mib(stack: Path, model: Path, out: Path) -> float:
    # A small preview: its size falls with height at a fixed width (longest side 1,024 px),
    # which would hide growth elsewhere.
    args = [str(stack), "--model", str(model), "--out", str(out), "--tile", "256", "-q",
            "--provider", "cpu", "--preview-size", "64"]  # fmt: skip
    env = {**os.environ, "GDAL_CACHEMAX": str(CACHE_MB)}
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True,
                          check=True, env=env)  # fmt: skip
    assert (out / f"{stack.stem}_cloudmask.tif").is_file(), done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_kib"] / 1024


def test_peak_rss_flat_in_scene_height(tmp_path):
    model = conv_model(tmp_path / "conv.onnx", W1[None] * 1e-4, B1, card_for(tile=256))
    short = peak_rss_mib(write_tall_stack(tmp_path / "short.tif", SHORT), model, tmp_path / "a")
    tall = peak_rss_mib(write_tall_stack(tmp_path / "tall.tif", TALL), model, tmp_path / "b")
    added = (TALL - SHORT) * WIDTH
    allowed = BYTES_PER_ADDED_PIXEL * added / 2**20
    print(f"peak RSS: {SHORT} rows {short:.1f} MiB, {TALL} rows {tall:.1f} MiB "
          f"(growth {tall - short:.1f} MiB, allowed {allowed:.1f} MiB)")  # fmt: skip
    assert tall - short <= allowed
