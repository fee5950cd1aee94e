"""ONNX models to pdinfer weight files (docs/ONNX.md): `convert_onnx` and `pdinfer convert`.

The graph is walked once in its (topological) order. Every value is a folded constant (`Const`:
initializers, Constant nodes, shape arithmetic) or the output of a pdinfer layer (`Act`, possibly
seen through a layout: NHWC, channel groups, permuted features). Each ONNX node becomes zero or more
layers of pdinfer's own vocabulary; a node that cannot is recorded, and the conversion ends with one
`UnsupportedOnnxError` naming every such node. `onnx` is imported only here (the `onnx` extra).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .errors import FormatError, MissingExtraError, PdinferError, UnsupportedLayerError
from .format import check_overwrite, write_weights
from .layers import LAYER_TYPES
from .layers.structural import broadcast_shape

INSTALL_HINT = "converting ONNX models needs the onnx package: pip install 'pdinfer[onnx]'"
SQRT2 = math.sqrt(2.0)


class UnsupportedOnnxError(UnsupportedLayerError):
    """An ONNX model uses operators or settings pdinfer cannot express; `problems` lists each node."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} node(s) cannot be converted to pdinfer layers:\n{lines}")


class Refused(Exception):
    """One node cannot be converted: why, and what would work instead."""

    def __init__(self, why: str, instead: str = "") -> None:
        super().__init__(why + (f"; instead: {instead}" if instead else ""))


@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class Act:
    """A pdinfer layer's output (`layer`, shape `layer_shape`) as the ONNX value sees it.

    `view` is None for the layer's own NCHW/(N, F) value, else how the ONNX value rearranges it:
    ("nhwc",) the layer's (N, C, H, W) transposed to (N, H, W, C); ("groups", g) its channels viewed
    as (N, g, C/g, H, W); ("shuffled", g) that view with axes 1 and 2 swapped; ("order", idx) a
    (N, F) whose feature j is the layer's feature idx[j]; ("reduced", "mean" or "max", axis) its
    mean or max over one of H, W, awaiting the reduction over the other (now `axis`); ("expanded",)
    the layer's output broadcast to `shape` (Expand), which only Mul (broadcasting itself) reads;
    ("channel_reduced", "mean" or "max") its reduction over the channels without keepdims,
    awaiting the Unsqueeze(1) that gives ChannelMean or ChannelMax; ("unsqueezed",) an (N, F)
    layer's output as (N, F, 1), awaiting the step to (N, F, 1, 1).
    """

    layer: str
    layer_shape: tuple[int, ...]
    view: Optional[tuple] = None
    shape: tuple[int, ...] = ()  # the ONNX value's shape (= layer_shape without a view)

    def __post_init__(self) -> None:
        if not self.shape:
            object.__setattr__(self, "shape", self.layer_shape)

    @property
    def rank(self) -> int:
        return len(self.shape)


Value = Any  # Const | Act


@dataclass
class Node:
    """One ONNX node as the handlers see it."""

    op: str
    name: str
    inputs: list[Optional[Value]]  # None for an omitted optional input
    attrs: dict[str, Any]
    opset: int
    outputs: list[str]
    uses: list[int]  # how many nodes (or the graph output) read each output
    input_uses: int = 0  # how many read input 0


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtraError(INSTALL_HINT) from None
    return onnx


class Converter:
    """Builds the layer list; handlers call `emit` and return the node's output values."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.names: set[str] = {"input"}

    def emit(self, type_name: str, inputs: Sequence[Act], name: str, tensors: Optional[dict[str, np.ndarray]] = None,
             **params: Any) -> Act:
        """Append a layer (checked by its own class) and return its output."""
        for x in inputs:
            if x.view is not None:
                raise Refused(f"its input is a rearranged view of a tensor ({x.view[0]}) that a "
                              f"{type_name} layer cannot read", "keep tensors in NCHW / (N, F) between layers")
        base = name or type_name.lower()
        unique, k = base, 1
        while unique in self.names:
            unique, k = f"{base}_{k}", k + 1
        self.names.add(unique)
        layer = LAYER_TYPES[type_name](unique, [x.layer for x in inputs])
        try:
            layer.load_param(params)
            shape = layer.output_shape([x.layer_shape for x in inputs])
            expected = layer.tensor_shapes()
        except FormatError as e:
            raise Refused(str(e)) from None
        tensors = tensors or {}
        for role, want in expected.items():
            array = np.ascontiguousarray(tensors[role], dtype=np.float32)
            if array.shape != want:
                raise Refused(f"{role} has shape {list(array.shape)}, {type_name} expects {list(want)}")
            if not np.isfinite(array).all():
                raise Refused(f"{role} holds NaN or infinite values")
            self.tensors[f"{unique}.{role}"] = array
        self.entries.append({"name": unique, "type": type_name, "inputs": [x.layer for x in inputs],
                             "params": params, "tensors": {r: f"{unique}.{r}" for r in expected}})
        self.shapes[unique] = shape
        return Act(unique, shape)

    def entry(self, layer: str) -> Optional[dict[str, Any]]:
        for e in reversed(self.entries):
            if e["name"] == layer:
                return e
        return None

    def pruned(self, output: str) -> list[dict[str, Any]]:
        """The layers the output depends on, in order (dropping what fusions left unused)."""
        needed, kept = {output}, []
        for e in reversed(self.entries):
            if e["name"] in needed:
                kept.append(e)
                needed.update(e["inputs"])
        return kept[::-1]


# ---------------------------------------------------------------------------------- helpers

def _act(node: Node, i: int, what: str = "input") -> Act:
    x = node.inputs[i]
    if not isinstance(x, Act):
        raise Refused(f"{what} {i} must be a tensor computed from the image, got a constant")
    return x


def _const(node: Node, i: int, what: str) -> Optional[np.ndarray]:
    """Input i as a constant array, None if omitted; a computed tensor is refused."""
    if i >= len(node.inputs) or node.inputs[i] is None:
        return None
    x = node.inputs[i]
    if not isinstance(x, Const):
        raise Refused(f"{what} (input {i}) must be a constant (an initializer or folded shape arithmetic)")
    return x.value


def _ints(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def _plain(x: Act) -> Act:
    if x.view is not None:
        raise Refused(f"its input is a rearranged view ({x.view[0]}) pdinfer cannot read here",
                      "keep tensors in NCHW / (N, F) between layers")
    return x


def _channel_vector(c: np.ndarray, shape: tuple[int, ...]) -> Optional[np.ndarray]:
    """A constant that broadcasts onto `shape` varying at most along axis 1, as (C,); else None."""
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > len(shape):
        return None
    try:
        full = np.broadcast_to(c, np.broadcast_shapes(c.shape, shape))
    except ValueError:
        return None
    if full.shape != tuple(shape):
        return None
    if c.size == 1:
        return np.full(shape[1], c.reshape(-1)[0])
    index = [0] * len(shape)
    index[1] = slice(None)
    vector = full[tuple(index)]
    return vector.copy() if np.array_equal(np.broadcast_to(vector.reshape((1, -1) + (1,) * (len(shape) - 2)), shape), full) else None


def _affine(conv: Converter, x: Act, scale: np.ndarray, shift: np.ndarray, name: str) -> Act:
    """y = x * scale[c] + shift[c] along dim 1: a depthwise 1x1 Conv2d, or a diagonal Linear on (N, F)."""
    x = _plain(x)
    c = x.shape[1]
    if x.rank == 4:
        return conv.emit("Conv2d", [x], name, {"weight": scale.reshape(c, 1, 1, 1), "bias": shift},
                         in_channels=c, out_channels=c, kernel_size=[1, 1], stride=[1, 1], padding=[0, 0, 0, 0],
                         dilation=[1, 1], groups=c, bias=True)
    if x.rank == 2:
        return conv.emit("Linear", [x], name, {"weight": np.diag(scale), "bias": shift},
                         in_features=c, out_features=c, bias=True)
    raise Refused(f"a per-channel scale or shift needs a (N, C, H, W) or (N, F) tensor, got shape {x.shape}")


def _fold_bias(conv: Converter, x: Act, shift: np.ndarray, node: Node) -> Optional[Act]:
    """Add a per-channel shift into the bias of the Conv2d/Linear that made x, if only this node reads it."""
    entry = conv.entry(x.layer)
    if x.view is not None or entry is None or entry["type"] not in ("Conv2d", "Linear") or node.input_uses != 1:
        return None
    key = f"{x.layer}.bias"
    bias = conv.tensors.get(key, np.zeros(len(shift), np.float32)).astype(np.float64) + shift
    conv.tensors[key] = bias.astype(np.float32)
    if not entry["params"]["bias"]:
        entry["params"]["bias"] = True
        entry["tensors"]["bias"] = key
    return x


def _pads_2d(attrs: dict[str, Any], shape: tuple[int, ...], kernel: list[int], strides: list[int],
             dilations: list[int]) -> list[int]:
    """ONNX pads / auto_pad as pdinfer's [top, left, bottom, right]."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = _ints(attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or min(pads) < 0:
            raise Refused(f"pads {pads} must be 4 non-negative entries (2-D)")
        return [pads[0], pads[1], pads[2], pads[3]]
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise Refused(f"auto_pad {auto!r} is not one of NOTSET, VALID, SAME_UPPER, SAME_LOWER")
    begin, end = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return [begin[0], begin[1], end[0], end[1]]


