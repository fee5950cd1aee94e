"""Fast int8 kernels: the integer reference kernels (integer.py) on channels-last values, exactly.

Values are uint8, NHWC, each image `stride` bytes from the last (its h * w * c bytes, rounded up
to whole float32 words of the arena). The sums are the reference's integers, whatever their order,
and every output is requantized by the same float32 operations (simd_int8.requantize_lanes, or
integer.requantize one at a time), so every kernel here equals its reference bit for bit: the tests
compare them on random shapes.

A convolution is a matrix product (`conv2d`): the input's windows, read where they are (a PAD row
gives the input its padding and whole quads of channels, the zero point in both), times the weight
packed as params.pack_weight says, from an int32 bias that already holds the zero
point's share (params.folded_bias). `conv2d` takes the product's variant: AVX-512 VNNI's
`vpdpbusd` on a tile of 12 pixels by 32 channels (params.VNNI), AVX2's `vpmaddubsw` on 4 pixels by
16 channels (AVX2), or plain loops anywhere (PLAIN).
"""

import numpy as np

from .._jit import jit
from .integer import requantize
from .params import AVX2, VNNI, Window
from .simd_int8 import (add_lanes, add_requantized, broadcast_quad, copy_bytes, dot_u8s8, dot_u8s8_avx2, fill_bytes,
                         interleave_taps, load_bytes, load_levels, load_levels_full, load_sums, load_weight_quads,
                         load_weights_wide, max_lanes, multiply_add, pack_levels, requantize_lanes, splat_int, store_bytes,
                         store_lanes, store_packed, subtract)

TILE_PIXELS = 12  # the VNNI tile: 12 pixels by 32 channels, 24 int32 vectors
CHANNEL_BLOCK = 32
GROUP_ROWS = 20 * TILE_PIXELS  # the VNNI product runs every channel block over this many rows at a time


@jit
def quantize(x, scale, zero_point, out):
    """out = integer.quantize of x.  x: (size,) float32; out: (size,) uint8"""
    whole = (zero_point, 0, 255, np.float32(1.0))
    for i in range(x.size):
        out[i] = requantize(x[i] / scale, whole)


@jit
def dequantize(q, scale, zero_point, out):
    """out = integer.dequantize of q.  q: (size,) uint8; out: (size,) float32"""
    for i in range(q.size):
        out[i] = scale * np.float32(np.int32(q[i]) - zero_point)


