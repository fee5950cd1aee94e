"""Row kernels: one C function per kind of table row, each compiled and cached on its own.

A row kernel reads its row (pdinfer/kernels/table.py), makes views of its values in the call's
arena and of its weights at their addresses, and calls its fast kernel (fast.py, reference.py).
They all have one C signature (pointers.ROW_KERNEL):

    (row address, arena address, arena floats, slope, chunk, chunks, scratch field) -> 0, or 1 if it failed

`chunk` of `chunks` is the part of a shared convolution row this call writes ((0, 1): all of it);
`scratch` is the row field holding its Winograd scratch offsets (table.SCRATCH, or
table.HELPER_SCRATCH on the helper thread). The interpreter (pdinfer/kernels/program.py) calls a
row's kernel through the address stored in the row, so it holds no kernel code itself: each kernel
is compiled once (on first use by a table, or by `pdinfer warmup`), not again inside every
interpreter that calls it.
"""

from __future__ import annotations

import threading

from .._jit import cfunc, jit
from .fast import (avg_pool2d, conv2d, depthwise_conv2d, global_avg_pool, grouped_conv2d, half_to_float32,
                   int8_to_float32, max_pool2d, scale_shift, winograd_conv3x3)
from .pointers import ROW_KERNEL, float32_array, int64_array, int8_array, uint16_array
from .reference import add, sigmoid, softmax_rows
from .table import (ACTIVATION, AVERAGE, BIAS, BORDER, BY_CHANNELS, IMAGES, OP_ADD, OP_AVG_POOL, OP_CONV,
                    OP_DEPTHWISE, OP_DEQUANTIZE, OP_FLATTEN, OP_GROUPED, OP_MAX_POOL, OP_MEAN, OP_SCALE_SHIFT,
                    OP_SIGMOID, OP_SOFTMAX, OP_WINOGRAD, OUT, POOL, RESIDUAL, ROW, SCRATCH, STORAGE, STORAGE_BF16,
                    STORAGE_I8, WEIGHT, WEIGHT_IN_ARENA, WINDOW, X)


# ---------------------------------------------------------------------------- reading a row

@jit
def _value(arena, row, field):
    """The N images of the value at row[field:field + 4] as an (N, h, w, c) view of the arena."""
    offset, n = row[field], row[IMAGES]
    h, w, c = row[field + 1], row[field + 2], row[field + 3]
    return arena[offset:offset + n * h * w * c].reshape((n, h, w, c))


@jit
def _residual(arena, row):
    """The row's second input as _value's view, or an empty (0, 0, 0, 0) array for none."""
    if row[RESIDUAL] < 0:
        return arena[:0].reshape((0, 0, 0, 0))
    return _value(arena, row, RESIDUAL)


@jit
def _weight_size(row):
    """The number of elements of the row's weight."""
    return row[WEIGHT + 1] * row[WEIGHT + 2] * row[WEIGHT + 3] * row[WEIGHT + 4] * row[WEIGHT + 5]


@jit
def _weight(row, arena):
    """The row's weight as a flat float32 array: at its address, or in the arena."""
    if row[WEIGHT_IN_ARENA]:
        return arena[row[WEIGHT]:row[WEIGHT] + _weight_size(row)]
    return float32_array(row[WEIGHT], _weight_size(row))


@jit
def _bias(row):
    """The row's bias (a scale_shift's shift), (size,) float32."""
    return float32_array(row[BIAS], row[BIAS + 1])


@jit
def _window(row):
    """The row's params.Window, as a plain tuple."""
    return (row[WINDOW], row[WINDOW + 1], row[WINDOW + 2], row[WINDOW + 3], row[WINDOW + 4], row[WINDOW + 5],
            row[WINDOW + 6], row[WINDOW + 7], row[WINDOW + 8], row[WINDOW + 9])


@jit
def _border(row):
    """The row's params.Border, as a plain tuple."""
    return row[BORDER], row[BORDER + 1], row[BORDER + 2], row[BORDER + 3]


