"""Reference kernels: the numerical specification of every layer (docs/KERNELS.md).

Plain loops over NCHW float32 arrays, one output value at a time, with the summation order the
loops spell out and float32 accumulation (exp in float64). fastmath is off, so a port that runs
the same loops in the same order with IEEE float32 arithmetic reproduces these outputs bit for
bit. Every array argument is C-contiguous; shapes are given beside each argument.
"""

import math

import numpy as np

from .._jit import jit


@jit
def conv2d(x, weight, bias, has_bias, stride_h, stride_w, pad_top, pad_left,
           dilation_h, dilation_w, groups, out_h, out_w):
    """Conv2d with zero padding.

    x:      (N, Ci, H, W)
    weight: (Co, Ci/groups, KH, KW)
    bias:   (Co,) (read only if has_bias)
    returns (N, Co, out_h, out_w)
    """
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
                            iy = oy * stride_h - pad_top + ky * dilation_h
                            if iy < 0 or iy >= in_h:
                                continue
                            for kx in range(kernel_w):
                                ix = ox * stride_w - pad_left + kx * dilation_w
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
def max_pool2d(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
               dilation_h, dilation_w, out_h, out_w):
    """MaxPool2d: the largest in-bounds tap (ky, kx ascending; a tap wins only if strictly larger).

    x: (N, C, H, W); returns (N, C, out_h, out_w)
    """
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                for ox in range(out_w):
                    best = np.float32(-np.inf)
                    for ky in range(kernel_h):
                        iy = oy * stride_h - pad_top + ky * dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(kernel_w):
                            ix = ox * stride_w - pad_left + kx * dilation_w
                            if ix < 0 or ix >= in_w:
                                continue
                            if x[n, c, iy, ix] > best:
                                best = x[n, c, iy, ix]
                    out[n, c, oy, ox] = best
    return out


@jit
def avg_pool2d(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right,
               count_include_pad, divisor_override, out_h, out_w):
    """AvgPool2d: float32 sum of in-bounds cells (ky, kx ascending) / float32(divisor).

    divisor: divisor_override if > 0; else the window clipped to the padded input if
    count_include_pad; else the number of in-bounds cells.
    x: (N, C, H, W); returns (N, C, out_h, out_w)
    """
    n_batch, channels, in_h, in_w = x.shape
    out = np.empty((n_batch, channels, out_h, out_w), dtype=np.float32)
    for n in range(n_batch):
        for c in range(channels):
            for oy in range(out_h):
                h0 = oy * stride_h - pad_top
                h1 = min(h0 + kernel_h, in_h + pad_bottom)
                for ox in range(out_w):
                    w0 = ox * stride_w - pad_left
                    w1 = min(w0 + kernel_w, in_w + pad_right)
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
