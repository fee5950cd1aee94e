"""The fast execution plan: BatchNorm folded, activations fused, channels-last kernels.

Three passes turn a checked Graph into the one table `run_plan` runs:

1. `fusion.fuse(graph)` decides which file layers each fast step covers (pdinfer/fusion.py);
2. `lowering.LOWER` packs each group's weights for its kernel as a step whose `op()` is its table
   row, or a host step for a layer with no row (pdinfer/lowering.py);
3. here, the schedule: the steps cut into segments that each run a few images per pass, so that a
   pass stays in the L2 cache, and lowered to one `Program` (pdinfer/program.py: the arena plan
   and the interpreter's table), which runs a chunk of images per call.

Tensors of rank 4 flow between steps as NHWC; rank-2 tensors as (N, features). The plan is
immutable after load and a call keeps its values in its own arena, so one plan serves many
threads at once.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fusion import Alias, fuse, output_of
from .graph import INPUT, Graph
from .lowering import LOWER, PackedWeight, in_one_buffer, kept
from .lowering_int8 import lower_int8
from .program import Helper, Program, per_image

PASS_BYTES = 1 << 20  # the largest value of one pass stays about this small, so passes run in the L2 cache
MAX_CHUNK = 8  # images a batch runs through the plan at a time: bounds the values carried between segments (8: fastest of 1-64 on both seed models)


@dataclass(frozen=True, slots=True)
class Step:
    """Compute `output` from `inputs` (value names) with `kernel`; `layers` names the file layers
    covered."""

    kernel: object  # a lowered step with an op(), or a host function: (*input values) -> output value
    inputs: tuple[str, ...]
    output: str
    layers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Segment:
    """Steps [start, end) of a plan, run on `images` images of the batch at a time: a pass of the
    largest value among them stays about PASS_BYTES."""

    start: int
    end: int
    images: int


@dataclass(frozen=True, eq=False)  # compared by identity: a plan is shared, and prepared once (background.py)
class Plan:
    steps: tuple[Step, ...]
    segments: tuple[Segment, ...]
    output: str  # the value holding the graph's output
    chunk: int  # a batch runs through the segments this many images at a time
    program: Optional[Program]  # the steps as one table per call; None for a plan of no step


def build_plan(graph: Graph) -> Plan:
    """Fuse the graph's layers into groups, lower each group to a step, and the steps to a Program;
    for a model that computes in int8, lower its int8 steps (lowering_int8.py)."""
    if graph.activations is not None:
        lowered, shapes = lower_int8(graph)
    else:
        groups = [g for g in fuse(graph) if not isinstance(g, Alias)]
        lowered = [(LOWER[type(group)](group, graph), group.inputs, output_of(group),
                    tuple(layer.name for layer in group.layers)) for group in groups]
        shapes = graph.shapes
    kernels = in_one_buffer([kernel for kernel, *_ in lowered])
    steps = tuple(Step(kernel, inputs, output, layers) for kernel, (_, inputs, output, layers) in zip(kernels, lowered))
    output = steps[-1].output if steps else INPUT
    segments = _segments(steps, shapes)
    chunk = max((s.images for s in segments), default=MAX_CHUNK)
    program = _program(steps, segments, shapes, graph.input_shape, output) if steps else None
    return Plan(steps, segments, output, chunk, program)


def _program(steps: tuple[Step, ...], segments: tuple[Segment, ...], value_shapes: dict[str, tuple],
             input_shape: tuple[int, ...], output: str) -> Program:
    """The steps as a Program (value_shapes: every value's NCHW or (N, F) shape, N = 1)."""
    return Program([step.kernel for step in steps], [step.inputs for step in steps], [step.output for step in steps],
                   [per_image(value_shapes[step.output]) for step in steps],
                   [(s.start, s.end, s.images) for s in segments], min(s.images for s in segments), INPUT,
                   per_image((1, *input_shape)), output)


def _segments(steps: tuple[Step, ...], shapes: dict[str, tuple]) -> tuple[Segment, ...]:
    """Cut the steps where the images a pass can hold change at least twofold: the wide early
    layers of a CNN run an image or two at a time, its narrow late layers (and the classifier,
    whose weights are read once per pass) many images at once."""
    def images(step: Step) -> int:  # per pass, so that the step's largest value is about PASS_BYTES
        largest = max(4 * int(np.prod(shapes[name])) for name in (*step.inputs, step.output))
        return min(MAX_CHUNK, max(1, PASS_BYTES // largest))

    if not steps:
        return ()
    fits = [images(step) for step in steps]
    cuts = [0]
    for i in range(1, len(steps)):
        if not fits[cuts[-1]] / 2 < fits[i] < 2 * fits[cuts[-1]]:
            cuts.append(i)
    cuts.append(len(steps))
    return tuple(Segment(start, end, min(fits[start:end])) for start, end in zip(cuts, cuts[1:]))


def packed_bytes(plan: Plan) -> int:
    """The bytes of the arrays the plan's steps keep (packed weights, biases, scales, layer tensors)."""
    total = 0
    for step in plan.steps:
        for value in kept(step.kernel):
            if isinstance(value, PackedWeight):
                total += value.data.nbytes + value.scale.nbytes
            elif isinstance(value, np.ndarray):
                total += value.nbytes
    return total


def run_plan(plan: Plan, x: np.ndarray, helper: Optional[Helper] = None) -> np.ndarray:
    """Run the plan on a checked NCHW float32 batch; returns the output in PyTorch's layout.

    Each chunk of images is one call of the plan's Program, its big convolution rows shared with the
    `helper` thread if given (program.Helper), so that one image uses two cores; the answer is the
    same, every output pixel being computed the same way wherever it is."""
    if plan.program is None:  # no step: the output is the input (Dropout, say)
        return x.copy()
    if len(x) <= plan.chunk:
        return plan.program.run(x, helper)
    return np.concatenate([plan.program.run(x[i:i + plan.chunk], helper) for i in range(0, len(x), plan.chunk)])