def _window(node: Node, x: Act, kernel: Optional[list[int]] = None) -> tuple[list[int], list[int], list[int], list[int]]:
    """kernel, strides, dilations and pads of a 2-D Conv or pool."""
    if x.rank != 4:
        raise Refused(f"only 2-D windows on (N, C, H, W) are supported, got an input of shape {x.shape}")
    kernel = kernel or _ints(node.attrs.get("kernel_shape", []))
    if len(kernel) != 2:
        raise Refused(f"kernel_shape {kernel} is not 2-D")
    strides = _ints(node.attrs.get("strides", [1, 1]))
    dilations = _ints(node.attrs.get("dilations", [1, 1]))
    return kernel, strides, dilations, _pads_2d(node.attrs, x.shape, kernel, strides, dilations)


# ---------------------------------------------------------------------------------- handlers

def conv_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    weight = _const(node, 1, "the weight")
    bias = _const(node, 2, "the bias")
    if weight is None or weight.ndim != 4:
        raise Refused("only 2-D convolutions with a constant 4-D weight are supported")
    kernel, strides, dilations, pads = _window(node, x, list(weight.shape[2:]))
    groups = int(node.attrs.get("group", 1))
    out_channels = weight.shape[0]
    params = dict(in_channels=weight.shape[1] * groups, out_channels=out_channels, kernel_size=kernel,
                  stride=strides, padding=pads, dilation=dilations, groups=groups, bias=bias is not None)
    tensors = {"weight": weight}
    if bias is not None:
        tensors["bias"] = bias.reshape(-1)
    return [conv.emit("Conv2d", [x], node.name, tensors, **params)]


def conv_transpose_(conv: Converter, node: Node) -> list[Value]:
    raise Refused("transposed convolution (upsampling) has no pdinfer layer",
                  "a classifier without upsampling; pdinfer runs image classifiers")


TRAINING = Refused("BatchNormalization in training mode (it computes batch statistics)",
                   "export the model in eval mode (model.eval() before torch.onnx.export)")


def _training(node: Any) -> bool:
    """A BatchNormalization node in training mode (training_mode=1, or its running statistics used)."""
    if node.op_type != "BatchNormalization":
        return False
    training = any(a.name == "training_mode" and a.i for a in node.attribute)
    return training or len([o for o in node.output if o]) > 1


INSTEAD = {  # what works instead of operators users meet most
    "LRN": "BatchNormalization (retrain with BatchNorm2d in place of local response normalization)",
    "Resize": "no upsampling: pdinfer runs image classifiers (resize the image before the model)",
    "Upsample": "no upsampling: pdinfer runs image classifiers (resize the image before the model)",
    "LayerNormalization": "BatchNormalization (LayerNorm and attention blocks are not supported)",
    "InstanceNormalization": "BatchNormalization in inference mode",
    "Sqrt": "an activation of docs/ONNX.md; element-wise arithmetic on computed tensors is limited to Add, "
            "Sub, Mul and constant Div",
    "Exp": "Softmax or an activation of docs/ONNX.md",
    "LogSoftmax": "Softmax (take the log of pdinfer's output)",
    "ArgMax": "the class values themselves (pdinfer run prints the top class)",
    "QuantizeLinear": "a float model (python -m exporter.compress stores int8 weights)",
    "DequantizeLinear": "a float model (python -m exporter.compress stores int8 weights)",
}


def _static_problem(node: Any) -> str:
    if _training(node):
        return str(TRAINING)
    return str(Refused(f"operator {node.op_type} has no pdinfer layer",
                       INSTEAD.get(node.op_type, "the operators listed in docs/ONNX.md")))


