"""Pass 2 of the fast plan: each group's weights packed for its kernel, as a step.

Lowering (`LOWER[type(group)]`) returns a step holding the packed weights and the kernel's parameter
structs (pdinfer/kernels/params.py); its `op()` is its table row. A compressed weight (F16, BF16, I8)
stays compressed in its packed layout (`PackedWeight`); each call widens it with a DEQUANTIZE row
into arena memory that lives for that one convolution, so only one layer's float32 weight is alive at
a time. (A compressed convolution followed by a BatchNorm2d is folded, hence float32.) A layer with
no row kernel (Concat, Slice, ChannelShuffle, Mul, PReLU, adaptive pools, ...) lowers to a host step:
Python runs it on views of the arena between two calls of the interpreter. `in_one_buffer` then
moves every array the steps keep into one aligned allocation per model.
"""


from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .format import storage
from .fusion import AffineGroup, ConvGroup, LayerGroup, LinearGroup, PoolGroup, runs_winograd
from .graph import Graph
from .kernels.table import (ACTIVATION, AVERAGE, BIAS, BORDER, OP_ADD, OP_AVG_POOL, OP_CONV, OP_DEPTHWISE, OP_FLATTEN,
                            OP_GROUPED, OP_MAX_POOL, OP_MEAN, OP_SCALE_SHIFT, OP_SIGMOID, OP_SOFTMAX, OP_WINOGRAD,
                            POOL, STORAGE, STORAGE_BF16, STORAGE_F16, STORAGE_I8, WEIGHT, WINDOW)
from .kernels.params import (ACT_LEAKY, ACT_NONE, ACT_RELU, ACT_RELU6, NO_BORDER, POINTWISE, Border, activation,
                             padded_channels, unpadded, winograd_tiles, winograd_weight)
from .layers import Layer
from .layers.activations import LeakyReLU, ReLU, ReLU6, Sigmoid
from .layers.channels import ChannelShuffle, Concat, Slice
from .layers.pooling import GlobalAvgPool, MaxPool2d
from .layers.softmax import Softmax
from .layers.structural import Add, Flatten, Mul
from .program import Op, Shape, address, image_view


Values = np.ndarray  # NHWC (rank 4) or (N, features)
# Steps keep the parameter structs as plain tuples, the form kernels are called with (params.py).


def _activation(layer: Optional[Layer]) -> tuple:
    """The fused form of an activation layer (or of none): a params.Activation as a plain tuple."""
    if isinstance(layer, ReLU):
        return tuple(activation(ACT_RELU))
    if isinstance(layer, ReLU6):
        return tuple(activation(ACT_RELU6))
    if isinstance(layer, LeakyReLU):
        return tuple(activation(ACT_LEAKY, layer.negative_slope))
    return tuple(activation(ACT_NONE))


def _bordered(height: int, width: int, channels: int, border: Border) -> tuple[int, int, int]:
    """(H, W, C) of one output image with a params.Border around it."""
    top, left, bottom, right = border
    return top + height + bottom, left + width + right, channels


