"""Pass 2 for a model that computes in int8: quantize.int8_steps lowered to table rows.

Each int8 step becomes a row of rows_int8.py on uint8 values, with its constants packed for its
fast kernel (fast_int8.py); a float step is lowered as the fast plan lowers that layer alone
(lowering.LOWER), on float32 values. A float32 value an int8 row reads gets a QUANTIZE row first,
a uint8 value a float row reads (and the model's output) a TO_FLOAT row: as quantize.Int8Reference
runs it, so that the table's answers are the reference's, bit for bit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fusion import ACTIVATIONS, AffineGroup, ConvGroup, LayerGroup, LinearGroup, PoolGroup, pools_2x2_blocks
from .graph import Graph
from .kernels.params import (BEST, INT8_CHANNEL_ALIGN, PLAIN, POINTWISE, VNNI, compiles_for, depthwise_biases,
                             depthwise_vnni_operands, folded_bias, pack_weight, padded_channels, quads,
                             taps_across_in_channels, unpadded, window)
from .kernels.table import (BIAS, BORDER, BOUNDS, MULTIPLIERS, OP_ADD_U8, OP_CONV_U8, OP_DEPTHWISE_U8, OP_FLATTEN_U8,
                            OP_MAX_POOL_U8, OP_MEAN_U8, OP_PAD_U8, OP_QUANTIZE_U8, OP_TO_FLOAT_U8, POOL, VARIANT, WEIGHT,
                            WINDOW, ZERO_POINTS)
from .layers import Layer
from .layers.batchnorm2d import BatchNorm2d
from .layers.conv2d import Conv2d
from .layers.linear import Linear
from .layers.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from .lowering import LOWER
from .program import Op, Shape, address, image_view, per_image
from .quantize import Int8Step, Quantization, int8_steps


def _requant_fields(requant: tuple, x_zero: int = 0, second_zero: int = 0) -> dict:
    """ZERO_POINTS and BOUNDS of an int8 row writing with params.Requant `requant` (its slope goes
    in the Op's slope)."""
    zero_point, low, high, _ = requant
    return {ZERO_POINTS: (x_zero, second_zero, zero_point), BOUNDS: (low, high)}


def _one(value: float) -> np.ndarray:
    """A (1,) float32 array: a scale or multiplier a row reads by address."""
    return np.array([value], np.float32)


@dataclass(frozen=True, slots=True)
class Convert:
    """A QUANTIZE row (float32 to uint8) or a TO_FLOAT row (uint8 to float32) of a value."""

    code: int  # OP_QUANTIZE_U8 or OP_TO_FLOAT_U8
    scale: np.ndarray  # (1,) float32
    zero_point: int

    def op(self, in_shape: Shape) -> Op:
        zero_points = (0, 0, self.zero_point) if self.code == OP_QUANTIZE_U8 else (self.zero_point, 0, 0)
        return Op(self.code, image_view(in_shape), in_shape,
                  {MULTIPLIERS: (address(self.scale), 1), ZERO_POINTS: zero_points}, uint8=self.code == OP_QUANTIZE_U8)


@dataclass(frozen=True, slots=True)
class ConvU8:
    """fast_int8.conv2d: a one-group convolution [with its 2x2 max pool], or a Linear as a 1x1 one."""

    weight: np.ndarray  # (packed_rows(K) // 4, padded_channels(Co, 16), 4) int8, params.pack_weight's
    bias: np.ndarray  # (padded_channels(Co, 16),) int32, params.folded_bias's
    multipliers: np.ndarray  # (padded_channels(Co, 16),) float32
    requant: tuple  # params.Requant
    window: tuple  # params.Window, unpadded (a PAD row pads its input, and widens it to whole quads of channels)
    x_zero: int
    out_shape: Shape  # one output image: (H, W, Co) (pooled), or (O,) for a Linear
    macs: int  # per image
    pool: bool

    def op(self, in_shape: Shape) -> Op:
        out = image_view(self.out_shape)
        return Op(OP_CONV_U8, image_view(in_shape), self.out_shape,
                  {WEIGHT: (address(self.weight), *self.weight.shape, 1, 1), BIAS: (address(self.bias), self.bias.size),
                   MULTIPLIERS: (address(self.multipliers), self.multipliers.size), WINDOW: self.window,
                   VARIANT: (BEST,), POOL: (int(self.pool),), **_requant_fields(self.requant, self.x_zero)},
                  float(self.requant[3]), macs=self.macs, parts=out[0] * out[1], uint8=True)


@dataclass(frozen=True, slots=True)
class PadU8:
    """fast_int8.pad: a uint8 value with its zero point around each image and in channels up to
    whole quads, for a convolution [its taps across side by side in each pixel: `across`]."""

    border: tuple  # params.Border
    zero_point: int
    across: tuple = tuple(POINTWISE)  # params.Window: its kernel_w taps, dilation_w apart, in each pixel

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_PAD_U8, image_view(in_shape), _padded_shape(in_shape, self.border, self.across),
                  {BORDER: self.border, WINDOW: self.across, ZERO_POINTS: (self.zero_point, 0, 0)}, uint8=True)