def batchnorm_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    if node.attrs.get("training_mode", 0) or any(node.uses[1:]):
        raise TRAINING
    scale, bias, mean, var = (_const(node, i, role) for i, role in
                              enumerate(("scale", "B", "mean", "var"), 1))
    eps = float(node.attrs.get("epsilon", 1e-5))
    if x.rank == 4 and 0 < eps <= 1:
        return [conv.emit("BatchNorm2d", [x], node.name, {"weight": scale, "bias": bias, "running_mean": mean,
                                                           "running_var": var}, num_features=x.shape[1], eps=eps)]
    factor = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return [_affine(conv, x, factor, bias - mean * factor, node.name)]


def gemm_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    weight = _const(node, 1, "B (the weight)")
    c = _const(node, 2, "C (the bias)")
    if node.attrs.get("transA", 0) or x.rank != 2 or weight.ndim != 2:
        raise Refused("Gemm is supported as Linear: A an (N, F) tensor, not transposed, B a constant matrix")
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    matrix = weight if node.attrs.get("transB", 0) else weight.T  # (out, in)
    bias = None if c is None else np.broadcast_to(np.asarray(c, np.float64) * beta, (1, matrix.shape[0]))
    if bias is not None and c.size not in (1, matrix.shape[0]):
        raise Refused(f"C of shape {list(c.shape)} is not one bias per output")
    return [_linear(conv, x, matrix * alpha if alpha != 1 else matrix,
                    None if bias is None else bias.reshape(-1), node.name)]


def _linear(conv: Converter, x: Act, matrix: np.ndarray, bias: Optional[np.ndarray], name: str) -> Act:
    """Linear from an (out, in) matrix; a feature-permuted input permutes the weight's columns."""
    if x.view is not None and x.view[0] == "order":
        permuted = np.empty_like(matrix)
        permuted[:, x.view[1]] = matrix
        matrix, x = permuted, Act(x.layer, x.layer_shape)
    tensors = {"weight": matrix}
    if bias is not None:
        tensors["bias"] = bias
    return conv.emit("Linear", [x], name, tensors, in_features=matrix.shape[1], out_features=matrix.shape[0],
                     bias=bias is not None)


def matmul_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    weight = _const(node, 1, "the second operand")
    if x.rank != 2 or weight is None or weight.ndim != 2:
        raise Refused(f"MatMul is supported as Linear: an (N, F) tensor times a constant matrix, got shapes "
                      f"{list(x.shape)} and {None if weight is None else list(weight.shape)}")
    return [_linear(conv, x, weight.T, None, node.name)]


def _unary(type_name: str, **params: Any) -> Callable[[Converter, Node], list[Value]]:
    def handler(conv: Converter, node: Node) -> list[Value]:
        x = _act(node, 0)
        if x.view is not None and x.view[0] in ("nhwc", "order"):  # element-wise: the view passes through
            y = conv.emit(type_name, [Act(x.layer, x.layer_shape)], node.name, **params)
            return [replace(x, layer=y.layer)]
        return [conv.emit(type_name, [x], node.name, **params)]
    return handler


def leaky_relu_(conv: Converter, node: Node) -> list[Value]:
    return _unary("LeakyReLU", negative_slope=float(node.attrs.get("alpha", 0.01)))(conv, node)


def elu_(conv: Converter, node: Node) -> list[Value]:
    return _unary("ELU", alpha=float(node.attrs.get("alpha", 1.0)))(conv, node)


def gelu_(conv: Converter, node: Node) -> list[Value]:
    approximate = node.attrs.get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    return _unary("GELU", approximate=approximate)(conv, node)


def clip_(conv: Converter, node: Node) -> list[Value]:
    if node.opset < 11:
        low, high = node.attrs.get("min"), node.attrs.get("max")
    else:
        low, high = (_const(node, i, what) for i, what in ((1, "min"), (2, "max")))
    low = None if low is None else float(np.asarray(low).reshape(-1)[0])
    high = None if high is None else float(np.asarray(high).reshape(-1)[0])
    low = None if low is not None and low < -1e30 else low
    high = None if high is not None and high > 1e30 else high
    if low is None and high is None:
        return [node.inputs[0]]
    if low == 0 and high == 6:
        return _unary("ReLU6")(conv, node)
    if low == 0 and high is None:
        return _unary("ReLU")(conv, node)
    if low is None or high is None:
        raise Refused(f"Clip with only one bound (min={low}, max={high})", "both bounds (Hardtanh), or min=0 (ReLU)")
    return _unary("Hardtanh", min_val=low, max_val=high)(conv, node)


def hard_sigmoid_(conv: Converter, node: Node) -> list[Value]:
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if np.float32(alpha) == np.float32(1 / 6) and beta == 0.5:
        return _unary("Hardsigmoid")(conv, node)
    x = _plain(_act(node, 0))  # max(0, min(1, alpha * x + beta))
    scaled = _affine(conv, x, np.full(x.shape[1], alpha), np.full(x.shape[1], beta), node.name + "_affine")
    return [conv.emit("Hardtanh", [scaled], node.name, min_val=0.0, max_val=1.0)]


def prelu_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    slope = _const(node, 1, "slope")
    if slope.size == 1:
        return [conv.emit("PReLU", [x], node.name, {"weight": slope.reshape(1)}, num_parameters=1)]
    vector = _channel_vector(slope, x.shape)
    if vector is None:
        raise Refused(f"slope of shape {list(slope.shape)} varies along more than the channels of {list(x.shape)}",
                      "one slope, or one per channel")
    return [conv.emit("PReLU", [x], node.name, {"weight": vector}, num_parameters=len(vector))]


def _spatial_pool(conv: Converter, node: Node, kind: str, keepdim: bool) -> Act:
    x = _plain(_act(node, 0))
    if x.rank != 4:
        raise Refused(f"pooling over H and W needs (N, C, H, W), got shape {x.shape}")
    if kind == "mean":
        return conv.emit("GlobalAvgPool", [x], node.name, keepdim=keepdim)
    y = conv.emit("AdaptiveMaxPool2d", [x], node.name, output_size=[1, 1])
    return y if keepdim else conv.emit("Flatten", [y], node.name + "_flatten")


def global_average_pool_(conv: Converter, node: Node) -> list[Value]:
    return [_spatial_pool(conv, node, "mean", True)]


def global_max_pool_(conv: Converter, node: Node) -> list[Value]:
    return [_spatial_pool(conv, node, "max", True)]


CHANNEL_REDUCTIONS = {"mean": "ChannelMean", "max": "ChannelMax"}


