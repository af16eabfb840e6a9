"""Where exported models go by default; torch-free, so the engine can import it.

``$CLOUDSEG_HOME/models/cloudseg-<model>.onnx`` (``CLOUDSEG_HOME`` defaults to
``~/.cache/cloudseg``), with ``-fp16`` / ``-int8`` before the suffix for the variants.
"""

from __future__ import annotations

from pathlib import Path

from cloudseg.errors import ModelError
from cloudseg.train.runs import models_dir

#: Variants ``cloudseg-export`` can write beside the float32 model.
VARIANTS = ("fp16", "int8")


def variant_path(path: Path, variant: str | None) -> Path:
    """``models/cloudseg-r18.onnx`` -> ``models/cloudseg-r18-int8.onnx``; ``None`` is fp32."""
    path = Path(path)
    if variant is None:
        return path
    if variant not in VARIANTS:
        raise ModelError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return path.with_name(f"{path.stem}-{variant}{path.suffix}")


def default_model_path(model: str, variant: str | None = None) -> Path:
    """The file ``cloudseg-export --model MODEL`` writes, and the engine reads, by default.

    Args:
        model: ``"r18"`` or ``"r34"``.
        variant: ``None`` (float32), ``"fp16"`` or ``"int8"``.
    """
    return variant_path(models_dir() / f"cloudseg-{model}.onnx", variant)
