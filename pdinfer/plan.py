"""The fast execution plan: BatchNorm folded, activations fused, channels-last kernels.

`build_plan` turns a checked Graph into a list of Steps, each one call of a fast kernel that covers
one or more file layers (Conv2d + BatchNorm2d + LeakyReLU is one step). Tensors of rank 4 flow
between steps as NHWC; rank-2 tensors as (N, features). The plan is immutable after load, and a
call keeps its tensors in local variables, so one plan serves many threads at once.
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


def _activation(layer: Optional[Layer]) -> tuple[int, np.float32]:
    """The fused-activation code and slope of an activation layer (or none)."""
    if isinstance(layer, ReLU):
        return fast.ACT_RELU, np.float32(0)
    if isinstance(layer, ReLU6):
        return fast.ACT_RELU6, np.float32(0)
    if isinstance(layer, LeakyReLU):
        return fast.ACT_LEAKY, np.float32(layer.negative_slope)
    return fast.ACT_NONE, np.float32(0)


def _conv_kernel(conv: Conv2d, bn: Optional[BatchNorm2d], act: Optional[Layer], out_hw: tuple[int, int]) -> Kernel:
    """Conv2d with an optional BatchNorm2d folded in and an activation fused."""
    weight = conv.weight.astype(np.float64)  # (Co, Ci/G, KH, KW)
    bias = conv.bias.astype(np.float64) if conv.has_bias else np.zeros(conv.out_channels)
    if bn is not None:
        scale, shift = bn.scale_shift()
        weight = weight * scale[:, None, None, None]
        bias = bias * scale + shift
    bias = bias.astype(np.float32)
    code, slope = _activation(act)
    out_h, out_w = out_hw
    (top, left, bottom, right), (kh, kw), groups = conv.padding, conv.kernel_size, conv.groups
    geometry = (*conv.stride, top, left, *conv.dilation, out_h, out_w)

    if groups == conv.in_channels == conv.out_channels:
        packed = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0), dtype=np.float32)  # (KH, KW, C)
        return lambda x: fast.depthwise_conv2d(x, packed, bias, code, slope, *geometry)
    if (kh, kw) == (1, 1) and conv.stride == (1, 1) and not any(conv.padding) and groups == 1:
        packed = np.ascontiguousarray(weight[:, :, 0, 0].T, dtype=np.float32)  # (Ci, Co)

        def pointwise(x: np.ndarray) -> np.ndarray:  # x: (N, H, W, Ci)
            out = fast.pointwise_conv2d(x.reshape(-1, x.shape[3]), packed, bias, code, slope)
            return out.reshape(*x.shape[:3], packed.shape[1])
        return pointwise
    g_out, g_in = conv.out_channels // groups, conv.in_channels // groups
    packed = np.ascontiguousarray(  # (G, KH, KW, Ci/G, Co/G)
        weight.reshape(groups, g_out, g_in, kh, kw).transpose(0, 3, 4, 2, 1), dtype=np.float32)
    return lambda x: fast.conv2d(x, packed, bias, code, slope, *geometry)


def _linear_kernel(linear: Linear, act: Optional[Layer]) -> Kernel:
    weight_t = np.ascontiguousarray(linear.weight.T)  # (I, O)
    bias = linear.bias.copy() if linear.has_bias else np.zeros(linear.out_features, np.float32)
    code, slope = _activation(act)
    return lambda x: fast.linear(x, weight_t, bias, code, slope)


def _scale_shift_kernel(scale: np.ndarray, shift: np.ndarray, act: Optional[Layer]) -> Kernel:
    """Per-channel affine map + activation on NHWC or (N, C) values (channels last either way)."""
    scale, shift = scale.astype(np.float32), shift.astype(np.float32)
    code, slope = _activation(act)
    return lambda x: fast.scale_shift(x.reshape(-1, x.shape[-1]), scale, shift, code, slope).reshape(x.shape)


def _pool_kernel(layer: Layer, out_hw: tuple[int, int]) -> Kernel:
    if isinstance(layer, MaxPool2d):
        args = (*layer.kernel_size, *layer.stride, *layer.padding[:2], *layer.dilation, *out_hw)
        return lambda x: fast.max_pool2d(x, *args)
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


def build_plan(graph: Graph) -> Plan:
    """Fold, fuse and pack the graph's layers into fast steps."""
    layers = {layer.name: layer for layer in graph.layers}
    consumers: dict[str, list[Layer]] = {name: [] for name in [INPUT, *layers]}
    for layer in graph.layers:
        for name in layer.inputs:
            consumers[name].append(layer)

    def sole_consumer(name: str, kinds: tuple[type, ...]) -> Optional[Layer]:
        """The one layer reading `name`, if there is exactly one and it is of one of `kinds`."""
        users = consumers[name]
        return users[0] if len(users) == 1 and isinstance(users[0], kinds) else None

    alias: dict[str, str] = {INPUT: INPUT}  # file layer name -> value name holding its output
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
            tail = bn or layer
            act = sole_consumer(tail.name, (ReLU, ReLU6, LeakyReLU))
            covered += [c for c in (bn, act) if c is not None]
            run = _conv_kernel(layer, bn, act, shape[2:])
        elif isinstance(layer, Linear):
            act = sole_consumer(layer.name, (ReLU, ReLU6, LeakyReLU))
            covered += [act] if act else []
            run = _linear_kernel(layer, act)
        elif isinstance(layer, BatchNorm2d):
            act = sole_consumer(layer.name, (ReLU, ReLU6, LeakyReLU))
            covered += [act] if act else []
            run = _scale_shift_kernel(*layer.scale_shift(), act)
        elif isinstance(layer, (ReLU, ReLU6, LeakyReLU)):
            channels = shape[-1] if len(shape) == 2 else shape[1]
            run = _scale_shift_kernel(np.ones(channels), np.zeros(channels), layer)
        elif isinstance(layer, (MaxPool2d, AvgPool2d)):
            run = _pool_kernel(layer, shape[2:])
        elif isinstance(layer, GlobalAvgPool):
            run = _global_avg_pool(layer.keepdim)
        elif isinstance(layer, Sigmoid):
            run = reference.sigmoid
        elif isinstance(layer, Softmax):
            run = _softmax
        elif isinstance(layer, Flatten):
            run = _flatten
        elif isinstance(layer, Add):
            run = reference.add
        elif isinstance(layer, Dropout):
            alias[layer.name] = inputs[0]
            continue
        else:  # every registered type is handled above
            raise AssertionError(f"no fast kernel for {layer.type}")
        output = covered[-1].name
        for c in covered:
            alias[c.name] = output
            fused.add(c.name)
        steps.append(Step(run, inputs, output, tuple(c.name for c in covered)))

    output = alias[graph.layers[-1].name]
    last_use = {name: i for i, step in enumerate(steps) for name in step.inputs}
    release = [tuple(n for n in step.inputs if last_use[n] == i and n != output)
               for i, step in enumerate(steps)]
    return Plan(steps, release, output)


def run_plan(plan: Plan, x: np.ndarray) -> np.ndarray:
    """Run the plan on a checked NCHW float32 batch; returns the output in PyTorch's layout."""
    values = {INPUT: np.ascontiguousarray(x.transpose(0, 2, 3, 1))}
    for step, release in zip(plan.steps, plan.release):
        values[step.output] = step.run(*(values[i] for i in step.inputs))
        for name in release:
            del values[name]
    out = values[plan.output]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) if out.ndim == 4 else out