def _reduce(kind: str) -> Callable[[Converter, Node], list[Value]]:
    def handler(conv: Converter, node: Node) -> list[Value]:
        x = _act(node, 0)
        axes = _const(node, 1, "axes") if node.opset >= 18 else node.attrs.get("axes")
        keepdims = bool(node.attrs.get("keepdims", 1))
        if axes is None or len(_ints(axes)) == 0:
            if node.attrs.get("noop_with_empty_axes", 0):
                return [x]
            raise Refused("a reduction over every axis (batch included)", "reduce over the spatial axes (2, 3)")
        axes = sorted({a % x.rank for a in _ints(axes)})
        if x.view == ("nhwc",):
            axes = sorted({(0, 2, 3, 1)[a] for a in axes})
            x = Act(x.layer, x.layer_shape)
            if not keepdims and axes == [2, 3]:
                return [_spatial_pool(conv, replace(node, inputs=[x]), kind, False)]
            if axes != [1]:
                raise Refused("a reduction of an NHWC tensor other than over H and W without keepdims")
        if x.view is not None and x.view[:2] == ("reduced", kind) and axes == [x.view[2]]:
            rank = x.rank if keepdims else x.rank - 1  # the second half of x.mean(3).mean(2)
            if rank not in (2, 4):
                raise Refused(f"a reduction of H and W in two steps leaving shape rank {rank}", "keepdims alike")
            return [_spatial_pool(conv, replace(node, inputs=[Act(x.layer, x.layer_shape)]), kind, rank == 4)]
        if x.rank == 4 and axes == [2, 3]:
            return [_spatial_pool(conv, node, kind, keepdims)]
        if x.rank == 4 and x.view is None and axes in ([2], [3]):  # the first half: reduced with the next node
            shape = tuple(1 if i == axes[0] else d for i, d in enumerate(x.shape) if keepdims or i != axes[0])
            return [Act(x.layer, x.layer_shape, ("reduced", kind, 2 if not keepdims or axes == [3] else 3), shape)]
        if x.rank == 4 and axes == [1] and keepdims:
            return [conv.emit(CHANNEL_REDUCTIONS[kind], [_plain(x)], node.name)]
        if x.rank == 4 and axes == [1] and x.view is None:  # CBAM's torch.max(x, 1)[0].unsqueeze(1)
            n, _, h, w = x.shape
            return [Act(x.layer, x.layer_shape, ("channel_reduced", kind), (n, h, w))]
        raise Refused(f"a reduction over axes {axes} of shape {list(x.shape)} (keepdims={int(keepdims)})",
                      "axes (2, 3) of (N, C, H, W) (global pooling), or axis 1 with keepdims=1")
    return handler


def max_pool_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    if len(node.uses) > 1 and node.uses[1]:
        raise Refused("MaxPool's Indices output is used", "MaxPool without indices")
    if node.attrs.get("storage_order", 0):
        raise Refused("storage_order=1 (column-major indices)")
    kernel, strides, dilations, pads = _window(node, x)
    return [conv.emit("MaxPool2d", [x], node.name, kernel_size=kernel, stride=strides, padding=pads,
                      dilation=dilations, ceil_mode=bool(node.attrs.get("ceil_mode", 0)))]


def average_pool_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    kernel, strides, dilations, pads = _window(node, x)
    if dilations != [1, 1]:
        raise Refused(f"dilated average pooling (dilations {dilations})", "dilations 1")
    count_include_pad = bool(node.attrs.get("count_include_pad", 0))
    if count_include_pad and not node.attrs.get("ceil_mode", 0) and any(
            p > k // 2 for p, k in zip(pads, kernel * 2)):  # zeros counted as cells: pad them first
        x = conv.emit("ZeroPad2d", [x], node.name + "_pad", padding=pads)
        pads = [0, 0, 0, 0]
    return [conv.emit("AvgPool2d", [x], node.name, kernel_size=kernel, stride=strides, padding=pads,
                      ceil_mode=bool(node.attrs.get("ceil_mode", 0)),
                      count_include_pad=count_include_pad, divisor_override=0)]


def softmax_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    axis = int(node.attrs.get("axis", 1 if node.opset < 13 else -1)) % x.rank
    if axis == 1 and (x.rank == 2 or node.opset >= 13 or all(d == 1 for d in x.shape[2:])):
        return [conv.emit("Softmax", [x], node.name, dim=1)]
    raise Refused(f"Softmax over axis {axis} of shape {list(x.shape)}", "softmax over the channels (axis 1)")


def _flatten(conv: Converter, x: Act, name: str) -> Act:
    """(N, ...) to (N, F); an NHWC view gives permuted features (fixed by the Linear that reads them)."""
    if x.view == ("nhwc",):
        n, c, h, w = x.layer_shape
        order = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        y = conv.emit("Flatten", [Act(x.layer, x.layer_shape)], name)
        return y if h * w == 1 else Act(y.layer, y.shape, ("order", order))
    if x.rank == 2 and x.view is None:
        return x
    return conv.emit("Flatten", [x], name)


def flatten_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    if int(node.attrs.get("axis", 1)) % max(x.rank, 1) != 1:
        raise Refused(f"Flatten with axis {node.attrs.get('axis')} (it must keep the batch axis alone)", "axis 1")
    return [_flatten(conv, x, node.name)]


def _to_shape(conv: Converter, node: Node, x: Act, target: tuple[int, ...]) -> Value:
    """x viewed as the (resolved) shape `target`: a flatten, an unflatten or a channel-group view."""
    if target[0] != x.shape[0]:
        raise Refused(f"a reshape from {list(x.shape)} to {list(target)} changes the batch axis",
                      "reshapes that keep axis 0 (the batch), such as x.view(x.size(0), -1)")
    if target == x.shape:
        return x
    if x.view == ("unsqueezed",):  # the second step of (N, C) -> (N, C, 1) -> (N, C, 1, 1)
        x = Act(x.layer, x.layer_shape)
    if len(target) == 2:
        return _flatten(conv, x, node.name)
    if x.rank == 2 and x.view is None and target == (*x.shape, 1):
        return Act(x.layer, x.layer_shape, ("unsqueezed",), target)
    if x.view is not None and x.view[0] == "shuffled" and len(target) == 4 and target == x.layer_shape:
        return conv.emit("ChannelShuffle", [Act(x.layer, x.layer_shape)], node.name, groups=x.view[1])
    x = _plain(x)
    if x.rank == 4 and len(target) == 5 and target[1] * target[2] == x.shape[1] and target[3:] == x.shape[2:]:
        return Act(x.layer, x.layer_shape, ("groups", target[1]), target)
    if len(target) == 4:
        source = x if x.rank == 2 else conv.emit("Flatten", [x], node.name + "_flatten")
        return conv.emit("Unflatten", [source], node.name, shape=list(target[1:]))
    raise Refused(f"a reshape from {list(x.shape)} to {list(target)}",
                  "flattening to (N, F), viewing (N, F) as (N, C, H, W), or a channel shuffle")


def reshape_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    shape = _ints(_const(node, 1, "the shape") if node.opset >= 5 else node.attrs.get("shape"))
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if d == 0 and i < x.rank else d for i, d in enumerate(shape)]
    try:
        target = np.empty(x.shape, np.int8).reshape(shape).shape
    except ValueError:
        raise Refused(f"shape {shape} does not fit an input of shape {list(x.shape)}") from None
    return [_to_shape(conv, node, x, target)]