def _padded_shape(shape: Shape, border: tuple, across: tuple) -> Shape:
    """The shape of one image (H, W, C), or (F,), after PadU8(border, across)."""
    if len(shape) == 1:
        return (quads(shape[0]),)
    top, left, bottom, right = border
    taps, step = across[1], across[9]
    h, w, c = shape
    return top + h + bottom, left + w + right - (taps - 1) * step, quads(c * taps)


def _across(layer: Layer) -> tuple:
    """The taps across that a PAD row puts side by side in each pixel for this layer: a convolution
    of few input channels (a grayscale image's first) reads kernel_w times fewer quads so;
    POINTWISE: none."""
    if isinstance(layer, Conv2d) and layer.groups == 1 and not layer.is_depthwise:
        taps = layer.kernel_size[1]
        if taps > 1 and quads(layer.in_channels * taps) < taps * quads(layer.in_channels):
            return tuple(window((1, taps), (1, 1), (0, 0, 0, 0), (1, layer.window.dilation_w)))
    return tuple(POINTWISE)


@dataclass(frozen=True, slots=True)
class DepthwiseU8:
    """fast_int8.depthwise_conv2d (PLAIN), or depthwise_conv2d_vnni (VNNI: a CPU with AVX512_VNNI,
    more than 32 channels)."""

    weight: np.ndarray  # PLAIN: (KH * KW, padded_channels(C, 16)) int8; VNNI: params.depthwise_vnni_operands'
    bias: np.ndarray  # PLAIN: (2, padded_channels(C, 16)) int32, params.depthwise_biases; VNNI: the operands'
    multipliers: np.ndarray  # PLAIN: (padded_channels(C, 16),) float32; VNNI: the operands'
    requant: tuple
    window: tuple
    x_zero: int
    out_shape: Shape  # (H, W, C)
    variant: int  # params.PLAIN or VNNI

    def op(self, in_shape: Shape) -> Op:
        pixels = self.out_shape[0] * self.out_shape[1]
        return Op(OP_DEPTHWISE_U8, image_view(in_shape), self.out_shape,
                  {WEIGHT: (address(self.weight), *self.weight.shape, *[1] * (5 - self.weight.ndim)),
                   BIAS: (address(self.bias), self.bias.size), VARIANT: (self.variant,),
                   MULTIPLIERS: (address(self.multipliers), self.multipliers.size), WINDOW: self.window,
                   **_requant_fields(self.requant, self.x_zero)},
                  float(self.requant[3]), macs=pixels * self.out_shape[2] * self.window[0] * self.window[1], parts=pixels,
                  uint8=True)


@dataclass(frozen=True, slots=True)
class PoolU8:
    """fast_int8.max_pool2d, global_avg_pool (MEAN: requantized) or flatten: one uint8 value to another."""

    code: int  # OP_MAX_POOL_U8, OP_MEAN_U8 or OP_FLATTEN_U8
    out_shape: Shape
    window: tuple = tuple(POINTWISE)  # params.Window (MAX_POOL)
    multiplier: Optional[np.ndarray] = None  # MEAN: (1,) float32
    requant: tuple = (0, 0, 255, 1.0)  # MEAN: params.Requant
    x_zero: int = 0  # MEAN

    def op(self, in_shape: Shape) -> Op:
        fields = {WINDOW: self.window, **_requant_fields(self.requant, self.x_zero)}
        if self.multiplier is not None:
            fields[MULTIPLIERS] = (address(self.multiplier), 1)
        return Op(self.code, image_view(in_shape), self.out_shape, fields, float(self.requant[3]), uint8=True)