def _aligned_zeros(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Zeros starting on a 64-byte boundary (a cache line), so that the kernels' full-width loads
    of a packed row never straddle two lines (malloc aligns to 16 bytes only)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(size + 64, dtype=np.uint8)
    start = -raw.__array_interface__["data"][0] % 64
    return raw[start:start + size].view(dtype).reshape(shape)


def _pad_columns(matrix: np.ndarray) -> np.ndarray:
    """float32 copy of a (K, C) matrix with zero columns appended up to padded_channels(C)."""
    padded = _aligned_zeros((matrix.shape[0], padded_channels(matrix.shape[1])), np.float32)
    padded[:, :matrix.shape[1]] = matrix
    return padded


@dataclass(frozen=True, slots=True)
class PackedWeight:
    """A weight in its kernel's layout, float32 or as stored: int8 with the scale of each column of
    each group, or the bit patterns of F16/BF16 values. A compressed one is widened to float32 for
    each call by a DEQUANTIZE row (kernels/rows.py), exactly as format.dequantize does."""

    data: np.ndarray  # the kernel's layout, (..., C): float32, int8 or uint16 (16-bit float bits)
    storage: str  # format.DTYPES key
    scale: np.ndarray  # I8: (A, C) float32, A groups of C columns (the last axis); else (0, 0)

    def weight_field(self) -> tuple:
        """The WEIGHT field of a row reading it as float32: (address, shape padded with 1s); the
        address of a compressed weight is set where the table widens it."""
        return (address(self.data) if self.storage == "F32" else 0, *(*self.data.shape, 1, 1, 1, 1)[:5])

    def dequantize(self) -> dict:
        """The fields of the DEQUANTIZE row that widens it (none for float32)."""
        if self.storage == "F32":
            return {}
        if self.storage == "I8":
            groups, columns = self.scale.shape
            return {WEIGHT: (address(self.data), groups, self.data.size // (groups * columns), columns, 1, 1),
                    BIAS: (address(self.scale), self.scale.size), STORAGE: (STORAGE_I8,)}
        return {WEIGHT: (address(self.data), self.data.size, 1, 1, 1, 1),
                STORAGE: (STORAGE_BF16 if self.storage == "BF16" else STORAGE_F16,)}


_NO_SCALE = np.empty((0, 0), dtype=np.float32)


def _packed(stored: np.ndarray, scale: Optional[np.ndarray], pack, groups: int = 1,
            pad: bool = True) -> PackedWeight:
    """Pack a weight as stored (float64 counts as float32) with `pack`, a layout change from
    (O, ...) to (..., O') on NumPy arrays: padded to (K, padded_channels(O)), or with `pad` off
    a grouped layout whose last axis holds O / groups channels.

    stored: (O, ...) float32/float64, float16, uint16 (BF16 bits) or int8
    scale:  (O,) float32 for an int8 weight, else None
    """
    kind = storage(stored)
    if kind == "F32":
        data = pack(stored)
        return PackedWeight(_pad_columns(data) if pad else np.ascontiguousarray(data, np.float32), kind, _NO_SCALE)
    bits = stored if kind == "I8" else stored.view(np.uint16)
    data = pack(bits)
    if pad:
        padded = _aligned_zeros((data.shape[0], padded_channels(data.shape[1])), bits.dtype)
        padded[:, :data.shape[1]] = data
        data = padded
    if kind == "I8":
        columns = np.zeros(data.shape[-1] if pad else scale.size, dtype=np.float32)
        columns[:scale.size] = scale
        return PackedWeight(np.ascontiguousarray(data), kind, columns.reshape(groups, -1))
    return PackedWeight(np.ascontiguousarray(data), kind, _NO_SCALE)


_POINTWISE, _NO_BORDER = tuple(POINTWISE), tuple(NO_BORDER)


def _fields(weight: Union[PackedWeight, np.ndarray], bias: np.ndarray, activation: tuple, window: tuple = _POINTWISE,
            border: tuple = _NO_BORDER, pool: bool = False) -> dict:
    """A convolution's row fields (kernels/table.py): its weight (up to 5-D) and bias by address,
    and its structs."""
    weight_field = weight.weight_field() if isinstance(weight, PackedWeight) else \
        (address(weight), *(*weight.shape, 1, 1, 1, 1)[:5])
    return {WEIGHT: weight_field, BIAS: (address(bias), bias.size), ACTIVATION: (activation[0],),
            WINDOW: window, BORDER: border, POOL: (int(pool),)}


def _inner_pixels(out_shape: tuple[int, int, int], border: tuple) -> int:
    """The pixels of one output image (H, W, C) inside its params.Border."""
    top, left, bottom, right = border
    return (out_shape[0] - top - bottom) * (out_shape[1] - left - right)


@dataclass(frozen=True, slots=True)
class DenseConv:
    """fast.conv2d: a one-group convolution as a register-tiled matrix product."""

    weight: PackedWeight  # (KH * KW * Ci, padded_channels(Co))
    bias: np.ndarray  # (padded_channels(Co),)
    activation: tuple  # params.Activation
    window: tuple  # params.Window
    out_shape: tuple[int, int, int]  # (H, W, Co) of one output image, its border included
    border: tuple  # params.Border
    macs: int  # multiply-adds per image
    pool: bool  # the 2x2 max pool of the output is written (out_shape is the pool's)

    def op(self, in_shape: Shape) -> Op:
        pixels = _inner_pixels(self.out_shape, self.border)
        return Op(OP_CONV, image_view(in_shape), self.out_shape,
                  _fields(self.weight, self.bias, self.activation, self.window, self.border, self.pool),
                  self.activation[1], macs=self.macs, parts=pixels, dequantize=self.weight.dequantize())


@dataclass(frozen=True, slots=True)
class WinogradConv:
    """fast.winograd_conv3x3: a 3x3 stride-1 one-group convolution with float32 weights, Ci and
    Co >= WINOGRAD_CHANNELS (narrower ones measured no faster than DenseConv)."""

    weight: np.ndarray  # (16, Ci, padded_channels(Co)) params.winograd_weight
    bias: np.ndarray  # (padded_channels(Co),)
    activation: tuple  # params.Activation
    window: tuple  # params.Window
    out_shape: tuple[int, int, int]  # (H, W, Co) of one output image, its border included
    border: tuple  # params.Border
    tiles: tuple[int, int]  # per image, per group (params.winograd_tiles)
    pool: bool  # a 2x2 max pool of each tile is written, not the tile

    def op(self, in_shape: Shape) -> Op:
        _, in_c, out_c = self.weight.shape
        return Op(OP_WINOGRAD, image_view(in_shape), self.out_shape,
                  _fields(self.weight, self.bias, self.activation, self.window, self.border, self.pool),
                  self.activation[1], self.tiles, macs=self.tiles[0] * 16 * in_c * out_c, parts=self.tiles[0])


@dataclass(frozen=True, slots=True)
class DepthwiseConv:
    """fast.depthwise_conv2d."""

    weight: PackedWeight  # (KH * KW, padded_channels(C))
    bias: np.ndarray  # (padded_channels(C),)
    activation: tuple  # params.Activation
    window: tuple  # params.Window
    out_shape: tuple[int, int, int]  # (H, W, C) of one output image, its border included
    border: tuple  # params.Border

    def op(self, in_shape: Shape) -> Op:
        pixels = _inner_pixels(self.out_shape, self.border)
        return Op(OP_DEPTHWISE, image_view(in_shape), self.out_shape,
                  _fields(self.weight, self.bias, self.activation, self.window, self.border),
                  self.activation[1], macs=pixels * self.out_shape[2] * self.window[0] * self.window[1], parts=pixels,
                  dequantize=self.weight.dequantize())


@dataclass(frozen=True, slots=True)
class GroupedConv:
    """fast.grouped_conv2d: 1 < groups, not depthwise."""

    weight: PackedWeight  # (G, KH, KW, Ci/G, Co/G)
    bias: np.ndarray  # (Co,)
    activation: tuple  # params.Activation
    window: tuple  # params.Window
    out_hw: tuple[int, int]

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_GROUPED, image_view(in_shape), (*self.out_hw, self.bias.size),
                  _fields(self.weight, self.bias, self.activation, self.window), self.activation[1],
                  dequantize=self.weight.dequantize())


def _lower_conv(group: ConvGroup, graph: Graph) -> Union[DenseConv, DepthwiseConv, GroupedConv]:
    """Fold the BatchNorm into the weight and bias (in float64), pack for the conv's kernel; a
    compressed weight without a BatchNorm is packed as stored."""
    conv = group.conv
    bias = conv.bias.astype(np.float64) if conv.has_bias else np.zeros(conv.out_channels)
    stored, stored_scale = conv.weight, conv.weight_scale  # (Co, Ci/G, KH, KW), (Co,) or None
    if group.bn is not None:
        scale, shift = group.bn.scale_shift()
        stored, stored_scale = conv.float_weight().astype(np.float64) * scale[:, None, None, None], None
        bias = bias * scale + shift
    act = _activation(group.act)
    window = tuple(unpadded(conv.window) if group.input_padded else conv.window)
    out_c, out_h, out_w = graph.shapes[conv.name][1:]
    (kh, kw), groups = conv.kernel_size, conv.groups
    pooled = (out_h // 2, out_w // 2) if group.pool else (out_h, out_w)  # the step's output size
    if runs_winograd(conv, group.bn is not None):
        return WinogradConv(_pad_columns(winograd_weight(stored).reshape(-1, out_c)).reshape(16, conv.in_channels, -1),
                            _pad_columns(bias[None])[0], act, window, _bordered(*pooled, out_c, group.border),
                            tuple(group.border), winograd_tiles(out_h, out_w, conv.in_channels, out_c),
                            group.pool is not None)
    if groups == 1:
        packed = _packed(stored, stored_scale, lambda w: w.transpose(2, 3, 1, 0).reshape(-1, out_c))
        return DenseConv(packed, _pad_columns(bias[None])[0], act, window, _bordered(*pooled, out_c, group.border),
                         tuple(group.border), conv.macs(graph.shapes[conv.name]), group.pool is not None)
    if conv.is_depthwise:
        packed = _packed(stored, stored_scale, lambda w: w[:, 0].reshape(out_c, kh * kw).T)
        return DepthwiseConv(packed, _pad_columns(bias[None])[0], act, window,
                             _bordered(out_h, out_w, out_c, group.border), tuple(group.border))
    g_out, g_in = out_c // groups, conv.in_channels // groups
    packed = _packed(stored, stored_scale, lambda w: w.reshape(groups, g_out, g_in, kh, kw).transpose(0, 3, 4, 2, 1),
                     groups, pad=False)
    return GroupedConv(packed, bias.astype(np.float32), act, window, (out_h, out_w))


@dataclass(frozen=True, slots=True)
class LinearAsConv:
    """Linear + activation as fast.conv2d's 1x1 convolution over (N, 1, 1, I)."""

    weight: PackedWeight  # (I, padded_channels(O))
    bias: np.ndarray  # (padded_channels(O),)
    activation: tuple  # params.Activation
    out_features: int

    def op(self, in_shape: Shape) -> Op:  # its input: (I,) or, with a folded Flatten, (H, W, C)
        in_features = int(np.prod(in_shape))
        return Op(OP_CONV, (1, 1, in_features), (self.out_features,),
                  _fields(self.weight, self.bias, self.activation), self.activation[1],
                  macs=in_features * self.out_features, parts=1, dequantize=self.weight.dequantize())


def _lower_linear(group: LinearGroup, graph: Graph) -> LinearAsConv:
    """Pack the weight transposed; with a folded Flatten, its columns reordered from PyTorch's
    channel-major order to the NHWC order of the input."""
    linear = group.linear
    chw = group.flattened_chw

    def pack(weight: np.ndarray) -> np.ndarray:  # (O, I) -> (I, O)
        if chw is not None:
            weight = weight.reshape(linear.out_features, *chw).transpose(0, 2, 3, 1)
        return weight.reshape(linear.out_features, -1).T

    packed = _packed(linear.weight, linear.weight_scale, pack)
    bias = _pad_columns((linear.bias if linear.has_bias else np.zeros(linear.out_features))[None])[0]
    return LinearAsConv(packed, bias, _activation(group.act), linear.out_features)


@dataclass(frozen=True, slots=True)
class ScaleShift:
    """fast.scale_shift: per-channel affine map + activation on NHWC or (N, C) values."""

    scale: np.ndarray  # (C,)
    shift: np.ndarray  # (C,)
    activation: tuple  # params.Activation

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_SCALE_SHIFT, image_view(in_shape), in_shape, _fields(self.scale, self.shift, self.activation),
                  self.activation[1])


def _lower_affine(group: AffineGroup, graph: Graph) -> ScaleShift:
    if group.bn is not None:
        scale, shift = group.bn.scale_shift()
    else:
        shape = graph.shapes[group.act.name]
        channels = shape[1]
        scale, shift = np.ones(channels), np.zeros(channels)
    return ScaleShift(scale.astype(np.float32), shift.astype(np.float32), _activation(group.act))


@dataclass(frozen=True, slots=True)
class MaxPool:
    """fast.max_pool2d."""

    window: tuple  # params.Window
    out_hw: tuple[int, int]
    border: tuple  # params.Border

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_MAX_POOL, image_view(in_shape), _bordered(*self.out_hw, in_shape[-1], self.border),
                  {WINDOW: self.window, BORDER: self.border})


