"""Reference kernels: the numerical specification of every layer (docs/KERNELS.md).

Plain loops over NCHW float32 arrays, one output value at a time, with the summation order the
loops spell out and float32 accumulation (exp in float64). fastmath is off, so a port that runs
the same loops in the same order with IEEE float32 arithmetic reproduces these outputs bit for
bit. Every array argument is C-contiguous; shapes are given beside each argument.
"""

import math

import numpy as np

from .._jit import jit
from .params import Window


@jit
def conv2d(x, weight, bias, has_bias, window, groups, out_h, out_w):
    """Conv2d with zero padding.

    x:      (N, Ci, H, W)
    weight: (Co, Ci/groups, KH, KW)
    bias:   (Co,) (read only if has_bias)
    window: params.Window (its kernel size is weight's)
    returns (N, Co, out_h, out_w)
    """
    window = Window(*window)
    n_batch, _, in_h, in_w = x.shape
    out_c, group_in, kernel_h, kernel_w = weight.shape
    group_out = out_c // groups
    out = np.empty((n_batch, out_c, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for co in range(out_c):
            ci_base = (co // group_out) * group_in
            for oy in range(out_h):
                for ox in range(out_w):
                    acc = np.float32(0.0)
                    for ci in range(group_in):
                        for ky in range(kernel_h):
                            iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                            if iy < 0 or iy >= in_h:
                                continue
                            for kx in range(kernel_w):
                                ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                                if ix < 0 or ix >= in_w:
                                    continue
                                acc += x[n, ci_base + ci, iy, ix] * weight[co, ci, ky, kx]
                    if has_bias:
                        acc += bias[co]
                    out[n, co, oy, ox] = acc
    return out


@jit
def batchnorm2d(x, weight, bias, running_mean, running_var, eps):
    """BatchNorm2d in eval mode, unfolded: y = (x - mean) * (weight / sqrt(var + eps)) + bias.

    x: (N, C, H, W); weight, bias, running_mean, running_var: (C,); eps: float32
    returns (N, C, H, W)
    """
    n_batch, channels, height, width = x.shape
    out = np.empty_like(x)
    for c in range(channels):
        scale = weight[c] / np.sqrt(running_var[c] + eps)
        for n in range(n_batch):
            for y in range(height):
                for xx in range(width):
                    out[n, c, y, xx] = (x[n, c, y, xx] - running_mean[c]) * scale + bias[c]
    return out


@jit
def linear(x, weight, bias, has_bias):
    """Linear: y[n, o] = sum_i x[n, i] * weight[o, i] (i ascending), then + bias[o].

    x: (N, I); weight: (O, I); bias: (O,) (read only if has_bias)
    returns (N, O)
    """
    n_batch, in_f = x.shape
    out_f = weight.shape[0]
    out = np.empty((n_batch, out_f), dtype=np.float32)
    for n in range(n_batch):
        for o in range(out_f):
            acc = np.float32(0.0)
            for i in range(in_f):
                acc += x[n, i] * weight[o, i]
            if has_bias:
                acc += bias[o]
            out[n, o] = acc
    return out


@jit
def relu(x):
    """y = x if x > 0 else 0.  x: any shape (flattened here)."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = flat[i] if flat[i] > 0 else np.float32(0.0)
    return out.reshape(x.shape)


@jit
def relu6(x):
    """y = 0 if x < 0, 6 if x > 6, else x.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        out[i] = np.float32(0.0) if v < 0 else (np.float32(6.0) if v > 6 else v)
    return out.reshape(x.shape)


@jit
def leaky_relu(x, negative_slope):
    """y = x if x > 0 else x * negative_slope (float32).  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        out[i] = v if v > 0 else v * negative_slope
    return out.reshape(x.shape)


@jit
def sigmoid(x):
    """y = float32(1 / (1 + exp(-float64(x)))), computed in float64.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = np.float32(1.0 / (1.0 + math.exp(-np.float64(flat[i]))))
    return out.reshape(x.shape)


@jit
def softmax_rows(x):
    """Softmax along the last axis of a 2-D array.

    m = max (float32); e_j = exp(float64(x_j) - float64(m)); s = sum of e_j in float64, j ascending;
    y_j = float32(e_j / s).
    x: (R, C); returns (R, C)
    """
    rows, cols = x.shape
    out = np.empty_like(x)
    exps = np.empty(cols, dtype=np.float64)
    for r in range(rows):
        m = x[r, 0]
        for j in range(1, cols):
            if x[r, j] > m:
                m = x[r, j]
        total = 0.0
        for j in range(cols):
            exps[j] = math.exp(np.float64(x[r, j]) - np.float64(m))
            total += exps[j]
        for j in range(cols):
            out[r, j] = np.float32(exps[j] / total)
    return out


@jit
def max_pool2d(x, window, out_h, out_w):
    """MaxPool2d: the largest in-bounds tap (ky, kx ascending; a tap wins only if strictly larger).

    x: (N, C, H, W); window: params.Window; returns (N, C, out_h, out_w)
    """
    window = Window(*window)
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                for ox in range(out_w):
                    best = np.float32(-np.inf)
                    for ky in range(window.kernel_h):
                        iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(window.kernel_w):
                            ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                            if ix < 0 or ix >= in_w:
                                continue
                            if x[n, c, iy, ix] > best:
                                best = x[n, c, iy, ix]
                    out[n, c, oy, ox] = best
    return out


@jit
def avg_pool2d(x, window, count_include_pad, divisor_override, out_h, out_w):
    """AvgPool2d: float32 sum of in-bounds cells (ky, kx ascending) / float32(divisor).

    divisor: divisor_override if > 0; else the window clipped to the padded input if
    count_include_pad; else the number of in-bounds cells.
    x: (N, C, H, W); window: params.Window (no dilation); returns (N, C, out_h, out_w)
    """
    window = Window(*window)
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                h0 = oy * window.stride_h - window.pad_top
                h1 = min(h0 + window.kernel_h, in_h + window.pad_bottom)
                for ox in range(out_w):
                    w0 = ox * window.stride_w - window.pad_left
                    w1 = min(w0 + window.kernel_w, in_w + window.pad_right)
                    acc = np.float32(0.0)
                    cells = 0
                    for iy in range(max(h0, 0), min(h1, in_h)):
                        for ix in range(max(w0, 0), min(w1, in_w)):
                            acc += x[n, c, iy, ix]
                            cells += 1
                    if divisor_override > 0:
                        divisor = divisor_override
                    elif count_include_pad:
                        divisor = (h1 - h0) * (w1 - w0)
                    else:
                        divisor = cells
                    out[n, c, oy, ox] = acc / np.float32(divisor)
    return out


@jit
def global_avg_pool(x):
    """Mean over H and W: float32 sum (y, then x, ascending) / float32(H * W).

    x: (N, C, H, W); returns (N, C)
    """
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, channels), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            acc = np.float32(0.0)
            for y in range(height):
                for xx in range(width):
                    acc += x[n, c, y, xx]
            out[n, c] = acc / np.float32(height * width)
    return out


@jit
def add(a, b):
    """y = a + b (float32).  a, b: the same shape."""
    fa = a.ravel()
    fb = b.ravel()
    out = np.empty_like(fa)
    for i in range(fa.size):
        out[i] = fa[i] + fb[i]
    return out.reshape(a.shape)


# ------------------------------------------------------------------ activations added for issue 9
# Transcendentals run in float64 (math.exp, math.expm1, math.tanh: the C library's, as in Java's
# StrictMath up to one double ulp; `erf` below is fdlibm's, ported), one rounding to float32 at the end.

@jit
def clip_0_6(t):
    """ReLU6's clip of one float32: 0 if t < 0, 6 if t > 6, else t."""
    return np.float32(0.0) if t < 0 else (np.float32(6.0) if t > 6 else t)


@jit
def hardswish(x):
    """y = x * min(max(x + 3, 0), 6) / 6, four float32 operations left to right.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        t = clip_0_6(v + np.float32(3.0))
        out[i] = v * t / np.float32(6.0)
    return out.reshape(x.shape)


@jit
def hardsigmoid(x):
    """y = min(max(x + 3, 0), 6) / 6, float32.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = clip_0_6(flat[i] + np.float32(3.0)) / np.float32(6.0)
    return out.reshape(x.shape)


@jit
def silu(x):
    """y = float32(x / (1 + exp(-x))) in float64.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = np.float64(flat[i])
        out[i] = np.float32(v / (1.0 + math.exp(-v)))
    return out.reshape(x.shape)


@jit
def tanh(x):
    """y = float32(tanh(float64(x))).  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        out[i] = np.float32(math.tanh(np.float64(flat[i])))
    return out.reshape(x.shape)


@jit
def hardtanh(x, min_val, max_val):
    """y = min_val if x < min_val, max_val if x > max_val, else x (float32 bounds).  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        out[i] = min_val if v < min_val else (max_val if v > max_val else v)
    return out.reshape(x.shape)


@jit
def elu(x, alpha):
    """y = x if x > 0 else float32(float64(alpha) * expm1(float64(x))); alpha: float32.  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = flat[i]
        out[i] = v if v > 0 else np.float32(np.float64(alpha) * math.expm1(np.float64(v)))
    return out.reshape(x.shape)


@jit
def prelu(x, weight):
    """y = x if x > 0 else weight[c] * x (one float32 multiply); one weight for all channels if it has 1.

    x: (N, C, P) (P: the product of the dimensions after the channel); weight: (C,) or (1,)
    returns (N, C, P)
    """
    n_batch, channels, positions = x.shape
    out = np.empty_like(x)
    for n in range(n_batch):
        for c in range(channels):
            w = weight[c if weight.size > 1 else 0]
            for p in range(positions):
                v = x[n, c, p]
                out[n, c, p] = v if v > 0 else w * v
    return out


# fdlibm 5.3 s_erf.c (erf only), coefficients as written there. `ix` comparisons on the high word
# become comparisons of |x| with the doubles whose high word they name (low word 0).
_ERX = 8.45062911510467529297e-01
_EFX = 1.28379167095512586316e-01
_EFX8 = 1.02703333676410069053e+00
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)
_ERF_UNDERFLOW = 2.0 ** -1015  # high word 0x00800000: below it, avoid underflow
_ERF_TINY = 2.0 ** -28  # 0x3e300000
_ERF_SMALL = 0.84375  # 0x3feb0000
_ERF_MID = 1.25  # 0x3ff40000
_ERF_BIG = 6.0  # 0x40180000
_ERF_SPLIT = float.fromhex("0x1.6db6ep+1")  # 0x4006DB6E: 1/0.35, where the erfc tail changes


@jit
def erf(x):
    """fdlibm's erf (s_erf.c) in float64, step for step; Java's port is java/.../GELU.java."""
    if x != x:
        return x
    ax = abs(x)
    if ax >= _ERF_BIG:
        return 1.0 - 1e-300 if x > 0 else 1e-300 - 1.0
    if ax < _ERF_SMALL:
        if ax < _ERF_TINY:
            if ax < _ERF_UNDERFLOW:
                return 0.125 * (8.0 * x + _EFX8 * x)
            return x + _EFX * x
        z = x * x
        r = _PP[0] + z * (_PP[1] + z * (_PP[2] + z * (_PP[3] + z * _PP[4])))
        s = 1.0 + z * (_QQ[0] + z * (_QQ[1] + z * (_QQ[2] + z * (_QQ[3] + z * _QQ[4]))))
        return x + x * (r / s)
    if ax < _ERF_MID:
        s = ax - 1.0
        p = _PA[0] + s * (_PA[1] + s * (_PA[2] + s * (_PA[3] + s * (_PA[4] + s * (_PA[5] + s * _PA[6])))))
        q = 1.0 + s * (_QA[0] + s * (_QA[1] + s * (_QA[2] + s * (_QA[3] + s * (_QA[4] + s * _QA[5])))))
        return _ERX + p / q if x >= 0 else -_ERX - p / q
    s = 1.0 / (ax * ax)
    if ax < _ERF_SPLIT:
        r = _RA[0] + s * (_RA[1] + s * (_RA[2] + s * (_RA[3] + s * (_RA[4] + s * (_RA[5] + s * (
            _RA[6] + s * _RA[7]))))))
        t = 1.0 + s * (_SA[0] + s * (_SA[1] + s * (_SA[2] + s * (_SA[3] + s * (_SA[4] + s * (
            _SA[5] + s * (_SA[6] + s * _SA[7])))))))
    else:
        r = _RB[0] + s * (_RB[1] + s * (_RB[2] + s * (_RB[3] + s * (_RB[4] + s * (_RB[5] + s * _RB[6])))))
        t = 1.0 + s * (_SB[0] + s * (_SB[1] + s * (_SB[2] + s * (_SB[3] + s * (_SB[4] + s * (
            _SB[5] + s * _SB[6]))))))
    mantissa, exponent = math.frexp(ax)  # z: ax with the low 32 bits of its binary64 cleared
    z = math.ldexp(math.floor(math.ldexp(mantissa, 21)), exponent - 21)
    r = math.exp(-z * z - 0.5625) * math.exp((z - ax) * (z + ax) + r / t)
    return 1.0 - r / ax if x >= 0 else r / ax - 1.0


_SQRT_HALF = 0.7071067811865476  # float64(1 / sqrt(2))
_SQRT_2_OVER_PI = 0.7978845608028654  # float64(sqrt(2 / pi))


@jit
def gelu(x, approximate_tanh):
    """GELU in float64, one rounding: 0.5 * x * (1 + erf(x / sqrt 2)), or with approximate_tanh
    0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))).  x: any shape."""
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(flat.size):
        v = np.float64(flat[i])
        if approximate_tanh:
            inner = _SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v))
            out[i] = np.float32(0.5 * v * (1.0 + math.tanh(inner)))
        else:
            out[i] = np.float32(0.5 * v * (1.0 + erf(v * _SQRT_HALF)))
    return out.reshape(x.shape)


