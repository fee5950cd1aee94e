"""The interpreter of a compiled plan: one Numba call runs every step of a chunk of images.

A Python loop over a plan's steps pays Numba's dispatch (typing and unboxing ten arguments, about
2-3 us) per step, and a thread coming back from a kernel waits for the GIL, which another thread
running Python between its own kernels may hold (a wake-up takes 35-40 us on a VM). So a plan whose
steps all have a form here runs as a table (pdinfer/program.py): a row per step and pass of images,
each naming its kernel, where its arrays are (values: offsets in the call's float32 `arena`; weights
and biases: their addresses, pointers.float32_array) and its parameter structs, flat. run_program
calls the same kernels with the same arguments the Python loop would: same answers, bit for bit.

Numba's disk cache keys this function on this file only: after editing a kernel it calls (fast.py,
reference.py, simd.py), clear the __pycache__ directories, or its cached copy keeps the old kernel.
"""

from .._jit import jit
from .fast import (avg_pool2d, conv2d, depthwise_conv2d, global_avg_pool, grouped_conv2d, max_pool2d, scale_shift,
                   winograd_conv3x3)
from .pointers import (atomic_add, atomic_load, atomic_store, compare_exchange, float32_array, futex_wait, futex_wake,
                       spin_pause)
from .reference import add, sigmoid, softmax_rows

(OP_CONV, OP_WINOGRAD, OP_DEPTHWISE, OP_GROUPED, OP_SCALE_SHIFT, OP_MAX_POOL, OP_AVG_POOL, OP_MEAN, OP_SOFTMAX,
 OP_SIGMOID, OP_ADD, OP_FLATTEN) = range(12)
# The kernels run_program compiles only for tables using them (its has_* arguments): the big ones,
# and those that fusion seldom leaves (a grouped convolution, a BatchNorm or activation alone, an
# average pool, an Add that follows no dense convolution).
OPTIONAL = ((OP_WINOGRAD,), (OP_DEPTHWISE,), (OP_MAX_POOL,), (OP_GROUPED, OP_SCALE_SHIFT, OP_AVG_POOL, OP_ADD))

# The fields of a row. A value is (offset, h, w, c) of one image (a rank-2 value's image is (1, 1, f)),
# N images from the offset on. Offsets count float32 elements.
OPCODE, IMAGES = 0, 1
X, RESIDUAL, OUT = 2, 6, 10  # values: (offset, h, w, c); RESIDUAL (an Add's second input) -1 for none
WEIGHT = 14  # (address, d0, .., d4): the weight and its shape padded with 1s (a scale_shift's scale)
BIAS = 20  # (address, size) (a scale_shift's shift)
ACTIVATION = 22  # params.Activation's code (its slope is the row's entry of `slopes`)
WINDOW = 23  # params.Window, ten fields
BORDER = 33  # params.Border, four fields
POOL = 37  # 1: the convolution writes its 2x2 max pool
SCRATCH = 38  # Winograd's v and m: (v offset, m offset, tiles of a group)
AVERAGE = 41  # avg_pool2d's count_include_pad (0 or 1) and divisor_override
CHUNKS = 43  # > 0: a helper thread may take some of the row's chunks (conv2d's or Winograd's `part`)
BY_CHANNELS = 44  # 1: the chunks are blocks of output channels (the kernels' `channels`), not of pixels
HELPER_SCRATCH = 45  # Winograd's v and m for the helper's chunks: (v offset, m offset)
ROW = 47

# The mailbox of the helper thread (int64 words; the words two threads write are 64 bytes apart).
STATE = 0  # 1 while a call holds the helper (it polls for jobs), 0 when not (it sleeps), -1: exit
JOB = 8  # the number of the latest job: a row posted for sharing
CLAIM = 16  # (job << 20) | the next chunk of it to take
DONE = 24  # chunks of the job the helper has finished
FAILED = 25  # 1 if a chunk of the helper raised
TAKEN = 26  # chunks the helper has run, ever (for tests and profiling)
ARENA, SLOPE = 32, 34  # the job's arena (address, floats), and its slope's address
JOB_ROW = 40  # a copy of the job's row
BOX = JOB_ROW + ROW

@jit
def _value(arena, row, field):
    """The N images of the value at row[field:field + 4] as an (N, h, w, c) view of the arena."""
    offset, n = row[field], row[IMAGES]
    h, w, c = row[field + 1], row[field + 2], row[field + 3]
    return arena[offset:offset + n * h * w * c].reshape((n, h, w, c))


@jit
def _copy(source, target):
    """target[i] = source[i] for flat arrays of one size."""
    for i in range(source.size):
        target[i] = source[i]


