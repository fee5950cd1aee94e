"""Fast kernels: channels-last (NHWC) layout, BatchNorm folded, activation fused.

The innermost loop of every kernel runs over contiguous output channels, so it vectorises without
reassociating any sum (fastmath stays off). Each is tested against its reference kernel.
Activation codes (fused after bias): 0 none, 1 ReLU, 2 ReLU6, 3 LeakyReLU(slope).
"""

import numpy as np

from .._jit import jit

ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY = 0, 1, 2, 3


@jit
def activate(v, act, slope):
    """Apply activation `act` to a 1-D float32 array in place.  v: (C,)"""
    if act == ACT_RELU:
        for i in range(v.size):
            if not v[i] > 0:
                v[i] = 0
    elif act == ACT_RELU6:
        for i in range(v.size):
            if v[i] < 0:
                v[i] = 0
            elif v[i] > 6:
                v[i] = 6
    elif act == ACT_LEAKY:
        for i in range(v.size):
            if not v[i] > 0:
                v[i] = v[i] * slope


@jit
def conv2d(x, weight, bias, act, slope, stride_h, stride_w, pad_top, pad_left,
           dilation_h, dilation_w, out_h, out_w):
    """Grouped Conv2d + bias + activation.

    x:      (N, H, W, Ci)
    weight: (G, KH, KW, Ci/G, Co/G)  packed from PyTorch's (Co, Ci/G, KH, KW)
    bias:   (Co,)
    returns (N, out_h, out_w, Co)
    """
    n_batch, in_h, in_w, _ = x.shape
    groups, kernel_h, kernel_w, group_in, group_out = weight.shape
    out = np.empty((n_batch, out_h, out_w, groups * group_out), dtype=np.float32)
    for n in range(n_batch):
        for oy in range(out_h):
            for ox in range(out_w):
                pixel = out[n, oy, ox]
                pixel[:] = bias
                for g in range(groups):
                    acc = pixel[g * group_out:(g + 1) * group_out]
                    for ky in range(kernel_h):
                        iy = oy * stride_h - pad_top + ky * dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(kernel_w):
                            ix = ox * stride_w - pad_left + kx * dilation_w
                            if ix < 0 or ix >= in_w:
                                continue
                            xs = x[n, iy, ix, g * group_in:(g + 1) * group_in]
                            ws = weight[g, ky, kx]
                            for ci in range(group_in):
                                v = xs[ci]
                                w_row = ws[ci]
                                for co in range(group_out):
                                    acc[co] += v * w_row[co]
                activate(pixel, act, slope)
    return out


@jit
def depthwise_conv2d(x, weight, bias, act, slope, stride_h, stride_w, pad_top, pad_left,
                     dilation_h, dilation_w, out_h, out_w):
    """Depthwise Conv2d (groups = Ci = Co) + bias + activation.

    x:      (N, H, W, C)
    weight: (KH, KW, C)  packed from PyTorch's (C, 1, KH, KW)
    bias:   (C,)
    returns (N, out_h, out_w, C)
    """
    n_batch, in_h, in_w, channels = x.shape
    kernel_h, kernel_w, _ = weight.shape
    out = np.empty((n_batch, out_h, out_w, channels), dtype=np.float32)
    for n in range(n_batch):
        for oy in range(out_h):
            for ox in range(out_w):
                acc = out[n, oy, ox]
                acc[:] = bias
                for ky in range(kernel_h):
                    iy = oy * stride_h - pad_top + ky * dilation_h
                    if iy < 0 or iy >= in_h:
                        continue
                    for kx in range(kernel_w):
                        ix = ox * stride_w - pad_left + kx * dilation_w
                        if ix < 0 or ix >= in_w:
                            continue
                        xs = x[n, iy, ix]
                        ws = weight[ky, kx]
                        for c in range(channels):
                            acc[c] += xs[c] * ws[c]
                activate(acc, act, slope)
    return out