# ------------------------------------------------------------------ pools, reductions, padding (issue 9)

@jit
def adaptive_bin(i, length, bins):
    """PyTorch's adaptive pooling bin i of `bins` over `length`: [floor(i*length/bins), ceil((i+1)*length/bins))."""
    return i * length // bins, ((i + 1) * length + bins - 1) // bins


@jit
def adaptive_avg_pool2d(x, out_h, out_w):
    """AdaptiveAvgPool2d: float32 sum of each bin (adaptive_bin; rows, then columns, ascending)
    / float32(its cell count).

    x: (N, C, H, W); returns (N, C, out_h, out_w)
    """
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                h0, h1 = adaptive_bin(oy, in_h, out_h)
                for ox in range(out_w):
                    w0, w1 = adaptive_bin(ox, in_w, out_w)
                    acc = np.float32(0.0)
                    for iy in range(h0, h1):
                        for ix in range(w0, w1):
                            acc += x[n, c, iy, ix]
                    out[n, c, oy, ox] = acc / np.float32((h1 - h0) * (w1 - w0))
    return out


@jit
def adaptive_max_pool2d(x, out_h, out_w):
    """AdaptiveMaxPool2d: the bins of adaptive_avg_pool2d; the largest value (rows, then columns,
    ascending; a value wins only if strictly larger than the best so far, which starts at -inf).

    x: (N, C, H, W); returns (N, C, out_h, out_w)
    """
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                h0, h1 = adaptive_bin(oy, in_h, out_h)
                for ox in range(out_w):
                    w0, w1 = adaptive_bin(ox, in_w, out_w)
                    best = np.float32(-np.inf)
                    for iy in range(h0, h1):
                        for ix in range(w0, w1):
                            if x[n, c, iy, ix] > best:
                                best = x[n, c, iy, ix]
                    out[n, c, oy, ox] = best
    return out


