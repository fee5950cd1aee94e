"""Fast kernels: channels-last (NHWC) layout, BatchNorm folded, activation fused.

Convolutions and Linear run as one register-tiled matrix product (`conv2d`): a tile of
CONV_TILE_PIXELS output pixels by 32 output channels is accumulated in SIMD registers over the
kernel taps and input channels, with fused multiply-adds, then bias, activation and an optional
residual are applied on the way out. 3x3 stride-1 convolutions of 32 channels and more run by
Winograd F(2x2, 3x3) (`winograd_conv3x3`) on the same matrix product; either can write the 2x2 max
pool of its output instead of the output. Depthwise convolution and max pooling use tiles of
TILE_PIXELS pixels by 32 and 16 channels. Results differ from the reference kernels only by
rounding (FMA, summation order, Winograd's transforms); activations and max pooling make the
reference's comparisons, NaN included. Every output pixel is computed the same way whatever the
batch, pass or thread it is computed in, so a batch's answers equal its images' one by one.

A kernel can write its output with a zero border around each image, the padding of the
convolution that reads it, so that one needs no padded copy of its input.

Packed weights have their output channels padded with zeros to a multiple of params.CHANNEL_ALIGN, so
full-width loads of weights and bias never leave the array; activations are stored unpadded and
written with masked stores. Kernels avoid NumPy slice assignment, which is slow to compile.
Kernels take their geometry and fused activation (applied after the bias) as the structs of
`params` (Window, Border, Activation), passed as plain tuples (see params.py).
"""

import numpy as np

from .._jit import jit
from .params import ACT_LEAKY, ACT_RELU, ACT_RELU6, Activation, Border, Window
from .simd import vadd, vbroadcast, vfma, vload, vload_part, vmul, vselect_gt, vsplat, vstore_part, vsub

CONV_TILE_PIXELS = 12  # output pixels per conv2d tile (it spells out the tile's twelve accumulators)
TILE_PIXELS = 6  # output pixels per depthwise and pooling tile (six accumulators)
FEW_PIXELS = 4  # conv2d on fewer output pixels computes them one by one, with no tile
WEIGHT_CACHE_BYTES = 256 * 1024  # conv2d keeps about this much of the packed weight hot at a time


@jit
def activate(v, activation):
    """Apply a params.Activation to a 1-D float32 array in place.  v: (C,)"""
    act, slope = activation
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
def _activate_vector(v, activation):
    """Each lane as the reference activates it (params.Activation), with the same comparisons,
    NaN and -0.0 included: ReLU v if v > 0 else 0; ReLU6 0 if v < 0, 6 if v > 6, else v;
    LeakyReLU v if v > 0 else v * slope. The branch is the same for a whole kernel call."""
    code, slope = activation
    zero = vsplat(0, v)
    if code == ACT_LEAKY:
        return vselect_gt(v, zero, v, vmul(v, vsplat(slope, v)))
    if code == ACT_RELU:
        return vselect_gt(v, zero, v, zero)
    if code == ACT_RELU6:
        six = vsplat(6, v)
        return vselect_gt(zero, v, zero, vselect_gt(v, six, six, v))
    return v


@jit
def _fill(flat, start, count, value):
    """flat[start:start + count] = value"""
    for i in range(start, start + count, 16):
        vstore_part(flat, i, vsplat(value, 16), start + count - i)


@jit
def _fill_border(out, border, value):
    """Set a params.Border of `value` around each image of out (N, H, W, C); the interior is left."""
    top, left, bottom, right = border
    n_batch, full_h, full_w, channels = out.shape
    flat = out.reshape(-1)
    row = full_w * channels
    for n in range(n_batch):
        image = n * full_h * row
        _fill(flat, image, top * row, value)
        _fill(flat, image + (full_h - bottom) * row, bottom * row, value)
        for y in range(top, full_h - bottom):
            _fill(flat, image + y * row, left * channels, value)
            _fill(flat, image + y * row + (full_w - right) * channels, right * channels, value)


@jit
def _bordered_empty(n_batch, height, width, channels, border, value):
    """An (N, top + height + bottom, left + width + right, C) array: a params.Border of `value`
    around each image, interior unset."""
    top, left, bottom, right = border
    out = np.empty((n_batch, top + height + bottom, left + width + right, channels), dtype=np.float32)
    _fill_border(out, border, value)
    return out


