"""Integer reference kernels: the numerical specification of int8 computation (docs/KERNELS.md,
"Int8 computation").

A quantized value is uint8 `q` with a float32 `scale` and an integer `zero_point` in [0, 255]; it
stands for the real number scale * (q - zero_point). Weights are int8, symmetric per output channel
(zero point 0). Products are summed in int32, where the order of a sum does not matter; the one
float step is the requantization of a sum to the output's uint8 (`requantize`): a float32 product
with a precomputed float32 multiplier, rounded half to even. So every kernel here is exact: a port
that computes the same integers and the same float32 products reproduces it bit for bit.

Plain loops over NCHW arrays, fastmath off. Every array argument is C-contiguous; shapes are
given beside each argument. The quantizer (pdinfer/quantize.py) guarantees that no int32 sum
overflows (INT32_SUM_LIMIT).
"""

import numpy as np

from .._jit import jit
from .params import Requant, Window


@jit
def requantize(v, requant):
    """The uint8 a kernel writes for its float32 pre-image v (params.Requant): v * negative_slope
    if v < 0 (one float32 multiply), then zero_point + round_half_even(v), clamped to [low, high].

    v: float32; requant: params.Requant; returns int32 in [low, high]
    """
    requant = Requant(*requant)
    if v < 0:
        v = v * requant.negative_slope
    r = np.rint(v)  # the clamp below, done on the float, equals clamping the integer
    low, high = np.float32(requant.low - requant.zero_point), np.float32(requant.high - requant.zero_point)
    r = low if r < low else (high if r > high else r)
    return np.int32(r) + requant.zero_point


@jit
def quantize(x, scale, zero_point):
    """q = clamp(zero_point + round_half_even(x / scale), 0, 255), one float32 division.

    x: any shape float32 (finite); scale: float32 > 0; returns uint8 of x's shape
    """
    flat = x.ravel()
    out = np.empty(flat.size, dtype=np.uint8)
    whole = (zero_point, 0, 255, np.float32(1.0))
    for i in range(flat.size):
        out[i] = requantize(flat[i] / scale, whole)
    return out.reshape(x.shape)


@jit
def dequantize(q, scale, zero_point):
    """y = scale * float32(q - zero_point), one float32 multiply.

    q: any shape uint8; scale: float32; returns float32 of q's shape
    """
    flat = q.ravel()
    out = np.empty(flat.size, dtype=np.float32)
    for i in range(flat.size):
        out[i] = scale * np.float32(np.int32(flat[i]) - zero_point)
    return out.reshape(q.shape)


@jit
def conv2d(x, x_zero_point, weight, bias, multiplier, requant, window, groups, out_h, out_w):
    """Conv2d (a Linear is one on 1x1 images) with the input's zero point as its padding:

        v = float32(bias[co] + sum (x - x_zero_point) * weight over in-bounds taps) * multiplier[co]

    the sum in int32 (taps outside the input add nothing: they hold the real number 0), then
    requantize(v, requant).

    x:          (N, Ci, H, W) uint8
    weight:     (Co, Ci/groups, KH, KW) int8
    bias:       (Co,) int32, in units of the input's scale times the weight's (quantize.conv_constants)
    multiplier: (Co,) float32, input scale * weight scale / output scale
    window:     params.Window; requant: params.Requant
    returns (N, Co, out_h, out_w) uint8
    """
    window = Window(*window)
    n_batch, _, in_h, in_w = x.shape
    out_c, group_in, kernel_h, kernel_w = weight.shape
    group_out = out_c // groups
    out = np.empty((n_batch, out_c, out_h, out_w), dtype=np.uint8)
    for n in range(n_batch):
        for co in range(out_c):
            ci_base = (co // group_out) * group_in
            for oy in range(out_h):
                for ox in range(out_w):
                    acc = np.int32(bias[co])
                    for ci in range(group_in):
                        for ky in range(kernel_h):
                            iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                            if iy < 0 or iy >= in_h:
                                continue
                            for kx in range(kernel_w):
                                ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                                if ix < 0 or ix >= in_w:
                                    continue
                                acc += (np.int32(x[n, ci_base + ci, iy, ix]) - x_zero_point) * np.int32(weight[co, ci, ky, kx])
                    out[n, co, oy, ox] = requantize(np.float32(acc) * multiplier[co], requant)
    return out


@jit
def max_pool2d(x, window, out_h, out_w):
    """MaxPool2d on uint8: the largest in-bounds tap (0 for a window of padding only). The output
    has the input's scale and zero point (dequantizing is increasing, so this is the float max
    pool, exactly).

    x: (N, C, H, W) uint8; window: params.Window; returns (N, C, out_h, out_w) uint8
    """
    window = Window(*window)
    n_batch, channels, in_h, in_w = x.shape
    out = np.zeros((n_batch, channels, out_h, out_w), dtype=np.uint8)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                for ox in range(out_w):
                    best = np.uint8(0)
                    for ky in range(window.kernel_h):
                        iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(window.kernel_w):
                            ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                            if 0 <= ix < in_w and x[n, c, iy, ix] > best:
                                best = x[n, c, iy, ix]
                    out[n, c, oy, ox] = best
    return out


@jit
def global_avg_pool(x, x_zero_point, multiplier, requant):
    """Mean over H and W: v = float32(sum (x - x_zero_point)) * multiplier, the sum in int32,
    multiplier = input scale / (output scale * H * W); then requantize(v, requant).

    x: (N, C, H, W) uint8; returns (N, C) uint8
    """
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, channels), dtype=np.uint8)
    for n in range(n_batch):
        for c in range(channels):
            acc = np.int32(0)
            for y in range(height):
                for xx in range(width):
                    acc += np.int32(x[n, c, y, xx]) - x_zero_point
            out[n, c] = requantize(np.float32(acc) * multiplier, requant)
    return out


@jit
def add(a, a_zero_point, a_multiplier, b, b_zero_point, b_multiplier, requant):
    """a + b: v = float32(a - a_zero_point) * a_multiplier + float32(b - b_zero_point) * b_multiplier
    (two float32 products, then their float32 sum: no fused multiply-add), each multiplier an
    operand's scale / the output's scale; then requantize(v, requant).

    a, b: uint8 of one shape; returns uint8 of that shape
    """
    fa, fb = a.ravel(), b.ravel()
    out = np.empty(fa.size, dtype=np.uint8)
    for i in range(fa.size):
        va = np.float32(np.int32(fa[i]) - a_zero_point) * a_multiplier
        vb = np.float32(np.int32(fb[i]) - b_zero_point) * b_multiplier
        out[i] = requantize(va + vb, requant)
    return out.reshape(a.shape)