def _axes(node: Node, index: int) -> Optional[list[int]]:
    value = node.attrs.get("axes") if node.opset < 13 else _const(node, index, "axes")
    return None if value is None else _ints(value)


def squeeze_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    axes = _axes(node, 1)
    axes = [i for i, d in enumerate(x.shape) if d == 1 and i > 0] if axes is None else [a % x.rank for a in axes]
    if 0 in axes or any(x.shape[a] != 1 for a in axes):
        raise Refused(f"squeezing axes {axes} of shape {list(x.shape)}", "squeezing size-1 axes other than the batch")
    return [_to_shape(conv, node, x, tuple(d for i, d in enumerate(x.shape) if i not in axes))]


def unsqueeze_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    axes = sorted(a % (x.rank + len(_axes(node, 1))) for a in _axes(node, 1))
    if x.view is not None and x.view[0] == "channel_reduced" and axes == [1]:
        return [conv.emit(CHANNEL_REDUCTIONS[x.view[1]], [Act(x.layer, x.layer_shape)], node.name)]
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [_to_shape(conv, node, x, tuple(shape))]


def concat_(conv: Converter, node: Node) -> list[Value]:
    xs = [x for x in node.inputs if x is not None]
    if not all(isinstance(x, Act) for x in xs):
        raise Refused("Concat of a computed tensor with a constant", "concatenate computed tensors only")
    axis = int(node.attrs["axis"]) % xs[0].rank
    if axis != 1:
        raise Refused(f"Concat along axis {axis}", "concatenation along the channels (axis 1)")
    if len(xs) == 1:
        return [xs[0]]
    return [conv.emit("Concat", xs, node.name, dim=1)]