@jit
def run_program(rows, slopes, arena, box, has_winograd, has_depthwise, has_max_pool, has_unfused):
    """Run a table's rows in order.

    rows:   (R, ROW) int64, the fields above
    slopes: (R,) float32, LeakyReLU's slope of each row's activation
    arena:  (A,) float32, the call's values: its input written, its output read after
    box:    (BOX,) int64, the mailbox of a helper thread this call owns, or empty for none: a row
            with CHUNKS is then shared with it
    has_*:  True if the table has rows of OPTIONAL[i], None if not. Numba drops the branches of None
            arguments before compiling, so a model compiles (and loads from the cache) only those
            kernels it uses: every kernel in one function took 14 s to compile, PDLightModel's alone
            5.6 s. The small common ones are always in (a flag per kernel made the tests' random
            graphs compile a hundred versions of this function).
    """
    for r in range(rows.shape[0]):
        # A shared row (row[CHUNKS] > 0, with a helper) is posted as a job (post_row), and this
        # thread and the helper (serve) claim its chunks until none is left; this thread then waits
        # for the chunks the helper took. A helper that is late takes none. One call of run_row
        # here, not one per path: each call site compiles (and LLVM inlines) every kernel again.
        row = rows[r]
        chunks = row[CHUNKS] if box.size > 0 else 0
        job = post_row(row, slopes[r:r + 1], arena, box) if chunks > 0 else 0
        chunk = _claim(box, job, chunks) if chunks > 0 else 0
        mine, failed = 0, False
        while chunk >= 0:
            try:
                run_row(row, slopes[r], arena, (chunk, max(chunks, 1)), SCRATCH, has_winograd, has_depthwise,
                        has_max_pool, has_unfused)
            except Exception:  # noqa: B902  (a shared row waits for the helper before raising)
                failed = True
            mine += 1
            chunk = _claim(box, job, chunks) if chunks > 0 else -1
        while chunks > 0 and atomic_load(box, DONE) < chunks - mine:
            spin_pause()
        if failed or (chunks > 0 and atomic_load(box, FAILED) != 0):
            raise RuntimeError("pdinfer: a kernel of the compiled plan failed")


