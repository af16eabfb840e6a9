"""Issue 4's proof: exported ONNX files compute what the PyTorch models compute.

Both UNets are exported once per module (random init, dynamic height and width, example input
64 px) through the same pipeline ``cloudseg-export`` runs, then compared with PyTorch at batch 1
and 3 and at two sizes. The int8 threshold test trains a small r34 on synthetic data first (about
40 s here); a fast int8 smoke test checks the quantisation pipeline on both models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from cloudseg.card import read
from cloudseg.export import parity as par
from cloudseg.export.onnx_export import BLOCKED_OPS, check_file, declared_shape
from cloudseg.export.pipeline import ExportConfig, Exported, export
from cloudseg.export.quantise import head_nodes, to_int8
from cloudseg.export.samples import synthetic_patches
from cloudseg.export.sources import Source, load_source

#: Every op type the two fp32 graphs may hold (see cloudseg/export/onnx_export.py).
EXPECTED_OPS = {
    "Conv", "Relu", "Add", "Concat", "MaxPool", "ConvTranspose", "DepthToSpace",
    "BatchNormalization",
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a small shared box, threads waiting for a busy core make every
    forward pass many times slower (see tests/train/test_torch_r34.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module", params=["r18", "r34"])
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Source, Exported, list[str]]:
    """One dynamic-shape fp32 export of an untrained model, checked at 64 px, and its log."""
    if request.param == "r18":  # shared with the mask test: one r18 export per module
        return request.getfixturevalue("exported_r18")
    return _export_random(request.param, tmp_path_factory)


def _export_random(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Source, Exported, list[str]]:
    out = tmp_path_factory.mktemp(name) / f"cloudseg-{name}.onnx"
    logger, lines = logging.getLogger("cloudseg.export"), Lines()
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    source = load_source(name, random_init=True, tile=64)
    try:
        (done,) = export(ExportConfig(name, out=out, check_size=64), source)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    return source, done, lines.lines


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cloud_decision(logits: np.ndarray, n_out: int) -> np.ndarray:
    """Cloud log-odds at threshold 0.5, computed here independently of the package."""
    return logits[:, 0] if n_out == 1 else logits[:, 1] - logits[:, 0]


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("size", [(64, 64), (96, 96), (64, 128)])
def test_onnx_runtime_matches_pytorch(exported, batch, size):
    source, done, _ = exported
    x = np.random.default_rng(batch).standard_normal((batch, 4, *size), dtype=np.float32)
    with torch.no_grad():
        ref = source.model(torch.from_numpy(x)).numpy()
    got = session(done.path).run(None, {"image": x})[0]
    assert got.shape == ref.shape == (batch, len(source.card.classes), *size)
    assert np.abs(got - ref).max() <= 1e-4


@pytest.fixture(scope="module")
def trained_export(trained_r34, tmp_path_factory) -> tuple[Source, Exported]:
    """The trained r34 exported through the same pipeline: the r34 whose decisions vary (an
    untrained r34 decides 0.298 +- 0.003 on every pixel, whatever the input)."""
    run_dir, _ = trained_r34
    source = load_source("r34", run=run_dir)
    out = tmp_path_factory.mktemp("trained") / "r34.onnx"
    (done,) = export(ExportConfig("r34", run=run_dir, out=out, check_size=64), source)
    return source, done


@pytest.mark.parametrize("case", ["r18 untrained, standard-normal input", "r34 trained, scene"])
def test_masks_match_where_decisions_vary(request, case):
    """Mask parity on inputs where the model's decisions vary, so it can fail: masks equal at
    every pixel whose cloud log-odds are more than 1e-3 from the threshold's."""
    if case.startswith("r18"):
        source, done, _ = request.getfixturevalue("exported_r18")
        x = np.random.default_rng(7).standard_normal((2, 4, 96, 96), dtype=np.float32)
    else:
        source, done = request.getfixturevalue("trained_export")
        x = source.card.transform.apply(synthetic_patches(4, 64, seed=3).raw)
    with torch.no_grad():
        ref = cloud_decision(source.model(torch.from_numpy(x)).numpy(), len(source.card.classes))
    got = cloud_decision(session(done.path).run(None, {"image": x})[0], len(source.card.classes))
    share = (ref > 0).mean()
    print(f"{case}: cloud share {share:.3f}, decision std {ref.std():.3f}")
    assert 0.02 < share < 0.98 and ref.std() > 0.1  # decisions vary: the check is not vacuous
    sure = np.abs(ref) > 1e-3
    assert sure.mean() > 0.9
    assert not np.any(((ref > 0) != (got > 0)) & sure)