def split_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    axis = int(node.attrs.get("axis", 0)) % x.rank
    if axis != 1:
        raise Refused(f"Split along axis {axis}", "splitting the channels (axis 1)")
    sizes = node.attrs.get("split") if node.opset < 13 else _const(node, 1, "split")
    count = len(node.outputs)
    if sizes is None:
        chunk = -(-x.shape[1] // count)
        sizes = [min(chunk, x.shape[1] - i * chunk) for i in range(count)]
    ends = np.cumsum(_ints(sizes))
    outputs = []
    for i, (start, end) in enumerate(zip([0, *ends[:-1]], ends)):
        outputs.append(conv.emit("Slice", [x], node.outputs[i] or f"{node.name}_{i}", dim=1, start=int(start),
                                 end=int(end)))
    return outputs


def slice_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    if node.opset < 10:
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes, steps = node.attrs.get("axes"), None
    else:
        starts, ends = _const(node, 1, "starts"), _const(node, 2, "ends")
        axes, steps = _const(node, 3, "axes"), _const(node, 4, "steps")
    starts, ends = _ints(starts), _ints(ends)
    axes = list(range(len(starts))) if axes is None else [a % x.rank for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    ranges = {a: range(*slice(s, e, st).indices(x.shape[a])) for a, s, e, st in zip(axes, starts, ends, steps)}
    kept = {a: r for a, r in ranges.items() if r != range(x.shape[a])}
    if not kept:
        return [x]
    channels = kept.get(1)
    if set(kept) != {1} or channels.step != 1 or len(channels) == 0:
        raise Refused(f"slicing {ranges} of shape {list(x.shape)}", "a contiguous range of channels (axis 1)")
    return [conv.emit("Slice", [_plain(x)], node.name, dim=1, start=channels.start, end=channels.stop)]


def _scalar_or_channels(x: Act, c: np.ndarray) -> np.ndarray:
    vector = _channel_vector(c, x.shape)
    if vector is None or x.rank not in (2, 4):
        raise Refused(f"a constant of shape {list(np.shape(c))} applied to a tensor of shape {list(x.shape)}",
                      "a scalar or one value per channel")
    return vector


def mul_(conv: Converter, node: Node) -> list[Value]:
    a, b = node.inputs[:2]
    if isinstance(a, Const):
        a, b = b, a
    if isinstance(b, Const):
        x = _plain(a)
        scale = _scalar_or_channels(x, b.value)
        return [_affine(conv, x, scale, np.zeros_like(scale), node.name)]
    for x, gate in ((a, b), (b, a)):  # x * sigmoid(x): SiLU; x * hardsigmoid(x): Hardswish
        entry = conv.entry(gate.layer)
        fused = {"Sigmoid": "SiLU", "Hardsigmoid": "Hardswish"}.get(entry["type"]) if entry else None
        if fused and entry["inputs"] == [x.layer] and x.view is None and gate.view is None:
            return [conv.emit(fused, [x], node.name)]
    shape = np.broadcast_shapes(a.shape, b.shape)
    a, b = (Act(x.layer, x.layer_shape) if x.view == ("expanded",) else x for x in (a, b))  # Mul broadcasts
    if broadcast_shape(a.shape, b.shape) != shape:
        raise Refused(f"a product of shapes {list(a.shape)} and {list(b.shape)}",
                      "same shapes, or (N, C, 1, 1) / (N, 1, H, W) gates over (N, C, H, W)")
    return [conv.emit("Mul", [a, b], node.name)]


def add_(conv: Converter, node: Node, sign: float = 1.0) -> list[Value]:
    a, b = node.inputs[:2]
    if isinstance(a, Act) and isinstance(b, Act):
        if a.shape != b.shape:
            raise Refused(f"a sum of shapes {list(a.shape)} and {list(b.shape)} (broadcasting)", "operands of one shape")
        if sign < 0:
            b = _affine(conv, b, np.full(b.shape[1], -1.0), np.zeros(b.shape[1]), node.name + "_negate")
        return [conv.emit("Add", [a, b], node.name)]
    if isinstance(a, Const):  # c + x, c - x
        x = _plain(b)
        shift = _scalar_or_channels(x, a.value)
        return [_affine(conv, x, np.full(len(shift), sign), shift, node.name)]
    x = _plain(a)
    shift = sign * _scalar_or_channels(x, b.value)
    return [_fold_bias(conv, x, shift, node) or _affine(conv, x, np.ones(len(shift)), shift, node.name)]


def sub_(conv: Converter, node: Node) -> list[Value]:
    return add_(conv, node, -1.0)


def div_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0, "the dividend")
    divisor = _const(node, 1, "the divisor")
    scale = _scalar_or_channels(_plain(x), divisor)
    if not (scale != 0).all():
        raise Refused("division by zero")
    return [_affine(conv, x, 1.0 / scale, np.zeros_like(scale), node.name)]


def pad_(conv: Converter, node: Node) -> list[Value]:
    x = _plain(_act(node, 0))
    mode = node.attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if node.opset < 11:
        pads, value, axes = _ints(node.attrs.get("pads", node.attrs.get("paddings"))), node.attrs.get("value", 0.0), None
    else:
        pads, value = _ints(_const(node, 1, "pads")), _const(node, 2, "constant_value")
        axes = _const(node, 3, "axes")
    value = 0.0 if value is None else float(np.asarray(value).reshape(-1)[0])
    axes = list(range(x.rank)) if axes is None else [a % x.rank for a in _ints(axes)]
    begin, end = dict(zip(axes, pads[:len(axes)])), dict(zip(axes, pads[len(axes):]))
    if mode != "constant" or value != 0.0:
        raise Refused(f"Pad with mode {mode!r} and value {value}", "constant padding with zeros")
    if x.rank != 4 or any(begin.get(a, 0) or end.get(a, 0) for a in (0, 1)) or min(pads, default=0) < 0:
        raise Refused(f"padding {pads} of shape {list(x.shape)}", "non-negative padding of H and W of (N, C, H, W)")
    padding = [begin.get(2, 0), begin.get(3, 0), end.get(2, 0), end.get(3, 0)]
    if not any(padding):
        return [x]
    return [conv.emit("ZeroPad2d", [x], node.name, padding=padding)]


def transpose_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    perm = tuple(_ints(node.attrs.get("perm", list(range(x.rank))[::-1])))
    if perm == tuple(range(x.rank)):
        return [x]
    if x.view is None and x.rank == 4 and perm == (0, 2, 3, 1):
        n, c, h, w = x.shape
        return [Act(x.layer, x.layer_shape, ("nhwc",), (n, h, w, c))]
    if x.view == ("nhwc",) and perm == (0, 3, 1, 2):
        return [Act(x.layer, x.layer_shape)]
    if x.view is not None and x.view[0] == "groups" and perm == (0, 2, 1, 3, 4):
        n, g, k, h, w = x.shape
        return [Act(x.layer, x.layer_shape, ("shuffled", g), (n, k, g, h, w))]
    raise Refused(f"Transpose with perm {list(perm)} of shape {list(x.shape)}",
                  "NHWC to NCHW at the input, or the channel shuffle (reshape, transpose(0, 2, 1, 3, 4), reshape)")


def identity_(conv: Converter, node: Node) -> list[Value]:
    if node.op == "Dropout" and len(node.uses) > 1 and node.uses[1]:
        raise Refused("Dropout's mask output is used")
    if node.op == "Dropout" and node.opset >= 12 and len(node.inputs) > 2 and node.inputs[2] is not None:
        training = _const(node, 2, "training_mode")
        if training is not None and bool(np.asarray(training).reshape(-1)[0]):
            raise Refused("Dropout in training mode", "export the model in eval mode")
    return [node.inputs[0]]


def cast_(conv: Converter, node: Node) -> list[Value]:
    onnx = _import_onnx()
    if int(node.attrs.get("to", 0)) not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise Refused("Cast of the image's values to a non-float type")
    return [node.inputs[0]]


def shape_(conv: Converter, node: Node) -> list[Value]:
    x = node.inputs[0]
    start, end = int(node.attrs.get("start", 0)), node.attrs.get("end")
    return [Const(np.array(x.shape[start:None if end is None else int(end)], np.int64))]


def expand_(conv: Converter, node: Node) -> list[Value]:
    x = _act(node, 0)
    shape = tuple(_ints(_const(node, 1, "shape")))
    target = np.broadcast_shapes(x.shape, shape)
    if target == x.shape:
        return [x]
    return [Act(_plain(x).layer, x.layer_shape, ("expanded",), target)]


HANDLERS: dict[str, Callable[[Converter, Node], list[Value]]] = {
    "Conv": conv_, "ConvTranspose": conv_transpose_, "BatchNormalization": batchnorm_, "Gemm": gemm_,
    "MatMul": matmul_, "Relu": _unary("ReLU"), "LeakyRelu": leaky_relu_, "Clip": clip_,
    "Sigmoid": _unary("Sigmoid"), "Tanh": _unary("Tanh"), "Elu": elu_, "PRelu": prelu_,
    "HardSigmoid": hard_sigmoid_, "HardSwish": _unary("Hardswish"), "Gelu": gelu_,
    "MaxPool": max_pool_, "AveragePool": average_pool_, "GlobalAveragePool": global_average_pool_,
    "GlobalMaxPool": global_max_pool_, "ReduceMean": _reduce("mean"), "ReduceMax": _reduce("max"),
    "Softmax": softmax_, "Flatten": flatten_, "Reshape": reshape_, "Squeeze": squeeze_,
    "Unsqueeze": unsqueeze_, "Concat": concat_, "Split": split_, "Slice": slice_, "Mul": mul_, "Add": add_,
    "Sub": sub_, "Div": div_, "Pad": pad_, "Transpose": transpose_, "Identity": identity_,
    "Dropout": identity_, "Cast": cast_, "Shape": shape_, "Expand": expand_,
}


# ---------------------------------------------------------------------------------- fusions

def _gelu_probe() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x = np.linspace(-6, 6, 97, dtype=np.float64)
    exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / SQRT2))
    tanh = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return x.astype(np.float32), {"none": exact, "tanh": tanh}


