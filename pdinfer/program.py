"""A plan compiled to tables for pdinfer/kernels/program.py: one executor for every plan.

`Program` holds a plan's lowered steps; each says, as an `Op`, what its kernel reads and writes and
its parameters. On the first call with N images it builds the table of that call from the Ops: a
row per step and pass of images (the plan's segments), a DEQUANTIZE row before each compressed
weight's convolution, and the place of every value in one float32 arena, planned from the values'
lifetimes (first fit, in order of first use, so the passes of a segment reuse the same memory). A
step with no row kernel (a HOST step) cuts the table in parts: Python runs it on views of the arena
between two calls of the interpreter. The arena of a call is taken once, the input copied in as
NHWC, the parts run, and the output copied out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Optional

import numpy as np

from . import workspace
from .kernels.table import (HAS_FUTEX, BOX, BY_CHANNELS, CHUNKS, HELPER_SCRATCH, IMAGES, KERNEL, OP_CONV, OP_CONV_U8,
                            OP_DEPTHWISE, OP_DEPTHWISE_U8, OP_DEQUANTIZE, OP_WINOGRAD, OPCODE, OUT, RESIDUAL, ROW, SCRATCH,
                            SPINS, STATE, WEIGHT, WEIGHT_IN_ARENA, X)

ALIGN = 16  # floats: every value starts on a 64-byte boundary
SHARE_MACS = 100_000  # a convolution row this big is shared with the helper thread, when the call has one,
SHARE_WEIGHTS = 256 << 10  # ... or one with this many weight floats (1 MB)
HELPER_SPINS = 20_000  # the helper polls this many times (about 1 ms) after a call before it sleeps
SHARE_CHUNKS = 2  # ... in this many chunks: the calling thread takes them from the front, the helper from the back
# (so each keeps to its half of the image from row to row, and its half stays in its core's cache; measured on
# PDLightModel, one image, two threads: 0.60 ms sharing only rows of 4 M multiply-adds and up, 4 chunks claimed
# from the front by both; 0.47-0.49 ms sharing every row of 100 k and up in halves; 0.52 ms in quarters)

Shape = tuple[int, ...]  # one image of a value: (h, w, c) NHWC, or (f,) for a rank-2 value
_NO_BOX = np.zeros(0, dtype=np.int64)  # a call without a helper thread


def image_view(shape: Shape) -> tuple[int, int, int]:
    """How a kernel sees one image of a value: (h, w, c), a rank-2 value's (f,) as (1, 1, f)."""
    return (1, 1, shape[0]) if len(shape) == 1 else shape


def per_image(shape: tuple[int, ...]) -> Shape:
    """One image of a graph value of `shape` (NCHW or (N, F)) as the table holds it: (h, w, c) or (f,)."""
    return (shape[2], shape[3], shape[1]) if len(shape) == 4 else tuple(shape[1:])


HOST = -1  # an Op's code when Python runs it between calls of the interpreter (it has no row kernel)


@dataclass(frozen=True)
class Op:
    """A step as a table row: the kernel's opcode, how it views its input, its output's shape, and
    its other fields (kernels.table row field -> values); or a HOST step, run by Python."""

    code: int  # kernels.table OP_*, or HOST
    x_view: tuple[int, int, int]  # (h, w, c) the kernel reads one image of its first input as
    out_shape: Shape  # one image of its output
    fields: dict = field(default_factory=dict)  # row field (kernels.table) -> tuple of ints
    slope: float = 0.0  # LeakyReLU's, when the fields' activation is one
    tiles: tuple[int, int] = (0, 0)  # Winograd's tiles per image and per group (params.winograd_tiles)
    macs: int = 0  # multiply-adds per image, for a convolution that can run in parts
    parts: int = 0  # ... and the units of one image its parts divide (output pixels, or Winograd's tiles)
    dequantize: dict = field(default_factory=dict)  # a DEQUANTIZE row's fields, run first: a compressed weight
    host: Optional[Callable[..., np.ndarray]] = None  # HOST: (*input values) -> output value (NHWC or (N, f))
    uint8: bool = False  # its output is uint8 (int8 computation: rows_int8.py), its images in whole float32 words


