"""The two UNets: shapes, size contract, 4-band first conv, cached ImageNet weights, freezing."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import cloudseg.train
from cloudseg.bands import BANDS
from cloudseg.card import InputTransform, ModelCard
from cloudseg.errors import ModelError
from cloudseg.train import pretrained
from cloudseg.train.first_conv import patch_first_conv
from cloudseg.train.models import (
    MODELS,
    build_model,
    check_input_size,
    encoder_of,
    first_conv,
    freeze_body,
    param_groups,
    unfreeze,
)

NAMES = ("r18", "r34")
CHECKPOINT = {"r18": "resnet18-f37072fd.pth", "r34": "resnet34-b627a593.pth"}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: build_model(name, img_size=64).eval() for name in NAMES}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$TORCH_HOME``; any attempt to download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over env

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    assert Path(torch.hub.get_dir()) == tmp_path / "hub"
    return tmp_path


def fake_imagenet(name: str, home: Path) -> dict[str, torch.Tensor]:
    """Save an untrained torchvision ResNet's state dict (random BN too) as the cached weights."""
    torch.manual_seed(1234)
    state = getattr(torchvision.models, MODELS[name].body)().state_dict()
    for key, value in state.items():
        if value.is_floating_point() and ("bn" in key or "downsample.1" in key):
            state[key] = torch.rand_like(value) + 0.5
    path = home / "hub" / "checkpoints" / CHECKPOINT[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def test_registry_matches_the_model_card_contract() -> None:
    assert (MODELS["r18"].output_kind, MODELS["r18"].n_out) == ("sigmoid", 1)
    assert (MODELS["r34"].output_kind, MODELS["r34"].classes) == ("softmax", ("clear", "cloud"))
    for spec in MODELS.values():
        assert spec.size_multiple == 32 and spec.tile_size % 32 == 0 and spec.architecture
        ModelCard(  # raises ModelError if the spec's output facts do not make a valid card
            name=spec.name,
            architecture=spec.architecture,
            bands=BANDS,
            value_kind="dn",
            transform=InputTransform(1 / 65535, 0.0, (0.0,) * 4, (1.0,) * 4),
            output_kind=spec.output_kind,
            classes=spec.classes,
            cloud_classes=spec.cloud_classes,
        )
    assert cloudseg.train.build_model is build_model  # lazy re-export


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(1, 64, 64), (2, 64, 96), (1, 96, 128)])
def test_output_shape_for_multiples_of_32(models, name: str, shape: tuple[int, int, int]) -> None:
    n, h, w = shape
    with torch.no_grad():
        out = models[name](torch.randn(n, 4, h, w))
    assert type(out) is torch.Tensor  # fastai's TensorBase is stripped (it breaks torch.export)
    assert out.shape == (n, MODELS[name].n_out, h, w) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_non_multiple_of_32(models) -> None:
    check_input_size(64, 96)
    with pytest.raises(ModelError, match="65 x 64 is not a multiple of 32; pad tiles to 96 x 64"):
        check_input_size(65, 64)
    with pytest.raises(ModelError):
        check_input_size(0, 64)
    x = torch.randn(1, 4, 65, 64)
    with torch.no_grad():
        with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
            models["r34"](x)  # skip and upsampled maps disagree
        assert models["r18"](x).shape == (1, 1, 65, 64)  # fastai resizes skips: runs, misaligned


