"""PyTorch -> ONNX export of the cloud UNets: checks, parity proof, fp16 and int8 variants.

Needs the ``[train]`` extra (torch, onnx, onnxscript). The API is re-exported lazily, so that
importing the package costs nothing until a name is used::

    from cloudseg.export import ExportConfig, export
    files = export(ExportConfig("r34", random_init=True, tile=64, out=Path("r34.onnx")))

Modules: :mod:`~cloudseg.export.onnx_export` (exporter, graph checks), :mod:`~.parity`,
:mod:`~.fp16`, :mod:`~.quantise` (int8), :mod:`~.samples` (check and calibration patches),
:mod:`~.sources` (run, checkpoint or random init), :mod:`~.pipeline` (one export, atomic files),
:mod:`~.cli` (``cloudseg-export``). Default file names come from :mod:`cloudseg.home`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ExportConfig": "pipeline",
    "Exported": "pipeline",
    "export": "pipeline",
    "to_onnx": "onnx_export",
    "check_file": "onnx_export",
    "Parity": "parity",
    "Agreement": "parity",
    "check_parity": "parity",
    "mask_agreement": "parity",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"cloudseg.export.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cloudseg.export' has no attribute {name!r}")
