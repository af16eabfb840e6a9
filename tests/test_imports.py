"""The base install (engine and data) must run without torch: a deployment box has none."""

import subprocess
import sys

BASE_MODULES = [
    "cloudseg.bands",
    "cloudseg.card",
    "cloudseg.rle",
    "cloudseg.metrics",
    "cloudseg.data.cloud38",
    "cloudseg.data.landsat",
    "cloudseg.data.synthetic_cli",
    "cloudseg.eda_cli",
    "cloudseg.info_cli",
    "cloudseg.eval_cli",
    "cloudseg.train.augment",
    "cloudseg.evaluate",
    "cloudseg.engine",
    "cloudseg.engine.cli",
    "cloudseg.engine.run",
    "cloudseg.engine.pipeline",
    "cloudseg.engine.backend",
    "cloudseg.engine.registry",
    "cloudseg.engine.ort_backend",
    "cloudseg.engine.summary",
    "cloudseg.home",
    "cloudseg.scene",
    "cloudseg.quicklook",
    "cloudseg.data.qa",
    "cloudseg.data.sources",
    "cloudseg.engine.outputs",
    "cloudseg.data.cloud38_scene",
]


def test_base_modules_import_no_torch_nor_fastai():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in BASE_MODULES)
        + "print(sorted(m for m in ('torch', 'fastai', 'onnx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