@dataclass(frozen=True, slots=True)
class AddU8:
    """fast_int8.add of two uint8 values."""

    multipliers: np.ndarray  # (2,) float32
    zero_points: tuple[int, int]
    requant: tuple

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_ADD_U8, image_view(in_shape), in_shape,
                  {MULTIPLIERS: (address(self.multipliers), 2), **_requant_fields(self.requant, *self.zero_points)},
                  float(self.requant[3]), uint8=True)


def _conv(step: Int8Step, x: Quantization, graph: Graph, pool: Optional[Layer], across: tuple):
    """The row of an int8 convolution or Linear step [with the 2x2 max pool `pool` of its output]
    [on an input whose pixels hold its taps across: _across's]."""
    layer = step.layer
    out_shape = per_image(graph.shapes[(pool or layer).name])
    channels = padded_channels(layer.weight.shape[0], INT8_CHANNEL_ALIGN)
    multipliers = np.zeros(channels, np.float32)
    multipliers[:layer.weight.shape[0]] = step.multipliers[0]
    if isinstance(layer, Conv2d) and layer.is_depthwise:
        # its 64 channel blocks half full or more, on a CPU with vpdpbusd and BW's packs
        if layer.out_channels > 32 and compiles_for("avx512vnni") and compiles_for("avx512bw"):
            weight, bias, multipliers = depthwise_vnni_operands(layer.weight, step.bias, step.multipliers[0], x.zero_point)
            return DepthwiseU8(weight, bias, multipliers, tuple(step.requant), tuple(layer.window), x.zero_point,
                               out_shape, VNNI)
        weight = np.zeros((layer.weight[0, 0].size, channels), np.int8)
        weight[:, :layer.out_channels] = layer.weight.reshape(layer.out_channels, -1).T
        bias = depthwise_biases(step.bias, layer.weight, x.zero_point, channels)
        return DepthwiseU8(weight, bias, multipliers, tuple(step.requant), tuple(layer.window), x.zero_point, out_shape,
                           PLAIN)
    weight = layer.weight if isinstance(layer, Conv2d) else layer.weight[:, :, None, None]
    window = tuple(unpadded(layer.window)) if isinstance(layer, Conv2d) else tuple(POINTWISE)
    if across != tuple(POINTWISE):
        weight = taps_across_in_channels(weight)
        window = tuple(unpadded(layer.window)._replace(kernel_w=1, dilation_w=1))
    conv_pixels = int(np.prod(per_image(graph.shapes[layer.name])[:-1]))
    return ConvU8(pack_weight(weight, channels), folded_bias(step.bias, weight, x.zero_point, channels), multipliers,
                  tuple(step.requant), window, x.zero_point, out_shape, conv_pixels * weight[0].size * weight.shape[0],
                  pool is not None)


def _pad_of(layer: Layer, across: tuple) -> Optional[tuple]:
    """The params.Border a PAD row gives the input of an int8 convolution or Linear (fast_int8.conv2d
    reads every tap where it is, four channels at a time) [whose taps across, _across's, it puts in
    each pixel], or None if it needs none."""
    if isinstance(layer, Linear):
        return (0, 0, 0, 0) if layer.in_features % 4 else None
    folded = across != tuple(POINTWISE)
    return tuple(layer.padding) if any(layer.padding) or layer.in_channels % 4 or folded else None


def _float_group(layer: Layer, inputs: tuple[str, ...]):
    """The group the fast plan would make of this layer alone."""
    if isinstance(layer, Conv2d):
        return ConvGroup(layer, None, None, None, inputs)
    if isinstance(layer, Linear):
        return LinearGroup(layer, None, inputs, None)
    if isinstance(layer, BatchNorm2d):
        return AffineGroup(layer, None, inputs)
    if isinstance(layer, ACTIVATIONS):
        return AffineGroup(None, layer, inputs)
    if isinstance(layer, (MaxPool2d, AvgPool2d, GlobalAvgPool)):
        return PoolGroup(layer, inputs)
    return LayerGroup(layer, inputs)


