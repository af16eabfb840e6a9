"""Backends: known-function ONNX models built here, provider refusals, and torch/ONNX parity."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnx_models import B1, W1, W2, card_for, conv_model

from cloudseg.card import sidecar_path, write_json
from cloudseg.engine.backends import OrtBackend, cloud_probability, make_backend
from cloudseg.engine.providers import PROVIDERS
from cloudseg.errors import MissingFileError, ModelError, ProviderError

TILE = 32
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def sigmoid_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_model(tmp_path_factory.mktemp("m") / "sig.onnx", W1[None], B1, card_for())


@pytest.fixture(scope="module")
def softmax_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("m") / "soft.onnx"
    return conv_model(path, W2, np.array([0.1, -0.2]), card_for("softmax"))


def tiles(n: int) -> np.ndarray:
    return (RNG.standard_normal((n, 4, TILE, TILE)) * 3).astype(np.float32)


@pytest.mark.parametrize(("n", "batch"), [(4, 4), (7, 3), (1, 4), (2, 1)])
def test_sigmoid_model_gives_known_probability(sigmoid_model: Path, n: int, batch: int) -> None:
    x = tiles(n)
    want = 1 / (1 + np.exp(-(np.einsum("c,nchw->nhw", W1.astype(np.float64), x) + B1)))
    backend = OrtBackend(sigmoid_model, "cpu", batch=batch, tile=TILE)
    got = backend.run(x)
    assert got.shape == (n, TILE, TILE) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert backend.providers == ["CPUExecutionProvider"]
    backend.close()


def test_softmax_model_sums_cloud_classes(softmax_model: Path) -> None:
    x = tiles(5)
    logits = (
        np.einsum("kc,nchw->nkhw", W2.astype(np.float64), x) + np.array([0.1, -0.2])[:, None, None]
    )
    want = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    got = OrtBackend(softmax_model, "cpu", batch=2, tile=TILE).run(x)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_io_binding_matches_plain_session_run(softmax_model: Path) -> None:
    x = tiles(3)
    session = ort.InferenceSession(str(softmax_model), providers=["CPUExecutionProvider"])
    plain = cloud_probability(session.run(["logits"], {"image": x})[0], card_for("softmax"))
    got = OrtBackend(softmax_model, "cpu", batch=3, tile=TILE).run(x)
    np.testing.assert_allclose(got, plain, atol=1e-7)


def test_padding_of_a_short_batch_does_not_leak(sigmoid_model: Path) -> None:
    backend = OrtBackend(sigmoid_model, "cpu", batch=4, tile=TILE)
    full, short = tiles(4), tiles(1)
    backend.run(full)  # leaves other values in the bound buffers
    alone = OrtBackend(sigmoid_model, "cpu", batch=1, tile=TILE).run(short)
    np.testing.assert_array_equal(backend.run(short), alone)


def test_concurrent_callers_each_get_their_own_buffers(sigmoid_model: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend = OrtBackend(sigmoid_model, "cpu", batch=2, tile=TILE, slots=2)
    inputs = [tiles(3) for _ in range(6)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(backend.run, inputs))
    single = OrtBackend(sigmoid_model, "cpu", batch=2, tile=TILE)
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got, single.run(x))


def test_cpu_session_uses_every_core_and_one_inter_op_thread(sigmoid_model: Path) -> None:
    options = OrtBackend(sigmoid_model, "cpu", batch=1, tile=TILE).session.get_session_options()
    assert options.intra_op_num_threads == os.cpu_count()
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_probability_is_stable_for_huge_logits() -> None:
    logits = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32).reshape(1, 1, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning
        p = cloud_probability(logits, card_for())
        q = cloud_probability(np.concatenate([-logits, logits], axis=1), card_for("softmax"))
    np.testing.assert_allclose(p[0, 0], [0.0, 1.9287e-22, 0.5, 1.0, 1.0], rtol=1e-4)
    np.testing.assert_allclose(q[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


def test_unknown_provider_lists_the_valid_names(sigmoid_model: Path) -> None:
    with pytest.raises(ProviderError, match="unknown provider 'rocm'.*cpu, cuda, tensorrt"):
        OrtBackend(sigmoid_model, "rocm", batch=1, tile=TILE)


@pytest.mark.parametrize(
    ("provider", "ort_name"),
    [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")],
)
def test_unloadable_gpu_provider_is_refused_not_replaced_by_the_cpu(
    sigmoid_model: Path, tmp_path: Path, provider: str, ort_name: str
) -> None:
    try:
        backend = OrtBackend(sigmoid_model, provider, batch=2, tile=TILE, cache_dir=tmp_path)
    except ProviderError as exc:
        message = str(exc)
        assert "\n" not in message
        assert f"provider {provider!r} ({ort_name}) could not be used" in message
        assert "could not be loaded" in message or "did not start" in message or "no " in message
        for name in ort.get_available_providers():  # what this onnxruntime offers
            assert name in message
        assert "loaded only CPUExecutionProvider" in message
        assert "not falling back to the CPU" in message
    else:  # a machine where the GPU provider really loads: it must be the one running
        assert backend.providers[0] == ort_name


def test_model_with_three_bands_is_refused_naming_file_and_shape(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "rgb.onnx", W1[None, :3], B1, card_for())
    with pytest.raises(ModelError, match=r"rgb\.onnx: input 'image' has shape \['batch', 3"):
        OrtBackend(path, "cpu", batch=1, tile=TILE)


def test_output_channels_must_match_the_card(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "two.onnx", W2, np.zeros(2), card_for("sigmoid"))
    with pytest.raises(ModelError, match=r"two\.onnx: output 'logits' has shape"):
        OrtBackend(path, "cpu", batch=1, tile=TILE)


def test_missing_and_corrupt_model_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere\.onnx: no model file"):
        OrtBackend(tmp_path / "nowhere.onnx", "cpu", batch=1, tile=TILE)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(ModelError, match=r"junk\.onnx"):
        OrtBackend(junk, "cpu", batch=1, tile=TILE)
    # Well-formed protobuf with a card, but a graph ONNX Runtime refuses.
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["image"], ["logits"])],
        "bad",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 4, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1, "h", "w"])],
    )
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(bad))
    write_json(card_for(), sidecar_path(bad))
    with pytest.raises(ModelError, match=r"bad\.onnx: ONNX Runtime cannot load this model"):
        OrtBackend(bad, "cpu", batch=1, tile=TILE)


def test_tile_must_fit_the_card(sigmoid_model: Path) -> None:
    with pytest.raises(ModelError, match="tile 48 is not a positive multiple of the card's"):
        OrtBackend(sigmoid_model, "cpu", batch=1, tile=48)


def test_importing_backends_does_not_import_torch() -> None:
    code = "import sys, cloudseg.engine.backends; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# The torch backend against an ONNX export of the same weights
# ---------------------------------------------------------------------------------------------

R34_TILE = 64


def test_torch_backend_matches_onnx_export(r34_run: tuple[Path, Path]) -> None:
    run, onnx_path = r34_run
    x = tiles(3).repeat(2, axis=2).repeat(2, axis=3)  # (3, 4, 64, 64)
    torch_backend = make_backend(run, "torch", batch=2, tile=R34_TILE)
    ort_backend = make_backend(onnx_path, "cpu", batch=2, tile=R34_TILE)
    assert torch_backend.name == "torch" and torch_backend.providers == ["torch:cpu"]
    assert ort_backend.name == "cpu" and ort_backend.card == torch_backend.card
    np.testing.assert_allclose(torch_backend.run(x), ort_backend.run(x), atol=1e-4)
    # A bare checkpoint with its card.json beside it is the same model.
    checkpoint = make_backend(run / "best.pth", "cpu", batch=3, tile=R34_TILE)
    np.testing.assert_allclose(checkpoint.run(x[:1]), torch_backend.run(x[:1]), atol=1e-6)


def test_torch_run_refused_on_tensorrt(r34_run: tuple[Path, Path]) -> None:
    with pytest.raises(ModelError, match="export it to ONNX for tensorrt"):
        make_backend(r34_run[0], "tensorrt", batch=1, tile=R34_TILE)


# ---------------------------------------------------------------------------------------------
# GPU: run only where a CUDA device and libraries exist (pytest -m gpu)
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_provider_matches_cpu(softmax_model: Path, tmp_path: Path, provider: str) -> None:
    x = tiles(5)
    gpu = OrtBackend(softmax_model, provider, batch=2, tile=TILE, cache_dir=tmp_path)
    assert gpu.providers[0] == PROVIDERS[provider]
    cpu = OrtBackend(softmax_model, "cpu", batch=2, tile=TILE)
    np.testing.assert_allclose(gpu.run(x), cpu.run(x), atol=1e-5)
    if provider == "tensorrt":
        assert any(tmp_path.iterdir()), "TensorRT wrote no engine or timing cache"