@jit
def _pad(x, top, left, bottom, right, value):
    """x with rows and columns of `value` added around each image (x itself if there are none).

    x: (N, H, W, C); returns (N, top + H + bottom, left + W + right, C)
    """
    if not (top or left or bottom or right):
        return x
    n_batch, height, width, channels = x.shape
    padded = _bordered_empty(n_batch, height, width, channels, (top, left, bottom, right), value)
    flat_x, flat_padded = x.reshape(-1), padded.reshape(-1)
    row = width * channels  # an image row is contiguous in both
    for n in range(n_batch):
        for y in range(height):
            source = (n * height + y) * row
            target = ((n * padded.shape[1] + top + y) * padded.shape[2] + left) * channels
            for i in range(0, row, 16):
                vstore_part(flat_padded, target + i, vload_part(flat_x, source + i, 16, row - i), row - i)
    return padded


@jit
def _tap_offsets(window, in_w, in_c):
    """Flat offset of each kernel tap (ky, kx) of a params.Window from its top-left input element."""
    taps = np.empty(window.kernel_h * window.kernel_w, dtype=np.int64)
    for ky in range(window.kernel_h):
        for kx in range(window.kernel_w):
            taps[ky * window.kernel_w + kx] = (ky * window.dilation_h * in_w + kx * window.dilation_w) * in_c
    return taps


