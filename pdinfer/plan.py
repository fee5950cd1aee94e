"""The fast execution plan: BatchNorm folded, activations fused, channels-last kernels.

`build_plan` turns a checked Graph into a list of Steps, each one call of a fast kernel that covers
one or more file layers: Conv2d [+ BatchNorm2d] [+ activation] [+ the residual Add reading it],
Linear [+ activation], and Dropout disappears. Tensors of rank 4 flow between steps as NHWC;
rank-2 tensors as (N, features). A value whose only reader is a padded convolution is written
with that padding as a zero border around each image, so the reader needs no padded copy; a
Flatten read only by Linear layers is folded into their weights (reordered for NHWC input).
A batch runs through the steps a few images at a time, so that each pass stays in the L2 cache.
The plan is immutable after load, and a call keeps its tensors in local variables, so one plan
serves many threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .graph import INPUT, Graph
from .kernels import fast, reference
from .layers import Layer
from .layers.activations import LeakyReLU, ReLU, ReLU6, Sigmoid
from .layers.batchnorm2d import BatchNorm2d
from .layers.conv2d import Conv2d
from .layers.linear import Linear
from .layers.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from .layers.softmax import Softmax
from .layers.structural import Add, Dropout, Flatten

Kernel = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Step:
    """Compute `output` from `inputs` (value names) with `run`; `layers` names the file layers covered."""

    run: Kernel
    inputs: tuple[str, ...]
    output: str
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    release: list[tuple[str, ...]]  # values no later step reads, dropped after each step
    output: str
    images_per_pass: int  # a batch runs through the steps this many images at a time


PASS_BYTES = 1 << 20  # the largest value of one pass stays about this small, so passes run in the L2 cache


def _activation(layer: Optional[Layer]) -> tuple[int, np.float32]:
    """The fused-activation code and slope of an activation layer (or none)."""
    if isinstance(layer, ReLU):
        return fast.ACT_RELU, np.float32(0)
    if isinstance(layer, ReLU6):
        return fast.ACT_RELU6, np.float32(0)
    if isinstance(layer, LeakyReLU):
        return fast.ACT_LEAKY, np.float32(layer.negative_slope)
    return fast.ACT_NONE, np.float32(0)


def _pad_columns(matrix: np.ndarray) -> np.ndarray:
    """float32 copy of a (K, C) matrix with zero columns appended up to fast.padded_channels(C)."""
    padded = np.zeros((matrix.shape[0], fast.padded_channels(matrix.shape[1])), dtype=np.float32)
    padded[:, :matrix.shape[1]] = matrix
    return padded


_NO_RESIDUAL = np.empty((0, 0, 0, 0), dtype=np.float32)


def _is_depthwise(conv: Conv2d) -> bool:
    return 1 < conv.groups == conv.in_channels == conv.out_channels


def _conv_kernel(conv: Conv2d, bn: Optional[BatchNorm2d], act: Optional[Layer], out_hw: tuple[int, int],
                 residual: bool, border: tuple[int, int, int, int], input_padded: bool) -> Kernel:
    """Conv2d with an optional BatchNorm2d folded in and an activation fused.

    One group: an optional residual is added (the kernel then takes it as a second argument).
    One group or depthwise: the output gets a zero `border` (top, left, bottom, right), and
    `input_padded` says the input comes with such a border, its padding.
    """
    weight = conv.weight.astype(np.float64)  # (Co, Ci/G, KH, KW)
    bias = conv.bias.astype(np.float64) if conv.has_bias else np.zeros(conv.out_channels)
    if bn is not None:
        scale, shift = bn.scale_shift()
        weight = weight * scale[:, None, None, None]
        bias = bias * scale + shift
    code, slope = _activation(act)
    out_h, out_w = out_hw
    (top, left, bottom, right), (kh, kw), groups = conv.padding, conv.kernel_size, conv.groups
    out_c = conv.out_channels

    padding = (0, 0, 0, 0) if input_padded else (top, left, bottom, right)
    packed_bias = _pad_columns(bias[None])[0]
    if groups == 1:
        packed = _pad_columns(weight.transpose(2, 3, 1, 0).reshape(-1, out_c))  # (KH*KW*Ci, Co padded)
        geometry = (kh, kw, *conv.stride, *padding, *conv.dilation, out_h, out_w, out_c, *border)
        if residual:
            return lambda x, res: fast.conv2d(x, packed, packed_bias, res, code, slope, *geometry)
        return lambda x: fast.conv2d(x, packed, packed_bias, _NO_RESIDUAL, code, slope, *geometry)
    assert not residual
    if _is_depthwise(conv):
        packed = _pad_columns(weight[:, 0].reshape(out_c, kh * kw).T)  # (KH*KW, C padded)
        geometry = (kh, kw, *conv.stride, *padding, *conv.dilation, out_h, out_w, *border)
        return lambda x: fast.depthwise_conv2d(x, packed, packed_bias, code, slope, *geometry)
    assert not any(border) and not input_padded
    geometry = (*conv.stride, top, left, *conv.dilation, out_h, out_w)
    g_out, g_in = out_c // groups, conv.in_channels // groups
    packed = np.ascontiguousarray(  # (G, KH, KW, Ci/G, Co/G)
        weight.reshape(groups, g_out, g_in, kh, kw).transpose(0, 3, 4, 2, 1), dtype=np.float32)
    bias32 = bias.astype(np.float32)
    return lambda x: fast.grouped_conv2d(x, packed, bias32, code, slope, *geometry)


def _linear_kernel(linear: Linear, act: Optional[Layer], flattened_chw: Optional[tuple[int, ...]]) -> Kernel:
    """Linear + activation as a 1x1 conv2d over (N, 1, 1, I).

    flattened_chw: the (C, H, W) shape of an NHWC input whose Flatten was folded into the weight
    (its columns reordered from PyTorch's channel-major order to the NHWC order), or None.
    """
    weight = linear.weight  # (O, I)
    out_f = linear.out_features
    if flattened_chw is not None:
        weight = weight.reshape(out_f, *flattened_chw).transpose(0, 2, 3, 1).reshape(out_f, -1)
    packed = _pad_columns(weight.T)  # (I, O padded)
    bias = _pad_columns(linear.bias[None])[0] if linear.has_bias else np.zeros(packed.shape[1], np.float32)
    code, slope = _activation(act)

    geometry = (1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, out_f, 0, 0, 0, 0)  # 1x1 kernel, image and output

    def run(x: np.ndarray) -> np.ndarray:  # x: (N, I) or, with a folded Flatten, (N, H, W, C)
        x = x.reshape(x.shape[0], 1, 1, -1)
        return fast.conv2d(x, packed, bias, _NO_RESIDUAL, code, slope, *geometry).reshape(x.shape[0], out_f)
    return run


def _scale_shift_kernel(scale: np.ndarray, shift: np.ndarray, act: Optional[Layer]) -> Kernel:
    """Per-channel affine map + activation on NHWC or (N, C) values (channels last either way)."""
    scale, shift = scale.astype(np.float32), shift.astype(np.float32)
    code, slope = _activation(act)
    return lambda x: fast.scale_shift(x.reshape(-1, x.shape[-1]), scale, shift, code, slope).reshape(x.shape)


def _pool_kernel(layer: Layer, out_hw: tuple[int, int], border: tuple[int, int, int, int]) -> Kernel:
    """A pool; a MaxPool2d writes its output with a zero `border` (top, left, bottom, right)."""
    if isinstance(layer, MaxPool2d):
        args = (*layer.kernel_size, *layer.stride, *layer.padding[:2], *layer.dilation, *out_hw, *border)
        return lambda x: fast.max_pool2d(x, *args)
    assert not any(border)
    assert isinstance(layer, AvgPool2d)
    args = (*layer.kernel_size, *layer.stride, *layer.padding, layer.count_include_pad,
            layer.divisor_override, *out_hw)
    return lambda x: fast.avg_pool2d(x, *args)


def _global_avg_pool(keepdim: bool) -> Kernel:
    def run(x: np.ndarray) -> np.ndarray:  # x: (N, H, W, C)
        out = fast.global_avg_pool(x)  # (N, C)
        return out.reshape(out.shape[0], 1, 1, out.shape[1]) if keepdim else out
    return run


def _flatten(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) back to PyTorch's channel-major order, then (N, C*H*W); rank 2 passes through."""
    if x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x.reshape(x.shape[0], -1)


def _softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over dim 1 of PyTorch's layout, which is the last axis here."""
    return reference.softmax_rows(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _reference_step(layer: Layer) -> Kernel:
    """A layer with no fast kernel runs its reference forward; rank-4 values move NHWC <-> NCHW."""
    def run(*xs: np.ndarray) -> np.ndarray:
        nchw = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x for x in xs]
        out = layer.forward(*nchw)
        return np.ascontiguousarray(out.transpose(0, 2, 3, 1)) if out.ndim == 4 else out
    return run


def build_plan(graph: Graph) -> Plan:
    """Fold, fuse and pack the graph's layers into fast steps."""
    layers = {layer.name: layer for layer in graph.layers}

    def source(name: str) -> str:
        """The value `name` stands for, looking through Dropout layers (identities at inference)."""
        while isinstance(layers.get(name), Dropout):
            name = layers[name].inputs[0]
        return name

    consumers: dict[str, list[Layer]] = {name: [] for name in [INPUT, *layers]}  # Dropout readers skipped
    for layer in graph.layers:
        if not isinstance(layer, Dropout):
            for name in layer.inputs:
                consumers[source(name)].append(layer)

    def sole_consumer(name: str, kinds: tuple[type, ...]) -> Optional[Layer]:
        """The one layer reading `name`, if there is exactly one and it is of one of `kinds`."""
        users = consumers[name]
        return users[0] if len(users) == 1 and isinstance(users[0], kinds) else None

    def reader_padding(name: str) -> tuple[int, int, int, int]:
        """The padding of a convolution that is the sole reader of `name`, if its kernel takes the
        padding as a border around its input; the step making `name` then writes that border."""
        reader = sole_consumer(name, (Conv2d,))
        if reader is None or not (reader.groups == 1 or _is_depthwise(reader)) or not any(reader.padding):
            return (0, 0, 0, 0)
        padded_inputs.add(reader.name)
        return reader.padding

    alias: dict[str, str] = {INPUT: INPUT}  # file layer name -> value name holding its output
    folded_flatten: set[str] = set()  # Flatten layers whose Linear readers reorder their weights instead
    padded_inputs: set[str] = set()  # Conv2d layers whose input comes with their padding as a border
    fused: set[str] = set()
    steps: list[Step] = []
    for layer in graph.layers:
        if layer.name in fused:
            continue
        inputs = tuple(alias[i] for i in layer.inputs)
        covered = [layer]
        shape = graph.shapes[layer.name]
        if isinstance(layer, Conv2d):
            bn = sole_consumer(layer.name, (BatchNorm2d,))
            act = sole_consumer((bn or layer).name, (ReLU, ReLU6, LeakyReLU))
            covered += [c for c in (bn, act) if c is not None]
            add = sole_consumer(covered[-1].name, (Add,)) if layer.groups == 1 else None
            if add is not None:
                other = next(i for i in add.inputs if source(i) != covered[-1].name)
                if other in alias:  # computed by an earlier step: add it in this one
                    covered.append(add)
                    inputs += (alias[other],)
            can_border = len(inputs) == 1 and (layer.groups == 1 or _is_depthwise(layer))
            border = reader_padding(covered[-1].name) if can_border else (0, 0, 0, 0)
            run = _conv_kernel(layer, bn, act, shape[2:], len(inputs) == 2, border, layer.name in padded_inputs)
        elif isinstance(layer, Linear):
            act = sole_consumer(layer.name, (ReLU, ReLU6, LeakyReLU))
            covered += [act] if act else []
            flat = source(layer.inputs[0])
            chw = graph.shapes[layers[flat].inputs[0]][1:] if flat in folded_flatten else None
            run = _linear_kernel(layer, act, chw)
        elif isinstance(layer, BatchNorm2d):
            act = sole_consumer(layer.name, (ReLU, ReLU6, LeakyReLU))
            covered += [act] if act else []
            run = _scale_shift_kernel(*layer.scale_shift(), act)
        elif isinstance(layer, (ReLU, ReLU6, LeakyReLU)):
            channels = shape[-1] if len(shape) == 2 else shape[1]
            run = _scale_shift_kernel(np.ones(channels), np.zeros(channels), layer)
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            run = _pool_kernel(layer, shape[2:], reader_padding(layer.name) if isinstance(layer, MaxPool2d)
                               else (0, 0, 0, 0))
        elif isinstance(layer, GlobalAvgPool):
            run = _global_avg_pool(layer.keepdim)
        elif isinstance(layer, Sigmoid):
            run = reference.sigmoid
        elif isinstance(layer, Softmax):
            run = _softmax
        elif isinstance(layer, Flatten):
            users = consumers[layer.name]
            if len(graph.shapes[layer.inputs[0]]) == 4 and users and all(isinstance(u, Linear) for u in users):
                folded_flatten.add(layer.name)  # its Linear readers take the NHWC input directly
                alias[layer.name] = inputs[0]
                continue
            run = _flatten
        elif isinstance(layer, Add):
            run = reference.add
        elif isinstance(layer, Dropout):
            alias[layer.name] = inputs[0]
            continue
        else:  # no fast kernel: the reference one, on NCHW copies of the inputs
            run = _reference_step(layer)
        output = covered[-1].name
        for c in covered:
            alias[c.name] = output
            fused.add(c.name)
        steps.append(Step(run, inputs, output, tuple(c.name for c in covered)))

    output = alias[graph.layers[-1].name]
    last_use = {name: i for i, step in enumerate(steps) for name in step.inputs}
    release = [tuple(n for n in dict.fromkeys(step.inputs) if last_use[n] == i and n != output)
               for i, step in enumerate(steps)]  # dict.fromkeys: x + x reads one value twice
    largest = max(4 * int(np.prod(shape)) for shape in graph.shapes.values())  # bytes, one image
    return Plan(steps, release, output, max(1, PASS_BYTES // largest))


def _run_pass(plan: Plan, x: np.ndarray) -> np.ndarray:
    values = {INPUT: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}
    for step, release in zip(plan.steps, plan.release):
        values[step.output] = step.run(*(values[i] for i in step.inputs))
        for name in release:
            del values[name]
    out = values[plan.output]
    out = np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if out.ndim == 4 else out
    return out.copy() if np.may_share_memory(out, x) else out  # a graph of only Flatten/Dropout


def run_plan(plan: Plan, x: np.ndarray) -> np.ndarray:
    """Run the plan on a checked NCHW float32 batch; returns the output in PyTorch's layout."""
    step = plan.images_per_pass
    if len(x) <= step:
        return _run_pass(plan, x)
    return np.concatenate([_run_pass(plan, x[i:i + step]) for i in range(0, len(x), step)])
