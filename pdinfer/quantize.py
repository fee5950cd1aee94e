"""Int8 computation of a model (docs/KERNELS.md, "Int8 computation"): its quantized values and
its integer reference.

A weight file with int8 weights (FORMAT.md 1.2) and an `activations` entry (FORMAT.md 1.3: a
scale and zero point per value, calibrated on images) computes in integers: every Linear and
every Conv2d of one group or depthwise with an I8 weight, with the ReLU, ReLU6 or LeakyReLU reading it alone (through Dropout, the
identity) fused into its requantization, reads and writes uint8 values; a MaxPool2d or Flatten
passes uint8 values on with their scale and zero point; GlobalAvgPool and Add of uint8 values requantize; any other
layer runs in float32 on the dequantized values, and its output is quantized again where an int8
layer reads it. The model's output is dequantized.

`Int8Reference(graph)` runs that with the plain integer kernels (kernels/integer.py): the
specification the Java port reproduces bit for bit. `calibrate` and `quantized_activations` make
the `activations` entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from .errors import FormatError, UnsupportedLayerError
from .format import is_int, parse_json, storage
from .graph import ACTIVATIONS_KEY, INPUT, Graph
from .kernels.params import Requant, requant
from .layers import Layer
from .layers.activations import LeakyReLU, ReLU, ReLU6
from .layers.conv2d import Conv2d
from .layers.linear import Linear
from .layers.pooling import GlobalAvgPool, MaxPool2d
from .layers.structural import Add, Dropout, Flatten
from .fusion import ACTIVATIONS, Readers

LEVELS = 255  # uint8 values 0..255
INT32_SUM_LIMIT = 1 << 31  # |bias| + taps * 255 * 127 of an int8 convolution stays below this: its int32 sum cannot overflow
PASS_THROUGH = (MaxPool2d, Flatten)  # uint8 in, uint8 out, the same scale and zero point


@dataclass(frozen=True)
class Quantization:
    """How a uint8 value stands for a real one: real = scale * (q - zero_point)."""

    scale: np.float32
    zero_point: int


def choose(low: float, high: float) -> Quantization:
    """The quantization of values seen in [low, high]: the range widened to hold 0 (so that 0, a
    convolution's padding, is exact), scale = float32((high - low) / 255) (1 for an empty range),
    zero_point = clamp(round_half_even(-low / scale), 0, 255), in float64."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = np.float32((high - low) / LEVELS)
    if not (np.isfinite(scale) and scale > np.finfo(np.float32).tiny):
        scale = np.float32(1.0)
    return Quantization(scale, int(np.clip(np.rint(-low / np.float64(scale)), 0, LEVELS)))


# ---------------------------------------------------------------------------- constants of a kernel

def conv_constants(bias: Optional[np.ndarray], weight_scale: np.ndarray, x: Quantization,
                   out: Quantization) -> tuple[np.ndarray, np.ndarray]:
    """An int8 convolution's int32 bias and float32 multipliers, per output channel o, in float64:
    bias_q[o] = round_half_even(bias[o] / (x.scale * weight_scale[o])) (0 without a bias) and
    multiplier[o] = float32(x.scale * weight_scale[o] / out.scale).

    bias: (O,) float32 or None; weight_scale: (O,) float32; returns (O,) int32 and (O,) float32
    """
    unit = np.float64(x.scale) * weight_scale.astype(np.float64)
    bias_q = np.zeros(weight_scale.shape, np.float64) if bias is None else np.rint(bias.astype(np.float64) / unit)
    with np.errstate(over="ignore"):  # beyond float32: infinite, refused by the step
        multiplier = (unit / np.float64(out.scale)).astype(np.float32)
    return bias_q.clip(-INT32_SUM_LIMIT, INT32_SUM_LIMIT).astype(np.int64), multiplier


def ratio(numerator: np.float32, denominator: float) -> np.float32:
    """float32(numerator / denominator), in float64: the multiplier of a mean or an Add operand."""
    with np.errstate(over="ignore"):  # beyond float32: infinite, refused by the step
        return np.float32(np.float64(numerator) / np.float64(denominator))


def output_requant(act: Optional[Layer], out: Quantization) -> Requant:
    """The params.Requant of an int8 kernel writing `out` with the activation `act` fused:
    none and LeakyReLU the whole range (LeakyReLU scales negative pre-images by its slope), ReLU from
    the zero point up, ReLU6 from the zero point to zero_point + round_half_even(float32(6) / scale)."""
    z = out.zero_point
    if isinstance(act, ReLU):
        return requant(z, z)
    if isinstance(act, ReLU6):
        with np.errstate(over="ignore"):
            six = np.float32(6.0) / out.scale  # beyond float32 for a tiny scale: the top level
        return requant(z, z, min(LEVELS, z + int(np.rint(six))) if np.isfinite(six) else LEVELS)
    if isinstance(act, LeakyReLU):
        return requant(z, negative_slope=act.negative_slope)
    return requant(z)


# ---------------------------------------------------------------------------- the steps

@dataclass(frozen=True)
class Int8Step:
    """One step of the int8 reference: `kind` on `inputs`, writing `output`.

    kind: "conv" (a Conv2d or Linear with its fused activation), "max_pool", "pass" (Flatten),
    "mean", "add" (uint8 in, uint8 out), or "float" (a layer on float32 values)."""

    kind: str
    layer: Layer  # the first file layer it covers
    inputs: tuple[str, ...]
    output: str
    out: Optional[Quantization] = None  # the uint8 output's quantization (None: a float32 output)
    requant: Optional[Requant] = None
    bias: Optional[np.ndarray] = None  # conv: (O,) int32
    multipliers: tuple = ()  # conv: ((O,) float32,); mean: (m,); add: (m_a, m_b)


def _conv_step(layer: Layer, act: Optional[Layer], inputs: tuple[str, ...], output: str, x: Quantization,
               out: Quantization) -> Int8Step:
    bias, multiplier = conv_constants(layer.bias if layer.has_bias else None, layer.weight_scale, x, out)
    taps = int(np.prod(layer.weight.shape[1:]))
    if int(np.abs(bias).max()) + taps * LEVELS * 127 >= INT32_SUM_LIMIT:
        raise UnsupportedLayerError(f"layer {layer.name!r}: its int8 sum could overflow int32 ({taps} taps, "
                                    f"bias up to {int(np.abs(bias).max())} in units of its scales)")
    return _checked(Int8Step("conv", layer, inputs, output, out, output_requant(act, out), bias.astype(np.int32),
                             (multiplier,)))


def _checked(step: Int8Step) -> Int8Step:
    """The step, if its multipliers are finite float32 numbers (its scales not too far apart)."""
    with np.errstate(over="ignore"):
        finite = all(np.isfinite(m).all() for m in step.multipliers)
    if not finite:
        raise UnsupportedLayerError(f"layer {step.layer.name!r}: a multiplier of its int8 requantization is beyond "
                                    "float32 (the scales of its input and output are too far apart)")
    return step


def _one_group_or_depthwise(layer: Layer) -> bool:
    """A Linear, or a Conv2d of one group or depthwise (the convolutions with int8 kernels)."""
    return not isinstance(layer, Conv2d) or layer.groups == 1 or layer.is_depthwise


def int8_steps(graph: Graph) -> list[Int8Step]:
    """The graph as int8 steps (see the module docstring), by the quantization of its values
    (graph.activations)."""
    activations = graph.activations
    readers = Readers(graph)  # the fast plan's: through Dropout layers
    quantized: dict[str, Quantization] = {}  # uint8 values so far -> their quantization
    value: dict[str, str] = {INPUT: INPUT}  # file layer -> the value holding its output
    steps = []

    def as_int8(name: str) -> Quantization:  # the quantization an int8 step reads a value with
        return quantized.get(name) or activations[name]

    for layer in graph.layers:
        if layer.name in value:  # fused
            continue
        inputs = tuple(value[i] for i in layer.inputs)
        if isinstance(layer, Dropout):  # the identity: no step
            value[layer.name] = inputs[0]
            continue
        if isinstance(layer, (Conv2d, Linear)) and storage(layer.weight) == "I8" and _one_group_or_depthwise(layer):
            act = readers.sole(layer.name, ACTIVATIONS)
            output = (act or layer).name
            step = _conv_step(layer, act, inputs, output, as_int8(inputs[0]), activations[output])
            if act is not None:
                value[act.name] = output
        elif isinstance(layer, PASS_THROUGH) and inputs[0] in quantized:
            step = Int8Step("max_pool" if isinstance(layer, MaxPool2d) else "pass", layer, inputs, layer.name,
                            quantized[inputs[0]])
        elif isinstance(layer, GlobalAvgPool) and inputs[0] in quantized:
            x, out = quantized[inputs[0]], activations[layer.name]
            height, width = graph.shapes[inputs[0]][2:]
            step = _checked(Int8Step("mean", layer, inputs, layer.name, out, requant(out.zero_point),
                                     multipliers=(ratio(x.scale, np.float64(out.scale) * height * width),)))
        elif isinstance(layer, Add) and all(i in quantized for i in inputs):
            out = activations[layer.name]
            step = _checked(Int8Step("add", layer, inputs, layer.name, out, requant(out.zero_point),
                                     multipliers=tuple(ratio(quantized[i].scale, out.scale) for i in inputs)))
        else:
            step = Int8Step("float", layer, inputs, layer.name)
        value[layer.name] = step.output
        if step.out is not None:
            quantized[step.output] = step.out
        steps.append(step)
    return steps


class Int8Reference:
    """A quantized graph run by the integer reference kernels: the specification of its answers.
    With `numpy`, by their NumPy forms instead (a model's first calls, before its kernels are
    compiled): the same answers bit for bit from its int8 steps, its float steps' to float32
    rounding (kernels/vectorized.py)."""

    def __init__(self, graph: Graph, numpy: bool = False) -> None:
        self.steps = int8_steps(graph)
        self.activations = dict(graph.activations)
        self.numpy = numpy

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: (N, C, H, W) float32, checked; returns the output, float32."""
        return self.trace(x)[self.steps[-1].output]

    def trace(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every step's output (uint8 or float32, NCHW) and the output, dequantized, under its name."""
        if self.numpy:
            from .kernels import integer_vectorized as integer, vectorized as reference
        else:
            from .kernels import integer, reference  # Numba's, imported on first use
        values: dict[str, np.ndarray] = {INPUT: x}
        quantized: dict[str, Quantization] = {}

        def read(name: str, as_int8: bool) -> np.ndarray:
            v = values[name]
            if as_int8 and v.dtype != np.uint8:
                q = quantized[name] = self.activations[name]
                return integer.quantize(v, q.scale, q.zero_point)
            if not as_int8 and v.dtype == np.uint8:
                q = quantized[name]
                return integer.dequantize(v, q.scale, q.zero_point)
            return v

        for step in self.steps:
            layer = step.layer
            xs = [read(name, step.kind != "float") for name in step.inputs]
            if step.kind == "conv":
                x_q = quantized[step.inputs[0]]
                if isinstance(layer, Linear):
                    weight, window, groups, out_hw = layer.weight[:, :, None, None], (1, 1, 1, 1, 0, 0, 0, 0, 1, 1), 1, (1, 1)
                    xs[0] = xs[0][:, :, None, None]
                else:
                    weight, window, groups = layer.weight, tuple(layer.window), layer.groups
                    out_hw = tuple(_shape_of(layer, xs[0].shape[2:]))
                out = integer.conv2d(xs[0], x_q.zero_point, weight, step.bias, step.multipliers[0], tuple(step.requant),
                                     window, groups, *out_hw)
                values[step.output] = out.reshape(len(out), -1) if isinstance(layer, Linear) else out
            elif step.kind == "max_pool":
                out_h, out_w = _shape_of(layer, xs[0].shape[2:])
                values[step.output] = integer.max_pool2d(xs[0], tuple(layer.window), out_h, out_w)
            elif step.kind == "mean":
                x_q = quantized[step.inputs[0]]
                out = integer.global_avg_pool(xs[0], x_q.zero_point, step.multipliers[0], tuple(step.requant))
                values[step.output] = out[:, :, None, None] if layer.keepdim else out
            elif step.kind == "add":
                (a, b), (qa, qb) = xs, (quantized[name] for name in step.inputs)
                values[step.output] = integer.add(a, qa.zero_point, step.multipliers[0], b, qb.zero_point,
                                                  step.multipliers[1], tuple(step.requant))
            else:  # "pass" (the same bytes in any layout) or "float"
                values[step.output] = layer.forward(*xs, kernels=reference)
            if step.out is not None:
                quantized[step.output] = step.out
        last = self.steps[-1].output
        values[last] = read(last, False)
        return values


def _shape_of(layer: Layer, hw: tuple[int, int]) -> tuple[int, int]:
    """(out_h, out_w) of a windowed layer on an input of hw."""
    return layer.output_shape([(1, getattr(layer, "in_channels", 1), *hw)])[2:]


# ---------------------------------------------------------------------------- calibration and the file entry

def calibrate(trace: Iterable[Mapping[str, np.ndarray]]) -> dict[str, Quantization]:
    """The quantization of every value from its smallest and largest element over traces of the
    float model (dicts of value name -> float32 array, the input under "input")."""
    low: dict[str, float] = {}
    high: dict[str, float] = {}
    for values in trace:
        for name, v in values.items():
            low[name] = min(low.get(name, np.inf), float(v.min()))
            high[name] = max(high.get(name, -np.inf), float(v.max()))
    return {name: choose(low[name], high[name]) for name in low}


def encode(activations: Mapping[str, Quantization]) -> str:
    """The `activations` metadata entry: {value: [scale, zero_point]} (scales exact: float32
    values written as the float64 numbers they are)."""
    return json.dumps({name: [float(q.scale), int(q.zero_point)] for name, q in activations.items()},
                      separators=(",", ":"))


def decode(text: str, graph_values: Iterable[str], where: str) -> dict[str, Quantization]:
    """The checked `activations` entry: a JSON object naming only the input and layers of the
    graph, each [scale, zero_point] with a scale that is a positive, finite float32 number and a
    zero point in [0, 255]."""
    entry: Any = parse_json(text, f"metadata {ACTIVATIONS_KEY!r}", where)
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: metadata {ACTIVATIONS_KEY!r} must be a JSON object")
    known = set(graph_values)
    out = {}
    for name, value in entry.items():
        if name not in known:
            raise FormatError(f"{where}: metadata {ACTIVATIONS_KEY!r} names {name!r}, not the input or a layer")
        ok = (isinstance(value, list) and len(value) == 2 and isinstance(value[0], (int, float))
              and not isinstance(value[0], bool) and is_int(value[1]) and 0 <= value[1] <= LEVELS)
        scale = None
        if ok:
            with np.errstate(over="ignore"):
                try:
                    scale = np.float32(value[0])
                except OverflowError:  # an integer beyond float64
                    ok = False
        if not ok or not (np.isfinite(scale) and scale > 0 and float(scale) == value[0]):
            raise FormatError(f"{where}: metadata {ACTIVATIONS_KEY!r} of {name!r} must be [scale, zero_point] with "
                              f"a positive finite float32 scale and a zero point in [0, {LEVELS}], got {value!r}")
        out[name] = Quantization(scale, int(value[1]))
    return out


def check_complete(graph: Graph) -> None:
    """Raise FormatError unless every value an int8 step of the graph needs has its quantization."""
    try:
        int8_steps(graph)
    except KeyError as e:
        raise FormatError(f"{graph.path}: metadata {ACTIVATIONS_KEY!r} lacks the quantization of value {e.args[0]!r}, "
                          "which an int8 layer reads or writes") from None
