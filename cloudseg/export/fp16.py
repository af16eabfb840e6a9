"""The float16 variant: half the file size and GPU tensor-core arithmetic, same interface.

Weights and activations become float16 with ONNX Runtime's own converter
(``onnxruntime.transformers.float16.convert_float_to_float16``, already installed with ONNX
Runtime, so no extra dependency); ``keep_io_types=True`` leaves the input ``image`` and output
``logits`` float32, with a ``Cast`` inside the graph at each boundary, so the engine feeds every
variant the same arrays. Ops the converter keeps in float32 (its default block list) get casts
around them.

What the agreement figure means: it is measured here with ONNX Runtime's CPU provider, which
lacks float16 kernels for some ops and runs them in float32 between inserted casts. It captures
the rounding of weights and of activations between nodes, not float16 accumulation inside
CUDA/TensorRT kernels: it is an upper bound on what a GPU gives. Re-check on the target GPU.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, numpy_helper


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 copy of a float32 model, float32 at the input and output boundary."""
    # Imported here: onnxruntime.transformers pulls in more than the rest of export needs.
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    half = convert_float_to_float16(model, keep_io_types=True)
    # The converter appends the boundary casts at the end of the node list; ONNX (and its
    # checker) requires topological order, so sort the graph again.
    OnnxModel.graph_topological_sort(half.graph, is_deterministic=True)
    return half


def to_float32(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """A float32 copy of a (partly) float16 model, and whether anything was widened.

    The inverse of :func:`to_fp16` for foreign graphs made that way (ukis-csmask's): every
    float16 initialiser and ``Constant`` becomes float32, every ``Cast`` to float16 a cast to
    float32, and so does every declared float16 value type. ONNX Runtime's quantiser works on
    float32 tensors only. The arithmetic changes with it: the float16 rounding between nodes is
    gone.
    """
    out, widened = onnx.ModelProto(), False
    out.CopyFrom(model)

    def widen(tensor: onnx.TensorProto) -> None:
        nonlocal widened
        if tensor.data_type == TensorProto.FLOAT16:
            array = numpy_helper.to_array(tensor).astype("float32")
            tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
            widened = True

    graph = out.graph
    for tensor in graph.initializer:
        widen(tensor)
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.name == "value":
                widen(attribute.t)
            elif (
                node.op_type == "Cast"
                and attribute.name == "to"
                and (attribute.i == TensorProto.FLOAT16)
            ):
                attribute.i, widened = TensorProto.FLOAT, True
    for value in (*graph.value_info, *graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type, widened = TensorProto.FLOAT, True
    return out, widened