def fuse_gelu(graph: Any, constants: set[str], opset: int) -> list[Any]:
    """The graph's nodes with each decomposed GELU (erf or tanh form, any operand order) as one Gelu node.

    From every Erf/Tanh node, the values it depends on and the chain of single readers after it are
    tried as (root, output) pairs; a pair whose nodes form a closed subgraph that computes GELU on
    probe values (onnx's reference evaluator) is replaced.
    """
    onnx = _import_onnx()
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    nodes = list(graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            readers.setdefault(name, []).append(i)
    graph_outputs = {o.name for o in graph.output}
    initializers = {t.name: t for t in graph.initializer}
    probe, expected = _gelu_probe()
    removed: set[int] = set()
    replacements: dict[int, Any] = {}

    def ancestors(value: str, depth: int) -> list[str]:
        found, frontier = [], [value]
        for _ in range(depth):
            frontier = [i for v in frontier if v in producer and v not in constants
                        for i in nodes[producer[v]].input if i and i not in constants]
            found += frontier
        return list(dict.fromkeys(found))

    def members(root: str, out: str) -> Optional[list[int]]:
        """Nodes on paths from root to out, if they read only root, constants and each other."""
        seen, stack = set(), [producer[out]]
        while stack:
            i = stack.pop()
            if i in removed:
                return None
            if i in seen:
                continue
            seen.add(i)
            for name in nodes[i].input:
                if name and name != root and name not in constants:
                    if name not in producer:
                        return None
                    stack.append(producer[name])
            if len(seen) > 12:
                return None
        for i in seen:
            for o in nodes[i].output:
                if o != out and (o in graph_outputs or any(r not in seen for r in readers.get(o, []))):
                    return None
        return sorted(seen)

    for start, node in enumerate(nodes):
        if node.op_type not in ("Erf", "Tanh") or start in removed:
            continue
        chain, out = [], node.output[0]
        for _ in range(4):
            nexts = readers.get(out, [])
            if len(nexts) != 1 or nodes[nexts[0]].op_type not in ("Add", "Mul", "Div"):
                break
            out = nodes[nexts[0]].output[0]
            chain.append(out)
        for out in chain:
            for root in ancestors(node.input[0], 6):
                part = members(root, out)
                if part is None:
                    continue
                used_constants = sorted({name for i in part for name in nodes[i].input if name in constants})
                sub_nodes = [nodes[i] for i in part if nodes[i].op_type != "Constant"]
                sub_nodes = [nodes[producer[c]] for c in used_constants if c in producer] + sub_nodes
                inits = [initializers[c] for c in used_constants if c in initializers]
                try:
                    model = helper.make_model(helper.make_graph(
                        sub_nodes, "probe", [helper.make_tensor_value_info(root, onnx.TensorProto.FLOAT, [None])],
                        [helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, None)], inits),
                        opset_imports=[helper.make_opsetid("", opset)])
                    got = np.asarray(ReferenceEvaluator(model).run(None, {root: probe})[0], np.float64)
                except Exception:  # not a float function of root alone
                    continue
                for approximate, want in expected.items():
                    if got.shape == want.shape and np.allclose(got, want, rtol=1e-5, atol=1e-6):
                        removed.update(part)
                        replacements[max(part)] = helper.make_node(
                            "Gelu", [root], [out], name=nodes[max(part)].name or out, approximate=approximate)
                        break
                if max(part) in replacements:
                    break
            if start in removed:
                break
    return [replacements.get(i, n) for i, n in enumerate(nodes) if i not in removed or i in replacements]


# ---------------------------------------------------------------------------------- the walk

def _load(source: Any) -> tuple[Any, str]:
    onnx = _import_onnx()
    if isinstance(source, onnx.ModelProto):
        return source, "<ModelProto>"
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise FormatError(f"{path}: no such file")
    try:
        return onnx.load(path), path
    except Exception as e:  # protobuf's DecodeError, a missing external-data file, ...
        raise FormatError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _fold(node: Any, values: list[np.ndarray], opset: int) -> list[Const]:
    """Evaluate a node whose inputs are all constants (onnx's reference evaluator)."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    names = [f"in{i}" if name else "" for i, name in enumerate(node.input)]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in zip(names, values) if n]
    copy = helper.make_node(node.op_type, names, [f"out{i}" for i in range(len(node.output))], domain=node.domain)
    copy.attribute.extend(node.attribute)
    outputs = [helper.make_empty_tensor_value_info(f"out{i}") for i in range(len(node.output))]
    model = helper.make_model(helper.make_graph([copy], "fold", [], outputs, inits),
                              opset_imports=[helper.make_opsetid(node.domain, opset)])
    return [Const(np.asarray(v)) for v in ReferenceEvaluator(model).run(None, {})]


@dataclass
class Converted:
    """A converted graph: pdinfer layers and tensors, the input shape and the model's class names."""

    entries: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]
    input_shape: tuple[int, int, int]
    classes: Optional[list[str]]
    output_size: int


def _image_input(graph: Any, input_shape: Optional[Sequence[int]], where: str) -> tuple[Any, tuple[int, ...], bool]:
    """The graph input that is the image, its (C, H, W), and whether it is NHWC (Transpose at the input)."""
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if not inputs:
        raise FormatError(f"{where}: the graph has no input")
    if len(inputs) > 1:
        raise UnsupportedOnnxError(where, [f"graph inputs {[i.name for i in inputs[1:]]}: pdinfer models take one "
                                           "input, the image; instead: make the other inputs initializers"])
    image = inputs[0]
    tensor = image.type.tensor_type
    from onnx import TensorProto
    if not image.type.HasField("tensor_type") or tensor.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE,
                                                                        TensorProto.FLOAT16):
        raise UnsupportedOnnxError(where, [f"graph input {image.name!r}: not a float tensor; instead: "
                                           "a float32 image batch (N, C, H, W)"])
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.HasField("shape") and len(dims) != 4:
        raise UnsupportedOnnxError(where, [f"graph input {image.name!r} has shape {dims}: pdinfer's input is an "
                                           "image batch (N, C, H, W); instead: a 4-D input"])
    readers = [n for n in graph.node if image.name in n.input]
    nhwc = (len(readers) == 1 and readers[0].op_type == "Transpose"
            and list(_attributes(readers[0]).get("perm", [])) == [0, 3, 1, 2])
    given = dims[1:] if len(dims) == 4 else [None] * 3
    if nhwc:
        given = [given[2], given[0], given[1]]
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise PdinferError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
        clash = [(g, s) for g, s in zip(given, shape) if g and g != s]
        if clash:
            raise PdinferError(f"{where}: input_shape {list(shape)} contradicts the graph's (C, H, W) {given}")
        return image, shape, nhwc
    if None in given or 0 in given:
        raise PdinferError(f"{where}: the graph input {image.name!r} has dynamic dimensions (C, H, W) = {given}; "
                           "give the image size: input_shape=(C, H, W) (--input-shape C,H,W)")
    return image, tuple(given), nhwc