@jit
def channel_mean(x):
    """Mean over the channels: float32 sum (c ascending) / float32(C).

    x: (N, C, H, W); returns (N, 1, H, W)
    """
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, 1, height, width), dtype=np.float32)
    for n in range(n_batch):
        for y in range(height):
            for xx in range(width):
                acc = np.float32(0.0)
                for c in range(channels):
                    acc += x[n, c, y, xx]
                out[n, 0, y, xx] = acc / np.float32(channels)
    return out


@jit
def channel_max(x):
    """Max over the channels (c ascending; strictly larger wins, starting from -inf).

    x: (N, C, H, W); returns (N, 1, H, W)
    """
    n_batch, channels, height, width = x.shape
    out = np.empty((n_batch, 1, height, width), dtype=np.float32)
    for n in range(n_batch):
        for y in range(height):
            for xx in range(width):
                best = np.float32(-np.inf)
                for c in range(channels):
                    if x[n, c, y, xx] > best:
                        best = x[n, c, y, xx]
                out[n, 0, y, xx] = best
    return out


@jit
def zero_pad2d(x, pad_top, pad_left, pad_bottom, pad_right):
    """Zeros around each plane: out[n, c, y + pad_top, x + pad_left] = x[n, c, y, x], +0.0 elsewhere.

    x: (N, C, H, W); returns (N, C, H + pad_top + pad_bottom, W + pad_left + pad_right)
    """
    n_batch, channels, in_h, in_w = x.shape
    out = np.zeros((n_batch, channels, in_h + pad_top + pad_bottom, in_w + pad_left + pad_right),
                   dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for y in range(in_h):
                for xx in range(in_w):
                    out[n, c, y + pad_top, xx + pad_left] = x[n, c, y, xx]
    return out


@jit
def copy_channels(x, out, offset):
    """Concat, one input at a time: out[n, offset + c, p] = x[n, c, p] (writes into `out`).

    x: (N, Cx, P); out: (N, Co, P) with offset + Cx <= Co
    """
    n_batch, channels, plane = x.shape
    for n in range(n_batch):
        for c in range(channels):
            for p in range(plane):
                out[n, offset + c, p] = x[n, c, p]


@jit
def slice_channels(x, start, end):
    """Slice: y[n, c, p] = x[n, start + c, p] for c in [0, end - start).

    x: (N, C, P) with 0 <= start < end <= C; returns (N, end - start, P)
    """
    n_batch, _, plane = x.shape
    out = np.empty((n_batch, end - start, plane), dtype=np.float32)
    for n in range(n_batch):
        for c in range(end - start):
            for p in range(plane):
                out[n, c, p] = x[n, start + c, p]
    return out


@jit
def channel_shuffle(x, groups):
    """ChannelShuffle: y[n, k * groups + g, p] = x[n, g * (C / groups) + k, p].

    x: (N, C, P) with groups dividing C; returns (N, C, P)
    """
    n_batch, channels, plane = x.shape
    per_group = channels // groups
    out = np.empty_like(x)
    for n in range(n_batch):
        for k in range(per_group):
            for g in range(groups):
                for p in range(plane):
                    out[n, k * groups + g, p] = x[n, g * per_group + k, p]
    return out


@jit
def mul(a, b, out_c, out_h, out_w):
    """y = a * b (one float32 multiply), broadcasting every size-1 axis of a or b but N.

    a: (N, Ca, Ha, Wa); b: (N, Cb, Hb, Wb), each size 1 or the output's; returns (N, out_c, out_h, out_w)
    """
    n_batch = a.shape[0]
    out = np.empty((n_batch, out_c, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(out_c):
            ac = c if a.shape[1] > 1 else 0
            bc = c if b.shape[1] > 1 else 0
            for y in range(out_h):
                ay = y if a.shape[2] > 1 else 0
                by = y if b.shape[2] > 1 else 0
                for xx in range(out_w):
                    ax = xx if a.shape[3] > 1 else 0
                    bx = xx if b.shape[3] > 1 else 0
                    out[n, c, y, xx] = a[n, ac, ay, ax] * b[n, bc, by, bx]
    return out