@jit
def _pixel_offsets(x, out, window, border, pool, part):
    """Flat offsets, for each output pixel (n, oy, ox) of the part in order, of its window's first
    element in x and of the pixel itself in out, inside out's border. With `pool`, out holds the
    2x2 max pool (stride 2) of the convolution: the windows of the four pixels under each pooled
    pixel (n, py, px), in the pool's tap order, and the pooled pixels.

    x:      (N, in_h, in_w, in_c)  the input, padded
    out:    (N, border.top + out_h + border.bottom, border.left + out_w + border.right, out_c)
    window: params.Window (its stride is used); border: params.Border
    part:   (begin, end, parts): the output pixels from begin/parts to end/parts of them
    returns (windows, pixels): (P,) each for the part's P pixels, or with `pool` (4 * P,) and (P,)
    """
    _, in_h, in_w, in_c = x.shape
    _, full_h, full_w, out_c = out.shape
    stride_h, stride_w = window.stride_h, window.stride_w
    out_h, out_w = full_h - border.top - border.bottom, full_w - border.left - border.right
    total = out.shape[0] * out_h * out_w
    first, stop = total * part[0] // part[2], total * part[1] // part[2]
    under = 4 if pool else 1  # convolution pixels under one output pixel
    windows = np.empty((stop - first) * under, dtype=np.int64)
    pixels = np.empty(stop - first, dtype=np.int64)
    n, rest = divmod(first, out_h * out_w)
    oy, ox = divmod(rest, out_w)
    for q in range(stop - first):
        for j in range(under):
            cy, cx = (2 * oy + j // 2, 2 * ox + j % 2) if pool else (oy, ox)
            windows[q * under + j] = ((n * in_h + cy * stride_h) * in_w + cx * stride_w) * in_c
        pixels[q] = ((n * full_h + border.top + oy) * full_w + border.left + ox) * out_c
        ox += 1  # the next pixel: (n, oy, ox) in order
        if ox == out_w:
            ox, oy = 0, oy + 1
            if oy == out_h:
                oy, n = 0, n + 1
    return windows, pixels


@jit
def _tile(start, last):
    """The TILE_PIXELS output pixel indices of the tile from `start` on: the last tile of a row
    overlaps the one before it, and with fewer pixels than a tile the last pixel repeats."""
    q0 = min(start, max(last + 1 - TILE_PIXELS, 0))
    return q0, min(q0 + 1, last), min(q0 + 2, last), min(q0 + 3, last), min(q0 + 4, last), min(q0 + 5, last)


@jit
def _wide_tile(start, first, last):
    """As _tile, for CONV_TILE_PIXELS pixels of the range first..last."""
    q0 = min(start, max(last + 1 - CONV_TILE_PIXELS, first))
    return (q0, min(q0 + 1, last), min(q0 + 2, last), min(q0 + 3, last), min(q0 + 4, last), min(q0 + 5, last),
            min(q0 + 6, last), min(q0 + 7, last), min(q0 + 8, last), min(q0 + 9, last), min(q0 + 10, last),
            min(q0 + 11, last))


@jit
def _pooled_tile(start, first, last):
    """A tile of three pooled pixels from `start` on (first .. last), overlapping at the end as
    _tile's: the indices in _pixel_offsets' windows of the four convolution pixels under each."""
    p0 = min(start, max(last + 1 - 3, first))
    p1, p2 = min(p0 + 1, last), min(p0 + 2, last)
    return (4 * p0, 4 * p0 + 1, 4 * p0 + 2, 4 * p0 + 3, 4 * p1, 4 * p1 + 1, 4 * p1 + 2, 4 * p1 + 3,
            4 * p2, 4 * p2 + 1, 4 * p2 + 2, 4 * p2 + 3)


@jit
def _max_of_four(a, b, c, d, activation):
    """The 2x2 max pool of four activated vectors, max_pool2d's comparisons in its tap order."""
    best = vsplat(-np.inf, a)
    for value in (a, b, c, d):
        value = _activate_vector(value, activation)
        best = vselect_gt(value, best, value, best)
    return best


@jit
def conv2d(x, weight, bias, residual, activation, window, out, border, part, channels, pool):
    """Conv2d (one group) + bias + activation (+ residual): a matrix product over (tap, channel).

    The output gets a zero border of the given widths around each image: the padding of the
    convolution reading it, which then needs no padded copy.
    x:        (N, H, W, Ci)
    weight:   (KH * KW * Ci, padded_channels(Co)) packed from PyTorch's (Co, Ci, KH, KW)
    bias:     (padded_channels(Co),)
    residual: (N, out_h, out_w, Co) added after the activation (only without a border), or an
              empty array for none
    activation: params.Activation; window: params.Window; border: params.Border
    out:      (N, border.top + out_h + border.bottom, border.left + out_w + border.right, Co), written
    part:     (begin, end, parts): write only the output pixels from begin/parts to end/parts of them
              in order (so that threads can share a call), and the border with the part from 0
    channels: (first, stop): write only these output channels (first a multiple of 32; the border
              with first 0): another way to share a call, each thread streaming its weight columns
    pool:     write the 2x2 max pool (stride 2, floor) of the activated output instead; out is then
              (N, ... out_h // 2 ..., ... out_w // 2 ..., Co) and there is no residual
    returns out
    """
    activation, window, border = Activation(*activation), Window(*window), Border(*border)
    x = _pad(x, window.pad_top, window.pad_left, window.pad_bottom, window.pad_right, 0.0)
    in_c = x.shape[3]
    taps = _tap_offsets(window, x.shape[2], in_c)
    first_channel, stop_channel = channels
    if part[0] == 0 and first_channel == 0:
        _fill_border(out, border, 0.0)
    windows, pixels = _pixel_offsets(x, out, window, border, pool, part)
    _matmul_pixels(x.reshape(-1), weight, bias, residual.reshape(-1), activation, taps, in_c, windows, pixels,
                   0, pixels.size, out.reshape(-1), first_channel, stop_channel, pool)
    return out


@jit
def _matmul_pixels(flat_x, weight, bias, flat_residual, activation, taps, in_c, windows, pixels, first, stop,
                   flat_out, first_channel, out_c, pool):
    """conv2d's matrix product for output pixels first .. stop - 1: pixel q sums, from the bias,
    flat_x[windows[q] + tap + ci] * weight[k] over taps and input channels ci (k counting them),
    and is written, activated (+ flat_residual), at flat_out[pixels[q]:][:out_c] (its channels from
    first_channel, a multiple of 32, on; the rest are another call's). With `pool`,
    output pixel q is the 2x2 max pool of the activated sums of windows[4q .. 4q + 3].

    weight: (len(taps) * in_c, padded_channels(out_c)); bias: (padded_channels(out_c),)
    taps: (T,) offsets in flat_x; windows, pixels: (P,) offsets in flat_x and flat_out
    flat_residual: as flat_out, or empty for none; activation: params.Activation
    """
    has_residual = flat_residual.size > 0
    # Output channel blocks are taken in groups whose weight columns fit in the L2 cache; within
    # a group, each tile of pixels is read once for all its blocks.
    group = max(1, WEIGHT_CACHE_BYTES // (weight.shape[0] * 32 * 4)) * 32
    row = weight.shape[1]
    last = stop - 1
    if stop - first < FEW_PIXELS and not pool:  # e.g. a Linear on one image: a tile would repeat its pixel
        for q in range(first, stop):
            for block in range(first_channel, out_c, 32):
                a = vload(bias, block, 32)
                k = block
                for tap in taps:
                    for ci in range(windows[q] + tap, windows[q] + tap + in_c):
                        w = vload(weight, k, a)
                        a = vfma(vbroadcast(flat_x, ci, w), w, a)
                        k += row
                o, count = pixels[q] + block, min(32, out_c - block)
                value = _activate_vector(a, activation)
                if has_residual:
                    value = vadd(value, vload_part(flat_residual, o, a, count))
                vstore_part(flat_out, o, value, count)
        return
    for group_start in range(first_channel, out_c, group):
        for start in range(first, stop, 3 if pool else CONV_TILE_PIXELS):
            # A tile: twelve convolution pixels by 32 channels, summed in twelve 32-lane vectors (a0..a11,
            # two AVX-512 registers each) over every (tap, input channel); q0..q11 index windows.
            if pool:
                q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11 = _pooled_tile(start, first, last)
            else:
                q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11 = _wide_tile(start, first, last)
            x0, x1, x2, x3, x4, x5 = windows[q0], windows[q1], windows[q2], windows[q3], windows[q4], windows[q5]
            x6, x7, x8, x9, x10, x11 = windows[q6], windows[q7], windows[q8], windows[q9], windows[q10], windows[q11]
            for block in range(group_start, min(group_start + group, out_c), 32):
                a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = vload(bias, block, 32)
                k = block
                for tap in taps:
                    for ci in range(tap, tap + in_c):
                        w = vload(weight, k, a0)
                        a0 = vfma(vbroadcast(flat_x, x0 + ci, w), w, a0)
                        a1 = vfma(vbroadcast(flat_x, x1 + ci, w), w, a1)
                        a2 = vfma(vbroadcast(flat_x, x2 + ci, w), w, a2)
                        a3 = vfma(vbroadcast(flat_x, x3 + ci, w), w, a3)
                        a4 = vfma(vbroadcast(flat_x, x4 + ci, w), w, a4)
                        a5 = vfma(vbroadcast(flat_x, x5 + ci, w), w, a5)
                        a6 = vfma(vbroadcast(flat_x, x6 + ci, w), w, a6)
                        a7 = vfma(vbroadcast(flat_x, x7 + ci, w), w, a7)
                        a8 = vfma(vbroadcast(flat_x, x8 + ci, w), w, a8)
                        a9 = vfma(vbroadcast(flat_x, x9 + ci, w), w, a9)
                        a10 = vfma(vbroadcast(flat_x, x10 + ci, w), w, a10)
                        a11 = vfma(vbroadcast(flat_x, x11 + ci, w), w, a11)
                        k += row
                count = min(32, out_c - block)
                if pool:
                    for a, b, c, d, q in ((a0, a1, a2, a3, q0), (a4, a5, a6, a7, q4), (a8, a9, a10, a11, q8)):
                        vstore_part(flat_out, pixels[q // 4] + block, _max_of_four(a, b, c, d, activation), count)
                    continue
                tile = ((a0, q0), (a1, q1), (a2, q2), (a3, q3), (a4, q4), (a5, q5), (a6, q6), (a7, q7),
                        (a8, q8), (a9, q9), (a10, q10), (a11, q11))
                if has_residual:
                    for acc, q in tile:
                        o = pixels[q] + block
                        value = vadd(_activate_vector(acc, activation), vload_part(flat_residual, o, acc, count))
                        vstore_part(flat_out, o, value, count)
                else:
                    for acc, q in tile:
                        vstore_part(flat_out, pixels[q] + block, _activate_vector(acc, activation), count)


@jit
def grouped_conv2d(x, weight, bias, activation, window, out_h, out_w):
    """Grouped Conv2d (1 < groups, not depthwise) + bias + activation, plain loops.

    x:      (N, H, W, Ci)
    weight: (G, KH, KW, Ci/G, Co/G)  packed from PyTorch's (Co, Ci/G, KH, KW)
    bias:   (Co,)
    activation: params.Activation; window: params.Window
    returns (N, out_h, out_w, Co)
    """
    activation, window = Activation(*activation), Window(*window)
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
                        iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(kernel_w):
                            ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                            if ix < 0 or ix >= in_w:
                                continue
                            xs = x[n, iy, ix, g * group_in:(g + 1) * group_in]
                            ws = weight[g, ky, kx]
                            for ci in range(group_in):
                                v = xs[ci]
                                w_row = ws[ci]
                                for co in range(group_out):
                                    acc[co] += v * w_row[co]
                activate(pixel, activation)
    return out


@jit
def depthwise_conv2d(x, weight, bias, activation, window, out, border, part):
    """Depthwise Conv2d (groups = Ci = Co) + bias + activation, in tiles of six pixels by 32
    channels; the output gets a zero border as conv2d's.

    x:      (N, H, W, C)
    weight: (KH * KW, padded_channels(C))  packed from PyTorch's (C, 1, KH, KW)
    bias:   (padded_channels(C),)
    activation: params.Activation; window: params.Window; border: params.Border
    out:    (N, border.top + out_h + border.bottom, border.left + out_w + border.right, C), written
    part:   (begin, end, parts): write only the output pixels from begin/parts to end/parts of them
            in order, and the border with the part from 0 (conv2d's)
    returns out
    """
    activation, window, border = Activation(*activation), Window(*window), Border(*border)
    x = _pad(x, window.pad_top, window.pad_left, window.pad_bottom, window.pad_right, 0.0)
    channels = x.shape[3]
    taps = _tap_offsets(window, x.shape[2], channels)
    if part[0] == 0:
        _fill_border(out, border, 0.0)
    windows, pixels = _pixel_offsets(x, out, window, border, False, part)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    row = weight.shape[1]
    last = pixels.size - 1
    for start in range(0, pixels.size, TILE_PIXELS):
        q0, q1, q2, q3, q4, q5 = _tile(start, last)  # six output pixels by 32 channels
        for block in range(0, channels, 32):
            count = min(32, channels - block)
            x0, x1, x2 = windows[q0] + block, windows[q1] + block, windows[q2] + block
            x3, x4, x5 = windows[q3] + block, windows[q4] + block, windows[q5] + block
            a0 = a1 = a2 = a3 = a4 = a5 = vload(bias, block, 32)
            k = block
            for tap in taps:
                w = vload(weight, k, a0)
                a0 = vfma(vload_part(flat_x, x0 + tap, w, count), w, a0)
                a1 = vfma(vload_part(flat_x, x1 + tap, w, count), w, a1)
                a2 = vfma(vload_part(flat_x, x2 + tap, w, count), w, a2)
                a3 = vfma(vload_part(flat_x, x3 + tap, w, count), w, a3)
                a4 = vfma(vload_part(flat_x, x4 + tap, w, count), w, a4)
                a5 = vfma(vload_part(flat_x, x5 + tap, w, count), w, a5)
                k += row
            for acc, q in ((a0, q0), (a1, q1), (a2, q2), (a3, q3), (a4, q4), (a5, q5)):
                vstore_part(flat_out, pixels[q] + block, _activate_vector(acc, activation), count)
    return out


@jit
def scale_shift(x, scale, shift, activation):
    """Per-channel y = x * scale + shift + activation (a BatchNorm with nothing to fold into).

    x: (P, C); scale, shift: (C,); activation: params.Activation; returns (P, C)
    """
    activation = Activation(*activation)
    out = np.empty_like(x)
    for p in range(x.shape[0]):
        row = out[p]
        for c in range(x.shape[1]):
            row[c] = x[p, c] * scale[c] + shift[c]
        activate(row, activation)
    return out


@jit
def max_pool2d(x, window, out, border):
    """MaxPool2d: padding (and, with ceil_mode, the cells past the input) is -inf, which never wins.
    The output gets a zero border as conv2d's.

    x: (N, H, W, C); window: params.Window (its bottom and right padding are recomputed: PyTorch
    pads as far as the last window reaches); border: params.Border
    out: (N, border.top + out_h + border.bottom, border.left + out_w + border.right, C), written
    returns out
    """
    window, border = Window(*window), Border(*border)
    out_h, out_w = out.shape[1] - border.top - border.bottom, out.shape[2] - border.left - border.right
    w = window
    pad_bottom = max(0, (out_h - 1) * w.stride_h + (w.kernel_h - 1) * w.dilation_h + 1 - w.pad_top - x.shape[1])
    pad_right = max(0, (out_w - 1) * w.stride_w + (w.kernel_w - 1) * w.dilation_w + 1 - w.pad_left - x.shape[2])
    x = _pad(x, w.pad_top, w.pad_left, pad_bottom, pad_right, -np.inf)
    channels = x.shape[3]
    taps = _tap_offsets(window, x.shape[2], channels)
    _fill_border(out, border, 0.0)
    windows, pixels = _pixel_offsets(x, out, window, border, False, (0, 1, 1))
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    last = pixels.size - 1
    for start in range(0, pixels.size, TILE_PIXELS):
        q0, q1, q2, q3, q4, q5 = _tile(start, last)  # six output pixels by 16 channels
        for block in range(0, channels, 16):
            count = min(16, channels - block)
            x0, x1, x2 = windows[q0] + block, windows[q1] + block, windows[q2] + block
            x3, x4, x5 = windows[q3] + block, windows[q4] + block, windows[q5] + block
            b0 = b1 = b2 = b3 = b4 = b5 = vsplat(-np.inf, 16)
            for tap in taps:  # a tap wins only if strictly larger, as in the reference
                v = vload_part(flat_x, x0 + tap, b0, count)
                b0 = vselect_gt(v, b0, v, b0)
                v = vload_part(flat_x, x1 + tap, b0, count)
                b1 = vselect_gt(v, b1, v, b1)
                v = vload_part(flat_x, x2 + tap, b0, count)
                b2 = vselect_gt(v, b2, v, b2)
                v = vload_part(flat_x, x3 + tap, b0, count)
                b3 = vselect_gt(v, b3, v, b3)
                v = vload_part(flat_x, x4 + tap, b0, count)
                b4 = vselect_gt(v, b4, v, b4)
                v = vload_part(flat_x, x5 + tap, b0, count)
                b5 = vselect_gt(v, b5, v, b5)
            for best, q in ((b0, q0), (b1, q1), (b2, q2), (b3, q3), (b4, q4), (b5, q5)):
                vstore_part(flat_out, pixels[q] + block, best, count)
    return out


@jit
def avg_pool2d(x, window, count_include_pad, divisor_override, out_h, out_w):
    """AvgPool2d (divisor rules as the reference).

    x: (N, H, W, C); window: params.Window (no dilation); returns (N, out_h, out_w, C)
    """
    window = Window(*window)
    n_batch, in_h, in_w, channels = x.shape
    stride_h, stride_w, kernel_h, kernel_w = window.stride_h, window.stride_w, window.kernel_h, window.kernel_w
    pad_top, pad_left, pad_bottom, pad_right = window.pad_top, window.pad_left, window.pad_bottom, window.pad_right
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


@jit
def int8_to_float32(q, scale, out):
    """Dequantize a packed int8 weight: float32(q) * scale of its column, one float32 multiply each.

    q:     (A, K, C) int8 (A = groups, 1 for the one-group layouts; C = output channels per group)
    scale: (A, C) float32
    out:   (A, K, C) float32, written
    """
    for a in range(q.shape[0]):
        for k in range(q.shape[1]):
            for c in range(q.shape[2]):
                out[a, k, c] = np.float32(q[a, k, c]) * scale[a, c]


@jit
def half_to_float32(bits, brain, out):
    """Widen 16-bit floats exactly: bfloat16 (`brain`) or IEEE float16, given as their bit patterns
    (finite: the loader rejects infinities and NaN).

    float16, in two vectorisable passes without a subnormal operand anywhere: first each mantissa m
    as a float32 (exact), then per value either the exponent rebiased (+112) with the mantissa
    shifted into place, or, for exponent 0 (zero, subnormals: m * 2^-24), the float32 of m with 24
    taken off its exponent; then the sign.
    bits: (K,) uint16; out: (K,) float32, written
    """
    words = out.view(np.uint32)
    if brain:
        for i in range(bits.size):
            words[i] = np.uint32(bits[i]) << 16
        return
    for i in range(bits.size):
        out[i] = np.float32(np.uint32(bits[i]) & 0x3FF)
    for i in range(bits.size):
        b = np.int64(bits[i])
        normal = ((b & 0x7FFF) + 0x1C000) << 13  # + (112 << 10): exponent rebiased
        small = np.int64(words[i]) - (24 << 23) if b & 0x3FF else 0
        words[i] = ((b & 0x8000) << 16) | (normal if b & 0x7C00 else small)


# Winograd F(2x2, 3x3): a 3x3 stride-1 convolution computes each 2x2 block of output pixels from a
# 4x4 block of input pixels with 16 products per channel pair instead of 36 (Lavin and Gray, 2015):
#   Y = A^T [sum over input channels of (G g G^T) * (B^T d B)] A
# with B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] and
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; G g G^T is params.winograd_weight's (done once, at load).
# The sum is, for each of the 16 positions, a matrix product (tiles x Ci) @ (Ci x Co): conv2d's.
# Results differ from the direct sum by rounding only (the transforms add and subtract).
@jit
def _load_row(flat_x, start, y, x_left, in_h, in_w, in_c, c, count):
    """Pixels (y, x_left .. x_left + 3) of one image, channels c .. c + count, as four 16-lane
    vectors; pixels outside the image are 0.  start: the image's flat offset in x."""
    zero = vsplat(0, 16)
    if y >= in_h:
        return zero, zero, zero, zero
    row = start + (y * in_w + x_left) * in_c + c
    d0 = vload_part(flat_x, row, zero, count)
    d1 = vload_part(flat_x, row + in_c, zero, count) if x_left + 1 < in_w else zero
    d2 = vload_part(flat_x, row + 2 * in_c, zero, count) if x_left + 2 < in_w else zero
    d3 = vload_part(flat_x, row + 3 * in_c, zero, count) if x_left + 3 < in_w else zero
    return d0, d1, d2, d3


@jit
def _bt_row(d0, d1, d2, d3):
    """(B^T d) or (d B) along one axis of four vectors."""
    return vsub(d0, d2), vadd(d1, d2), vsub(d2, d1), vsub(d1, d3)


@jit
def _at_row(m0, m1, m2, m3):
    """A^T m along one axis: two vectors from four."""
    return vadd(vadd(m0, m1), m2), vsub(vsub(m1, m2), m3)


@jit
def _at_column(flat_m, o, position, like, count):
    """A^T m down one column j of a tile's 4x4 products: m at positions j, 4 + j, 8 + j, 12 + j,
    flat_m[o + 4 * i * position:][:count] for i = 0..3 (16-lane vectors like `like`)."""
    return _at_row(vload_part(flat_m, o, like, count), vload_part(flat_m, o + 4 * position, like, count),
                   vload_part(flat_m, o + 8 * position, like, count), vload_part(flat_m, o + 12 * position, like, count))


@jit
def winograd_conv3x3(x, u, bias, residual, activation, window, out, border, part, channels, v, m, pool):
    """Conv2d 3x3, stride 1, dilation 1, one group (+ bias + activation + residual) by Winograd
    F(2x2, 3x3).

    x:        (N, H, W, Ci)
    u:        (16, Ci, padded_channels(Co)) params.winograd_weight, columns padded
    bias:     (padded_channels(Co),)
    residual: (N, out_h, out_w, Co) or empty, as conv2d's
    out:      (N, border.top + out_h + border.bottom, border.left + out_w + border.right, Co), written
    part:     (begin, end, parts) of the tiles (2x2 output pixels), as conv2d's part of its pixels
    channels: (first, stop) of the output channels written (first a multiple of 32): another way
              for threads to share a call, each streaming its columns of u only
    v, m:     (16, G, Ci) and (16, G, Co) scratch for a group of G tiles (params.winograd_tiles)
    pool:     write the 2x2 max pool (stride 2, floor) of the activated output instead: max_pool2d's
              comparisons in its tap order; out is then (N, ... out_h // 2 ..., ... out_w // 2 ..., Co)
              and there is no residual
    activation: params.Activation; window: params.Window (its padding); border: params.Border
    returns out
    """
    activation, window, border = Activation(*activation), Window(*window), Border(*border)
    x = _pad(x, window.pad_top, window.pad_left, window.pad_bottom, window.pad_right, 0.0)
    n_batch, in_h, in_w, in_c = x.shape
    out_c = out.shape[3]
    out_h, out_w = in_h - 2, in_w - 2
    tiles_w = -(-out_w // 2)
    per_image = -(-out_h // 2) * tiles_w
    begin, end, parts = part
    first_channel, stop_channel = channels
    if begin == 0 and first_channel == 0:
        _fill_border(out, border, 0.0)
    first, stop = n_batch * per_image * begin // parts, n_batch * per_image * end // parts
    group = v.shape[1]
    flat_x, flat_out, flat_residual = x.reshape(-1), out.reshape(-1), residual.reshape(-1)
    has_residual = flat_residual.size > 0
    full_h, full_w = out.shape[1], out.shape[2]
    zero_bias = np.zeros(u.shape[2], dtype=np.float32)
    no_residual, no_activation, one_tap = np.empty(0, dtype=np.float32), (0, np.float32(0)), np.zeros(1, np.int64)
    rows_v = np.arange(group) * in_c  # tile t's row in v[position] and in m[position]
    rows_m = np.arange(group) * out_c
    flat_v, flat_m = v.reshape(-1), m.reshape(-1)  # flat offsets: no array view per load and store
    v_position, m_position = group * in_c, group * out_c  # one position further in v, in m
    for group_start in range(first, stop, group):
        tiles = min(group, stop - group_start)
        # 1. V = B^T d B for every tile of the group, channels in blocks of 16: v[position, tile, c]
        for t in range(tiles):
            tile = group_start + t
            n, ty, tx = tile // per_image, (tile % per_image) // tiles_w, tile % tiles_w
            start, y0, x0 = n * in_h * in_w * in_c, 2 * ty, 2 * tx
            for c in range(0, in_c, 16):
                count = min(16, in_c - c)
                r0 = _bt_row(*_load_row(flat_x, start, y0, x0, in_h, in_w, in_c, c, count))
                r1 = _bt_row(*_load_row(flat_x, start, y0 + 1, x0, in_h, in_w, in_c, c, count))
                r2 = _bt_row(*_load_row(flat_x, start, y0 + 2, x0, in_h, in_w, in_c, c, count))
                r3 = _bt_row(*_load_row(flat_x, start, y0 + 3, x0, in_h, in_w, in_c, c, count))
                for j in range(4):
                    c0, c1, c2, c3 = _bt_row(r0[j], r1[j], r2[j], r3[j])
                    o = (j * group + t) * in_c + c  # v[j, t, c]; row i is 4 * i positions on
                    vstore_part(flat_v, o, c0, count)
                    vstore_part(flat_v, o + 4 * v_position, c1, count)
                    vstore_part(flat_v, o + 8 * v_position, c2, count)
                    vstore_part(flat_v, o + 12 * v_position, c3, count)
        # 2. M = V @ U at each of the 16 positions: conv2d's matrix product over the tiles
        for p in range(16):
            _matmul_pixels(v[p].reshape(-1), u[p], zero_bias, no_residual, no_activation, one_tap, in_c, rows_v,
                           rows_m, 0, tiles, m[p].reshape(-1), first_channel, stop_channel, False)
        # 3. Y = A^T M A + bias, activated, for the output pixels inside the image
        for t in range(tiles):
            tile = group_start + t
            n, ty, tx = tile // per_image, (tile % per_image) // tiles_w, tile % tiles_w
            for c in range(first_channel, stop_channel, 16):
                count = min(16, stop_channel - c)
                b = vload(bias, c, 16)
                o = t * out_c + c  # m[0, t, c]; position p is p * m_position on
                s0 = _at_column(flat_m, o, m_position, b, count)
                s1 = _at_column(flat_m, o + m_position, m_position, b, count)
                s2 = _at_column(flat_m, o + 2 * m_position, m_position, b, count)
                s3 = _at_column(flat_m, o + 3 * m_position, m_position, b, count)
                if pool:
                    if 2 * ty + 1 < out_h and 2 * tx + 1 < out_w:  # a whole window of the pool
                        y00, y01 = _at_row(s0[0], s1[0], s2[0], s3[0])
                        y10, y11 = _at_row(s0[1], s1[1], s2[1], s3[1])
                        best = _max_of_four(vadd(y00, b), vadd(y01, b), vadd(y10, b), vadd(y11, b), activation)
                        o = ((n * full_h + border.top + ty) * full_w + border.left + tx) * out_c + c
                        vstore_part(flat_out, o, best, count)
                    continue
                for i in range(2):
                    oy = 2 * ty + i
                    if oy >= out_h:
                        break
                    y_left, y_right = _at_row(s0[i], s1[i], s2[i], s3[i])
                    for j, value in ((0, y_left), (1, y_right)):
                        ox = 2 * tx + j
                        if ox < out_w:
                            value = _activate_vector(vadd(value, b), activation)
                            if has_residual:
                                value = vadd(value, vload_part(flat_residual, ((n * out_h + oy) * out_w + ox) * out_c + c,
                                                               value, count))
                            o = ((n * full_h + border.top + oy) * full_w + border.left + ox) * out_c + c
                            vstore_part(flat_out, o, value, count)
    return out