@pytest.fixture(scope="module")
def exported_r18(tmp_path_factory) -> tuple[Source, Exported, list[str]]:
    return _export_random("r18", tmp_path_factory)


def test_input_is_four_bands_with_named_dynamic_axes(exported):
    source, done, _ = exported
    model = onnx.load(str(done.path), load_external_data=False)
    (image,), (logits,) = model.graph.input, model.graph.output
    assert (image.name, logits.name) == ("image", "logits")
    assert declared_shape(image) == ["batch", 4, "height", "width"]
    assert declared_shape(logits) == ["batch", len(source.card.classes), "height", "width"]
    three_bands = np.zeros((1, 3, 64, 64), np.float32)
    with pytest.raises(ort.capi.onnxruntime_pybind11_state.InvalidArgument):
        session(done.path).run(None, {"image": three_bands})


def test_graph_is_clean(exported):
    source, done, _ = exported
    model = check_file(done.path, len(source.card.classes), None)  # checker + strict inference
    ops = {n.op_type for n in model.graph.node}
    assert ops <= EXPECTED_OPS and not ops & BLOCKED_OPS
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":  # r18's skip-connection norms, inference mode
            assert len(node.output) == 1
            assert all(a.i == 0 for a in node.attribute if a.name == "training_mode")
    assert [o.version for o in model.opset_import if o.domain == ""] == [18]


def test_card_round_trips(exported):
    source, done, _ = exported
    card = read(done.path)
    assert card == done.card
    assert card.transform == source.card.transform and card.classes == source.card.classes
    facts = card.extra["export"]
    assert facts["variant"] == "fp32" and facts["opset"] == 18
    assert facts["input"]["shape"] == ["batch", 4, "height", "width"]
    assert facts["parity"]["max_abs_diff"] <= par.LOGIT_ATOL
    assert facts["parity"]["mask_mismatches"] == 0
    assert card.training["random_init"] is True
    assert {"onnx", "onnxruntime", "torch_export"} <= set(card.versions)


def test_parity_figures_are_logged_on_one_line(exported):
    _, done, lines = exported
    (line,) = lines
    assert str(done.path) in line
    assert "fp32" in line and "passed" in line and " MB" in line and " s, " in line
    assert "max |logit diff|" in line and "0 mask mismatches" in line


def _quantised_types(model: onnx.ModelProto) -> dict[str, set[str]]:
    """Integer types in a QDQ graph: of activations (the zero points of QuantizeLinear nodes) and
    of weights (stored already quantised, as initialisers feeding DequantizeLinear nodes)."""
    inits = {i.name: i for i in model.graph.initializer}
    name = onnx.TensorProto.DataType.Name
    kinds: dict[str, set[str]] = {"activations": set(), "weights": set()}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and len(node.input) > 2:
            kinds["activations"].add(name(inits[node.input[2]].data_type))
        elif node.op_type == "DequantizeLinear" and node.input[0] in inits:
            tensor = inits[node.input[0]]
            if len(tensor.dims) == 4:  # conv kernels (biases are int32)
                kinds["weights"].add(name(tensor.data_type))
    return kinds


def test_int8_smoke(exported, tmp_path):
    """Quantisation runs, keeps the head in float32, passes the checks and reports a number."""
    source, done, _ = exported
    patches = synthetic_patches(6, 64, seed=1)
    out = tmp_path / "int8.onnx"
    to_int8(done.path, out, source.card.transform.apply(patches.raw[:4]))
    model = check_file(out, len(source.card.classes), None)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    head = {n.name: n for n in model.graph.node}[head_nodes(model)[0]]
    assert head.op_type == "Conv"  # the head itself is not followed by a QuantizeLinear
    # U8S8 by default (ORT's fast CPU kernels): activations quantise to uint8, weights to int8.
    assert _quantised_types(model) == {"activations": {"UINT8"}, "weights": {"INT8"}}
    signed = tmp_path / "int8-signed.onnx"
    to_int8(
        done.path, signed, source.card.transform.apply(patches.raw[:2]), signed_activations=True
    )
    assert _quantised_types(onnx.load(signed)) == {"activations": {"INT8"}, "weights": {"INT8"}}
    figures = par.mask_agreement(
        session(done.path), session(out), source.card, patches.raw[4:], "int8", "synthetic"
    )
    assert 0.0 <= figures.share <= 1.0 and figures.valid_pixels > 0
    print(figures.summary())


