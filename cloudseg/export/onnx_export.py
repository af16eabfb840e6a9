"""PyTorch -> ONNX for the two cloud UNets, and the checks every exported graph must pass.

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript), for both models.

* The TorchScript exporter (``dynamo=False``) is deprecated since torch 2.9. It traces fastai's
  ``if ssh != up_out.shape[-2:]`` (resize the upsampled map to the skip's size) into a Python
  bool frozen at the traced size (a ``TracerWarning``), and it leaves about 40 ``Identity`` nodes
  (de-duplicated all-zero biases) in both graphs.
* torch.export is told that height and width are ``32 * k``: the ResNet's rule, and what lets it
  *prove* the skip sizes always match, so fastai's resize branch disappears without a guard and
  without ``Shape``/``Gather``/``Resize`` nodes. The onnxscript optimiser then folds constants
  (BatchNorm into the preceding Conv). Resulting graphs: r34 ``Conv`` 47, ``Relu`` 43, ``Add`` 16,
  ``ConvTranspose`` 5, ``Concat`` 4, ``MaxPool`` 1; r18 ``Conv`` 38, ``Relu`` 39, ``Add`` 9,
  ``DepthToSpace`` 5 (PixelShuffle), ``Concat`` 5, ``MaxPool`` 1 and 5 inference-mode
  ``BatchNormalization`` (fastai normalises the skip after a ReLU: there is no conv to fold into).

Opset 18 (:data:`DEFAULT_OPSET`): the opset the exporter's op library (torchlib) is written for,
so no version conversion runs (torch warns that conversion "may not be successful"); at least 13,
which per-channel ``QuantizeLinear`` (int8 QDQ) needs; run by ONNX Runtime >= 1.14 and TensorRT
10's parser. None of the ops above changed meaning between opsets 13 and 21. ``--opset`` picks
another one in :data:`OPSETS`; parity decides whether the result is kept.

Contract of the graph (checked by :func:`check_graph`): one input ``image``, float32,
``(batch, 4, height, width)``, one output ``logits``, float32, ``(batch, n_out, height, width)``;
every axis named, ``height`` and ``width`` fixed to N by ``--tile N``; no op of
:data:`BLOCKED_OPS`; no BatchNormalization in training mode.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from cloudseg.card import METADATA_KEY, ModelCard
from cloudseg.errors import ModelError
from cloudseg.train.models import SIZE_MULTIPLE, check_input_size

log = logging.getLogger("cloudseg.export")

INPUT_NAME = "image"
OUTPUT_NAME = "logits"
N_BANDS = 4
DEFAULT_OPSET = 18
#: Opsets ``--opset`` accepts: 17 for older TensorRT (through the version converter) up to 21.
OPSETS = range(17, 22)
#: Axis names of the input and output (DESIGN.md: ukis mislabelled an output axis).
BATCH, HEIGHT, WIDTH = "batch", "height", "width"

#: Ops that none of these conv nets needs: training-only ops, and ops that compute on shapes or
#: branch (their presence means the exporter traced size-dependent logic, which breaks or slows
#: dynamic height and width, and TensorRT's fixed-shape engines).
BLOCKED_OPS = frozenset(
    {
        "Dropout",
        "Shape",
        "Size",
        "Gather",
        "Slice",
        "Reshape",
        "Expand",
        "ConstantOfShape",
        "Range",
        "Resize",
        "Upsample",
        "If",
        "Loop",
        "Where",
        "NonZero",
    }
)

_FLOAT = onnx.TensorProto.FLOAT


def to_onnx(
    model: nn.Module,
    tile: int | None = None,
    opset: int = DEFAULT_OPSET,
    example_size: int = 64,
) -> onnx.ModelProto:
    """Export ``model`` to an in-memory ONNX model (weights included, no card yet).

    Args:
        model: maps ``(N, 4, H, W)`` float32 to ``(N, n_out, H, W)`` logits; it is deep-copied
            and put in eval mode, so the caller's module is left as it was.
        tile: fix height and width to this size; ``None`` keeps them dynamic (multiples of 32).
        opset: ONNX opset of the default domain, one of :data:`OPSETS`.
        example_size: side of the example input when ``tile`` is ``None``.

    Returns:
        The ModelProto with input ``image`` and output ``logits``, axes named as in
        the module docstring.

    Raises:
        ModelError: ``tile`` is not a multiple of 32, or ``opset`` is not in :data:`OPSETS`.
    """
    if opset not in OPSETS:
        raise ModelError(f"opset {opset} is not supported; choose {OPSETS[0]} to {OPSETS[-1]}")
    size = tile or example_size
    check_input_size(size, size)
    model = copy.deepcopy(model).eval()
    # Batch 2: torch.export specialises an example dimension of size 1.
    example = torch.randn(2, N_BANDS, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(example)  # dry run: a broken model fails here, with PyTorch's own error
    dims: dict[int, Any] = {0: torch.export.Dim(BATCH, min=1)}
    if tile is None:
        dims[2] = SIZE_MULTIPLE * torch.export.Dim(f"{HEIGHT}_div_{SIZE_MULTIPLE}", min=1)
        dims[3] = SIZE_MULTIPLE * torch.export.Dim(f"{WIDTH}_div_{SIZE_MULTIPLE}", min=1)
    with warnings.catch_warnings():
        # torch.export's own notices about fastai internals; the checks below are what count.
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=(dims,),
            opset_version=opset,
            optimize=True,  # onnxscript optimiser: constant folding, BatchNorm into Conv
            verbose=False,
        )
    proto = program.model_proto
    _name_axes(proto)
    return proto


def _name_axes(proto: onnx.ModelProto) -> None:
    """Rename torch's ``32*height_div_32`` to ``height`` (and width) wherever it appears."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    names = {dims[2].dim_param: HEIGHT, dims[3].dim_param: WIDTH}
    names.pop("", None)  # fixed axes have no dim_param
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def save(proto: onnx.ModelProto, path: Path) -> None:
    """Write ``proto`` as one self-contained file (weights inside: both models are < 2 GB)."""
    onnx.save_model(proto, str(path), save_as_external_data=False)