@jit
def run_row(row, slope, arena, chunk, scratch, has_winograd, has_depthwise, has_max_pool, has_unfused):
    """One row: its kernel on its arrays. A convolution writes only chunk (i, chunks) of its output
    ((0, 1) for all of it), with Winograd's scratch at row[scratch:scratch + 2]."""
    no_residual = arena[:0].reshape((0, 0, 0, 0))
    op, n = row[OPCODE], row[IMAGES]
    x, out = _value(arena, row, X), _value(arena, row, OUT)
    activation = (row[ACTIVATION], slope)
    window = (row[WINDOW], row[WINDOW + 1], row[WINDOW + 2], row[WINDOW + 3], row[WINDOW + 4],
              row[WINDOW + 5], row[WINDOW + 6], row[WINDOW + 7], row[WINDOW + 8], row[WINDOW + 9])
    border = (row[BORDER], row[BORDER + 1], row[BORDER + 2], row[BORDER + 3])
    w_at, d0, d1, d2 = row[WEIGHT], row[WEIGHT + 1], row[WEIGHT + 2], row[WEIGHT + 3]
    d3, d4 = row[WEIGHT + 4], row[WEIGHT + 5]
    bias = float32_array(row[BIAS], row[BIAS + 1])
    residual = _value(arena, row, RESIDUAL) if row[RESIDUAL] >= 0 else no_residual
    i, chunks = chunk
    part, channels = (i, i + 1, chunks), (0, out.shape[3])  # the chunk's pixels (tiles) ...
    if row[BY_CHANNELS]:  # ... or its output channels, in blocks of 32
        blocks = -(-out.shape[3] // 32)
        part, channels = (0, 1, 1), (32 * (blocks * i // chunks), min(out.shape[3], 32 * (blocks * (i + 1) // chunks)))
    if op == OP_CONV:
        conv2d(x, float32_array(w_at, d0 * d1).reshape((d0, d1)), bias, residual, activation, window, out,
               border, part, channels, row[POOL] != 0)
    elif op == OP_WINOGRAD and has_winograd is not None:
        v_at, m_at, tiles = row[scratch], row[scratch + 1], row[SCRATCH + 2]
        in_c, out_c = x.shape[3], out.shape[3]
        winograd_conv3x3(x, float32_array(w_at, d0 * d1 * d2).reshape((d0, d1, d2)), bias, residual,
                         activation, window, out, border, part, channels,
                         arena[v_at:v_at + 16 * tiles * in_c].reshape((16, tiles, in_c)),
                         arena[m_at:m_at + 16 * tiles * out_c].reshape((16, tiles, out_c)), row[POOL] != 0)
    elif op == OP_DEPTHWISE and has_depthwise is not None:
        depthwise_conv2d(x, float32_array(w_at, d0 * d1).reshape((d0, d1)), bias, activation, window, out, border)
    elif op == OP_GROUPED and has_unfused is not None:
        weight = float32_array(w_at, d0 * d1 * d2 * d3 * d4).reshape((d0, d1, d2, d3, d4))
        _copy(grouped_conv2d(x, weight, bias, activation, window, out.shape[1], out.shape[2]).reshape(-1),
              out.reshape(-1))
    elif op == OP_SCALE_SHIFT and has_unfused is not None:
        _copy(scale_shift(x.reshape((-1, x.shape[3])), float32_array(w_at, d0), bias, activation).reshape(-1),
              out.reshape(-1))
    elif op == OP_MAX_POOL and has_max_pool is not None:
        max_pool2d(x, window, out, border)
    elif op == OP_AVG_POOL and has_unfused is not None:
        _copy(avg_pool2d(x, window, row[AVERAGE] != 0, row[AVERAGE + 1], out.shape[1], out.shape[2]).reshape(-1),
              out.reshape(-1))
    elif op == OP_MEAN:
        _copy(global_avg_pool(x).reshape(-1), out.reshape(-1))
    elif op == OP_SOFTMAX:
        _copy(softmax_rows(x.reshape((-1, x.shape[3]))).reshape(-1), out.reshape(-1))
    elif op == OP_SIGMOID:
        _copy(sigmoid(x.reshape(-1)), out.reshape(-1))
    elif op == OP_ADD and has_unfused is not None:
        _copy(add(x.reshape(-1), residual.reshape(-1)), out.reshape(-1))
    elif op == OP_FLATTEN:  # (N, h, w, c) to PyTorch's channel-major (N, c * h * w)
        flat = out.reshape(-1)
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        i = 0
        for image in range(n):
            for c in range(channels):
                for y in range(height):
                    for xx in range(width):
                        flat[i] = x[image, y, xx, c]
                        i += 1


# ---------------------------------------------------------------------------- sharing a row

@jit
def _claim(box, job, chunks):
    """The next chunk of `job` for this thread, or -1 if every one is taken (or the job is over)."""
    while True:
        word = atomic_load(box, CLAIM)
        if word >> 20 != job or word & 0xFFFFF >= chunks:
            return -1
        if compare_exchange(box, CLAIM, word, word + 1):
            return word & 0xFFFFF


@jit
def post_row(row, slope, arena, box):
    """Post a row for the helper thread (serve) to take chunks of; returns the job's number.
    slope: (1,) float32, the row's slope (the helper reads it by address)"""
    job = atomic_load(box, JOB) + 1
    for i in range(ROW):
        box[JOB_ROW + i] = row[i]
    box[ARENA], box[ARENA + 1] = arena.ctypes.data, arena.size
    box[SLOPE] = slope.ctypes.data
    atomic_store(box, DONE, 0)
    atomic_store(box, FAILED, 0)
    atomic_store(box, CLAIM, job << 20)
    atomic_store(box, JOB, job)  # posted: the fields above are the job's
    return job


@jit
def signal(box, state):
    """Set the helper's state, and wake it if it sleeps."""
    atomic_store(box, STATE, state)
    futex_wake(box, STATE)


@jit
def serve(box):
    """The helper thread's loop, until box[STATE] is -1: sleep while it is 0; while it is 1, take
    chunks of each job posted (post_row)."""
    seen = atomic_load(box, JOB)
    while True:
        state = atomic_load(box, STATE)
        if state < 0:
            return
        if state == 0:
            futex_wait(box, STATE, 0)
            continue
        job = atomic_load(box, JOB)
        if job == seen:
            spin_pause()
            continue
        seen = job
        row = box[JOB_ROW:JOB_ROW + ROW].copy()  # read after the job number: the job's own fields
        arena = float32_array(box[ARENA], box[ARENA + 1])
        slope = float32_array(box[SLOPE], 1)[0]
        while True:
            chunk = _claim(box, job, row[CHUNKS])
            if chunk < 0:
                break
            try:
                run_row(row, slope, arena, (chunk, row[CHUNKS]), HELPER_SCRATCH, True, None, None, None)
            except Exception:  # noqa: B902  (the caller raises it)
                atomic_store(box, FAILED, 1)
            atomic_add(box, TAKEN, 1)
            atomic_add(box, DONE, 1)