def lower_int8(graph: Graph) -> tuple[list[tuple[object, tuple[str, ...], str, tuple[str, ...]]], dict[str, tuple]]:
    """The graph's int8 steps as (kernel, inputs, output, file layers covered), in order, and the
    NCHW shape (N = 1) of every value they make (the graph's, and the converted copies')."""
    shapes = dict(graph.shapes)
    quantized: dict[str, Quantization] = {}  # uint8 values -> their quantization
    lowered: list[tuple[object, tuple[str, ...], str, tuple[str, ...]]] = []
    fused_pools: set[int] = set()  # (ids of) the max pool steps a convolution writes

    def padded(name: str, border: tuple, across: tuple) -> str:
        """The uint8 value with params.Border `border` and whole quads of channels [its taps across
        side by side: `across`], made once."""
        copy = f"{name}:padded{list(border)}" + (f":across{across[1]}x{across[9]}" if across != tuple(POINTWISE) else "")
        if copy not in shapes:
            image = _padded_shape(per_image(shapes[name]), border, across)  # back to NCHW:
            shapes[copy] = (1, image[2], image[0], image[1]) if len(image) == 3 else (1, *image)
            lowered.append((PadU8(border, quantized[name].zero_point, across), (name,), copy, ()))
            quantized[copy] = quantized[name]
        return copy

    def converted(name: str, to_uint8: bool) -> str:
        """The value as uint8 (a QUANTIZE row) or as float32 (a TO_FLOAT row), made once."""
        if (name in quantized) == to_uint8:
            return name
        copy = f"{name}:{'uint8' if to_uint8 else 'float32'}"
        if copy not in shapes:
            q = graph.activations[name] if to_uint8 else quantized[name]
            code = OP_QUANTIZE_U8 if to_uint8 else OP_TO_FLOAT_U8
            lowered.append((Convert(code, _one(q.scale), q.zero_point), (name,), copy, ()))
            shapes[copy] = shapes[name]
            if to_uint8:
                quantized[copy] = q
        return copy

    steps = int8_steps(graph)
    readers = Counter(name for step in steps for name in step.inputs)
    pools = {step.inputs[0]: step for step in steps if step.kind == "max_pool" and readers[step.inputs[0]] == 1
             and pools_2x2_blocks(step.layer, graph.shapes[step.inputs[0]], graph.shapes[step.output])}
    for step in steps:
        layer, covered = step.layer, (step.layer.name,)
        if id(step) in fused_pools:
            continue  # written by the convolution before it
        inputs = tuple(converted(name, step.kind != "float") for name in step.inputs)
        out_shape = per_image(graph.shapes[layer.name])
        output = step.output
        if step.kind == "conv":
            pool = pools.get(step.output) if isinstance(layer, Conv2d) and layer.groups == 1 else None
            across = _across(layer)
            border = None if isinstance(layer, Conv2d) and layer.is_depthwise else _pad_of(layer, across)
            if border is not None:
                inputs = (padded(inputs[0], border, across),)
            kernel: object = _conv(step, quantized[inputs[0]], graph, pool.layer if pool else None, across)
            if pool is not None:
                output, covered = pool.output, (layer.name, pool.layer.name)
                fused_pools.add(id(pool))
        elif step.kind == "max_pool":
            kernel = PoolU8(OP_MAX_POOL_U8, out_shape, tuple(layer.window))
        elif step.kind == "pass":  # Flatten
            kernel = PoolU8(OP_FLATTEN_U8, out_shape)
        elif step.kind == "mean":
            kernel = PoolU8(OP_MEAN_U8, out_shape, multiplier=_one(step.multipliers[0]), requant=tuple(step.requant),
                            x_zero=quantized[inputs[0]].zero_point)
        elif step.kind == "add":
            kernel = AddU8(np.array(step.multipliers, np.float32), tuple(quantized[name].zero_point for name in inputs),
                           tuple(step.requant))
        else:
            group = _float_group(layer, inputs)
            kernel = LOWER[type(group)](group, graph)
        shapes[output] = graph.shapes[output]
        if step.out is not None:
            quantized[output] = step.out
        lowered.append((kernel, inputs, output, covered))
    converted(lowered[-1][2], False)  # the output, as float32
    return lowered, shapes