def test_r18_built_at_one_size_is_the_same_network_at_another(models) -> None:
    big = build_model("r18", img_size=384)
    big.load_state_dict(models["r18"].state_dict())  # strict: same keys and shapes
    x = torch.randn(1, 4, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(big.eval()(x), models["r18"](x))


def test_r18_deepcopy_keeps_its_own_hooks(models) -> None:
    original = models["r18"]
    twin = copy.deepcopy(original)
    x1, x2 = torch.randn(1, 4, 64, 64), torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        expected = original(x2)
        original(x1)  # refills the original's hooks only
        torch.testing.assert_close(twin(x2), expected)


def test_parameter_counts(models) -> None:
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    assert 30.5e6 < counts["r18"] < 31.5e6  # 31.12 M: fastai UNet, ResNet18 body
    assert 24.0e6 < counts["r34"] < 24.7e6  # 24.35 M: 21.29 M encoder + 3.06 M decoder + head


def test_patch_first_conv_copies_red_into_nir() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    before = conv.weight.detach().clone()
    new = patch_first_conv(conv, 4)
    assert new.weight.shape == (8, 4, 3, 3) and (new.stride, new.padding) == ((2, 2), (1, 1))
    torch.testing.assert_close(new.weight[:, :3], before, rtol=0, atol=0)
    torch.testing.assert_close(new.weight[:, 3], before[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(new.bias, conv.bias, rtol=0, atol=0)
    torch.testing.assert_close(conv.weight, before, rtol=0, atol=0)  # input untouched
    assert not patch_first_conv(conv, 4, "zero").weight[:, 3].any()
    torch.testing.assert_close(patch_first_conv(conv, 4, "mean").weight[:, 3], before.mean(1))
    torch.testing.assert_close(patch_first_conv(conv, 3).weight, before, rtol=0, atol=0)
    for bad in (lambda: patch_first_conv(conv, 2), lambda: patch_first_conv(new, 5)):
        with pytest.raises(ModelError):
            bad()


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_loads_cached_weights(torch_home: Path, name: str) -> None:
    fake = fake_imagenet(name, torch_home)
    assert pretrained.checkpoint_path(MODELS[name].body) == (
        torch_home / "hub" / "checkpoints" / CHECKPOINT[name]
    )
    torch.manual_seed(99)  # a different seed: equal weights can only come from the file
    encoder = encoder_of(build_model(name, pretrained=True, img_size=64)).state_dict()
    for key, value in fake.items():
        if not key.startswith(("fc.", "conv1.")):
            torch.testing.assert_close(encoder[key], value, rtol=0, atol=0, msg=key)
    rgb = fake["conv1.weight"]
    torch.testing.assert_close(encoder["conv1.weight"][:, :3], rgb, rtol=0, atol=0)
    torch.testing.assert_close(encoder["conv1.weight"][:, 3], rgb[:, 0], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_missing_weights_say_where_and_what_to_do(torch_home: Path, name: str) -> None:
    expected = torch_home / "hub" / "checkpoints" / CHECKPOINT[name]
    with pytest.raises(ModelError) as info:
        build_model(name, pretrained=True, img_size=64)
    message = str(info.value)
    assert str(expected) in message and "--no-pretrained" in message and "\n" not in message
    assert "IMAGENET1K_V1" in message


def test_wrong_or_corrupt_weights_file(torch_home: Path) -> None:
    fake_imagenet("r18", torch_home)
    path = torch_home / "hub" / "checkpoints" / CHECKPOINT["r34"]
    path.write_bytes((path.parent / CHECKPOINT["r18"]).read_bytes())
    with pytest.raises(ModelError, match="not torchvision resnet34 weights"):
        build_model("r34", pretrained=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        build_model("r34", pretrained=True)


def test_bad_arguments() -> None:
    with pytest.raises(ModelError, match="expected one of r18, r34"):
        build_model("r50")
    with pytest.raises(ModelError, match="n_in must be at least 3"):
        build_model("r34", n_in=2)
    with pytest.raises(ModelError, match="not a multiple of 32"):
        build_model("r18", img_size=100)


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_and_freeze_body_keep_the_stem_trainable(name: str) -> None:
    model = build_model(name, img_size=64)
    body, rest = param_groups(model)
    ids = [id(p) for p in body + rest]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert any(p is first_conv(model).weight for p in rest)
    encoder = encoder_of(model)
    freeze_body(model)
    assert first_conv(model).weight.requires_grad and encoder.bn1.weight.requires_grad
    assert not encoder.layer1[0].conv1.weight.requires_grad
    assert encoder.layer1[0].bn1.weight.requires_grad  # train_bn, as fastai
    assert all(p.requires_grad for p in rest)
    freeze_body(model, train_bn=False)
    assert not encoder.layer1[0].bn1.weight.requires_grad and encoder.bn1.weight.requires_grad
    unfreeze(model)
    assert all(p.requires_grad for p in model.parameters())


def test_fastai_learner_freeze_trains_the_stem_but_not_the_body() -> None:
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import BCEWithLogitsLossFlat

    torch.manual_seed(0)
    model = build_model("r18", img_size=64)
    data = [(torch.randn(4, 64, 64), torch.randint(0, 2, (1, 64, 64)).float()) for _ in range(2)]
    dls = DataLoaders.from_dsets(data, data, bs=2, device=torch.device("cpu"))
    learn = Learner(dls, model, loss_func=BCEWithLogitsLossFlat(), splitter=param_groups)
    learn.freeze()
    encoder = encoder_of(model)
    stem, body = encoder.conv1.weight.detach().clone(), encoder.layer1[0].conv1.weight.clone()
    with learn.no_logging():
        learn.fit(1, 1e-3)
    assert not torch.equal(encoder.conv1.weight, stem)
    assert torch.equal(encoder.layer1[0].conv1.weight, body)