@dataclass(frozen=True, slots=True)
class AvgPool:
    """fast.avg_pool2d."""

    window: tuple  # params.Window
    count_include_pad: bool
    divisor_override: int
    out_hw: tuple[int, int]

    def op(self, in_shape: Shape) -> Op:
        return Op(OP_AVG_POOL, image_view(in_shape), (*self.out_hw, in_shape[-1]),
                  {WINDOW: self.window, AVERAGE: (int(self.count_include_pad), self.divisor_override)})


@dataclass(frozen=True, slots=True)
class GlobalMean:
    """fast.global_avg_pool: (N, H, W, C) to (N, C), or (N, 1, 1, C) with keepdim."""

    keepdim: bool

    def op(self, in_shape: Shape) -> Op:
        channels = in_shape[-1]
        return Op(OP_MEAN, image_view(in_shape), (1, 1, channels) if self.keepdim else (channels,))


def _lower_pool(group: PoolGroup, graph: Graph) -> Union[MaxPool, AvgPool, GlobalMean]:
    pool = group.pool
    if isinstance(pool, GlobalAvgPool):
        return GlobalMean(pool.keepdim)
    out_hw = graph.shapes[pool.name][2:]
    if isinstance(pool, MaxPool2d):
        return MaxPool(tuple(pool.window), out_hw, tuple(group.border))
    return AvgPool(tuple(pool.window), pool.count_include_pad, pool.divisor_override, out_hw)


