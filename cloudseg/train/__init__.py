"""Training: the two cloud UNets (``r18``, ``r34``), their data pipeline and run folders.

Needs the ``[train]`` extra (torch, torchvision, fastai). The model API is re-exported here lazily,
so ``import cloudseg.train.augment`` stays numpy-only and fastai is imported only to build ``r18``::

    from cloudseg.train import MODELS, build_model, check_input_size
    model = build_model("r34", pretrained=True)   # (N, 4, H, W) -> (N, 2, H, W) logits
"""

from __future__ import annotations

import importlib
from typing import Any

_MODEL_API = (
    "MODELS",
    "ModelSpec",
    "build_model",
    "check_input_size",
    "first_conv",
    "freeze_body",
    "model_spec",
    "param_groups",
    "unfreeze",
)

__all__ = [*_MODEL_API, "patch_first_conv"]


def __getattr__(name: str) -> Any:
    if name in _MODEL_API:
        return getattr(importlib.import_module("cloudseg.train.models"), name)
    if name == "patch_first_conv":
        return importlib.import_module("cloudseg.train.first_conv").patch_first_conv
    raise AttributeError(f"module 'cloudseg.train' has no attribute {name!r}")
