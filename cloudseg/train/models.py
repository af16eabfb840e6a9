"""The two cloud UNets, built by name, and the facts about them that export and training read.

``r18``
    fastai's ``DynamicUnet`` (PixelShuffle-ICNR upsampling) on a torchvision ResNet18 body:
    one cloud logit, ``(N, 1, H, W)``; apply a sigmoid.
``r34``
    A plain PyTorch UNet read like segmentation_models_pytorch: a torchvision ResNet34 encoder,
    a decoder of one repeated :class:`DecoderBlock` (2x2 transposed conv, concat skip,
    :func:`double_conv`), a 1x1 head: ``(N, 2, H, W)`` logits over ``("clear", "cloud")``.

Both take ``(N, 4, H, W)`` float32 in band order ``(red, green, blue, nir)``, with H and W
multiples of 32 (the ResNet downsamples 5 times; see :func:`check_input_size`). Inputs must already
be normalised by the data pipeline (``dn / 65535``, then per-band mean/std from the training set,
the numbers in the model card): no ImageNet normalisation happens inside the models, and
fastai's ``_add_norm`` would skip it for ``n_in=4`` anyway.

The first conv is widened to 4 bands by :func:`~cloudseg.train.first_conv.patch_first_conv`
(NIR kernel starts as a copy of red). ``pretrained=True`` reads ImageNet weights from the local
torch cache only (:mod:`cloudseg.train.pretrained`).

Fine-tuning with a frozen body. The stem (first conv + its BatchNorm) must train from the start:
its NIR kernel is new and its inputs are Landsat, not ImageNet. :func:`param_groups` therefore
returns two groups, ``[body without stem, stem + decoder + head]``:

* fastai: ``Learner(dls, model, splitter=param_groups, ...)``; ``learn.freeze()`` (also inside
  ``learn.fine_tune``) freezes group 0 only, so the stem, decoder and head train, and with the
  default ``train_bn=True`` the body's BatchNorms too; ``learn.unfreeze()`` and
  ``slice(lo, hi)`` give the body ``lo`` and the stem, decoder and head ``hi``. Build the model
  here and pass it to ``Learner``; do not use ``unet_learner`` (it downloads weights and
  zero-fills NIR).
* plain PyTorch: :func:`freeze_body` (same effect), then :func:`unfreeze`; one optimiser over
  ``param_groups(model)`` (frozen parameters get no gradient, so optimisers skip them).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from cloudseg.errors import ModelError
from cloudseg.train.first_conv import patch_first_conv
from cloudseg.train.pretrained import imagenet_resnet

SIZE_MULTIPLE = 32  # five stride-2 stages in a ResNet: 2 ** 5


@dataclass(frozen=True)
class ModelSpec:
    """What export, training and the model card need to know about one model.

    ``output_kind``, ``classes`` and ``cloud_classes`` mean what they mean in
    :class:`cloudseg.card.ModelCard`; ``target`` is the label form the loss wants
    (:data:`cloudseg.train.data.Target`).
    """

    name: str
    architecture: str
    body: str  # torchvision ResNet the encoder comes from
    output_kind: str  # "sigmoid" (one logit channel) or "softmax" (one channel per class)
    classes: tuple[str, ...]
    cloud_classes: tuple[str, ...]
    target: str  # "binary" (BCE on one logit) or "classes" (cross-entropy)
    size_multiple: int = SIZE_MULTIPLE
    tile_size: int = 384

    @property
    def n_out(self) -> int:
        """Output channels: 1 for a sigmoid model, one per class for softmax."""
        return len(self.classes)


MODELS: dict[str, ModelSpec] = {
    "r18": ModelSpec(
        name="r18",
        architecture="fastai DynamicUnet (PixelShuffle-ICNR upsampling) on a torchvision "
        "ResNet18 body, 4-band first conv, one cloud logit",
        body="resnet18",
        output_kind="sigmoid",
        classes=("cloud",),
        cloud_classes=("cloud",),
        target="binary",
    ),
    "r34": ModelSpec(
        name="r34",
        architecture="UNet on a torchvision ResNet34 encoder, 4-band first conv, decoder of "
        "ConvTranspose2d 2x2 + double_conv blocks (256, 128, 64, 32, 16), 1x1 head, 2 classes",
        body="resnet34",
        output_kind="softmax",
        classes=("clear", "cloud"),
        cloud_classes=("cloud",),
        target="classes",
    ),
}


def build_model(
    name: str, pretrained: bool = False, n_in: int = 4, *, img_size: int = 384
) -> nn.Module:
    """Build model ``name`` (``"r18"`` or ``"r34"``) in train mode, on the CPU.

    Args:
        name: a key of :data:`MODELS`.
        pretrained: start the ResNet body from the cached ImageNet weights.
        n_in: input bands (4: red, green, blue, nir).
        img_size: tile size the fastai ``DynamicUnet`` (r18) is traced at to size its decoder;
            the built model accepts any multiple of 32. Ignored by r34.

    Returns:
        An ``nn.Module`` mapping ``(N, n_in, H, W)`` float32 to ``(N, MODELS[name].n_out, H, W)``
        float32 logits (a plain ``torch.Tensor``).

    Raises:
        ModelError: unknown name, bad ``n_in`` or ``img_size``, or missing ImageNet weights.
    """
    spec = model_spec(name)
    check_input_size(img_size, img_size)
    resnet = imagenet_resnet(spec.body, pretrained)
    resnet.conv1 = patch_first_conv(resnet.conv1, n_in)
    # Only the ResNet layers up to layer4 are kept (fastai's resnet cut is -2: no avgpool, fc);
    # named children keep torchvision's parameter names (``conv1.weight``, ``layer1.0...``).
    body = nn.Sequential(OrderedDict(list(resnet.named_children())[:-2]))
    if name == "r18":
        model = _fastai_unet(body, spec.n_out, img_size)
    else:
        decoder = UnetDecoder()
        model = UNet(ResNetEncoder(body), decoder, nn.Conv2d(decoder.out_channels, spec.n_out, 1))
    return model.train()


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``, or a :class:`ModelError` listing the known names."""
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name]


