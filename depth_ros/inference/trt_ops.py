"""Which ONNX operators TensorRT 10's ONNX parser imports, and which a model uses that it does not.

The list is the operator support matrix of onnx-tensorrt (``docs/operators.md``, TensorRT 10.x
branch), restricted to what TensorRT 10.3 — the release JetPack 6.1/6.2 ships, the oldest we
target — already had: operators its changelog adds later (the window functions in 10.4,
``STFT`` in 10.5, ``Attention`` in 10.14, ``RMSNormalization``/``RotaryEmbedding``/
``TensorScatter`` in 10.15) are left out. Opsets 9 to 20 of the default domain; a node of any
other domain needs a plugin. A few documented restrictions that our exporters can hit are
checked too (``Resize`` modes and antialiasing, pooling dilations).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

TENSORRT_MIN_VERSION = "10.3"
TENSORRT_OPSET_RANGE = (9, 20)

TENSORRT_ONNX_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike
Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

_DEFAULT_DOMAINS = ("", "ai.onnx")
_RESIZE_MODES = frozenset((b"nearest", b"linear"))
_RESIZE_COORDINATES = frozenset((b"half_pixel", b"pytorch_half_pixel", b"tf_half_pixel_for_nn",
                                 b"asymmetric", b"align_corners"))


def _attribute(node, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            import onnx

            return onnx.helper.get_attribute_value(attr)
    return default


def _restriction(node) -> str | None:
    """Why TensorRT rejects this (supported) node's attributes, or None."""
    if node.op_type == "Resize":
        mode = _attribute(node, "mode", b"nearest")
        if mode not in _RESIZE_MODES:
            return f"mode {mode.decode()}"
        coordinates = _attribute(node, "coordinate_transformation_mode", b"half_pixel")
        if coordinates not in _RESIZE_COORDINATES:
            return f"coordinate_transformation_mode {coordinates.decode()}"
        if _attribute(node, "antialias", 0):
            return "antialias"
    if node.op_type in ("AveragePool", "MaxPool", "LpPool"):
        if any(d != 1 for d in _attribute(node, "dilations", []) or []):
            return "dilations other than 1"
    return None


def _walk(graph, functions: dict) -> Iterable:
    """Every node of a graph, of its subgraphs (If/Loop/Scan bodies) and of the local
    functions it calls."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attr.g, functions)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _walk(sub, functions)
        function = functions.get((node.domain, node.op_type))
        if function is not None:
            yield from _walk(function, functions)


def unsupported_onnx_ops(model_or_path) -> list[str]:
    """Sorted descriptions of what TensorRT 10's ONNX parser cannot import from a model:
    unknown operators (``domain::Op`` for custom domains), supported operators used in a way
    it rejects (``Resize (mode cubic)``), an opset outside 9–20. Empty when all is supported.

    Takes a path or an ``onnx.ModelProto``.
    """
    import onnx

    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        model = onnx.load(os.fspath(model_or_path), load_external_data=False)
    found: set[str] = set()
    low, high = TENSORRT_OPSET_RANGE
    for opset in model.opset_import:
        if opset.domain in _DEFAULT_DOMAINS and not low <= opset.version <= high:
            found.add(f"opset {opset.version} (TensorRT 10 imports opsets {low} to {high})")
    functions = {(f.domain, f.name): f for f in model.functions}
    for node in _walk(model.graph, functions):
        if (node.domain, node.op_type) in functions:
            continue  # a local function: TensorRT imports its body, checked by _walk
        if node.domain not in _DEFAULT_DOMAINS:
            found.add(f"{node.domain}::{node.op_type}")
        elif node.op_type not in TENSORRT_ONNX_OPS:
            found.add(node.op_type)
        else:
            reason = _restriction(node)
            if reason:
                found.add(f"{node.op_type} ({reason})")
    return sorted(found)
