"""The small parameter structs kernels take (TFLite style), shared by the reference and fast kernels.

They are NamedTuples, so a kernel takes `window` instead of ten positional integers. A kernel is
called with the struct as a plain tuple and rebuilds it in its first line (`window =
Window(*window)`): Numba's dispatcher types a NamedTuple argument through a slow path, about
0.6 us per argument and call (measured), which adds up to a tenth of a small model's latency,
while a plain tuple costs a tenth of that. Build structs with the functions below, which fix every
field's type (a field that is sometimes a bool and sometimes an int would compile a kernel twice).
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY = 0, 1, 2, 3  # activation codes of fused kernels


class Window(NamedTuple):
    """A sliding window over H and W (convolution and pooling), as PyTorch parameterises it."""

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    dilation_h: int
    dilation_w: int


class Border(NamedTuple):
    """Rows and columns of zeros a fast kernel writes around each output image: the padding of
    the convolution that reads the output, which then needs no padded copy of its input."""

    top: int
    left: int
    bottom: int
    right: int


class Activation(NamedTuple):
    """The activation a fast kernel applies after the bias: `code` (ACT_*) and LeakyReLU's slope."""

    code: int
    slope: np.float32


def window(kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int] = (1, 1)) -> Window:
    """A Window from (h, w) pairs and padding (top, left, bottom, right)."""
    return Window(*(int(v) for v in (*kernel, *stride, *padding, *dilation)))


def unpadded(w: Window) -> Window:
    """The same window without padding (for an input that already carries it as a border)."""
    return w._replace(pad_top=0, pad_left=0, pad_bottom=0, pad_right=0)


def border(padding: Sequence[int] = (0, 0, 0, 0)) -> Border:
    """A Border from (top, left, bottom, right); no argument: none."""
    return Border(*(int(v) for v in padding))


def activation(code: int = ACT_NONE, slope: float = 0.0) -> Activation:
    """An Activation; no argument: none."""
    return Activation(int(code), np.float32(slope))


POINTWISE = window((1, 1), (1, 1), (0, 0, 0, 0))  # a 1x1 convolution, and Linear run as one
NO_BORDER = border()


# ---------------------------------------------------------------------------- packed layouts
# What lowering packs and the fast kernels read (pdinfer/lowering.py, kernels/fast.py).

CHANNEL_ALIGN = 32  # packed output channels are padded to a multiple of this
INT8_CHANNEL_ALIGN = 16  # ... and an int8 row's to whole vectors of 16 int32 sums (fast_int8)