def onnx_to_layers(source: Any, input_shape: Optional[Sequence[int]] = None) -> Converted:
    """Convert an ONNX model (a path or a ModelProto) to pdinfer layers; raises UnsupportedOnnxError."""
    model, where = _load(source)
    try:
        return _convert(model, where, input_shape)
    except PdinferError:
        raise
    except Exception as e:  # a malformed model that onnx parsed (broken types, shapes, attributes)
        raise FormatError(f"{where}: malformed ONNX model ({type(e).__name__}: {e})") from None


def _convert(model: Any, where: str, input_shape: Optional[Sequence[int]]) -> Converted:
    from onnx import numpy_helper
    graph = model.graph
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if not 1 <= opset:
        raise FormatError(f"{where}: no ai.onnx opset import")
    if len(graph.output) != 1:
        raise UnsupportedOnnxError(where, [f"the graph has {len(graph.output)} outputs; instead: one output, "
                                           "the class values"])
    image, shape, nhwc = _image_input(graph, input_shape, where)
    dims = image.type.tensor_type.shape.dim
    batch = dims[0].dim_value if len(dims) == 4 and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1
    conv = Converter()
    values: dict[str, Value] = {"": None}
    try:
        for t in graph.initializer:
            values[t.name] = Const(numpy_helper.to_array(t))
    except Exception as e:
        raise FormatError(f"{where}: unreadable initializer ({type(e).__name__}: {e})") from None
    c, h, w = shape
    values[image.name] = Act("input", (batch, c, h, w))
    if nhwc:
        values[image.name] = Act("input", (batch, c, h, w), ("nhwc",), (batch, h, w, c))
    constants = set(values) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    nodes = fuse_gelu(graph, constants, opset)
    uses: dict[str, int] = {}
    for n in nodes:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    for o in graph.output:
        uses[o.name] = uses.get(o.name, 0) + 1

    produced = {o for n in nodes for o in n.output}
    problems: list[str] = []
    for onnx_node in nodes:
        label = f"{onnx_node.op_type} {onnx_node.name or onnx_node.output[0]!r}"
        missing = [name for name in onnx_node.input if name not in values]
        if missing:
            if not all(name in produced for name in missing):
                problems.append(f"{label}: reads {missing}, which nothing before it computes (malformed graph)")
            elif onnx_node.op_type not in HANDLERS or _training(onnx_node):  # after a refused node: what
                problems.append(f"{label}: {_static_problem(onnx_node)}")  # can be told without its inputs
            continue
        inputs = [values[name] for name in onnx_node.input]
        domain = onnx_node.domain if onnx_node.domain != "ai.onnx" else ""
        try:
            if domain:
                raise Refused(f"operator domain {domain!r} (only the standard ai.onnx operators are supported)")
            if all(isinstance(x, Const) or x is None for x in inputs) and onnx_node.op_type != "Shape":
                if onnx_node.op_type in HANDLERS and not onnx_node.input and onnx_node.op_type != "Constant":
                    raise Refused("a layer without inputs")
                outputs = _fold(onnx_node, [x.value for x in inputs if x is not None], opset)
            elif onnx_node.op_type not in HANDLERS:
                raise Refused(_static_problem(onnx_node))
            else:
                node = Node(onnx_node.op_type, onnx_node.name or onnx_node.output[0], inputs,
                            _attributes(onnx_node), opset, list(onnx_node.output),
                            [uses.get(o, 0) for o in onnx_node.output],
                            uses.get(onnx_node.input[0], 0) if onnx_node.input else 0)
                outputs = HANDLERS[onnx_node.op_type](conv, node)
        except Refused as e:
            problems.append(f"{label}: {e}")
            continue
        except Exception as e:  # a malformed node (missing attribute, wrong rank, evaluator failure)
            problems.append(f"{label}: cannot be read ({type(e).__name__}: {e})")
            continue
        for name, value in zip(onnx_node.output, outputs):
            if name:
                values[name] = value
    output = values.get(graph.output[0].name)
    if problems:
        raise UnsupportedOnnxError(where, problems)
    if not isinstance(output, Act):
        raise UnsupportedOnnxError(where, [f"output {graph.output[0].name!r}: does not depend on the image "
                                           "(a constant); instead: a model whose output is computed from its input"])
    if output.view is not None:
        raise UnsupportedOnnxError(where, [f"output {graph.output[0].name!r}: a rearranged view ({output.view[0]}) "
                                           "of a layer's output; instead: an (N, F) or NCHW output"])
    if output.layer == "input":
        output = conv.emit("Dropout", [output], "identity", p=0.0)
    entries = conv.pruned(output.layer)
    tensors = {name: conv.tensors[name] for e in entries for name in e["tensors"].values()}
    metadata = {p.key: p.value for p in model.metadata_props}
    classes = _metadata_classes(metadata.get("classes"))
    return Converted(entries, tensors, (c, h, w), classes, int(np.prod(output.shape[1:])))


def _metadata_classes(text: Optional[str]) -> Optional[list[str]]:
    """Class names from the model's metadata_props "classes": a JSON array or comma-separated names."""
    if not text:
        return None
    try:
        names = json.loads(text)
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            return names
    except ValueError:
        pass
    return [n.strip() for n in text.split(",")]


def convert_onnx(src: str | os.PathLike | Any, dst: str | os.PathLike, classes: Optional[Sequence[str]] = None,
                 input_shape: Optional[Sequence[int]] = None, force: bool = False) -> Path:
    """Convert an ONNX model (path or onnx.ModelProto) to a .pdw weight file; returns its path.

    classes: one name per output value (default: the model's metadata_props "classes", else "0", "1", ...).
    input_shape: (C, H, W), needed when the graph leaves them dynamic. An existing dst is kept unless force (FileExistsError).
    Raises UnsupportedOnnxError (every node pdinfer cannot express), FormatError (unreadable model).
    """
    dst = Path(dst)
    check_overwrite(dst, force, "give force=True, or --force")
    converted = onnx_to_layers(src, input_shape)
    names = list(classes) if classes is not None else converted.classes
    if names is None:
        names = [str(i) for i in range(converted.output_size)]
    if len(names) != converted.output_size:
        raise PdinferError(f"{len(names)} class names for {converted.output_size} output values")
    onnx = _import_onnx()
    write_weights(dst, converted.entries, converted.tensors, input_shape=converted.input_shape, classes=names,
                  producer=f"pdinfer convert (onnx {onnx.__version__})")
    return dst
