"""Row kernels of int8 computation: rows.py's signature and verbs, on uint8 values (fast_int8.py).

A uint8 value's row field is rows.py's (offset, h, w, c), the offset in float32 words of the arena;
its N images lie `image_bytes(h, w, c)` bytes apart from there.
"""

from __future__ import annotations

from .._jit import jit
from .fast_int8 import (add, conv2d, depthwise_conv2d, depthwise_conv2d_vnni, dequantize, flatten, global_avg_pool, max_pool2d,
                        pad, quantize)
from .params import AVX2, BEST, PLAIN, VNNI
from .pointers import float32_array, int8_array, int32_array, int64_array, uint8_array
from .rows import _border, _share, _value, _window
from .simd_int8 import HAS_AVX2, HAS_VNNI
from .table import (BIAS, BOUNDS, IMAGES, MULTIPLIERS, OP_ADD_U8, OP_CONV_U8, OP_DEPTHWISE_U8, OP_FLATTEN_U8,
                    OP_MAX_POOL_U8, OP_MEAN_U8, OP_PAD_U8, OP_QUANTIZE_U8, OP_TO_FLOAT_U8, OUT, POOL, RESIDUAL, ROW, VARIANT,
                    WEIGHT, X, ZERO_POINTS)


@jit
def image_bytes(h, w, c):
    """The bytes one uint8 image of (h, w, c) takes in the arena: whole float32 words."""
    return 4 * -(-(h * w * c) // 4)


@jit
def _uint8_value(arena_at, row, field):
    """The N images of the uint8 value at row[field:field + 4]: (flat bytes, bytes per image)."""
    stride = image_bytes(row[field + 1], row[field + 2], row[field + 3])
    return uint8_array(arena_at + 4 * row[field], row[IMAGES] * stride), stride


@jit
def _multipliers(row):
    """The row's float32 multipliers (or scale)."""
    return float32_array(row[MULTIPLIERS], row[MULTIPLIERS + 1])


@jit
def _requant(row, slope):
    """The row's params.Requant, as a plain tuple."""
    return row[ZERO_POINTS + 2], row[BOUNDS], row[BOUNDS + 1], slope


def quantize_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.quantize: the float32 value at X to uint8 at OUT (scale: the multiplier; zero point: the output's)."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    x = _value(arena, row, X)
    out, stride = _uint8_value(arena_at, row, OUT)
    size = x.shape[1] * x.shape[2] * x.shape[3]
    flat = x.reshape(-1)
    for n in range(x.shape[0]):
        quantize(flat[n * size:(n + 1) * size], _multipliers(row)[0], row[ZERO_POINTS + 2], out[n * stride:n * stride + size])
    return 0


def to_float_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.dequantize: the uint8 value at X to float32 at OUT (scale: the multiplier; zero point: the input's)."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    x, stride = _uint8_value(arena_at, row, X)
    out = _value(arena, row, OUT)
    size = out.shape[1] * out.shape[2] * out.shape[3]
    flat = out.reshape(-1)
    for n in range(out.shape[0]):
        dequantize(x[n * stride:n * stride + size], _multipliers(row)[0], row[ZERO_POINTS], flat[n * size:(n + 1) * size])
    return 0


def conv_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.conv2d: a one-group convolution or a Linear [with its 2x2 max pool: row[POOL]], by the
    matrix product of row[VARIANT] (params.BEST: VNNI where the CPU has it, else AVX2 where it has that)."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    packed_quads, out_padded = row[WEIGHT + 1], row[WEIGHT + 2]
    weight = int8_array(row[WEIGHT], packed_quads * out_padded * 4).reshape((packed_quads, out_padded, 4))
    out_c = row[OUT + 3]
    part, _ = _share(row, out_c, chunk, chunks)
    variant = row[VARIANT] if row[VARIANT] != BEST else (VNNI if HAS_VNNI else AVX2 if HAS_AVX2 else PLAIN)
    conv2d(x, stride, row[X + 1], row[X + 2], row[X + 3], row[ZERO_POINTS], weight,
           int32_array(row[BIAS], row[BIAS + 1]), _multipliers(row), _requant(row, slope), _window(row), out, out_stride,
           row[OUT + 1], row[OUT + 2], out_c, row[IMAGES], part, variant, row[POOL] != 0)
    return 0


def pad_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.pad: the value at X with row[BORDER] and its channels up to OUT's, its zero point in both;
    row[WINDOW]'s taps across (kernel_w, dilation_w) side by side in each pixel."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    window = _window(row)
    pad(x, stride, row[X + 1], row[X + 2], row[X + 3], _border(row), (window[1], window[9]), row[ZERO_POINTS], out,
        out_stride, row[OUT + 3], row[IMAGES])
    return 0


def depthwise_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.depthwise_conv2d, or depthwise_conv2d_vnni (row[VARIANT] VNNI: its operands' layout)."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    part, _ = _share(row, row[OUT + 3], chunk, chunks)
    if row[VARIANT] == VNNI:
        blocks, columns, groups = row[WEIGHT + 1], row[WEIGHT + 2], row[WEIGHT + 3]
        depthwise_conv2d_vnni(x, stride, row[X + 1], row[X + 2], row[X + 3], row[ZERO_POINTS],
                              int8_array(row[WEIGHT], blocks * columns * groups * 256).reshape((blocks, columns, groups, 256)),
                              int32_array(row[BIAS], row[BIAS + 1]), _multipliers(row), _requant(row, slope),
                              _window(row), out, out_stride, row[OUT + 1], row[OUT + 2], row[IMAGES], part)
        return 0
    taps, padded = row[WEIGHT + 1], row[WEIGHT + 2]
    depthwise_conv2d(x, stride, row[X + 1], row[X + 2], row[X + 3], row[ZERO_POINTS],
                     int8_array(row[WEIGHT], taps * padded).reshape((taps, padded)),
                     int32_array(row[BIAS], 2 * padded).reshape((2, padded)),
                     _multipliers(row), _requant(row, slope), _window(row), out, out_stride, row[OUT + 1], row[OUT + 2],
                     row[IMAGES], part)
    return 0


def max_pool_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.max_pool2d."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    max_pool2d(x, stride, row[X + 1], row[X + 2], row[X + 3], _window(row), out, out_stride, row[OUT + 1], row[OUT + 2],
               row[IMAGES])
    return 0


def mean_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.global_avg_pool."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    global_avg_pool(x, stride, row[X + 1] * row[X + 2], row[X + 3], row[ZERO_POINTS], _multipliers(row)[0],
                    _requant(row, slope), out, out_stride, row[IMAGES])
    return 0


def add_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.add of the values at X and RESIDUAL."""
    row = int64_array(row_at, ROW)
    a, stride = _uint8_value(arena_at, row, X)
    b, _ = _uint8_value(arena_at, row, RESIDUAL)
    out, _ = _uint8_value(arena_at, row, OUT)
    multipliers = _multipliers(row)
    add(a, row[ZERO_POINTS], multipliers[0], b, row[ZERO_POINTS + 1], multipliers[1], _requant(row, slope), out,
        row[X + 1] * row[X + 2] * row[X + 3], stride, row[IMAGES])
    return 0


def flatten_u8_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast_int8.flatten: (N, h, w, c) to PyTorch's channel-major (N, c * h * w)."""
    row = int64_array(row_at, ROW)
    x, stride = _uint8_value(arena_at, row, X)
    out, out_stride = _uint8_value(arena_at, row, OUT)
    flatten(x, stride, row[X + 1], row[X + 2], row[X + 3], out, out_stride, row[IMAGES])
    return 0


INT8_ROW_KERNELS = {OP_QUANTIZE_U8: quantize_u8_row, OP_TO_FLOAT_U8: to_float_u8_row, OP_CONV_U8: conv_u8_row,
                    OP_DEPTHWISE_U8: depthwise_u8_row, OP_MAX_POOL_U8: max_pool_u8_row, OP_MEAN_U8: mean_u8_row,
                    OP_ADD_U8: add_u8_row, OP_FLATTEN_U8: flatten_u8_row, OP_PAD_U8: pad_u8_row}
