"""Widen an RGB first convolution to the 4-band ``(red, green, blue, nir)`` input.

One small function, like segmentation_models_pytorch's ``patch_first_conv``: both models call it
on their ResNet's ``conv1`` after the ImageNet weights (if any) are loaded.
"""

from __future__ import annotations

import torch
from torch import nn

from cloudseg.bands import BANDS
from cloudseg.errors import ModelError

#: How a new input channel's kernel can start: a copy of one RGB kernel, their mean, or zeros.
INIT_CHOICES: tuple[str, ...] = ("red", "green", "blue", "mean", "zero")


def patch_first_conv(conv: nn.Conv2d, n_in: int, init_from: str = "red") -> nn.Conv2d:
    """Return a copy of the 3-channel ``conv`` that takes ``n_in`` channels.

    Channels 0-2 keep the R, G, B kernels of ``conv`` unchanged (pretrained weights stay
    pretrained); every extra channel (the NIR band, channel 3, for our 4-band input) starts as a
    copy of the ``init_from`` kernel, by default the red one. Why red and not zeros as fastai
    does: over most clear land and over clouds NIR correlates with red (clouds are bright in
    both), so a red copy gives the new band a useful filter from the first step, while a zero
    kernel makes the network blind to NIR until training moves it (and under fastai's frozen
    body it never moves). The kernels are not rescaled (smp multiplies by 3 / n_in): the
    BatchNorm right after ``conv1`` renormalises the sum in training, and our per-band
    standardised inputs do not follow ImageNet statistics anyway.

    With random (untrained) weights the copy is harmless: NIR and red see different inputs, so
    their kernels diverge with the first gradient step.

    Args:
        conv: the network's first convolution, ``in_channels == 3``; not modified.
        n_in: input channels wanted, at least 3 (``len(BANDS) == 4`` here).
        init_from: ``"red"``, ``"green"`` or ``"blue"`` (copy that kernel), ``"mean"`` (the mean
            of the three) or ``"zero"`` (fastai's choice).

    Returns:
        A new ``nn.Conv2d`` with the same hyper-parameters (and bias, if any) and weight of shape
        ``(out_channels, n_in, kh, kw)``, float32, on ``conv``'s device.
    """
    if conv.in_channels != 3 or conv.groups != 1:
        raise ModelError(
            f"patch_first_conv expects an RGB convolution with groups=1, got "
            f"in_channels={conv.in_channels}, groups={conv.groups}"
        )
    if n_in < 3:
        raise ModelError(f"n_in must be at least 3 (R, G, B kept), got {n_in}")
    if init_from not in INIT_CHOICES:
        raise ModelError(f"init_from must be one of {', '.join(INIT_CHOICES)}, got {init_from!r}")
    new = nn.Conv2d(
        n_in,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        rgb = conv.weight  # (out, 3, kh, kw)
        if init_from == "mean":
            extra = rgb.mean(dim=1, keepdim=True)
        elif init_from == "zero":
            extra = torch.zeros_like(rgb[:, :1])
        else:
            index = BANDS.index(init_from)
            extra = rgb[:, index : index + 1]
        new.weight.copy_(torch.cat([rgb, extra.expand(-1, n_in - 3, -1, -1)], dim=1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new