@dataclass(frozen=True)
class HostCall:
    """A HOST step of a call: its function, and (offset, shape with N) of its inputs and output."""

    step: int
    function: Callable[..., np.ndarray]
    inputs: tuple[tuple[int, Shape], ...]
    output: tuple[int, Shape]

    def run(self, arena: np.ndarray) -> None:
        def view(offset: int, shape: Shape) -> np.ndarray:
            return arena[offset:offset + int(np.prod(shape))].reshape(shape)
        result = self.function(*(view(*value) for value in self.inputs))
        np.copyto(view(*self.output), result.reshape(self.output[1]))


@dataclass(frozen=True)
class Table:
    """The rows one call of N images runs, and where its input and output are in its arena."""

    rows: np.ndarray  # (R, ROW) int64
    slopes: np.ndarray  # (R,) float32
    steps: tuple[int, ...]  # the step each row is for
    parts: tuple  # in order: (first row, end row) of one interpreter call, or a HostCall
    shares: bool  # some row has CHUNKS: the call wakes a helper thread
    arena: int  # floats
    input: int  # offset of the input's N images, NHWC
    output: int  # offset of the output's N images


def op_of(step: object, in_shape: Shape, out_shape: Shape) -> Op:
    """A lowered step (lowering.py) as a row of the interpreter: its `op()`; or a host function,
    (*input values) -> output value, as a HOST step writing `out_shape`."""
    if hasattr(step, "op"):
        return step.op(in_shape)
    return Op(HOST, image_view(in_shape), out_shape, host=step)