def append_card(path: Path, card: ModelCard) -> None:
    """Add ``card`` to the ``metadata_props`` of the ONNX file at ``path`` without rewriting it.

    Protobuf merges concatenated encodings of a message, so appending one encoded
    ``metadata_props`` field adds one entry and leaves the checked graph bytes as they were.
    The file must not hold a card yet (metadata keys must be unique).
    """
    entry = onnx.ModelProto()
    entry.metadata_props.add(key=METADATA_KEY, value=card.to_json())
    with open(path, "ab") as fh:
        fh.write(entry.SerializeToString())


def expected_shapes(n_out: int, tile: int | None) -> tuple[list[int | str], list[int | str]]:
    """Input and output shapes the graph must declare: ints are fixed, strings named axes."""
    h, w = (tile, tile) if tile else (HEIGHT, WIDTH)
    return [BATCH, N_BANDS, h, w], [BATCH, n_out, h, w]


def declared_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    """Shape of a graph input or output: ints, axis names, or ``"?"`` for an unnamed axis."""
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in value.type.tensor_type.shape.dim
    ]


def graph_facts(proto: onnx.ModelProto) -> dict[str, Any]:
    """Input, output and op counts of a graph, for the model card and the log."""
    return {
        "input": {"name": proto.graph.input[0].name, "shape": declared_shape(proto.graph.input[0])},
        "output": {
            "name": proto.graph.output[0].name,
            "shape": declared_shape(proto.graph.output[0]),
        },
        "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "ops": dict(sorted(Counter(n.op_type for n in proto.graph.node).items())),
    }


def graph_problems(proto: onnx.ModelProto, n_out: int, tile: int | None) -> list[str]:
    """What breaks the graph contract of the module docstring; empty when it holds."""
    problems = []
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    want_in, want_out = expected_shapes(n_out, tile)
    for kind, values, name, want in (
        ("input", inputs, INPUT_NAME, want_in),
        ("output", list(proto.graph.output), OUTPUT_NAME, want_out),
    ):
        if [v.name for v in values] != [name]:
            problems.append(f"{kind}s are {[v.name for v in values]}, expected [{name!r}]")
            continue
        if values[0].type.tensor_type.elem_type != _FLOAT:
            problems.append(f"{kind} {name!r} is not float32")
        if declared_shape(values[0]) != want:
            problems.append(f"{kind} {name!r} has shape {declared_shape(values[0])}, not {want}")
    ops = {n.op_type for n in proto.graph.node}
    if ops & BLOCKED_OPS:
        problems.append(f"graph holds blocked ops {sorted(ops & BLOCKED_OPS)}")
    for node in proto.graph.node:
        training = any(a.name == "training_mode" and a.i for a in node.attribute)
        if node.op_type == "BatchNormalization" and (training or len(node.output) > 1):
            problems.append(f"BatchNormalization {node.name!r} is in training mode")
    return problems


def check_file(path: Path, n_out: int, tile: int | None) -> onnx.ModelProto:
    """Run the ONNX checker (full), strict shape inference and :func:`graph_problems` on a file.

    Returns:
        The loaded model, for further use.

    Raises:
        ModelError: naming the file and the first problem found.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
        proto = onnx.load_model(str(path))
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: fails the ONNX checks: {first}") from None
    problems = graph_problems(proto, n_out, tile)
    if problems:
        raise ModelError(f"{path}: {'; '.join(problems)}")
    return proto