@jit
def _window_starts(stride, in_w, in_c, window, out_h, out_w, out_stride, out_c, first, stop, pool):
    """Where in x (images `stride` bytes apart, each (in_h, in_w, in_c), the padding included) the
    window of every convolution pixel that output pixels first .. stop - 1 (counted over the images)
    take starts (its tap (0, 0)), and where in out (images out_stride bytes apart, each (out_h,
    out_w, out_c)) each of those output pixels goes. With `pool`, output pixel (oy, ox) is the 2x2
    max of convolution pixels (2oy + i, 2ox + j), whose four windows follow one another, (i, j) in
    the order (0, 0), (0, 1), (1, 0), (1, 1).

    returns ((stop - first) * (4 if pool else 1),) int64 starts, ((stop - first),) int64 targets
    """
    window = Window(*window)
    blocks = 4 if pool else 1
    step = 2 if pool else 1
    starts = np.empty((stop - first) * blocks, np.int64)
    targets = np.empty(stop - first, np.int64)
    per_image = out_h * out_w
    n, oy, ox = first // per_image, (first % per_image) // out_w, first % out_w  # then counted on
    row_y, row_x = window.stride_h * in_w * in_c, window.stride_w * in_c  # bytes between windows
    for i in range(stop - first):
        corner = n * stride + step * (oy * row_y + ox * row_x)
        for j in range(blocks):
            starts[i * blocks + j] = corner + (j // 2) * row_y + (j % 2) * row_x
        targets[i] = n * out_stride + (oy * out_w + ox) * out_c
        ox += 1
        if ox == out_w:
            ox, oy = 0, oy + 1
            if oy == out_h:
                oy, n = 0, n + 1
    return starts, targets


@jit
def conv2d(x, stride, in_h, in_w, in_c, x_zero_point, weight, bias, multiplier, requant, window, out, out_stride,
           out_h, out_w, out_c, images, part, variant, pool):
    """integer.conv2d (one group), channels-last, on `images` images: the output pixels of `part`,
    each the 2x2 max pool of four convolution pixels with `pool` (integer.max_pool2d of the
    requantized outputs). The input carries the convolution's padding and whole quads of channels
    (a PAD row: fast_int8.pad), so every tap is read where it is, four channels at a time.

    x:          flat uint8, images `stride` bytes apart, each (in_h, in_w, in_c), in_c % 4 == 0
    weight:     (KH * KW * in_c // 4, Co_padded, 4) int8, params.pack_weight's (Co_padded % 16 == 0)
    bias:       (Co_padded,) int32, params.folded_bias's; multiplier: (Co_padded,) float32
    requant:    params.Requant; window: params.Window, unpadded
    out:        flat uint8, images out_stride bytes apart, each (out_h, out_w, out_c)
    part:       (chunk, end chunk, chunks): the output pixels of those chunks
    variant:    params.PLAIN, VNNI or AVX2
    """
    win = Window(*window)
    out_padded = weight.shape[1]
    pixels = images * out_h * out_w
    first, stop = pixels * part[0] // part[2], pixels * part[1] // part[2]
    if stop <= first:
        return
    rows, targets = _window_starts(stride, in_w, in_c, window, out_h, out_w, out_stride, out_c, first, stop, pool)
    taps = np.empty(win.kernel_h * win.kernel_w, np.int64)
    for ky in range(win.kernel_h):
        for kx in range(win.kernel_w):
            taps[ky * win.kernel_w + kx] = (ky * win.dilation_h * in_w + kx * win.dilation_w) * in_c
    flat_weight = weight.reshape(-1)
    # Where the requantization is monotone in the sum (multipliers and LeakyReLU's slope not
    # negative), a pooled pixel's level is the level of the largest of its four sums.
    monotone = requant[3] >= 0 and multiplier.min() >= 0
    if variant == AVX2:
        _product_avx2(x, rows, taps, in_c // 4, flat_weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                      pool, monotone)
    elif variant == VNNI:
        _product_vnni(x, rows, taps, in_c // 4, flat_weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                      pool, monotone)
    else:
        _product_plain(x, rows, taps, in_c // 4, flat_weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                       pool)


@jit
def _product_plain(a, rows, taps, quads_per_tap, weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                   pool):
    """The output pixel at targets[p] (channels co): requantize(float32(bias[co] + sum over taps t and
    quads q of a[rows[r] + taps[t] + 4q + j] * w[(t, q, j), co]) * multiplier[co]) of its row r (with
    `pool`, the largest of its four rows'), plain loops."""
    blocks = 4 if pool else 1
    sums = np.empty(out_padded, np.int32)
    for p in range(targets.size):
        for j in range(blocks):
            sums[:] = bias
            kq = 0
            for tap in taps:
                for q in range(quads_per_tap):
                    r = rows[p * blocks + j] + tap + 4 * q
                    a0, a1, a2, a3 = np.int32(a[r]), np.int32(a[r + 1]), np.int32(a[r + 2]), np.int32(a[r + 3])
                    base = kq * out_padded * 4
                    for co in range(out_padded):
                        w = base + 4 * co
                        sums[co] += (a0 * np.int32(weight[w]) + a1 * np.int32(weight[w + 1])
                                     + a2 * np.int32(weight[w + 2]) + a3 * np.int32(weight[w + 3]))
                    kq += 1
            for co in range(0, out_c, 16):
                level = requantize_lanes(load_sums(sums, co), multiplier, co, requant)
                if j > 0:
                    level = max_lanes(level, load_levels(out, targets[p] + co, out_c - co))
                store_bytes(out, targets[p] + co, level, out_c - co)


@jit
def _product_avx2(a, rows, taps, quads_per_tap, weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                  pool, monotone):
    """_product_plain's outputs, the sums by simd_int8.dot_u8s8_avx2 (vpmaddubsw): a tile of 4 rows
    by 16 channels at a time (eight AVX2 registers of sums; with `pool`, one output pixel, from the
    largest of its four sums where `monotone`)."""
    last = rows.size - 1
    for block in range(0, out_c, 16):
        for start in range(0, rows.size, 4):
            r0, r1, r2, r3 = rows[start], rows[min(start + 1, last)], rows[min(start + 2, last)], rows[min(start + 3, last)]
            s0 = s1 = s2 = s3 = load_sums(bias, block)
            w = block * 4
            for tap in taps:
                for q in range(quads_per_tap):
                    quads, k = load_weight_quads(weight, w), tap + 4 * q
                    s0 = dot_u8s8_avx2(s0, broadcast_quad(a, r0 + k), quads)
                    s1 = dot_u8s8_avx2(s1, broadcast_quad(a, r1 + k), quads)
                    s2 = dot_u8s8_avx2(s2, broadcast_quad(a, r2 + k), quads)
                    s3 = dot_u8s8_avx2(s3, broadcast_quad(a, r3 + k), quads)
                    w += out_padded * 4
            if pool:  # the tile's four rows are one output pixel's
                if monotone:
                    level = requantize_lanes(max_lanes(max_lanes(s0, s1), max_lanes(s2, s3)), multiplier, block, requant)
                else:
                    level = max_lanes(max_lanes(requantize_lanes(s0, multiplier, block, requant),
                                                requantize_lanes(s1, multiplier, block, requant)),
                                      max_lanes(requantize_lanes(s2, multiplier, block, requant),
                                                requantize_lanes(s3, multiplier, block, requant)))
                store_bytes(out, targets[start // 4] + block, level, out_c - block)
                continue
            for i, sums in enumerate((s0, s1, s2, s3)):
                if start + i < rows.size:
                    store_bytes(out, targets[start + i] + block, requantize_lanes(sums, multiplier, block, requant),
                                out_c - block)


@jit
def _product_vnni(a, rows, taps, quads_per_tap, weight, out_padded, bias, multiplier, requant, out, targets, out_c,
                  pool, monotone):
    """_product_plain's outputs, the sums by vpdpbusd: a tile of 12 rows by 32 channels (24 vectors)
    at a time (with `pool`, three output pixels of four rows each, each from the largest of its four
    sums where `monotone`)."""
    last = rows.size - 1
    tile = np.empty(TILE_PIXELS * CHANNEL_BLOCK, np.int32)  # the tile's sums, pixel by pixel
    for group in range(0, rows.size, GROUP_ROWS):  # the group's outputs stay in cache across the blocks
        for block in range(0, out_c, CHANNEL_BLOCK):
            # The upper 16 channels of the block; a last block of 16 or fewer (the columns padded to 16
            # only) has none, and computes its lower 16 twice instead of reading past the columns.
            upper = 16 if out_padded - block > 16 else 0
            for start in range(group, min(group + GROUP_ROWS, rows.size), TILE_PIXELS):
                r0, r1, r2, r3 = rows[start], rows[min(start + 1, last)], rows[min(start + 2, last)], rows[min(start + 3, last)]
                r4, r5, r6, r7 = rows[min(start + 4, last)], rows[min(start + 5, last)], rows[min(start + 6, last)], \
                    rows[min(start + 7, last)]
                r8, r9, r10, r11 = rows[min(start + 8, last)], rows[min(start + 9, last)], rows[min(start + 10, last)], \
                    rows[min(start + 11, last)]
                lo0 = lo1 = lo2 = lo3 = lo4 = lo5 = lo6 = lo7 = lo8 = lo9 = lo10 = lo11 = load_sums(bias, block)
                hi0 = hi1 = hi2 = hi3 = hi4 = hi5 = hi6 = hi7 = hi8 = hi9 = hi10 = hi11 = load_sums(bias, block + upper)
                w = block * 4
                for tap in taps:
                    for q in range(quads_per_tap):
                        w_lo, w_hi = load_weight_quads(weight, w), load_weight_quads(weight, w + 4 * upper)
                        k = tap + 4 * q
                        b = broadcast_quad(a, r0 + k)
                        lo0, hi0 = dot_u8s8(lo0, b, w_lo), dot_u8s8(hi0, b, w_hi)
                        b = broadcast_quad(a, r1 + k)
                        lo1, hi1 = dot_u8s8(lo1, b, w_lo), dot_u8s8(hi1, b, w_hi)
                        b = broadcast_quad(a, r2 + k)
                        lo2, hi2 = dot_u8s8(lo2, b, w_lo), dot_u8s8(hi2, b, w_hi)
                        b = broadcast_quad(a, r3 + k)
                        lo3, hi3 = dot_u8s8(lo3, b, w_lo), dot_u8s8(hi3, b, w_hi)
                        b = broadcast_quad(a, r4 + k)
                        lo4, hi4 = dot_u8s8(lo4, b, w_lo), dot_u8s8(hi4, b, w_hi)
                        b = broadcast_quad(a, r5 + k)
                        lo5, hi5 = dot_u8s8(lo5, b, w_lo), dot_u8s8(hi5, b, w_hi)
                        b = broadcast_quad(a, r6 + k)
                        lo6, hi6 = dot_u8s8(lo6, b, w_lo), dot_u8s8(hi6, b, w_hi)
                        b = broadcast_quad(a, r7 + k)
                        lo7, hi7 = dot_u8s8(lo7, b, w_lo), dot_u8s8(hi7, b, w_hi)
                        b = broadcast_quad(a, r8 + k)
                        lo8, hi8 = dot_u8s8(lo8, b, w_lo), dot_u8s8(hi8, b, w_hi)
                        b = broadcast_quad(a, r9 + k)
                        lo9, hi9 = dot_u8s8(lo9, b, w_lo), dot_u8s8(hi9, b, w_hi)
                        b = broadcast_quad(a, r10 + k)
                        lo10, hi10 = dot_u8s8(lo10, b, w_lo), dot_u8s8(hi10, b, w_hi)
                        b = broadcast_quad(a, r11 + k)
                        lo11, hi11 = dot_u8s8(lo11, b, w_lo), dot_u8s8(hi11, b, w_hi)
                        w += out_padded * 4
                whole = rows.size - start >= TILE_PIXELS and out_c - block >= CHANNEL_BLOCK
                if whole and not pool:  # the common case, from the registers
                    m0, m1 = block, block + 16
                    o = targets[start + 0] + block
                    store_bytes(out, o, requantize_lanes(lo0, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi0, multiplier, m1, requant), 16)
                    o = targets[start + 1] + block
                    store_bytes(out, o, requantize_lanes(lo1, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi1, multiplier, m1, requant), 16)
                    o = targets[start + 2] + block
                    store_bytes(out, o, requantize_lanes(lo2, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi2, multiplier, m1, requant), 16)
                    o = targets[start + 3] + block
                    store_bytes(out, o, requantize_lanes(lo3, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi3, multiplier, m1, requant), 16)
                    o = targets[start + 4] + block
                    store_bytes(out, o, requantize_lanes(lo4, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi4, multiplier, m1, requant), 16)
                    o = targets[start + 5] + block
                    store_bytes(out, o, requantize_lanes(lo5, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi5, multiplier, m1, requant), 16)
                    o = targets[start + 6] + block
                    store_bytes(out, o, requantize_lanes(lo6, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi6, multiplier, m1, requant), 16)
                    o = targets[start + 7] + block
                    store_bytes(out, o, requantize_lanes(lo7, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi7, multiplier, m1, requant), 16)
                    o = targets[start + 8] + block
                    store_bytes(out, o, requantize_lanes(lo8, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi8, multiplier, m1, requant), 16)
                    o = targets[start + 9] + block
                    store_bytes(out, o, requantize_lanes(lo9, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi9, multiplier, m1, requant), 16)
                    o = targets[start + 10] + block
                    store_bytes(out, o, requantize_lanes(lo10, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi10, multiplier, m1, requant), 16)
                    o = targets[start + 11] + block
                    store_bytes(out, o, requantize_lanes(lo11, multiplier, m0, requant), 16)
                    store_bytes(out, o + 16, requantize_lanes(hi11, multiplier, m1, requant), 16)
                    continue
                if whole and monotone:  # three pooled pixels: the largest of four sums each, requantized
                    m0, m1 = block, block + 16
                    o = targets[start // 4 + 0] + block
                    most = max_lanes(max_lanes(lo0, lo1), max_lanes(lo2, lo3))
                    store_bytes(out, o, requantize_lanes(most, multiplier, m0, requant), 16)
                    most = max_lanes(max_lanes(hi0, hi1), max_lanes(hi2, hi3))
                    store_bytes(out, o + 16, requantize_lanes(most, multiplier, m1, requant), 16)
                    o = targets[start // 4 + 1] + block
                    most = max_lanes(max_lanes(lo4, lo5), max_lanes(lo6, lo7))
                    store_bytes(out, o, requantize_lanes(most, multiplier, m0, requant), 16)
                    most = max_lanes(max_lanes(hi4, hi5), max_lanes(hi6, hi7))
                    store_bytes(out, o + 16, requantize_lanes(most, multiplier, m1, requant), 16)
                    o = targets[start // 4 + 2] + block
                    most = max_lanes(max_lanes(lo8, lo9), max_lanes(lo10, lo11))
                    store_bytes(out, o, requantize_lanes(most, multiplier, m0, requant), 16)
                    most = max_lanes(max_lanes(hi8, hi9), max_lanes(hi10, hi11))
                    store_bytes(out, o + 16, requantize_lanes(most, multiplier, m1, requant), 16)
                    continue
                for i, (lo, hi) in enumerate(((lo0, hi0), (lo1, hi1), (lo2, hi2), (lo3, hi3), (lo4, hi4), (lo5, hi5),
                                              (lo6, hi6), (lo7, hi7), (lo8, hi8), (lo9, hi9), (lo10, hi10), (lo11, hi11))):
                    store_lanes(tile, 32 * i, lo)
                    store_lanes(tile, 32 * i + 16, hi)
                halves = 2 if out_c - block > 16 else 1  # a last block of 16 channels or fewer has one
                if pool:
                    for i in range(min(3, (rows.size - start) // 4)):
                        o = targets[start // 4 + i] + block
                        for half in range(halves):
                            m = block + 16 * half
                            if monotone:  # the largest sum's level is the largest level
                                most = load_sums(tile, 128 * i + 16 * half)
                                for j in range(1, 4):
                                    most = max_lanes(most, load_sums(tile, 128 * i + 32 * j + 16 * half))
                                level = requantize_lanes(most, multiplier, m, requant)
                            else:
                                level = requantize_lanes(load_sums(tile, 128 * i + 16 * half), multiplier, m, requant)
                                for j in range(1, 4):
                                    level = max_lanes(level, requantize_lanes(
                                        load_sums(tile, 128 * i + 32 * j + 16 * half), multiplier, m, requant))
                            store_bytes(out, o + 16 * half, level, out_c - m)
                    continue
                for i in range(min(TILE_PIXELS, rows.size - start)):
                    o = targets[start + i] + block
                    for half in range(halves):
                        m = block + 16 * half
                        store_bytes(out, o + 16 * half, requantize_lanes(load_sums(tile, 32 * i + 16 * half), multiplier, m,
                                                                         requant), out_c - m)


@jit
def depthwise_conv2d(x, stride, in_h, in_w, channels, x_zero_point, weight, bias, multiplier, requant, window, out,
                     out_stride, out_h, out_w, images, part):
    """integer.conv2d of a depthwise convolution, channels-last: the output pixels of `part`, 16
    channels at a time in int32 lanes, a row of pixels at a time. A pixel whose window lies inside
    the input sums x * w from the folded bias (bias_q - zero point * the sum of its taps' weights);
    one at the border sums (x - zero point) * w over its taps inside, from bias_q.

    weight: (KH * KW, C_padded) int8 (tap-major)
    bias:   (2, C_padded) int32: bias_q, and the folded bias (params.depthwise_biases)
    multiplier: (C_padded,) float32; other arguments as conv2d's
    """
    win = Window(*window)
    per_image = out_h * out_w
    pixels = images * per_image
    last_y, last_x = (win.kernel_h - 1) * win.dilation_h, (win.kernel_w - 1) * win.dilation_w
    # the output columns whose windows lie inside the input across: inside_x0 .. inside_x1 - 1
    inside_x0 = -(-win.pad_left // win.stride_w)
    inside_x1 = max(inside_x0, (in_w - 1 - last_x + win.pad_left) // win.stride_w + 1) if in_w > last_x else inside_x0
    flat_weight, flat_bias, padded = weight.reshape(-1), bias.reshape(-1), weight.shape[1]
    zero = splat_int(x_zero_point)
    three_by_three = win.kernel_h == 3 and win.kernel_w == 3
    p, stop = pixels * part[0] // part[2], pixels * part[1] // part[2]
    while p < stop:  # a row's pixels of the part at a time
        n, oy, x0 = p // per_image, (p % per_image) // out_w, p % out_w
        x1 = min(out_w, x0 + stop - p)
        top = oy * win.stride_h - win.pad_top
        rows_inside = top >= 0 and top + last_y < in_h
        for c in range(0, channels, 16):
            start, end = x1, x1  # the pixels whose windows lie inside, when the block is whole
            if rows_inside and channels - c >= 16:
                start, end = max(x0, min(inside_x0, x1)), max(x0, min(inside_x1, x1))
            ox = x0
            while ox < x1:
                if ox == start and start < end and three_by_three:
                    _depthwise_row_3x3(x, stride, in_w, channels, flat_weight, flat_bias, padded, multiplier, requant,
                                       win, out, out_stride, out_w, n, oy, start, end, c)
                    ox = end
                    continue
                left = ox * win.stride_w - win.pad_left
                if start <= ox < end:  # x * w from the folded bias
                    acc = load_sums(flat_bias, padded + c)
                    for ky in range(win.kernel_h):
                        row = n * stride + ((top + ky * win.dilation_h) * in_w + left) * channels + c
                        for kx in range(win.kernel_w):
                            acc = multiply_add(acc, load_levels_full(x, row + kx * win.dilation_w * channels),
                                               load_weights_wide(flat_weight, (ky * win.kernel_w + kx) * padded + c))
                else:  # (x - zero point) * w over the taps inside, from bias_q
                    acc = load_sums(flat_bias, c)
                    for ky in range(win.kernel_h):
                        iy = top + ky * win.dilation_h
                        if iy < 0 or iy >= in_h:
                            continue
                        for kx in range(win.kernel_w):
                            ix = left + kx * win.dilation_w
                            if ix < 0 or ix >= in_w:
                                continue
                            levels = load_levels(x, n * stride + (iy * in_w + ix) * channels + c, channels - c)
                            acc = multiply_add(acc, subtract(levels, zero),
                                               load_weights_wide(flat_weight, (ky * win.kernel_w + kx) * padded + c))
                store_bytes(out, n * out_stride + (oy * out_w + ox) * channels + c,
                            requantize_lanes(acc, multiplier, c, requant), channels - c)
                ox += 1
        p += x1 - x0


@jit
def _depthwise_row_3x3(x, stride, in_w, channels, flat_weight, flat_bias, padded, multiplier, requant, win, out,
                       out_stride, out_w, n, oy, start, end, c):
    """Output pixels (oy, start .. end - 1) of image n, channels c .. c + 15, of a 3x3 depthwise
    convolution whose windows lie inside the input: the nine taps' weights held in registers, and
    (stride and dilation 1 across) each window's two left columns taken from the last window's."""
    w0, w1, w2 = (load_weights_wide(flat_weight, c), load_weights_wide(flat_weight, padded + c),
                  load_weights_wide(flat_weight, 2 * padded + c))
    w3, w4, w5 = (load_weights_wide(flat_weight, 3 * padded + c), load_weights_wide(flat_weight, 4 * padded + c),
                  load_weights_wide(flat_weight, 5 * padded + c))
    w6, w7, w8 = (load_weights_wide(flat_weight, 6 * padded + c), load_weights_wide(flat_weight, 7 * padded + c),
                  load_weights_wide(flat_weight, 8 * padded + c))
    folded = load_sums(flat_bias, padded + c)
    step_y, step_x = win.dilation_h * in_w * channels, win.dilation_w * channels  # bytes between taps
    across = win.stride_w * channels  # bytes between windows
    r0 = n * stride + ((oy * win.stride_h - win.pad_top) * in_w + start * win.stride_w - win.pad_left) * channels + c
    o = n * out_stride + (oy * out_w + start) * channels + c
    sliding = win.stride_w == 1 and win.dilation_w == 1
    for ox in range(start, end):
        if ox == start or not sliding:
            a0, a1, a2 = load_levels_full(x, r0), load_levels_full(x, r0 + step_y), load_levels_full(x, r0 + 2 * step_y)
            b0, b1, b2 = (load_levels_full(x, r0 + step_x), load_levels_full(x, r0 + step_y + step_x),
                          load_levels_full(x, r0 + 2 * step_y + step_x))
        right = r0 + 2 * step_x
        c0, c1, c2 = (load_levels_full(x, right), load_levels_full(x, right + step_y),
                      load_levels_full(x, right + 2 * step_y))
        acc = multiply_add(multiply_add(multiply_add(folded, a0, w0), b0, w1), c0, w2)
        acc = multiply_add(multiply_add(multiply_add(acc, a1, w3), b1, w4), c1, w5)
        acc = multiply_add(multiply_add(multiply_add(acc, a2, w6), b2, w7), c2, w8)
        store_bytes(out, o, requantize_lanes(acc, multiplier, c, requant), 16)
        a0, a1, a2, b0, b1, b2 = b0, b1, b2, c0, c1, c2
        r0 += across
        o += channels


@jit
def depthwise_conv2d_vnni(x, stride, in_h, in_w, channels, x_zero_point, weight, bias, multiplier, requant, window,
                          out, out_stride, out_h, out_w, images, part):
    """depthwise_conv2d's outputs, 64 channels at a time by vpdpbusd: the bytes of four taps of a
    column of the window side by side per channel (simd_int8.interleave_taps), a tap outside the
    input read as the zero point, from the folded bias.

    weight:     (blocks, KW, ceil(KH / 4), 256) int8, params.depthwise_vnni_operands'
    bias:       (blocks * 64,) int32: the folded bias (params.folded_bias) in params.depthwise_order
    multiplier: (blocks * 64,) float32, in params.depthwise_order; other arguments as depthwise_conv2d's
    """
    win = Window(*window)
    blocks, groups = weight.shape[0], weight.shape[2]
    flat_weight = weight.reshape(-1)
    zero = splat_int(x_zero_point * 0x01010101)  # the zero point in every byte
    sliding = win.kernel_w == 3 and groups == 1 and win.stride_w == 1 and win.dilation_w == 1
    rows_apart = win.dilation_h * in_w * channels  # bytes between a column's taps
    per_image = out_h * out_w
    pixels = images * per_image
    p, stop = pixels * part[0] // part[2], pixels * part[1] // part[2]
    while p < stop:  # a row's pixels of the part at a time
        n, oy, x0 = p // per_image, (p % per_image) // out_w, p % out_w
        x1 = min(out_w, x0 + stop - p)
        top = oy * win.stride_h - win.pad_top
        for b in range(blocks):
            c = b * 64
            count = min(64, channels - c)
            if sliding:  # each column of taps interleaved once, for the three windows that read it
                w = b * 3 * 256
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = zero
                for ix in range(x0 - win.pad_left, x1 - win.pad_left + 2):
                    row = n * stride + (top * in_w + ix) * channels + c
                    across = 0 <= ix < in_w
                    t0 = load_bytes(x, row, count) if across and 0 <= top < in_h else zero
                    t1 = load_bytes(x, row + rows_apart, count) \
                        if across and win.kernel_h > 1 and 0 <= top + win.dilation_h < in_h else zero
                    t2 = load_bytes(x, row + 2 * rows_apart, count) \
                        if across and win.kernel_h > 2 and 0 <= top + 2 * win.dilation_h < in_h else zero
                    t3 = load_bytes(x, row + 3 * rows_apart, count) \
                        if across and win.kernel_h > 3 and 0 <= top + 3 * win.dilation_h < in_h else zero
                    c0, c1, c2, c3 = interleave_taps(t0, t1, t2, t3)
                    if ix >= x0 - win.pad_left + 2:  # output pixel ix - 2 + pad_left: columns a, b, c
                        acc0, acc1, acc2, acc3 = (load_sums(bias, c), load_sums(bias, c + 16),
                                                  load_sums(bias, c + 32), load_sums(bias, c + 48))
                        acc0 = dot_u8s8(acc0, a0, load_weight_quads(flat_weight, w))
                        acc1 = dot_u8s8(acc1, a1, load_weight_quads(flat_weight, w + 64))
                        acc2 = dot_u8s8(acc2, a2, load_weight_quads(flat_weight, w + 128))
                        acc3 = dot_u8s8(acc3, a3, load_weight_quads(flat_weight, w + 192))
                        acc0 = dot_u8s8(acc0, b0, load_weight_quads(flat_weight, w + 256))
                        acc1 = dot_u8s8(acc1, b1, load_weight_quads(flat_weight, w + 320))
                        acc2 = dot_u8s8(acc2, b2, load_weight_quads(flat_weight, w + 384))
                        acc3 = dot_u8s8(acc3, b3, load_weight_quads(flat_weight, w + 448))
                        acc0 = dot_u8s8(acc0, c0, load_weight_quads(flat_weight, w + 512))
                        acc1 = dot_u8s8(acc1, c1, load_weight_quads(flat_weight, w + 576))
                        acc2 = dot_u8s8(acc2, c2, load_weight_quads(flat_weight, w + 640))
                        acc3 = dot_u8s8(acc3, c3, load_weight_quads(flat_weight, w + 704))
                        levels = pack_levels(requantize_lanes(acc0, multiplier, c, requant),
                                             requantize_lanes(acc1, multiplier, c + 16, requant),
                                             requantize_lanes(acc2, multiplier, c + 32, requant),
                                             requantize_lanes(acc3, multiplier, c + 48, requant))
                        store_packed(out, n * out_stride + (oy * out_w + ix - 2 + win.pad_left) * channels + c, levels,
                                     count)
                    a0, a1, a2, a3, b0, b1, b2, b3 = b0, b1, b2, b3, c0, c1, c2, c3
                continue
            for ox in range(x0, x1):
                left = ox * win.stride_w - win.pad_left
                acc0, acc1, acc2, acc3 = (load_sums(bias, c), load_sums(bias, c + 16),
                                          load_sums(bias, c + 32), load_sums(bias, c + 48))
                for kx in range(win.kernel_w):
                    ix = left + kx * win.dilation_w
                    for g in range(groups):
                        ky = 4 * g  # the group's first row of taps
                        iy = top + ky * win.dilation_h
                        row = n * stride + (iy * in_w + ix) * channels + c
                        across = 0 <= ix < in_w
                        t0 = load_bytes(x, row, count) if across and 0 <= iy < in_h else zero
                        iy += win.dilation_h
                        t1 = load_bytes(x, row + rows_apart, count) \
                            if across and ky + 1 < win.kernel_h and 0 <= iy < in_h else zero
                        iy += win.dilation_h
                        t2 = load_bytes(x, row + 2 * rows_apart, count) \
                            if across and ky + 2 < win.kernel_h and 0 <= iy < in_h else zero
                        iy += win.dilation_h
                        t3 = load_bytes(x, row + 3 * rows_apart, count) \
                            if across and ky + 3 < win.kernel_h and 0 <= iy < in_h else zero
                        v0, v1, v2, v3 = interleave_taps(t0, t1, t2, t3)
                        w = ((b * win.kernel_w + kx) * groups + g) * 256
                        acc0 = dot_u8s8(acc0, v0, load_weight_quads(flat_weight, w))
                        acc1 = dot_u8s8(acc1, v1, load_weight_quads(flat_weight, w + 64))
                        acc2 = dot_u8s8(acc2, v2, load_weight_quads(flat_weight, w + 128))
                        acc3 = dot_u8s8(acc3, v3, load_weight_quads(flat_weight, w + 192))
                levels = pack_levels(requantize_lanes(acc0, multiplier, c, requant),
                                     requantize_lanes(acc1, multiplier, c + 16, requant),
                                     requantize_lanes(acc2, multiplier, c + 32, requant),
                                     requantize_lanes(acc3, multiplier, c + 48, requant))
                store_packed(out, n * out_stride + (oy * out_w + ox) * channels + c, levels, count)
        p += x1 - x0


@jit
def max_pool2d(x, stride, in_h, in_w, channels, window, out, out_stride, out_h, out_w, images):
    """integer.max_pool2d, channels-last."""
    window = Window(*window)
    for n in range(images):
        for oy in range(out_h):
            for ox in range(out_w):
                o = n * out_stride + (oy * out_w + ox) * channels
                for c in range(channels):
                    out[o + c] = 0
                for ky in range(window.kernel_h):
                    iy = oy * window.stride_h - window.pad_top + ky * window.dilation_h
                    if iy < 0 or iy >= in_h:
                        continue
                    for kx in range(window.kernel_w):
                        ix = ox * window.stride_w - window.pad_left + kx * window.dilation_w
                        if ix < 0 or ix >= in_w:
                            continue
                        source = n * stride + (iy * in_w + ix) * channels
                        for c in range(channels):
                            out[o + c] = max(out[o + c], x[source + c])


@jit
def global_avg_pool(x, stride, pixels, channels, x_zero_point, multiplier, requant, out, out_stride, images):
    """integer.global_avg_pool, channels-last: each image's (pixels, channels) to (channels,), 16
    channels at a time (the sum of x - zero point is the sum of x less pixels * zero point)."""
    multipliers = np.full(16, multiplier, np.float32)
    for n in range(images):
        for c in range(0, channels, 16):
            count = channels - c
            total = splat_int(-pixels * x_zero_point)
            for p in range(pixels):
                total = add_lanes(total, load_levels(x, n * stride + p * channels + c, count))
            store_bytes(out, n * out_stride + c, requantize_lanes(total, multipliers, 0, requant), count)


@jit
def add(a, a_zero_point, a_multiplier, b, b_zero_point, b_multiplier, requant, out, size, stride, images):
    """integer.add on `images` images of `size` bytes, each `stride` bytes from the last, 16 at a time."""
    for n in range(images):
        for i in range(n * stride, n * stride + size, 16):
            count = n * stride + size - i
            store_bytes(out, i, add_requantized(load_levels(a, i, count), a_zero_point, a_multiplier,
                                                load_levels(b, i, count), b_zero_point, b_multiplier, requant), count)


@jit
def flatten(x, stride, height, width, channels, out, out_stride, images):
    """(h, w, c) uint8 images to PyTorch's channel-major (c * h * w) order."""
    for n in range(images):
        i = n * out_stride
        for c in range(channels):
            for y in range(height):
                for xx in range(width):
                    out[i] = x[n * stride + (y * width + xx) * channels + c]
                    i += 1


@jit
def pad(x, stride, in_h, in_w, in_c, border, across, zero_point, out, out_stride, out_c, images):
    """Each (in_h, in_w, in_c) image of x with params.Border rows and columns around it, and out_c
    channels; the new bytes the zero point (the real 0: the padding of the convolution that reads
    it, and channels its weight multiplies by 0). With `across` = (taps, step) other than (1, 1),
    output pixel (y, x) holds the taps of the bordered image at (y, x + j * step), j < taps, one
    after another (in_c channels each): a convolution that reads it has one tap across.
    """
    top, left, bottom, right = border
    taps, step = across
    out_w = left + in_w + right - (taps - 1) * step
    line = in_w * in_c
    for n in range(images):
        o = n * out_stride
        if in_c == out_c and taps == 1:  # the border alone gets the zero point, each row is copied whole
            fill_bytes(out, o, (top * out_w + left) * out_c, zero_point)
            for y in range(in_h):
                source = n * stride + y * line
                target = o + ((top + y) * out_w + left) * out_c
                copy_bytes(out, target, x, source, line)
                fill_bytes(out, target + line, (right + left if y < in_h - 1 else right) * out_c, zero_point)
            fill_bytes(out, o + (top + in_h) * out_w * out_c, bottom * out_w * out_c, zero_point)
            continue
        fill_bytes(out, o, (top + in_h + bottom) * out_w * out_c, zero_point)
        for y in range(in_h):
            source = n * stride + y * line
            target = o + (top + y) * out_w * out_c
            if in_c == 1 and out_c == 4:  # one word per pixel: 16 pixels whose taps all lie inside at a time
                first, stop = left, min(out_w, left + in_w - (taps - 1) * step)
                ox = first
                while ox + 16 <= stop:
                    word = splat_int(0)
                    for j in range(4):
                        taken = load_levels_full(x, source + ox + j * step - left) if j < taps else splat_int(zero_point)
                        word = multiply_add(word, taken, splat_int(1 << (8 * j)))
                    store_lanes(out, target + 4 * ox, word)
                    ox += 16
                done = ox
                for j in range(taps):  # the other columns of tap j inside x: inside .. end - 1
                    inside, end = max(0, left - j * step), min(out_w, left - j * step + in_w)
                    for ox in range(inside, min(first, end)):
                        out[target + 4 * ox + j] = x[source + ox + j * step - left]
                    for ox in range(max(done, inside), end):
                        out[target + 4 * ox + j] = x[source + ox + j * step - left]
                continue
            for j in range(taps):  # tap j of output column ox is column ox + j * step - left of x
                first, stop = max(0, left - j * step), min(out_w, left - j * step + in_w)
                shift = source + (j * step - left) * in_c  # x's byte of output column 0
                if in_c == 1:  # a grayscale image (a loop of one would cost more than its byte)
                    for ox in range(first, stop):
                        out[target + ox * out_c + j] = x[shift + ox]
                    continue
                for ox in range(first, stop):
                    for c in range(in_c):
                        out[target + ox * out_c + j * in_c + c] = x[shift + ox * in_c + c]