@dataclass(frozen=True, slots=True)
class LayerRow:
    """A layer with a row kernel and no parameters: Softmax (over the channels, the last axis
    here), Sigmoid, Add, or Flatten (NHWC back to PyTorch's channel-major order)."""

    code: int  # kernels.table OP_SOFTMAX, OP_SIGMOID, OP_ADD or OP_FLATTEN

    def op(self, in_shape: Shape) -> Op:
        out_shape = (int(np.prod(in_shape)),) if self.code == OP_FLATTEN else in_shape
        return Op(self.code, image_view(in_shape), out_shape)


@dataclass(frozen=True, slots=True)
class ReferenceLayer:
    """A layer with no fast kernel: its reference forward, on the values as they are if it is
    elementwise, else on NCHW copies of rank-4 values."""

    layer: Layer

    def __call__(self, *xs: Values) -> Values:
        from .kernels import reference  # Numba's: imported when a table first runs, not at load
        if self.layer.elementwise:
            return self.layer.forward(*xs, kernels=reference)
        nchw = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x for x in xs]
        out = self.layer.forward(*nchw, kernels=reference)
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if out.ndim == 4 else out


def _concat(*xs: Values) -> Values:
    """Concat along channels: the last axis here. One copy of each input into the output."""
    return np.concatenate(xs, axis=-1)