def padded_channels(channels: int, align: int = CHANNEL_ALIGN) -> int:
    """The packed width of `channels` output channels."""
    return -(-channels // align) * align


WINOGRAD_GROUP_BYTES = 2 << 20  # the transformed input and products of a group of tiles (larger measured faster)


def winograd_weight(weight: np.ndarray) -> np.ndarray:
    """G g G^T of a PyTorch (Co, Ci, 3, 3) weight, in float64: (16, Ci, Co), position 4i + j
    (fast.winograd_conv3x3)."""
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    u = np.einsum("ak,oikl,bl->abio", g, weight.astype(np.float64), g)  # (4, 4, Ci, Co)
    return u.reshape(16, weight.shape[1], weight.shape[0])


def winograd_tiles(out_h: int, out_w: int, in_c: int, out_c: int) -> tuple[int, int]:
    """Tiles per image (2x2 output pixels each) and tiles per group (WINOGRAD_GROUP_BYTES)."""
    per_image = -(-out_h // 2) * -(-out_w // 2)
    return per_image, max(1, WINOGRAD_GROUP_BYTES // (16 * 4 * (in_c + out_c)))


# ---------------------------------------------------------------------------- int8 computation

class Requant(NamedTuple):
    """How an int8 kernel writes a uint8 output from its float32 pre-image v (kernels/integer.py):
    v scaled by negative_slope where it is negative (LeakyReLU; 1 for none), then
    q = clamp(zero_point + round_half_even(v), low, high) (ReLU and ReLU6 are bounds)."""

    zero_point: int
    low: int
    high: int
    negative_slope: np.float32


def requant(zero_point: int, low: int = 0, high: int = 255, negative_slope: float = 1.0) -> Requant:
    """A Requant; by default no activation: the whole uint8 range."""
    return Requant(int(zero_point), int(low), int(high), np.float32(negative_slope))


CONV_U8_VARIANTS = (PLAIN, VNNI, AVX2, BEST) = (0, 1, 2, -1)  # fast_int8.conv2d's matrix products; BEST: the host's fastest


def compiles_for(feature: str, cpu_features: Optional[str] = None) -> bool:
    """Whether the CPU Numba compiles for has `feature` (an LLVM name: "avx512vnni"): those
    `cpu_features` lists (numba.core.config.CPU_FEATURES) where given, else those
    NUMBA_CPU_FEATURES lists where it is set (NUMBA_CPU_NAME=generic: none), as Numba reads them,
    else the host's. Reads no more than llvmlite, so that lowering an int8 model at load imports no
    Numba."""
    if cpu_features is None:
        cpu_features = os.environ.get("NUMBA_CPU_FEATURES")
        if cpu_features is None and os.environ.get("NUMBA_CPU_NAME", "").lower() == "generic":
            cpu_features = ""
    if cpu_features is not None:
        return f"+{feature}" in cpu_features.split(",")
    import llvmlite.binding as llvm
    return bool(llvm.get_host_cpu_features().get(feature, False))


def quads(channels: int) -> int:
    """Input channels rounded up to whole quads (vpdpbusd's four bytes): an int8 convolution's input
    has this many (the rest the zero point, a PAD row's)."""
    return -(-channels // 4) * 4


def pack_weight(weight: np.ndarray, out_padded: int) -> np.ndarray:
    """A PyTorch (Co, Ci, KH, KW) int8 weight as the matrix product reads it: k = (ky, kx, ci) in
    that order, ci padded with zeros to quads(Ci), columns to `out_padded`, and each group of four
    rows interleaved: packed[k // 4, co, k % 4] = w[k, co].

    returns (KH * KW * quads(Ci) // 4, out_padded, 4) int8
    """
    out_c, in_c = weight.shape[:2]
    widened = np.zeros((out_c, quads(in_c), *weight.shape[2:]), np.int8)
    widened[:, :in_c] = weight
    matrix = np.zeros((widened[0].size, out_padded), np.int8)
    matrix[:, :out_c] = widened.transpose(2, 3, 1, 0).reshape(-1, out_c)  # (K, Co)
    return np.ascontiguousarray(matrix.reshape(-1, 4, out_padded).transpose(0, 2, 1))


def taps_across_in_channels(weight: np.ndarray) -> np.ndarray:
    """A (Co, Ci, KH, KW) weight as the convolution of one tap across that reads an input whose
    pixels hold the KW taps across side by side (fast_int8.pad's `across`): input channel j * Ci + c
    is tap (., j) of channel c.

    returns (Co, KW * Ci, KH, 1)
    """
    out_c, in_c, kernel_h, kernel_w = weight.shape
    return weight.transpose(0, 3, 1, 2).reshape(out_c, kernel_w * in_c, kernel_h, 1)


def folded_bias(bias_q: np.ndarray, weight: np.ndarray, x_zero_point: int, out_padded: int) -> np.ndarray:
    """bias_q[co] - x_zero_point * sum of w[co, ...]: the sum over a window of (x - zero point) * w is
    the sum of x * w plus this share (every tap read, the padding holding the zero point).

    bias_q: (Co,) int; weight: (Co, ...) int8; returns (out_padded,) int32
    """
    folded = np.zeros(out_padded, np.int64)
    folded[:len(bias_q)] = bias_q.astype(np.int64) - x_zero_point * weight.reshape(len(bias_q), -1).sum(1, dtype=np.int64)
    return folded.astype(np.int32)


DEPTHWISE_BLOCK = 64  # channels of fast_int8.depthwise_conv2d_vnni's vectors


def depthwise_order(channels: int) -> np.ndarray:
    """Which channel fast_int8.depthwise_conv2d_vnni's lane holds, as simd_int8.interleave_taps
    leaves them: lane i of vector v of block b holds channel 64b + 16(i // 4) + 4v + i % 4.

    returns (blocks, 4, 16) int64, blocks = ceil(channels / 64)
    """
    blocks = -(-channels // DEPTHWISE_BLOCK)
    b, v, i = np.meshgrid(np.arange(blocks), np.arange(4), np.arange(16), indexing="ij")
    return DEPTHWISE_BLOCK * b + 16 * (i // 4) + 4 * v + i % 4


def depthwise_vnni_weight(weight: np.ndarray) -> np.ndarray:
    """A (C, 1, KH, KW) int8 depthwise weight as fast_int8.depthwise_conv2d_vnni reads it: for each
    block of 64 channels, tap column kx and group g of four tap rows, four vectors of 16 lanes of
    four bytes: [b, kx, g, v, i, j] = w[depthwise_order's channel, 4g + j, kx] (0 past the rows and
    the channels).

    returns (blocks, KW, ceil(KH / 4), 4, 16, 4) int8, blocks = ceil(C / 64)
    """
    channels, _, kernel_h, kernel_w = weight.shape
    groups = -(-kernel_h // 4)
    order = depthwise_order(channels)
    taps = np.zeros((order.size, 4 * groups, kernel_w), np.int8)  # (channel, row, column), padded
    taps[:channels, :kernel_h] = weight[:, 0]
    picked = taps[order.reshape(-1)].reshape(*order.shape, groups, 4, kernel_w)  # [b, v, i, g, j, kx]
    return np.ascontiguousarray(picked.transpose(0, 5, 3, 1, 2, 4))


def depthwise_vnni_operands(weight: np.ndarray, bias_q: np.ndarray, multipliers: np.ndarray,
                            x_zero_point: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fast_int8.depthwise_conv2d_vnni's weight (depthwise_vnni_weight's, as (blocks, KW, groups,
    256)), folded bias (int32) and multipliers (float32), those two flat in depthwise_order (0 past
    the channels).

    weight: (C, 1, KH, KW) int8; bias_q: (C,) int; multipliers: (C,) float32
    """
    order = depthwise_order(len(weight)).reshape(-1)
    scaled = np.zeros(order.size, np.float32)
    scaled[:len(weight)] = multipliers
    packed = depthwise_vnni_weight(weight)
    return (packed.reshape(*packed.shape[:3], 256), folded_bias(bias_q, weight, x_zero_point, order.size)[order],
            scaled[order])


def depthwise_biases(bias_q: np.ndarray, weight: np.ndarray, x_zero_point: int, padded: int) -> np.ndarray:
    """A depthwise convolution's two biases: bias_q (for pixels at the border, which subtract the
    zero point tap by tap) and bias_q[c] - x_zero_point * sum of w[c, ...] (for pixels whose window
    lies inside the input).

    bias_q: (C,) int; weight: (C, 1, KH, KW) int8; returns (2, padded) int32
    """
    biases = np.zeros((2, padded), np.int32)
    biases[0, :len(bias_q)] = bias_q
    biases[1] = folded_bias(bias_q, weight, x_zero_point, padded)
    return biases