@jit
def pointwise_conv2d(x, weight, bias, act, slope):
    """1x1 Conv2d (stride 1, no padding, one group) + bias + activation: a matrix product.

    x:      (P, Ci)  pixels by channels
    weight: (Ci, Co) packed from PyTorch's (Co, Ci, 1, 1)
    bias:   (Co,)
    returns (P, Co)
    """
    pixels, in_c = x.shape
    out = np.empty((pixels, weight.shape[1]), dtype=np.float32)
    for p in range(pixels):
        acc = out[p]
        acc[:] = bias
        for ci in range(in_c):
            v = x[p, ci]
            w_row = weight[ci]
            for co in range(acc.size):
                acc[co] += v * w_row[co]
        activate(acc, act, slope)
    return out


@jit
def linear(x, weight_t, bias, act, slope):
    """Linear + bias + activation.

    x:        (N, I)
    weight_t: (I, O) PyTorch's weight transposed
    bias:     (O,)
    returns (N, O)
    """
    return pointwise_conv2d(x, weight_t, bias, act, slope)


@jit
def scale_shift(x, scale, shift, act, slope):
    """Per-channel y = x * scale + shift + activation (a BatchNorm with nothing to fold into).

    x: (P, C); scale, shift: (C,); returns (P, C)
    """
    out = np.empty_like(x)
    for p in range(x.shape[0]):
        row = out[p]
        for c in range(x.shape[1]):
            row[c] = x[p, c] * scale[c] + shift[c]
        activate(row, act, slope)
    return out


@jit
def max_pool2d(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left,
               dilation_h, dilation_w, out_h, out_w):
    """MaxPool2d.  x: (N, H, W, C); returns (N, out_h, out_w, C)"""
    n_batch, in_h, in_w, channels = x.shape
    out = np.empty((n_batch, out_h, out_w, channels), dtype=np.float32)
    for n in range(n_batch):
        for oy in range(out_h):
            for ox in range(out_w):
                best = out[n, oy, ox]
                best[:] = -np.inf
                for ky in range(kernel_h):
                    iy = oy * stride_h - pad_top + ky * dilation_h
                    if iy < 0 or iy >= in_h:
                        continue
                    for kx in range(kernel_w):
                        ix = ox * stride_w - pad_left + kx * dilation_w
                        if ix < 0 or ix >= in_w:
                            continue
                        xs = x[n, iy, ix]
                        for c in range(channels):
                            if xs[c] > best[c]:
                                best[c] = xs[c]
    return out


@jit
def avg_pool2d(x, kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right,
               count_include_pad, divisor_override, out_h, out_w):
    """AvgPool2d (divisor rules as the reference).  x: (N, H, W, C); returns (N, out_h, out_w, C)"""
    n_batch, in_h, in_w, channels = x.shape
    out = np.empty((n_batch, out_h, out_w, channels), dtype=np.float32)
    for n in range(n_batch):
        for oy in range(out_h):
            h0 = oy * stride_h - pad_top
            h1 = min(h0 + kernel_h, in_h + pad_bottom)
            for ox in range(out_w):
                w0 = ox * stride_w - pad_left
                w1 = min(w0 + kernel_w, in_w + pad_right)
                acc = out[n, oy, ox]
                acc[:] = 0
                for iy in range(max(h0, 0), min(h1, in_h)):
                    for ix in range(max(w0, 0), min(w1, in_w)):
                        xs = x[n, iy, ix]
                        for c in range(channels):
                            acc[c] += xs[c]
                if divisor_override > 0:
                    divisor = divisor_override
                elif count_include_pad:
                    divisor = (h1 - h0) * (w1 - w0)
                else:
                    divisor = (min(h1, in_h) - max(h0, 0)) * (min(w1, in_w) - max(w0, 0))
                d = np.float32(divisor)
                for c in range(channels):
                    acc[c] = acc[c] / d
    return out


@jit
def global_avg_pool(x):
    """Mean over H and W.  x: (N, H, W, C); returns (N, C)"""
    n_batch, height, width, channels = x.shape
    out = np.zeros((n_batch, channels), dtype=np.float32)
    for n in range(n_batch):
        acc = out[n]
        for y in range(height):
            for xx in range(width):
                xs = x[n, y, xx]
                for c in range(channels):
                    acc[c] += xs[c]
        d = np.float32(height * width)
        for c in range(channels):
            acc[c] = acc[c] / d
    return out
