"""Backends: known-function ONNX models, provider refusals, torch / ONNX / OpenVINO parity."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from isolated import run_python
from onnx import TensorProto, helper
from onnx_models import B1, W1, W2, card_for, conv_model

from cloudseg.card import sidecar_path, write_json
from cloudseg.engine.backend import BackendOptions, class_probabilities, cloud_probability
from cloudseg.engine.ort_backend import OrtBackend
from cloudseg.engine.ort_providers import PROVIDERS
from cloudseg.engine.registry import make_backend, probe
from cloudseg.errors import MissingFileError, ModelError, ProviderError

TILE = 32
RNG = np.random.default_rng(0)


def ort_backend(model: Path, provider: str = "cpu", **options: object) -> OrtBackend:
    return OrtBackend(model, provider, BackendOptions(**{"tile": TILE, **options}))


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
    backend = ort_backend(sigmoid_model, batch=batch)
    got = backend.run(x)
    assert got.shape == (n, 1, TILE, TILE) and got.dtype == np.float32
    np.testing.assert_allclose(got[:, 0], want, atol=1e-6)
    assert backend.providers == ["CPUExecutionProvider"]
    backend.close()


def test_softmax_model_sums_cloud_classes(softmax_model: Path) -> None:
    x = tiles(5)
    logits = (
        np.einsum("kc,nchw->nkhw", W2.astype(np.float64), x) + np.array([0.1, -0.2])[:, None, None]
    )
    want = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    got = ort_backend(softmax_model, batch=2).run(x)
    np.testing.assert_allclose(got[:, 0], want, atol=1e-6)


def test_shadow_plane_is_the_shadow_class_probability() -> None:
    logits = RNG.standard_normal((2, 3, 4, 4)).astype(np.float32) * 4
    card = card_for("softmax", classes=("clear", "cloud", "shadow"), shadow_classes=("shadow",))
    probs = class_probabilities(logits, card, shadow=True)
    e = np.exp(logits.astype(np.float64))
    np.testing.assert_allclose(probs[:, 0], e[:, 1] / e.sum(axis=1), atol=1e-6)
    np.testing.assert_allclose(probs[:, 1], e[:, 2] / e.sum(axis=1), atol=1e-6)
    assert class_probabilities(logits, card, shadow=False).shape == (2, 1, 4, 4)


def test_shadow_is_refused_for_a_model_without_a_shadow_class(softmax_model: Path) -> None:
    with pytest.raises(ModelError, match="has no cloud-shadow class .*--shadow needs one"):
        ort_backend(softmax_model, shadow=True)


def test_io_binding_matches_plain_session_run(softmax_model: Path) -> None:
    x = tiles(3)
    session = ort.InferenceSession(str(softmax_model), providers=["CPUExecutionProvider"])
    plain = cloud_probability(session.run(["logits"], {"image": x})[0], card_for("softmax"))
    got = ort_backend(softmax_model, batch=3).run(x)
    np.testing.assert_allclose(got[:, 0], plain, atol=1e-7)


def test_padding_of_a_short_batch_does_not_leak(sigmoid_model: Path) -> None:
    backend = ort_backend(sigmoid_model, batch=4)
    full, short = tiles(4), tiles(1)
    backend.run(full)  # leaves other values in the bound buffers
    alone = ort_backend(sigmoid_model, batch=1).run(short)
    np.testing.assert_array_equal(backend.run(short), alone)


def test_concurrent_callers_each_get_their_own_buffers(sigmoid_model: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    backend = ort_backend(sigmoid_model, batch=2, slots=2)
    assert backend.slots == 2
    inputs = [tiles(3) for _ in range(6)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(backend.run, inputs))
    single = ort_backend(sigmoid_model, batch=2)
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_array_equal(got, single.run(x))


def test_cpu_session_uses_every_core_and_one_inter_op_thread(sigmoid_model: Path) -> None:
    options = ort_backend(sigmoid_model).session.get_session_options()
    assert options.intra_op_num_threads == os.cpu_count()
    assert options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    one = ort_backend(sigmoid_model, threads=1)
    assert one.session.get_session_options().intra_op_num_threads == 1
    assert one.describe()["threads"] == 1 and one.describe()["precision"] == "fp32"


def test_probability_is_stable_for_huge_logits() -> None:
    logits = np.array([-1e4, -50.0, 0.0, 50.0, 1e4], np.float32).reshape(1, 1, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning
        p = cloud_probability(logits, card_for())
        q = cloud_probability(np.concatenate([-logits, logits], axis=1), card_for("softmax"))
    np.testing.assert_allclose(p[0, 0], [0.0, 1.9287e-22, 0.5, 1.0, 1.0], rtol=1e-4)
    np.testing.assert_allclose(q[0, 0], [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-7)


def test_unknown_provider_lists_the_valid_names(sigmoid_model: Path) -> None:
    with pytest.raises(ProviderError, match="unknown provider 'rocm'.*auto, tensorrt, cuda"):
        make_backend(sigmoid_model, "rocm", BackendOptions(tile=TILE))


@pytest.mark.parametrize(
    ("provider", "ort_name"),
    [("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")],
)
def test_unloadable_gpu_provider_is_refused_not_replaced_by_the_cpu(
    sigmoid_model: Path, tmp_path: Path, provider: str, ort_name: str
) -> None:
    try:
        backend = ort_backend(sigmoid_model, provider, batch=2, trt_cache=tmp_path)
    except ProviderError as exc:
        message = str(exc)
        assert "\n" not in message
        assert f"provider {provider!r} ({ort_name}) could not be used" in message
        assert "could not be loaded" in message or "driver" in message or "no " in message
        for name in ort.get_available_providers():  # what this onnxruntime offers
            assert name in message
        assert "loaded only CPUExecutionProvider" in message
        assert "not falling back to the CPU" in message
    else:  # a machine where the GPU provider really loads: it must be the one running
        assert backend.providers[0] == ort_name


def test_model_with_three_bands_is_refused_naming_file_and_shape(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "rgb.onnx", W1[None, :3], B1, card_for())
    with pytest.raises(ModelError, match=r"rgb\.onnx: input 'image' has shape \['batch', 3"):
        ort_backend(path)


def test_output_channels_must_match_the_card(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "two.onnx", W2, np.zeros(2), card_for("sigmoid"))
    with pytest.raises(ModelError, match=r"two\.onnx: output 'logits' has shape"):
        ort_backend(path)


def test_missing_and_corrupt_model_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nowhere\.onnx: no model file"):
        ort_backend(tmp_path / "nowhere.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
    with pytest.raises(ModelError, match=r"junk\.onnx"):
        ort_backend(junk)
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
        ort_backend(bad)


def test_tile_must_fit_the_card(sigmoid_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="tile 48 does not fit model test-conv: .*multiple of 32"):
        ort_backend(sigmoid_model, tile=48)
    fixed = conv_model(tmp_path / "fixed.onnx", W1[None], B1, card_for(fixed_size=True))
    with pytest.raises(ModelError, match="takes 32 px tiles only"):
        ort_backend(fixed, tile=64)


def test_importing_the_engine_imports_neither_torch_nor_openvino() -> None:
    code = (
        "import sys, cloudseg.engine.registry, cloudseg.engine.ort_backend, cloudseg.engine.run\n"
        "print(sorted(m for m in ('torch', 'openvino') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# The torch and OpenVINO backends against ONNX Runtime, on a trained model
# ---------------------------------------------------------------------------------------------

R34_TILE = 64


@pytest.fixture(scope="module")
def scene_tiles(r34_run: tuple[Path, Path]) -> np.ndarray:
    """Normalised 64 px tiles of a synthetic scene: inputs on which the trained model's
    probabilities vary (checked), unlike standard-normal noise."""
    from cloudseg.card import read_json
    from cloudseg.data.synthetic import SceneSpec, make_scene

    synthetic = make_scene(SceneSpec(seed=5, height=128, width=192, cloud_fraction=0.4))
    raw = np.stack(
        [synthetic.bands[:, r : r + 64, c : c + 64] for r in (0, 64) for c in (0, 64, 128)]
    )
    return read_json(r34_run[0] / "card.json").transform.apply(raw)


def test_torch_backend_matches_onnx_export(r34_run: tuple[Path, Path], scene_tiles) -> None:
    run, onnx_path = r34_run
    options = BackendOptions(batch=2, tile=R34_TILE, precision="f32")
    torch_backend = make_backend(run, "torch", options)
    ort = make_backend(onnx_path, "cpu", options)
    assert torch_backend.name == "torch" and torch_backend.providers == ["torch:cpu"]
    fixed = dataclasses.replace(torch_backend.card, tile_size=64, fixed_size=True)
    assert ort.name == "cpu" and ort.card == fixed
    want = ort.run(scene_tiles)
    assert want.std() > 0.15 and 0.1 < (want > 0.5).mean() < 0.9  # the comparison means something
    np.testing.assert_allclose(torch_backend.run(scene_tiles), want, atol=1e-4)
    # A bare checkpoint with its card.json beside it is the same model.
    checkpoint = make_backend(run / "best.pth", "cpu", dataclasses.replace(options, batch=3))
    np.testing.assert_allclose(checkpoint.run(scene_tiles[:1]), want[:1], atol=1e-4)


def test_torch_backend_in_bf16_keeps_the_mask(r34_run: tuple[Path, Path], scene_tiles) -> None:
    run, onnx_path = r34_run
    f32 = make_backend(onnx_path, "cpu", BackendOptions(tile=R34_TILE)).run(scene_tiles)
    bf16 = make_backend(run, "torch", BackendOptions(tile=R34_TILE, precision="bf16"))
    assert bf16.describe()["precision"] == "bf16"
    got = bf16.run(scene_tiles)
    assert np.abs(got - f32).max() < 0.1
    assert ((got > 0.5) == (f32 > 0.5)).mean() > 0.99


OPENVINO_VS_ORT = """
import json, sys
import numpy as np
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend, probe
model, tiles = sys.argv[1], np.load(sys.argv[2])
want = make_backend(model, "cpu", BackendOptions(tile=64)).run(tiles)
f32 = make_backend(model, "openvino", BackendOptions(tile=64, precision="f32"))
auto = make_backend(model, "openvino", BackendOptions(tile=64, batch=2))
print(json.dumps({
    "providers": f32.providers, "f32": f32.describe(), "auto": auto.describe(),
    "f32_max_diff": float(np.abs(f32.run(tiles) - want).max()),
    "auto_agreement": float(((auto.run(tiles) > 0.5) == (want > 0.5)).mean()),
}))
"""


def test_openvino_backend_matches_onnx_runtime(r34_run, scene_tiles, tmp_path) -> None:
    if importlib.util.find_spec("openvino") is None:  # imported in the child only
        pytest.skip("openvino is not installed")
    np.save(tmp_path / "tiles.npy", scene_tiles)
    got = run_python(OPENVINO_VS_ORT, r34_run[1], tmp_path / "tiles.npy")
    assert got["providers"] == ["openvino:CPU"] and got["f32"]["precision"] == "f32"
    assert got["f32_max_diff"] < 1e-4
    # auto is f32 until bf16 is proven on the real reference scenes for this file (none is in
    # the test home), whatever the CPU runs natively
    assert got["auto"]["precision"] == "f32"
    want = "unproven" if auto_precision_here() == "bf16" else "reference precision"
    assert got["auto"]["precision_proof"]["status"] == want
    assert got["auto"]["infer_requests"] == 2 and got["auto"]["runtime"].startswith("openvino")
    # The bar for a precision change: >= 99.5 % of pixels the same, with trained weights.
    assert got["auto_agreement"] >= 0.995, got["auto_agreement"]


OPENVINO_TRIMMED = """
import json, sys
import numpy as np
from cloudseg.engine.backend import BackendOptions
from cloudseg.engine.registry import make_backend
model = sys.argv[1]
x = np.random.default_rng(0).uniform(0, 2e4, (3, 4, 128, 128)).astype(np.float32)
ort = make_backend(model, "cpu", BackendOptions(tile=128, batch=2))
ov = make_backend(model, "openvino", BackendOptions(tile=128, batch=2, precision="f32"))
full = ov.run(x)
cut = ov.run(np.ascontiguousarray(x[:1, :, :64, :96]))  # a trimmed edge tile, its own shape
again = ov.run(x)  # full tiles after it: the requests took their shape back
print(json.dumps({
    "dynamic": ov.dynamic_shapes, "cut_shape": list(cut.shape),
    "full_vs_ort": float(np.abs(full - ort.run(x)).max()),
    "cut_vs_ort": float(np.abs(cut - ort.run(np.ascontiguousarray(x[:1, :, :64, :96]))).max()),
    "again_vs_full": float(np.abs(again - full).max()),
}))
"""


def test_openvino_runs_trimmed_edge_tiles_at_their_own_size(tmp_path) -> None:
    if importlib.util.find_spec("openvino") is None:  # imported in the child only
        pytest.skip("openvino is not installed")
    from onnx_models import B1, W1, card_for, conv_model

    model = conv_model(tmp_path / "conv.onnx", W1[None] * 1e-4, B1, card_for(tile=128))
    got = run_python(OPENVINO_TRIMMED, model)
    assert got["dynamic"] and got["cut_shape"] == [1, 1, 64, 96]
    assert max(got["full_vs_ort"], got["cut_vs_ort"], got["again_vs_full"]) < 1e-5, got


def auto_precision_here() -> str:
    flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "").split()
    return "bf16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "f32"


def test_torch_run_refused_on_tensorrt(r34_run: tuple[Path, Path]) -> None:
    with pytest.raises(ModelError, match="export it to ONNX .*for tensorrt"):
        make_backend(r34_run[0], "tensorrt", BackendOptions(tile=R34_TILE))


# ---------------------------------------------------------------------------------------------
# GPU: run only where a CUDA device and libraries exist (pytest -m gpu; skipped elsewhere)
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_gpu_provider_matches_cpu(softmax_model: Path, tmp_path: Path, provider: str) -> None:
    # A GPU machine without onnxruntime-gpu (torch's CUDA only) skips, naming what is missing;
    # make gpu-check sets CLOUDSEG_REQUIRE_ORT_GPU where it installed it, so there it must load.
    why = probe(provider)
    if why and not os.environ.get("CLOUDSEG_REQUIRE_ORT_GPU"):
        pytest.skip(why)
    x = tiles(5)
    gpu = ort_backend(softmax_model, provider, batch=2, trt_cache=tmp_path)
    assert gpu.providers[0] == PROVIDERS[provider]
    cpu = ort_backend(softmax_model, batch=2)
    np.testing.assert_allclose(gpu.run(x), cpu.run(x), atol=1e-5)
    if provider == "tensorrt":
        assert any(tmp_path.iterdir()), "TensorRT wrote no engine or timing cache"


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_cpu(r34_run: tuple[Path, Path], scene_tiles) -> None:
    run, _ = r34_run
    cpu = make_backend(run, "torch", BackendOptions(tile=R34_TILE, precision="f32"))
    for precision in ("f32", "f16", "bf16"):
        gpu = make_backend(run, "torch", BackendOptions(tile=R34_TILE, device=0, batch=2,
                                                        precision=precision))  # fmt: skip
        assert gpu.providers == ["torch:cuda:0"]
        got, want = gpu.run(scene_tiles), cpu.run(scene_tiles)
        assert ((got > 0.5) == (want > 0.5)).mean() > 0.995, precision


PROBE_COST = """
import json
from cloudseg.engine.ort_providers import driver_missing
from cloudseg.engine.registry import probe
def maps():
    return {line.split()[-1] for line in open("/proc/self/maps") if ".so" in line}
before = maps()
reasons = {p: probe(p) for p in ("tensorrt", "cuda")}
print(json.dumps({"driver": driver_missing(), "reasons": reasons,
                  "loaded": sorted(m.rsplit("/", 1)[-1] for m in maps() - before)}))
"""


def test_without_a_driver_the_gpu_probes_load_no_gpu_library() -> None:
    """``--provider auto`` probes TensorRT and CUDA in every run: on a machine without the
    NVIDIA driver that must not preload CUDA, cuDNN or TensorRT (200 MB of RSS)."""
    got = run_python(PROBE_COST)
    if got["driver"] is None:
        pytest.skip("an NVIDIA driver is here")
    assert all(r.startswith("no NVIDIA driver here") for r in got["reasons"].values()), got
    names = ("cudnn", "cublas", "nvinfer", "cudart", "cufft")
    gpu_libraries = [m for m in got["loaded"] if any(k in m for k in names)]
    assert not gpu_libraries, gpu_libraries