@jit
def _share(row, out_c, chunk, chunks):
    """(part, channels) of a convolution's chunk: its pixels (tiles) `chunk` of `chunks`, or, for a
    row shared by output channels, its blocks of 32 of them (as the kernels' `part` and `channels`)."""
    if row[BY_CHANNELS]:
        blocks = -(-out_c // 32)
        return (0, 1, 1), (32 * (blocks * chunk // chunks), min(out_c, 32 * (blocks * (chunk + 1) // chunks)))
    return (chunk, chunk + 1, chunks), (0, out_c)


@jit
def _copy(source, target):
    """target[i] = source[i] for flat arrays of one size."""
    for i in range(source.size):
        target[i] = source[i]


# ---------------------------------------------------------------------------- the row kernels
# Each is (row_at, arena_at, floats, slope, chunk, chunks, scratch) -> status (see the module docstring).

def conv_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.conv2d: a one-group convolution or a Linear."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        out = _value(arena, row, OUT)
        part, channels = _share(row, out.shape[3], chunk, chunks)
        weight = _weight(row, arena).reshape((row[WEIGHT + 1], row[WEIGHT + 2]))
        conv2d(_value(arena, row, X), weight, _bias(row), _residual(arena, row), (row[ACTIVATION], slope),
               _window(row), out, _border(row), part, channels, row[POOL] != 0)
    except Exception:  # noqa: B902  (a C function reports a failure by its result)
        return 1
    return 0


def winograd_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.winograd_conv3x3, with its scratch at row[scratch:scratch + 2] (tiles at row[SCRATCH + 2])."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        x, out = _value(arena, row, X), _value(arena, row, OUT)
        part, channels = _share(row, out.shape[3], chunk, chunks)
        u = _weight(row, arena).reshape((row[WEIGHT + 1], row[WEIGHT + 2], row[WEIGHT + 3]))
        v_at, m_at, tiles = row[scratch], row[scratch + 1], row[SCRATCH + 2]
        in_c, out_c = x.shape[3], out.shape[3]
        winograd_conv3x3(x, u, _bias(row), _residual(arena, row), (row[ACTIVATION], slope), _window(row), out,
                         _border(row), part, channels, arena[v_at:v_at + 16 * tiles * in_c].reshape((16, tiles, in_c)),
                         arena[m_at:m_at + 16 * tiles * out_c].reshape((16, tiles, out_c)), row[POOL] != 0)
    except Exception:  # noqa: B902
        return 1
    return 0


def depthwise_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.depthwise_conv2d."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        weight = _weight(row, arena).reshape((row[WEIGHT + 1], row[WEIGHT + 2]))
        out = _value(arena, row, OUT)
        part, _ = _share(row, out.shape[3], chunk, chunks)
        depthwise_conv2d(_value(arena, row, X), weight, _bias(row), (row[ACTIVATION], slope), _window(row), out,
                         _border(row), part)
    except Exception:  # noqa: B902
        return 1
    return 0


def grouped_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.grouped_conv2d: a convolution of several groups that are not depthwise."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        out = _value(arena, row, OUT)
        weight = _weight(row, arena).reshape((row[WEIGHT + 1], row[WEIGHT + 2], row[WEIGHT + 3], row[WEIGHT + 4],
                                       row[WEIGHT + 5]))
        result = grouped_conv2d(_value(arena, row, X), weight, _bias(row), (row[ACTIVATION], slope), _window(row),
                                out.shape[1], out.shape[2])
        _copy(result.reshape(-1), out.reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def scale_shift_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.scale_shift: a BatchNorm2d or activation alone."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        x = _value(arena, row, X)
        result = scale_shift(x.reshape((-1, x.shape[3])), _weight(row, arena), _bias(row), (row[ACTIVATION], slope))
        _copy(result.reshape(-1), _value(arena, row, OUT).reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def max_pool_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.max_pool2d."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        max_pool2d(_value(arena, row, X), _window(row), _value(arena, row, OUT), _border(row))
    except Exception:  # noqa: B902
        return 1
    return 0


def avg_pool_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.avg_pool2d."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        out = _value(arena, row, OUT)
        result = avg_pool2d(_value(arena, row, X), _window(row), row[AVERAGE] != 0, row[AVERAGE + 1],
                            out.shape[1], out.shape[2])
        _copy(result.reshape(-1), out.reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def mean_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.global_avg_pool."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        _copy(global_avg_pool(_value(arena, row, X)).reshape(-1), _value(arena, row, OUT).reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def softmax_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """reference.softmax_rows over the channels."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        x = _value(arena, row, X)
        _copy(softmax_rows(x.reshape((-1, x.shape[3]))).reshape(-1), _value(arena, row, OUT).reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def sigmoid_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """reference.sigmoid."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        _copy(sigmoid(_value(arena, row, X).reshape(-1)), _value(arena, row, OUT).reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def add_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """reference.add of the row's input and its second input."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    try:
        result = add(_value(arena, row, X).reshape(-1), _residual(arena, row).reshape(-1))
        _copy(result, _value(arena, row, OUT).reshape(-1))
    except Exception:  # noqa: B902
        return 1
    return 0


def flatten_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """(N, h, w, c) to PyTorch's channel-major (N, c * h * w)."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    x, flat = _value(arena, row, X), _value(arena, row, OUT).reshape(-1)
    n, height, width, channels = x.shape
    i = 0
    for image in range(n):
        for c in range(channels):
            for y in range(height):
                for xx in range(width):
                    flat[i] = x[image, y, xx, c]
                    i += 1
    return 0


def dequantize_row(row_at, arena_at, floats, slope, chunk, chunks, scratch):
    """fast.int8_to_float32 or fast.half_to_float32: widen the stored weight at row[WEIGHT] (its
    packed layout, (A, K, C) for int8 with its (A, C) scales at row[BIAS]) to float32 at arena
    offset row[OUT], for the next row to read (WEIGHT_IN_ARENA)."""
    row, arena = int64_array(row_at, ROW), float32_array(arena_at, floats)
    size = _weight_size(row)
    out = arena[row[OUT]:row[OUT] + size]
    if row[STORAGE] == STORAGE_I8:
        groups, columns = row[WEIGHT + 1], row[WEIGHT + 3]
        shape = (groups, row[WEIGHT + 2], columns)
        int8_to_float32(int8_array(row[WEIGHT], size).reshape(shape),
                        float32_array(row[BIAS], row[BIAS + 1]).reshape((groups, columns)), out.reshape(shape))
    else:
        half_to_float32(uint16_array(row[WEIGHT], size), row[STORAGE] == STORAGE_BF16, out)
    return 0


ROW_KERNELS = {OP_CONV: conv_row, OP_WINOGRAD: winograd_row, OP_DEPTHWISE: depthwise_row, OP_GROUPED: grouped_row,
               OP_SCALE_SHIFT: scale_shift_row, OP_MAX_POOL: max_pool_row, OP_AVG_POOL: avg_pool_row,
               OP_MEAN: mean_row, OP_SOFTMAX: softmax_row, OP_SIGMOID: sigmoid_row, OP_ADD: add_row,
               OP_FLATTEN: flatten_row, OP_DEQUANTIZE: dequantize_row}
_compiled: dict = {}  # opcode -> numba CFunc (kept: it owns the code at its address)
_compiling = threading.Lock()


def all_row_kernels() -> dict:
    """opcode -> row kernel, the int8 ones (rows_int8.py) included."""
    from .rows_int8 import INT8_ROW_KERNELS  # (it builds on this module's readers)
    return {**ROW_KERNELS, **INT8_ROW_KERNELS}


def kernel_address(opcode: int) -> int:
    """The address of the row kernel of `opcode`, compiled (or loaded from Numba's cache) on first use."""
    with _compiling:
        if opcode not in _compiled:
            _compiled[opcode] = cfunc(ROW_KERNEL, all_row_kernels()[opcode])
        return _compiled[opcode].address


def compile_all() -> None:
    """Compile (or load) every row kernel."""
    for opcode in all_row_kernels():
        kernel_address(opcode)