def test_variants_keep_masks_of_a_trained_model(trained_r34, tmp_path):
    """Issue 4: fp16 and int8 of an r34 trained on synthetic data keep >= 99.5 % mask agreement,
    on held-out patches where the fp32 model's decisions vary."""
    run_dir, synthetic_dataset = trained_r34
    config = ExportConfig(
        "r34", run=run_dir, out=tmp_path / "m.onnx", fp16=True, int8=True, data=synthetic_dataset
    )
    fp32, fp16, int8 = export(config)
    print(fp32.figures.summary(), fp16.figures.summary(), int8.figures.summary(), sep="\n")
    for variant in (fp16, int8):
        agreement = read(variant.path).extra["export"]["agreement"]
        assert agreement["share"] >= 0.995 and agreement["share"] == variant.figures.share
        assert variant.figures.decisions_vary, variant.figures.cloud_share
        assert "held-out" in agreement["source"]
    assert read(int8.path).extra["export"]["calibration"]["patches"] > 0


# ---------------------------------------------------------------------------------------------
# The fp16 / int8 acceptance gate: shown refusing a file that disagrees, not only accepting
# ---------------------------------------------------------------------------------------------


def test_agreement_gate_refuses_a_disagreeing_candidate_and_accepts_an_equal_one(tmp_path):
    """``mask_agreement`` runs both sessions: a candidate whose logits are negated scores near 0,
    one with its bias shifted scores below the minimum, and the reference itself scores 1, on
    patches where the reference's decisions vary."""
    from onnx_models import B1, W1, card_for, conv_model

    from cloudseg.card import InputTransform
    from cloudseg.export.sources import GENERIC_MEAN, GENERIC_STD

    card = card_for(transform=InputTransform(1 / 65535, 0.0, GENERIC_MEAN, GENERIC_STD), tile=64)
    reference = session(conv_model(tmp_path / "ref.onnx", W1[None], B1, card))
    flipped = session(conv_model(tmp_path / "neg.onnx", -W1[None], -B1, card))
    shifted = session(conv_model(tmp_path / "shift.onnx", W1[None], B1 + 0.4, card))
    raw = synthetic_patches(6, 64, seed=2).raw
    same = par.mask_agreement(reference, reference, card, raw, "fp16", "synthetic")
    assert same.decisions_vary and same.share == 1.0 and same.passed
    bad = par.mask_agreement(reference, flipped, card, raw, "fp16", "synthetic")
    assert bad.share < 0.05 and not bad.passed
    near = par.mask_agreement(reference, shifted, card, raw, "int8", "synthetic")
    assert 0.5 < near.share < par.MIN_AGREEMENT and not near.passed


def _flip_head(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its last convolution's weights and bias negated: its masks invert."""
    from onnx import numpy_helper

    head = next(n for n in reversed(proto.graph.node) if n.op_type == "Conv")
    inits = {i.name: i for i in proto.graph.initializer}
    for name in head.input[1:]:
        flipped = numpy_helper.from_array(-numpy_helper.to_array(inits[name]), name)
        inits[name].CopyFrom(flipped)
    return proto


def test_export_refuses_a_variant_that_disagrees_and_keeps_fp32(tmp_path, monkeypatch):
    """A variant below the agreement minimum is refused: no file, one line naming it, and the
    fp32 file written first stays."""
    from cloudseg.errors import ModelError
    from cloudseg.export import pipeline
    from cloudseg.export.fp16 import to_fp16

    monkeypatch.setattr(pipeline, "to_fp16", lambda proto: to_fp16(_flip_head(proto)))
    out = tmp_path / "m.onnx"
    config = ExportConfig("r34", random_init=True, tile=64, fp16=True, out=out)
    with pytest.raises(ModelError, match=r"m-fp16\.onnx: fp16 export refused: mask agreement"):
        export(config, load_source("r34", random_init=True, tile=64))
    assert out.is_file() and not (tmp_path / "m-fp16.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporary left
