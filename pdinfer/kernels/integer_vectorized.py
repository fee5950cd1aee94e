"""The integer reference kernels in NumPy, for an int8 model's first calls in a process.

integer.py's names, arguments and shapes, vectorised with NumPy (nothing to compile), and its
answers bit for bit: a convolution's sums are summed in float64 by BLAS, exact for integers below
2**53 (the quantizer keeps them below 2**31), and the rest are integer operations and the same
single float32 operations as integer.py's.
"""

from __future__ import annotations

import numpy as np

from .params import Requant
from .vectorized import correlate, windows

_F32 = np.float32


def requantize(v, requant):
    """integer.requantize of every element.

    v: any shape float32; requant: params.Requant; returns uint8 of v's shape
    """
    requant = Requant(*requant)
    with np.errstate(over="ignore"):  # (the positive elements' products are not kept)
        v = np.where(v < 0, v * _F32(requant.negative_slope), v)
    low, high = _F32(requant.low - requant.zero_point), _F32(requant.high - requant.zero_point)
    return (np.clip(np.rint(v), low, high).astype(np.int32) + requant.zero_point).astype(np.uint8)


def quantize(x, scale, zero_point):
    """x: any shape float32 (finite); scale: float32 > 0; returns uint8 of x's shape."""
    return requantize(x / _F32(scale), (zero_point, 0, 255, _F32(1.0)))


def dequantize(q, scale, zero_point):
    """q: any shape uint8; scale: float32; returns float32 of q's shape."""
    return _F32(scale) * (q.astype(np.int32) - zero_point).astype(_F32)


def conv2d(x, x_zero_point, weight, bias, multiplier, requant, window, groups, out_h, out_w):
    """x: (N, Ci, H, W) uint8; weight: (Co, Ci/groups, KH, KW) int8; bias: (Co,) int32;
    multiplier: (Co,) float32; returns (N, Co, out_h, out_w) uint8 (one image at a time: float64
    patches are eight times the bytes)."""
    centred = x.astype(np.float64) - x_zero_point  # taps outside the input add 0: the real number 0
    wide = weight.astype(np.float64)
    out = np.empty((len(x), weight.shape[0], out_h, out_w), dtype=np.uint8)
    for n in range(len(x)):
        sums = correlate(centred[n:n + 1], wide, window, groups, out_h, out_w) + bias[:, None, None]
        out[n] = requantize(sums.astype(np.int32).astype(_F32) * multiplier[:, None, None], requant)[0]
    return out


def max_pool2d(x, window, out_h, out_w):
    """x: (N, C, H, W) uint8; returns (N, C, out_h, out_w) uint8 (0 for a window of padding only)."""
    return np.ascontiguousarray(windows(x, window, 0, out_h, out_w).max(axis=(4, 5)))


def global_avg_pool(x, x_zero_point, multiplier, requant):
    """x: (N, C, H, W) uint8; returns (N, C) uint8."""
    sums = x.sum(axis=(2, 3), dtype=np.int64) - x_zero_point * x.shape[2] * x.shape[3]
    return requantize(sums.astype(np.int32).astype(_F32) * _F32(multiplier), requant)


def add(a, a_zero_point, a_multiplier, b, b_zero_point, b_multiplier, requant):
    """a, b: uint8 of one shape; returns uint8 of that shape."""
    va = (a.astype(np.int32) - a_zero_point).astype(_F32) * _F32(a_multiplier)
    vb = (b.astype(np.int32) - b_zero_point).astype(_F32) * _F32(b_multiplier)
    return requantize(va + vb, requant)
