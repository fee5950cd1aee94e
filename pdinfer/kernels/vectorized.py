"""The reference kernels in NumPy, for a model's first calls in a process (nothing to compile).

Numba compiles a kernel in seconds the first time a machine runs it (later processes load it from
the disk cache). Until a model's fast kernels are ready (pdinfer/background.py), its calls run its
layers with these functions: reference.py's names, arguments and shapes, vectorised with NumPy.
Copies, comparisons, maxima and single float32 operations give reference.py's values bit for
bit; sums (convolutions, Linear, average pools, means) run in NumPy's and BLAS's order, and
transcendentals in NumPy's float64 functions, so those agree with the reference to float32
rounding. Tests run them against PyTorch like every other kernel (tests/helpers.py).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .params import Window

_F32 = np.float32


def windows(x: np.ndarray, window: tuple, fill: float, out_h: int, out_w: int) -> np.ndarray:
    """Every window's taps as a view (N, C, out_h, out_w, KH, KW) of x padded with `fill`: taps
    outside the input read `fill` (0 for sums, -inf for maxima), as reference.py skips them.

    x: (N, C, H, W), any dtype (the view's); window: params.Window
    """
    w = Window(*window)
    n, c, in_h, in_w = x.shape
    span_h, span_w = w.dilation_h * (w.kernel_h - 1) + 1, w.dilation_w * (w.kernel_w - 1) + 1
    bottom = max(0, (out_h - 1) * w.stride_h + span_h - w.pad_top - in_h)
    right = max(0, (out_w - 1) * w.stride_w + span_w - w.pad_left - in_w)
    padded = np.full((n, c, w.pad_top + in_h + bottom, w.pad_left + in_w + right), fill, dtype=x.dtype)
    padded[:, :, w.pad_top:w.pad_top + in_h, w.pad_left:w.pad_left + in_w] = x
    taps = sliding_window_view(padded, (span_h, span_w), axis=(2, 3))
    return taps[:, :, ::w.stride_h, ::w.stride_w, ::w.dilation_h, ::w.dilation_w][:, :, :out_h, :out_w]


def correlate(x, weight, window, groups, out_h, out_w):
    """The sums of a convolution without bias, in x's dtype, summed by BLAS (or einsum).

    x: (N, Ci, H, W); weight: (Co, Ci/groups, KH, KW); returns (N, Co, out_h, out_w), a view
    """
    taps = windows(x, window, 0, out_h, out_w)
    n, out_c = len(x), weight.shape[0]
    if groups == 1:
        return np.tensordot(taps, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    grouped = taps.reshape(n, groups, -1, out_h, out_w, *taps.shape[4:])
    out = np.einsum("ngcyxij,gocij->ngoyx", grouped, weight.reshape(groups, out_c // groups, *weight.shape[1:]))
    return out.reshape(n, out_c, out_h, out_w)


def conv2d(x, weight, bias, has_bias, window, groups, out_h, out_w):
    """x (N, Ci, H, W), weight (Co, Ci/groups, KH, KW), bias (Co,) -> (N, Co, out_h, out_w)."""
    out = correlate(x, weight, window, groups, out_h, out_w)
    if has_bias:
        out = out + bias[:, None, None]
    return np.ascontiguousarray(out, dtype=_F32)


def batchnorm2d(x, weight, bias, running_mean, running_var, eps):
    """x (N, C, H, W); the others (C,) -> (N, C, H, W); reference.py's float32 operations."""
    scale = weight / np.sqrt(running_var + eps)
    return (x - running_mean[:, None, None]) * scale[:, None, None] + bias[:, None, None]


def linear(x, weight, bias, has_bias):
    """x (N, I), weight (O, I), bias (O,) -> (N, O)."""
    out = x @ weight.T
    return out + bias if has_bias else out


def relu(x):
    return np.where(x > 0, x, _F32(0.0))


def relu6(x):
    return np.where(x < 0, _F32(0.0), np.where(x > 6, _F32(6.0), x))


def leaky_relu(x, negative_slope):
    return np.where(x > 0, x, x * negative_slope)


def sigmoid(x):
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(_F32)


def softmax_rows(x):
    """x (R, C) -> (R, C), along the last axis, in float64 as reference.py."""
    shifted = x.astype(np.float64) - x.max(axis=1, keepdims=True).astype(np.float64)
    exps = np.exp(shifted)
    return (exps / exps.sum(axis=1, keepdims=True)).astype(_F32)


def max_pool2d(x, window, out_h, out_w):
    """x (N, C, H, W) -> (N, C, out_h, out_w)."""
    return np.ascontiguousarray(windows(x, window, -np.inf, out_h, out_w).max(axis=(4, 5)))


def _clipped_counts(out: int, stride: int, pad: int, kernel: int, size: int, pad_end: int):
    """Per output position along one axis: the window clipped to the padded input, and its cells
    inside the input (reference.avg_pool2d's h1 - h0 and cells)."""
    start = np.arange(out) * stride - pad
    end = np.minimum(start + kernel, size + pad_end)
    return end - start, np.minimum(end, size) - np.maximum(start, 0)


def avg_pool2d(x, window, count_include_pad, divisor_override, out_h, out_w):
    """x (N, C, H, W) -> (N, C, out_h, out_w); the divisor as reference.avg_pool2d's."""
    w = Window(*window)
    sums = windows(x, window, 0.0, out_h, out_w).sum(axis=(4, 5), dtype=_F32)
    clipped_h, cells_h = _clipped_counts(out_h, w.stride_h, w.pad_top, w.kernel_h, x.shape[2], w.pad_bottom)
    clipped_w, cells_w = _clipped_counts(out_w, w.stride_w, w.pad_left, w.kernel_w, x.shape[3], w.pad_right)
    if divisor_override > 0:
        divisor = np.full((out_h, out_w), divisor_override)
    elif count_include_pad:
        divisor = np.outer(clipped_h, clipped_w)
    else:
        divisor = np.outer(cells_h, cells_w)
    return sums / divisor.astype(_F32)


def global_avg_pool(x):
    """x (N, C, H, W) -> (N, C)."""
    return x.sum(axis=(2, 3), dtype=_F32) / _F32(x.shape[2] * x.shape[3])


def add(a, b):
    return a + b


def hardswish(x):
    return x * np.clip(x + _F32(3.0), _F32(0.0), _F32(6.0)) / _F32(6.0)


def hardsigmoid(x):
    return np.clip(x + _F32(3.0), _F32(0.0), _F32(6.0)) / _F32(6.0)


def silu(x):
    v = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return (v / (1.0 + np.exp(-v))).astype(_F32)


def tanh(x):
    return np.tanh(x.astype(np.float64)).astype(_F32)


def hardtanh(x, min_val, max_val):
    return np.where(x < min_val, min_val, np.where(x > max_val, max_val, x)).astype(_F32)


def elu(x, alpha):
    with np.errstate(over="ignore"):
        return np.where(x > 0, x, (np.float64(alpha) * np.expm1(x.astype(np.float64))).astype(_F32))


def prelu(x, weight):
    """x (N, C, P), weight (C,) or (1,) -> (N, C, P)."""
    slope = weight[None, :, None] if weight.size > 1 else weight[0]
    return np.where(x > 0, x, slope * x)


def erf(x):
    """reference.erf (fdlibm's s_erf.c) on a float64 array: every branch computed, each value's taken."""
    from .reference import (_EFX, _EFX8, _ERF_BIG, _ERF_MID, _ERF_SMALL, _ERF_SPLIT, _ERF_TINY,  # its coefficients
                            _ERF_UNDERFLOW, _ERX, _PA, _PP, _QA, _QQ, _RA, _RB, _SA, _SB)

    def poly(coefficients, t):  # c0 + t * (c1 + t * (...)), as fdlibm nests it
        total = np.full_like(t, coefficients[-1])
        for c in reversed(coefficients[:-1]):
            total = c + t * total
        return total

    ax = np.abs(x)
    with np.errstate(all="ignore"):
        z = x * x
        small = x + x * (poly(_PP, z) / (1.0 + z * poly(_QQ, z)))
        tiny = np.where(ax < _ERF_UNDERFLOW, 0.125 * (8.0 * x + _EFX8 * x), x + _EFX * x)
        s = ax - 1.0
        mid = poly(_PA, s) / (1.0 + s * poly(_QA, s))
        mid = np.where(x >= 0, _ERX + mid, -_ERX - mid)
        s = 1.0 / (ax * ax)
        r = np.where(ax < _ERF_SPLIT, poly(_RA, s), poly(_RB, s))
        t = 1.0 + s * np.where(ax < _ERF_SPLIT, poly(_SA, s), poly(_SB, s))
        high = (ax.view(np.int64) & np.int64(-(1 << 32))).view(np.float64)  # ax with its low 32 bits cleared
        tail = np.exp(-high * high - 0.5625) * np.exp((high - ax) * (high + ax) + r / t) / ax
        tail = np.where(x >= 0, 1.0 - tail, tail - 1.0)
        big = np.where(x > 0, 1.0 - 1e-300, 1e-300 - 1.0)
    return np.select([ax < _ERF_TINY, ax < _ERF_SMALL, ax < _ERF_MID, ax < _ERF_BIG], [tiny, small, mid, tail], big)


def gelu(x, approximate_tanh):
    v = x.astype(np.float64)
    if approximate_tanh:
        return (0.5 * v * (1.0 + np.tanh(0.7978845608028654 * (v + 0.044715 * (v * v * v))))).astype(_F32)
    return (0.5 * v * (1.0 + erf(v * 0.7071067811865476))).astype(_F32)


def _bins(length: int, bins: int) -> list[tuple[int, int]]:
    """reference.adaptive_bin for every bin."""
    return [(i * length // bins, ((i + 1) * length + bins - 1) // bins) for i in range(bins)]


def adaptive_avg_pool2d(x, out_h, out_w):
    """x (N, C, H, W) -> (N, C, out_h, out_w): each bin's sum / its cell count."""
    rows, cols = _bins(x.shape[2], out_h), _bins(x.shape[3], out_w)
    by_row = np.stack([x[:, :, h0:h1].sum(axis=2, dtype=_F32) for h0, h1 in rows], axis=2)
    sums = np.stack([by_row[..., w0:w1].sum(axis=3, dtype=_F32) for w0, w1 in cols], axis=3)
    cells = np.outer([h1 - h0 for h0, h1 in rows], [w1 - w0 for w0, w1 in cols])
    return sums / cells.astype(_F32)


def adaptive_max_pool2d(x, out_h, out_w):
    """x (N, C, H, W) -> (N, C, out_h, out_w): each bin's largest value."""
    by_row = np.stack([x[:, :, h0:h1].max(axis=2) for h0, h1 in _bins(x.shape[2], out_h)], axis=2)
    return np.stack([by_row[..., w0:w1].max(axis=3) for w0, w1 in _bins(x.shape[3], out_w)], axis=3)


def channel_mean(x):
    """x (N, C, H, W) -> (N, 1, H, W)."""
    return x.sum(axis=1, keepdims=True, dtype=_F32) / _F32(x.shape[1])


def channel_max(x):
    """x (N, C, H, W) -> (N, 1, H, W)."""
    return x.max(axis=1, keepdims=True)


def zero_pad2d(x, pad_top, pad_left, pad_bottom, pad_right):
    """x (N, C, H, W) -> (N, C, H + pad_top + pad_bottom, W + pad_left + pad_right)."""
    return np.pad(x, ((0, 0), (0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))


def copy_channels(x, out, offset):
    """x (N, Cx, P) into out (N, Co, P) from channel `offset`."""
    out[:, offset:offset + x.shape[1]] = x


def slice_channels(x, start, end):
    """x (N, C, P) -> (N, end - start, P)."""
    return x[:, start:end].copy()


def channel_shuffle(x, groups):
    """x (N, C, P) -> (N, C, P): channel k * groups + g of the output is g * (C / groups) + k."""
    n, c, p = x.shape
    return np.ascontiguousarray(x.reshape(n, groups, c // groups, p).transpose(0, 2, 1, 3)).reshape(n, c, p)


def mul(a, b, out_c, out_h, out_w):
    """a (N, Ca, Ha, Wa) * b (N, Cb, Hb, Wb), each axis but N 1 or the output's -> (N, out_c, out_h, out_w)."""
    return np.ascontiguousarray(np.broadcast_to(a * b, (len(a), out_c, out_h, out_w)))
