"""The layouts the interpreter shares with its kernels: a table row and the helper's mailbox.

Each is declared once, as fields with their widths in order; the offsets are computed here and
are plain module integers, which Numba folds into the kernels as constants.
"""

from __future__ import annotations

import platform
import sys

# Linux's futex system call number on the machines it is known for (None: no futex here, and so no
# helper thread: a call of one image runs on its own thread).
FUTEX_SYSCALL = {"x86_64": 202, "aarch64": 98}.get(platform.machine()) if sys.platform.startswith("linux") else None
HAS_FUTEX = FUTEX_SYSCALL is not None


class _Layout:
    """Fields of int64 words laid out one after another."""

    def __init__(self) -> None:
        self.size = 0

    def field(self, width: int = 1, *, at: int = -1) -> int:
        """The offset of a new field `width` words wide: right after the last one, or at `at`
        (a word further on, to keep two threads' words apart)."""
        offset = max(self.size, at)
        self.size = offset + width
        return offset


(OP_CONV, OP_WINOGRAD, OP_DEPTHWISE, OP_GROUPED, OP_SCALE_SHIFT, OP_MAX_POOL, OP_AVG_POOL, OP_MEAN, OP_SOFTMAX,
 OP_SIGMOID, OP_ADD, OP_FLATTEN, OP_DEQUANTIZE) = range(13)
# Rows of int8 computation (rows_int8.py): their values are uint8, each image in whole float32 words of the arena
(OP_QUANTIZE_U8, OP_TO_FLOAT_U8, OP_CONV_U8, OP_DEPTHWISE_U8, OP_MAX_POOL_U8, OP_MEAN_U8, OP_ADD_U8,
 OP_FLATTEN_U8, OP_PAD_U8) = range(13, 22)
STORAGE_I8, STORAGE_F16, STORAGE_BF16 = 0, 1, 2  # a DEQUANTIZE row's source (format.DTYPES' I8, F16, BF16)

# A row: one kernel call on one pass of images. A value is (offset, h, w, c) of one image (a rank-2
# value's image is (1, 1, f)), N images from the offset on; offsets count float32 elements of the arena.
_row = _Layout()
OPCODE = _row.field()  # OP_*
KERNEL = _row.field()  # the address of the row kernel (pdinfer/kernels/rows.py) that runs it
IMAGES = _row.field()  # N
X = _row.field(4)  # the input value
RESIDUAL = _row.field(4)  # a second input (a convolution's residual, Add's other operand): offset -1 for none
OUT = _row.field(4)  # the output value
WEIGHT = _row.field(6)  # (address, d0, .., d4): the weight and its shape padded with 1s (a scale_shift's scale;
#                         a DEQUANTIZE row's stored weight)
WEIGHT_IN_ARENA = _row.field()  # 1: WEIGHT's address is an offset in the arena, where a DEQUANTIZE row widened it
BIAS = _row.field(2)  # (address, size) (a scale_shift's shift; a DEQUANTIZE row's int8 scales)
STORAGE = _row.field()  # a DEQUANTIZE row's STORAGE_*; it writes the float32 weight at the arena offset row[OUT]
ACTIVATION = _row.field()  # params.Activation's code (its slope is the row's entry of the table's slopes)
WINDOW = _row.field(10)  # params.Window
BORDER = _row.field(4)  # params.Border
POOL = _row.field()  # 1: the convolution writes its 2x2 max pool
SCRATCH = _row.field(3)  # Winograd's v and m: (v offset, m offset, tiles of a group)
AVERAGE = _row.field(2)  # avg_pool2d's count_include_pad (0 or 1) and divisor_override
CHUNKS = _row.field()  # > 0: a helper thread may take some of the row's chunks (conv2d's or Winograd's `part`)
BY_CHANNELS = _row.field()  # 1: the chunks are blocks of output channels (the kernels' `channels`), not pixels
HELPER_SCRATCH = _row.field(2)  # Winograd's v and m for the helper's chunks: (v offset, m offset)
ZERO_POINTS = _row.field(3)  # int8 rows: the zero points of the input, of the second input (Add), of the output
BOUNDS = _row.field(2)  # int8 rows: the output's Requant low and high (its slope: the row's entry of the slopes)
MULTIPLIERS = _row.field(2)  # int8 rows: (address, size) of float32: a convolution's per channel, a mean's one,
#                              an Add's two; OP_QUANTIZE_U8's and OP_TO_FLOAT_U8's scale
VARIANT = _row.field()  # OP_CONV_U8: params.PLAIN, VNNI, AVX2 or BEST; OP_DEPTHWISE_U8: PLAIN or VNNI (its operands' layout)
ROW = _row.size

# The mailbox of the helper thread (int64 words; the words the two threads write are 64 bytes apart).
_box = _Layout()
STATE = _box.field()  # 1 while a call holds the helper (it polls for jobs), 0 when not (it sleeps), -1: exit
SPINS = _box.field()  # polls of STATE the helper makes after a call before it sleeps (program.HELPER_SPINS)
JOB = _box.field(at=8)  # the number of the latest job: a row posted for sharing
CLAIM = _box.field(at=16)  # (job << CLAIM_BITS) | (chunks taken from the back << COUNT_BITS) | chunks taken from the front
DONE = _box.field(at=24)  # chunks of the job the helper has finished
FAILED = _box.field()  # 1 if a chunk of the helper failed
TAKEN = _box.field()  # chunks the helper has run, ever (for tests and profiling)
ARENA = _box.field(2, at=32)  # the job's arena: (address, floats)
SLOPE = _box.field()  # the address of the job's slope (float32)
JOB_ROW = _box.field(ROW, at=40)  # a copy of the job's row
BOX = _box.size
COUNT_BITS = 10  # a claim word holds two chunk counts of this many bits in its low bits, the job number above them
CLAIM_BITS = 2 * COUNT_BITS
