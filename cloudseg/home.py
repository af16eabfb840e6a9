"""The cloudseg home folder: where runs, exported models and engine caches live by default.

``$CLOUDSEG_HOME`` (default ``~/.cache/cloudseg``) holds::

    runs/<model>-<UTC time>/     training runs (best.pth, card.json, log.csv, plots)
    models/cloudseg-<model>.onnx exported models (``-fp16`` / ``-int8`` variants beside them)
    trt-cache/                   TensorRT engine and timing caches
    openvino-cache/              OpenVINO's compiled models
    proofs/                      reduced-precision proofs on the real reference scenes

This module is the one owner of those paths. It is part of the torch-free floor every layer may
import (training writes runs, export writes models, the engine reads models and caches), so
nothing above it restates where anything lives.
"""

from __future__ import annotations

import os
from pathlib import Path

from cloudseg.errors import ModelError

HOME_ENV = "CLOUDSEG_HOME"

#: Variants ``cloudseg-export`` can write beside the float32 model.
VARIANTS = ("fp16", "int8")

#: The model ``cloudseg-run`` uses when none is named and the models folder holds several.
DEFAULT_MODEL = "r18"


def cloudseg_home() -> Path:
    """``$CLOUDSEG_HOME``, or ``~/.cache/cloudseg``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "cloudseg").expanduser()


def runs_dir() -> Path:
    """Training runs: ``$CLOUDSEG_HOME/runs``."""
    return cloudseg_home() / "runs"


def models_dir() -> Path:
    """Exported models: ``$CLOUDSEG_HOME/models``."""
    return cloudseg_home() / "models"


def proofs_dir() -> Path:
    """Reduced-precision proofs (:mod:`cloudseg.engine.proof`): ``$CLOUDSEG_HOME/proofs``."""
    return cloudseg_home() / "proofs"


def openvino_cache_dir() -> Path:
    """OpenVINO's compiled-model cache: ``$CLOUDSEG_HOME/openvino-cache`` (keyed by OpenVINO on
    the model, its shape, the device and the precision, so a second run skips the compile)."""
    return cloudseg_home() / "openvino-cache"


def trt_cache_dir() -> Path:
    """TensorRT engine and timing caches: ``$CLOUDSEG_HOME/trt-cache``."""
    return cloudseg_home() / "trt-cache"


def variant_path(path: Path, variant: str | None) -> Path:
    """``models/cloudseg-r18.onnx`` -> ``models/cloudseg-r18-int8.onnx``; ``None`` is fp32."""
    path = Path(path)
    if variant is None:
        return path
    if variant not in VARIANTS:
        raise ModelError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return path.with_name(f"{path.stem}-{variant}{path.suffix}")


def default_model_path(model: str = DEFAULT_MODEL, variant: str | None = None) -> Path:
    """The file ``cloudseg-export --model MODEL`` writes, and the engine reads, by default.

    Args:
        model: ``"r18"`` or ``"r34"``.
        variant: ``None`` (float32), ``"fp16"`` or ``"int8"``.
    """
    return variant_path(models_dir() / f"cloudseg-{model}.onnx", variant)