@dataclass(frozen=True, slots=True)
class ChannelSlice:
    """Slice channels [start, end): one copy of the slice."""

    start: int
    end: int

    def __call__(self, x: Values) -> Values:
        return np.ascontiguousarray(x[..., self.start:self.end])


@dataclass(frozen=True, slots=True)
class Shuffle:
    """ChannelShuffle: channel j * groups + i of the output is channel i * (C / groups) + j of the
    input, as the view-transpose-view in PyTorch's layout; one copy."""

    groups: int

    def __call__(self, x: Values) -> Values:
        c = x.shape[-1]
        grouped = x.reshape(*x.shape[:-1], self.groups, c // self.groups)
        return np.ascontiguousarray(np.swapaxes(grouped, -1, -2)).reshape(x.shape)


def _mul(a: Values, b: Values) -> Values:
    """Mul with broadcasting: an (N, C, 1, 1) or (N, 1, H, W) operand in PyTorch's layout is
    (N, 1, 1, C) or (N, H, W, 1) here and broadcasts the same way; the products are the
    reference's, in one pass."""
    return np.multiply(a, b)


_LAYER_ROWS = {Softmax: OP_SOFTMAX, Sigmoid: OP_SIGMOID, Add: OP_ADD, Flatten: OP_FLATTEN}


def _lower_layer(group: LayerGroup, graph: Graph):
    """A LayerRow (Softmax, Sigmoid, Add, Flatten), or a host step: a channels-last form (Concat,
    Slice, ChannelShuffle, Mul), an elementwise layer's reference forward on the values as they
    are, or any other layer's reference forward on NCHW copies."""
    layer = group.layer
    if type(layer) in _LAYER_ROWS:
        return LayerRow(_LAYER_ROWS[type(layer)])
    if isinstance(layer, Concat):
        return _concat
    if isinstance(layer, Slice):
        return ChannelSlice(layer.start, layer.end)
    if isinstance(layer, ChannelShuffle):
        return Shuffle(layer.groups)
    if isinstance(layer, Mul):
        return _mul
    return ReferenceLayer(_owning(layer))


def _owning(layer: Layer) -> Layer:
    """A copy of `layer` whose tensors own their memory: a tensor of a loaded file is a view of the
    file's buffer, which a kept view would keep alive whole (a PReLU's weight, for one)."""
    owner = copy.copy(layer)
    for role, value in vars(layer).items():
        if isinstance(value, np.ndarray):
            setattr(owner, role, value.copy())
    return owner


LOWER = {ConvGroup: _lower_conv, LinearGroup: _lower_linear, AffineGroup: _lower_affine,
          PoolGroup: _lower_pool, LayerGroup: _lower_layer}


def in_one_buffer(kernels: list) -> list:
    """The kernels with the arrays they keep (a PackedWeight's included) copied into one buffer,
    each on a 64-byte boundary: a resident model holds one allocation instead of one per array
    (each with its own alignment slack, array object and malloc overhead); and with one object for
    each set of equal tuples of ints they keep (windows, borders, shapes)."""
    def arrays(obj: object) -> list[np.ndarray]:
        found = []
        for value in _field_values(obj).values():
            found += arrays(value) if isinstance(value, PackedWeight) else [value] if isinstance(value, np.ndarray) else []
        return [a for a in found if a.size]  # empty arrays are shared constants (_NO_SCALE)
    kept = {id(a): a for kernel in kernels for a in arrays(kernel)}
    offsets, size = {}, 0
    for key, a in kept.items():
        offsets[key], size = size, size + -(-a.nbytes // 64) * 64
    buffer = _aligned_zeros((size,), np.uint8)
    tuples: dict[tuple, tuple] = {}  # tuple of ints -> the one kept

    def moved(obj: object) -> object:
        changes = {}
        for name, value in _field_values(obj).items():
            if isinstance(value, PackedWeight):
                changes[name] = moved(value)
            elif isinstance(value, np.ndarray) and value.size:
                start = offsets[id(value)]
                copy = buffer[start:start + value.nbytes].view(value.dtype).reshape(value.shape)
                copy[...] = value
                changes[name] = copy
            elif isinstance(value, tuple) and all(type(v) is int for v in value):
                changes[name] = tuples.setdefault(value, value)
        return dataclasses.replace(obj, **changes) if changes else obj
    return [moved(kernel) for kernel in kernels]


def _field_values(obj: object) -> dict[str, object]:
    """A dataclass's fields by name ({} for anything else; the kernels have slots, no vars())."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}


def kept(kernel: object) -> list[object]:
    """What a step's kernel keeps: a dataclass's fields, or a ReferenceLayer's layer's."""
    if isinstance(kernel, ReferenceLayer):
        return list(vars(kernel.layer).values())
    return list(_field_values(kernel).values())
