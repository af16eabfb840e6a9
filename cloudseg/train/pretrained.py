"""ImageNet ResNet weights from the local torch cache, never from the network.

torchvision keeps downloaded weights in ``torch.hub.get_dir() / "checkpoints"`` (which follows
``$TORCH_HOME``) under the file name of the weights' URL, e.g. ``resnet18-f37072fd.pth``. Training
boxes here have no internet, so we only look there, and when the file is missing we say in one line
where it must go and how to fetch it elsewhere, instead of letting torchvision try to download.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torchvision.models import ResNet, ResNet18_Weights, ResNet34_Weights, WeightsEnum

from cloudseg.errors import ModelError

#: The torchvision weights each ResNet body starts from when ``pretrained=True``.
IMAGENET_WEIGHTS: dict[str, WeightsEnum] = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
}


def checkpoint_path(arch: str) -> Path:
    """Where torchvision would cache ``arch``'s ImageNet weights (the file may not exist).

    Read at call time, so a changed ``$TORCH_HOME`` is followed.
    """
    filename = Path(urlparse(_weights(arch).url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def require_cached(arch: str) -> Path:
    """The cached ImageNet weights file of ``arch``, checked to exist (never downloaded).

    Raises:
        ModelError: the file is missing: one line with the path expected, how to get it, or
            ``--no-pretrained``.
    """
    path = checkpoint_path(arch)
    if not path.is_file():
        fetch = f"import torchvision; torchvision.models.{arch}(weights='IMAGENET1K_V1')"
        raise ModelError(
            f"ImageNet weights for {arch} not found at {path}; on a machine with internet run "
            f'`python -c "{fetch}"` and copy ~/.cache/torch/hub/checkpoints/{path.name} '
            f"to {path}, or pass --no-pretrained"
        )
    return path


def load_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """Load ``arch``'s cached ImageNet ``state_dict`` (CPU tensors) without touching the network.

    Raises:
        ModelError: the file is missing (one line: the path expected, how to get it, or
            ``--no-pretrained``) or is not a readable tensor checkpoint.
    """
    path = require_cached(arch)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: not a readable PyTorch checkpoint ({first_line})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state_dict, found {type(state).__name__}")
    return state


def _weights(arch: str) -> WeightsEnum:
    try:
        return IMAGENET_WEIGHTS[arch]
    except KeyError:
        raise ModelError(
            f"no ImageNet weights known for {arch!r}; expected one of {', '.join(IMAGENET_WEIGHTS)}"
        ) from None


def imagenet_resnet(arch: str, pretrained: bool) -> ResNet:
    """A torchvision ResNet (3-channel, with ``fc``), ImageNet weights from the cache if asked.

    Raises:
        ModelError: ``pretrained`` and the cached file is missing, unreadable or not ``arch``'s.
    """
    _weights(arch)  # unknown arch: a ModelError before anything is built
    resnet = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        state = load_imagenet_state_dict(arch)
        try:
            resnet.load_state_dict(state)
        except RuntimeError as exc:
            detail = " ".join(str(exc).split())[:300]  # one line, however long torch's list is
            raise ModelError(
                f"{checkpoint_path(arch)}: not torchvision {arch} weights: {detail}"
            ) from None
    return resnet
