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
