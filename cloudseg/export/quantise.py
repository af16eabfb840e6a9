"""The int8 variant: ONNX Runtime static quantisation in QDQ format, calibrated on real patches.

Recipe (DESIGN.md, for this CPU's AVX-512 VNNI, and what TensorRT wants too):

1. ``quant_pre_process``: ONNX shape inference and ORT's graph optimisations (folding, fusions)
   before quantisation parameters are chosen.
2. ``quantize_static`` with ``QuantFormat.QDQ`` (QuantizeLinear/DequantizeLinear pairs around
   float ops; ORT fuses them into int8 kernels), signed int8 weights per output channel,
   activation ranges from MinMax calibration over normalised patches (:class:`PatchReader`).
   Activations are *unsigned* (U8S8) by default, chosen by measurement against DESIGN.md's
   "S8S8 first": on this AVX-512 VNNI CPU, ORT 1.31 ran S8S8 at 1.1x (r34) and 1.5x (r18) its
   fp32 speed, U8S8 at 2.0x and 2.7x (tile 384, batch 1, same run). On CPUs without VNNI, ORT's
   U8S8 kernel (VPMADDUBSW) can saturate; the >= 99.5 % agreement check that every int8 file
   must pass catches that. ``signed_activations=True`` (``cloudseg-export --int8-signed``) makes
   S8S8, the symmetric signed form TensorRT's explicit-precision int8 needs. The head (the conv
   that produces ``logits``) stays float32: its output *is* the decision, and int8 steps over
   the logit range flip pixels near the threshold (on a lightly trained r34, agreement with fp32
   went from 99.41 % to 99.61 %; MinMax, Entropy and Percentile calibration made no difference
   of that size). It is a 1x1 conv (16 channels in for r34, 100 for r18): a negligible share of
   the compute.
   BatchNormalization (r18's five skip-connection norms, which follow a ReLU and cannot be folded)
   is not quantised either: ORT has no int8 kernel for it, so QDQ around it would only add
   rounding (and its rank-1 scale cannot be quantised per channel).
3. Not used: ``CalibMaxIntermediateOutputs``. In ORT 1.31 ``MinMaxCalibrater.collect_data``
   drops each full chunk of collected ranges without merging it, so only the last partial chunk
   would count (or none: "No data is collected").

Whether int8 is kept is decided elsewhere: mask agreement with fp32 on patches of scenes not used
for calibration (:mod:`cloudseg.export.parity`, :mod:`cloudseg.export.samples`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from cloudseg.errors import DataError
from cloudseg.export.onnx_export import INPUT_NAME

#: Op types quantised: ORT's default set (both registries, as ``quantize_static`` uses when
#: given none) without BatchNormalization (module docstring).
OP_TYPES = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - {"BatchNormalization"})
CALIB_BATCH = 1  # patches per calibration run: memory, not speed, is the limit for r18 at 384


class PatchReader(CalibrationDataReader):
    """Feeds ``(batch, 4, H, W)`` float32 normalised patches to ORT's calibrator."""

    def __init__(self, x: np.ndarray, batch: int = CALIB_BATCH, name: str = INPUT_NAME) -> None:
        self.x, self.batch, self.start = x.astype(np.float32, copy=False), batch, 0
        self.name = name  # the graph's input (ukis-csmask's models call it "input")

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.start >= len(self.x):
            return None
        chunk = self.x[self.start : self.start + self.batch]
        self.start += self.batch
        return {self.name: chunk}

    def rewind(self) -> None:
        self.start = 0


def to_int8(
    fp32: onnx.ModelProto | Path,
    out_path: Path,
    calibration: np.ndarray,
    signed_activations: bool = False,
    op_types: tuple[str, ...] | None = None,
    keep_float: Callable[[onnx.ModelProto], list[str]] | None = None,
) -> None:
    """Quantise a float32 model into the file ``out_path`` (QDQ, U8S8 or S8S8, per channel).

    Args:
        fp32: the float32 model, or its file.
        out_path: where the quantised model is written.
        calibration: ``(N, 4, H, W)`` float32 normalised patches, N >= 1.
        signed_activations: S8S8 (TensorRT) instead of U8S8 (fastest on the CPU).
        op_types: op types to quantise (default :data:`OP_TYPES`).
        keep_float: picks more nodes to leave in float from the graph as it is quantised
            (after ORT's pre-processing; the head always stays float).

    Raises:
        DataError: no calibration patches.
    """
    if len(calibration) == 0:
        raise DataError("int8 needs calibration patches with valid pixels; none were found")
    with tempfile.TemporaryDirectory(prefix="cloudseg-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # ORT's symbolic shape inference (made for transformer ops) gives up on dynamic
        # height/width through ConvTranspose and DepthToSpace ("Incomplete symbolic shape
        # inference"); ONNX's own shape inference types every op of these graphs, and that is
        # what quantisation needs.
        source = fp32 if isinstance(fp32, onnx.ModelProto) else str(fp32)
        quant_pre_process(source, str(prepared), skip_symbolic_shape=True)
        graph = onnx.load_model(str(prepared), load_external_data=False)
        quantize_static(
            str(prepared),
            str(out_path),
            PatchReader(calibration, name=graph.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8 if signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(op_types or OP_TYPES),
            nodes_to_exclude=[*head_nodes(graph), *(keep_float(graph) if keep_float else [])],
        )


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that write a graph output (the head), kept in float32."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if outputs & set(n.output)]