def check_input_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> None:
    """Refuse a tile whose height or width is not a positive multiple of ``multiple``.

    What happens without this check: r34 fails inside ``torch.cat`` with a shape mismatch, and
    r18 silently resizes its skip connections (fastai interpolates), so its output is misaligned.
    """
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        up = [-(-max(v, 1) // multiple) * multiple for v in (height, width)]
        raise ModelError(
            f"input size {height} x {width} is not a multiple of {multiple}; "
            f"pad tiles to {up[0]} x {up[1]}"
        )


def _fastai_unet(body: nn.Sequential, n_out: int, img_size: int) -> nn.Module:
    # Imported here: fastai takes seconds to import and only r18 needs it.
    from fastai.layers import ToTensorBase
    from fastai.vision.models.unet import DynamicUnet

    model = DynamicUnet(body, n_out, (img_size, img_size))
    # fastai ends with ToTensorBase, whose tensor subclass breaks torch.export (and so the ONNX
    # exporter); fastai's Learner, losses and metrics work on plain tensors.
    if isinstance(model.layers[-1], ToTensorBase):
        del model.layers[-1]
    return model


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """(conv3x3 - BatchNorm - ReLU) twice; the convs have no bias since BN follows."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResNetEncoder(nn.Module):
    """A ResNet body as a feature pyramid, keeping torchvision's module names.

    Returns five maps: stem ``(N, 64, H/2, W/2)``, layer1 ``(N, 64, H/4)``, layer2
    ``(N, 128, H/8)``, layer3 ``(N, 256, H/16)``, layer4 ``(N, 512, H/32)`` (for ResNet18/34).
    """

    out_channels: tuple[int, ...] = (64, 64, 128, 256, 512)

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        for name, module in body.named_children():  # conv1, bn1, relu, maxpool, layer1..4
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]


class DecoderBlock(nn.Module):
    """Upsample x2, concatenate the skip (if any), :func:`double_conv`.

    The upsampling is a 2x2 ``ConvTranspose2d`` with stride 2 that also halves the channels (the
    original UNet's "up-convolution"): kernel = stride means no overlapping taps, hence no
    checkerboard pattern; it is learned; the halved channels make the following double_conv
    cheaper than after a bilinear resize; and it is one ONNX op with exact shape semantics (no
    ``align_corners`` / coordinate-mode mismatch between PyTorch and ONNX ``Resize``), supported
    by ONNX Runtime's int8 QDQ quantiser and TensorRT.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = double_conv(in_channels // 2 + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv(x)


class UnetDecoder(nn.Module):
    """Five :class:`DecoderBlock` s from H/32 back to H; the last one has no skip."""

    def __init__(
        self,
        encoder_channels: tuple[int, ...] = ResNetEncoder.out_channels,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        self.out_channels = decoder_channels[-1]
        in_channels = (encoder_channels[-1], *decoder_channels[:-1])
        skip_channels = (*encoder_channels[-2::-1], 0)  # deepest skip first; none at full size
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, skips = features[-1], features[-2::-1]
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        return x


class UNet(nn.Module):
    """encoder -> decoder -> head: ``(N, C, H, W)`` float32 to ``(N, n_out, H, W)`` logits."""

    def __init__(self, encoder: ResNetEncoder, decoder: UnetDecoder, head: nn.Module) -> None:
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


def encoder_of(model: nn.Module) -> nn.Module:
    """The ResNet body of a model from :func:`build_model` (``conv1``, ``bn1``, ``layer1``...)."""
    if isinstance(model, UNet):
        return model.encoder
    layers = getattr(model, "layers", None)  # fastai's DynamicUnet is a SequentialEx
    if isinstance(layers, nn.ModuleList) and hasattr(layers[0], "conv1"):
        return layers[0]
    raise ModelError(f"not a model from cloudseg.train.models.build_model: {type(model).__name__}")


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The model's first convolution, ``(64, n_in, 7, 7)`` weight."""
    return encoder_of(model).conv1


def param_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """``[body without stem, stem + decoder + head]``: a fastai splitter and optimiser groups.

    The stem (first conv and its BatchNorm) sits in the second group so that fastai's
    ``freeze()`` leaves it trainable; every parameter appears exactly once.
    """
    encoder = encoder_of(model)
    stem = [*encoder.conv1.parameters(), *encoder.bn1.parameters()]
    stem_ids = {id(p) for p in stem}
    body = [p for p in encoder.parameters() if id(p) not in stem_ids]
    encoder_ids = {id(p) for p in encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in encoder_ids]
    return [body, stem + rest]


def freeze_body(model: nn.Module, train_bn: bool = True) -> None:
    """Freeze the pretrained body for a first fine-tuning phase, as fastai's ``freeze()`` does.

    The stem, decoder and head stay trainable; with ``train_bn`` (fastai's default) so do the
    body's BatchNorm layers, which lets them adapt to Landsat statistics.
    """
    unfreeze(model)
    encoder = encoder_of(model)
    stem = (encoder.conv1, encoder.bn1)
    for module in encoder.modules():
        if any(module is m for m in stem) or (train_bn and isinstance(module, nn.BatchNorm2d)):
            continue
        for p in module.parameters(recurse=False):
            p.requires_grad_(False)


def unfreeze(model: nn.Module) -> None:
    """Make every parameter trainable again."""
    for p in model.parameters():
        p.requires_grad_(True)