class Program:
    """A plan's lowered steps, run as one table per call (see the module docstring). Their Ops are
    made again whenever a table is built, not kept: a resident model holds its steps and tables only."""

    def __init__(self, steps: list[object], inputs: list[tuple[str, ...]], outputs: list[str],
                 out_shapes: list[Shape], segments: list[tuple[int, int, int]], fewest_images: int, input_name: str,
                 input_shape: Shape, output: str) -> None:
        """out_shapes: one image of each step's output as the graph gives it (what a HOST step writes)."""
        self.steps, self.inputs, self.outputs = tuple(steps), tuple(inputs), tuple(outputs)
        self.segments = tuple(segments)  # (first step, end step, images per pass), plan.Segment's
        self.fewest_images = fewest_images  # a call this small runs every step in one pass
        self.input_name, self.output = input_name, output
        self.shapes = {input_name: input_shape}
        for step, inputs_of, name, out_shape in zip(self.steps, self.inputs, self.outputs, out_shapes):
            self.shapes[name] = op_of(step, self.shapes[inputs_of[0]], out_shape).out_shape
        self._output_floats = int(np.prod(self.shapes[output]))  # per image
        self._tables: dict[int, Table] = {}
        self._lock = threading.Lock()

    def ops(self) -> list[Op]:
        """The steps as Ops, one per step."""
        return [op_of(step, self.shapes[inputs[0]], self.shapes[name])
                for step, inputs, name in zip(self.steps, self.inputs, self.outputs)]

    def table(self, images: int) -> Table:
        """The table of a call of `images` images (built on first use, then kept)."""
        table = self._tables.get(images)
        if table is None:
            with self._lock:
                table = self._tables.setdefault(images, self._build(images))
        return table

    def run(self, x: np.ndarray, helper: Optional["Helper"] = None,
            timer: Optional[Callable[[int, float], None]] = None) -> np.ndarray:
        """x: (N, C, H, W) float32, N at most the plan's chunk; returns the output in PyTorch's layout.
        With a `helper` that no other call holds, its big convolutions are shared with it. With a
        `timer` (a profile), each row runs in a call of its own, and timer(step, seconds) is called
        after it."""
        n = len(x)
        table = self.table(n)
        # Reused from this thread's free list (workspace.py), so that a resident model's calls do
        # not churn the heap.
        memory = workspace.take(table.arena + ALIGN)
        start = -memory.__array_interface__["data"][0] % 64 // 4  # values start on 64-byte boundaries
        arena = memory[start:start + table.arena]
        c, h, w = x.shape[1:]
        np.copyto(arena[table.input:table.input + x.size].reshape(n, h, w, c), x.transpose(0, 2, 3, 1))
        box = helper.box if helper is not None and table.shares and helper.acquire() else _NO_BOX
        try:
            for part in table.parts:
                start = time.perf_counter()
                if isinstance(part, HostCall):
                    part.run(arena)
                    if timer is not None:
                        timer(part.step, time.perf_counter() - start)
                elif timer is None:
                    _interpreter().run_program(table.rows[part[0]:part[1]], table.slopes[part[0]:part[1]], arena, box)
                else:
                    for r in range(*part):
                        start = time.perf_counter()
                        _interpreter().run_program(table.rows[r:r + 1], table.slopes[r:r + 1], arena, box)
                        timer(table.steps[r], time.perf_counter() - start)
            shape = self.shapes[self.output]
            out = arena[table.output:table.output + n * self._output_floats].reshape(n, *shape)
            out = out.transpose(0, 3, 1, 2).copy() if out.ndim == 4 else out.copy()
        finally:
            if box is not _NO_BOX:
                helper.release()
            workspace.give(memory)
        return out

    def _passes(self, images: int) -> list[tuple[int, int, int, int]]:
        """(first step, end step, first image, images) of every pass of a call, in order."""
        if images <= self.fewest_images:
            return [(0, len(self.steps), 0, images)]
        return [(start, end, first, min(per_pass, images - first))
                for start, end, per_pass in self.segments for first in range(0, images, per_pass)]

    def _build(self, images: int) -> Table:
        """The table of a call of `images` images: its rows and host calls, a pass of images at a
        time, and its arena's layout."""
        from .kernels.rows import kernel_address  # Numba's (see _interpreter)
        passes, ops = self._passes(images), self.ops()
        segment_of = {}  # value -> the segment making it
        for start, end, _, _ in passes:
            segment_of.update((self.outputs[s], start) for s in range(start, end))
        # Values held for all N images: the input, the output, and those read in a later segment;
        # the others are held for one pass, and the passes of a segment take turns in their memory.
        whole = {self.input_name, self.output}
        for start, end, _, _ in passes:
            whole.update(name for s in range(start, end) for name in self.inputs[s] if segment_of.get(name) != start)
        sizes = {self.input_name: int(np.prod(self.shapes[self.input_name]))}  # float32 words per image of each value
        for op, name in zip(ops, self.outputs):
            sizes[name] = -(-int(np.prod(op.out_shape)) // 4) if op.uint8 else int(np.prod(op.out_shape))
        lifetimes: dict[tuple, list[int]] = {}  # allocation -> [floats, first use, last use]

        def use(key: tuple, floats: int, when: int) -> None:
            life = lifetimes.setdefault(key, [floats, when, when])
            life[1], life[2] = min(life[1], when), max(life[2], when)

        def place(name: str, pass_index: int, first: int, count: int, when: int) -> tuple[tuple, int]:
            """(allocation, first image in it) of a value in a pass, its use recorded."""
            key, images_held, first = ((name,), images, first) if name in whole else ((name, pass_index), count, 0)
            use(key, images_held * sizes[name], when)
            return key, first

        instructions = []
        use((self.input_name,), images * sizes[self.input_name], -1)
        for pass_index, (start, end, first, count) in enumerate(passes):
            for s in range(start, end):
                when = len(instructions)
                reads = [place(name, pass_index, first, count, when) for name in self.inputs[s]]
                written = place(self.outputs[s], pass_index, first, count, when)
                sharing = _sharing(ops[s], count)
                scratch = _scratch(ops[s], count) * (2 if sharing[0] else 1)  # the helper's chunks have their own
                for i, floats in enumerate(scratch):
                    use(("scratch", when, i), floats, when)
                if ops[s].dequantize:
                    use(("weight", when), _floats(ops[s].fields[WEIGHT]), when)
                instructions.append((s, count, reads, written, len(scratch), sharing))
        use((self.output,), images * sizes[self.output], len(instructions))
        offsets, arena = _first_fit(lifetimes)

        def at(allocation: tuple[tuple, int], name: str) -> int:
            key, first = allocation
            return offsets[key] + first * sizes[name]

        rows, slopes, steps, parts, run_start = [], [], [], [], 0
        for when, (s, count, reads, written, scratches, sharing) in enumerate(instructions):
            op = ops[s]
            if op.code == HOST:
                parts += [(run_start, len(rows))] if run_start < len(rows) else []
                parts.append(HostCall(s, op.host, tuple((at(read, name), (count, *self.shapes[name]))
                                                     for read, name in zip(reads, self.inputs[s])),
                                      (at(written, self.outputs[s]), (count, *op.out_shape))))
                run_start = len(rows)
                continue
            if op.dequantize:  # its weight widened into the arena first
                row = np.zeros(ROW, dtype=np.int64)
                for column, values in op.dequantize.items():
                    row[column:column + len(values)] = values
                row[OPCODE], row[KERNEL], row[OUT] = OP_DEQUANTIZE, kernel_address(OP_DEQUANTIZE), offsets[("weight", when)]
                rows.append(row)
                slopes.append(0.0)
                steps.append(s)
            row = np.zeros(ROW, dtype=np.int64)
            row[OPCODE], row[KERNEL], row[IMAGES] = op.code, kernel_address(op.code), count
            for column, values in op.fields.items():
                row[column:column + len(values)] = values
            if op.dequantize:
                row[WEIGHT], row[WEIGHT_IN_ARENA] = offsets[("weight", when)], 1
            row[X:X + 4] = (at(reads[0], self.inputs[s][0]), *op.x_view)
            row[RESIDUAL] = -1
            if len(reads) > 1:  # a convolution's residual, an Add's other operand
                name = self.inputs[s][1]
                row[RESIDUAL:RESIDUAL + 4] = (at(reads[1], name), *image_view(self.shapes[name]))
            row[OUT:OUT + 4] = (at(written, self.outputs[s]), *image_view(op.out_shape))
            if scratches:
                row[SCRATCH:SCRATCH + 3] = (offsets[("scratch", when, 0)], offsets[("scratch", when, 1)],
                                            min(op.tiles[1], count * op.tiles[0]))
            row[CHUNKS], row[BY_CHANNELS] = sharing
            if sharing[0] and scratches:  # the helper's copy of the scratch
                row[HELPER_SCRATCH:HELPER_SCRATCH + 2] = (offsets[("scratch", when, 2)], offsets[("scratch", when, 3)])
            rows.append(row)
            slopes.append(op.slope)
            steps.append(s)
        parts += [(run_start, len(rows))] if run_start < len(rows) else []
        table = np.array(rows, dtype=np.int64).reshape(len(rows), ROW)
        return Table(table, np.array(slopes, dtype=np.float32), tuple(steps), tuple(parts), bool(table[:, CHUNKS].any()), arena,
                     offsets[(self.input_name,)], offsets[(self.output,)])


def _sharing(op: Op, images: int) -> tuple[int, int]:
    """(chunks, whether they are blocks of output channels) of the op's row on `images` images
    when a call has a helper thread: (0, 0) for a row too small to share. A convolution of few
    output pixels (a Linear on one image), and a Winograd row whose transformed weight outweighs
    its transformed input and products (few tiles, many channels: PDModel's last convolution),
    are cut by output channels, so that each thread streams its own columns of the weight; any
    other (a depthwise convolution's always) by pixels (or tiles)."""
    if op.code in (OP_DEPTHWISE, OP_DEPTHWISE_U8, OP_CONV_U8):  # by pixels only
        return (SHARE_CHUNKS, 0) if op.macs * images >= SHARE_MACS and op.parts * images >= 4 * SHARE_CHUNKS else (0, 0)
    if op.code not in (OP_CONV, OP_WINOGRAD):
        return 0, 0
    weight = op.fields[WEIGHT]
    if op.macs * images < SHARE_MACS and weight[1] * weight[2] * weight[3] < SHARE_WEIGHTS:
        return 0, 0
    in_c, out_c = op.x_view[2], image_view(op.out_shape)[2]
    few_pixels = op.parts * images < 4 * SHARE_CHUNKS
    heavy_weight = op.code == OP_WINOGRAD and in_c * out_c > images * op.tiles[0] * (in_c + out_c)
    if few_pixels or heavy_weight:
        blocks = -(-out_c // 32)
        return (min(SHARE_CHUNKS, blocks), 1) if blocks > 1 else (0, 0)
    return SHARE_CHUNKS, 0


def _scratch(op: Op, images: int) -> tuple[int, ...]:
    """Floats of the op's scratch arrays in a pass of `images` images (Winograd's v and m)."""
    if op.code != OP_WINOGRAD:
        return ()
    tiles = min(op.tiles[1], images * op.tiles[0])
    return 16 * tiles * op.x_view[2], 16 * tiles * image_view(op.out_shape)[2]


def _first_fit(lifetimes: dict[tuple, list[int]]) -> tuple[dict[tuple, int], int]:
    """An offset for every allocation (floats, first use, last use) such that no two alive at once
    overlap: the lowest aligned gap, allocations taken in order of first use; and the arena's size."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    offsets = {}
    for key, (floats, first, last) in sorted(lifetimes.items(), key=lambda item: (item[1][1], -item[1][0])):
        offset = 0
        for start, end in sorted((o, e) for o, e, f, l in placed if f <= last and first <= l):
            if offset + floats <= start:
                break
            offset = max(offset, -(-end // ALIGN) * ALIGN)
        offsets[key] = offset
        placed.append((offset, offset + floats, first, last))
    return offsets, max((end for _, end, _, _ in placed), default=0)


def address(array: np.ndarray) -> int:
    """Where a C-contiguous array's data starts: how a row names a weight or bias (the plan that
    holds the array holds the table too)."""
    assert array.flags.c_contiguous
    return array.__array_interface__["data"][0]


def _floats(weight_field: tuple) -> int:
    """The elements of a row's WEIGHT field (address, d0, .., d4)."""
    return int(np.prod(weight_field[1:]))


class Helper:
    """A thread that takes chunks of the convolutions of one call at a time (kernels/program.py:
    post_row and serve). It spins on its mailbox only while a call holds it, and sleeps in a futex
    between calls; the call wakes it as it starts (a wake-up takes 35-40 us here), and until it is
    up the calling thread takes every chunk. Linux only (HAS_FUTEX); elsewhere a call of one image
    runs on its own thread."""

    def __init__(self) -> None:
        self.box = np.zeros(BOX, dtype=np.int64)
        self.box[SPINS] = HELPER_SPINS
        self._holder = threading.Lock()  # one call at a time; others run without the helper
        self._thread: Optional[threading.Thread] = None  # started by the first call sharing a row

    def acquire(self) -> bool:
        """Hold and wake the helper for a call, if no other call holds it."""
        if not self._holder.acquire(blocking=False):
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=_interpreter().serve, args=(self.box,), name="pdinfer-helper",
                                            daemon=True)
            self._thread.start()
        _interpreter().signal(self.box, 1)
        return True

    def release(self) -> None:
        self.box[STATE] = 0  # it goes back to sleep
        self._holder.release()

    def close(self) -> None:
        """End the thread, once no call holds it."""
        with self._holder:
            _interpreter().signal(self.box, -1)


def compile_helper() -> None:
    """Compile (or load from Numba's cache) the helper thread's loop and its wake-up."""
    if HAS_FUTEX:
        from numba import typeof
        box = np.zeros(BOX, dtype=np.int64)
        _interpreter().serve.compile((typeof(box),))
        _interpreter().signal.compile((typeof(box), typeof(1)))


def _interpreter() -> ModuleType:
    """pdinfer/kernels/program.py (Numba's), imported when a table first runs: `import pdinfer` and
    a model's NumPy answers before its kernels are ready do not need Numba."""
    from .kernels import program
    return program
