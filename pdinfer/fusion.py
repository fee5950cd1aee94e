"""Pass 1 of the fast plan: which file layers each fast step covers.

`fuse(graph)` groups the graph's layers into typed groups (pure; print them with `describe`): a
Conv2d with the BatchNorm2d, activation, residual Add or 2x2 max pool that follow it, a Linear with
its activation, a BatchNorm2d or activation on its own, a pool, a layer run as it is, and the layers
that need no step at all (Dropout; a Flatten whose Linear readers take its input directly). It then
places zero borders: a value whose only reader is a padded convolution is written with that padding
around each image, so the reader needs no copy.
"""


from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from .format import storage
from .graph import INPUT, Graph
from .kernels.params import NO_BORDER, Border, border
from .layers import Layer
from .layers.activations import LeakyReLU, ReLU, ReLU6
from .layers.batchnorm2d import BatchNorm2d
from .layers.conv2d import Conv2d
from .layers.linear import Linear
from .layers.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from .layers.structural import Add, Dropout, Flatten

ACTIVATIONS = (ReLU, ReLU6, LeakyReLU)  # the activations fast kernels fuse
WINOGRAD_CHANNELS = 32  # a 3x3 stride-1 convolution this wide on both sides runs by Winograd F(2x2, 3x3)


@dataclass(frozen=True)
class ConvGroup:
    """Conv2d [+ BatchNorm2d] [+ activation] [+ the residual Add reading it] [+ the 2x2 MaxPool2d
    reading it, for a one-group convolution]."""

    conv: Conv2d
    bn: Optional[BatchNorm2d]
    act: Optional[Layer]
    add: Optional[Add]
    inputs: tuple[str, ...]  # the convolution's input [, the residual]
    border: Border = NO_BORDER  # written around the output
    input_padded: bool = False  # the input carries the convolution's padding as its border
    pool: Optional[MaxPool2d] = None

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(c for c in (self.conv, self.bn, self.act, self.add, self.pool) if c is not None)

    @property
    def takes_border(self) -> bool:
        """Its kernel can read an input that carries the padding as a border."""
        return any(self.conv.padding) and (self.conv.groups == 1 or self.conv.is_depthwise)

    @property
    def writes_border(self) -> bool:
        """Its kernel can write a border around its output."""
        return self.add is None and (self.conv.groups == 1 or self.conv.is_depthwise)


@dataclass(frozen=True)
class LinearGroup:
    """Linear [+ activation]; `flattened_chw` is the (C, H, W) of an NHWC input whose Flatten
    was folded into the weight, or None."""

    linear: Linear
    act: Optional[Layer]
    inputs: tuple[str, ...]
    flattened_chw: Optional[tuple[int, ...]]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.linear, self.act) if self.act else (self.linear,)


@dataclass(frozen=True)
class AffineGroup:
    """A BatchNorm2d with no convolution to fold into [+ activation], or an activation alone."""

    bn: Optional[BatchNorm2d]
    act: Optional[Layer]
    inputs: tuple[str, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(c for c in (self.bn, self.act) if c is not None)


@dataclass(frozen=True)
class PoolGroup:
    """MaxPool2d (which can write a border), AvgPool2d or GlobalAvgPool."""

    pool: Layer
    inputs: tuple[str, ...]
    border: Border = NO_BORDER

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.pool,)

    @property
    def writes_border(self) -> bool:
        return isinstance(self.pool, MaxPool2d)


@dataclass(frozen=True)
class LayerGroup:
    """One layer run as it is: Sigmoid, Softmax, Flatten, Add, or the reference kernel of a layer
    with no fast kernel."""

    layer: Layer
    inputs: tuple[str, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.layer,)


@dataclass(frozen=True)
class Alias:
    """A layer that needs no step: its output is the value `inputs[0]` (Dropout; a Flatten folded
    into the Linear layers reading it)."""

    layer: Layer
    inputs: tuple[str, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return (self.layer,)


Group = Union[ConvGroup, LinearGroup, AffineGroup, PoolGroup, LayerGroup, Alias]


def output_of(group: Group) -> str:
    """The value a group computes: named after the last file layer it covers."""
    return group.layers[-1].name


def describe(group: Group) -> str:
    """One line: the kind, the layers covered, the inputs, and the border it writes or reads."""
    text = f"{type(group).__name__}({' + '.join(layer.name for layer in group.layers)} <- {', '.join(group.inputs)})"
    if getattr(group, "border", NO_BORDER) != NO_BORDER:
        text += f" border={list(group.border)}"
    if getattr(group, "input_padded", False):
        text += " input_padded"
    return text


class Readers:
    """Who reads each value, looking through Dropout layers (identities at inference)."""

    def __init__(self, graph: Graph) -> None:
        self.layers = {layer.name: layer for layer in graph.layers}
        self.readers: dict[str, list[Layer]] = {name: [] for name in [INPUT, *self.layers]}
        for layer in graph.layers:
            if not isinstance(layer, Dropout):
                for name in layer.inputs:
                    self.readers[self.source(name)].append(layer)

    def source(self, name: str) -> str:
        """The value `name` stands for once Dropout layers are looked through."""
        while isinstance(self.layers.get(name), Dropout):
            name = self.layers[name].inputs[0]
        return name

    def sole(self, name: str, kinds: tuple[type, ...]) -> Optional[Layer]:
        """The one layer reading `name`, if there is exactly one and it is of one of `kinds`."""
        users = self.readers[name]
        return users[0] if len(users) == 1 and isinstance(users[0], kinds) else None


def fuse(graph: Graph) -> list[Group]:
    """Group the graph's layers into fast steps (and aliases), in file order; borders placed."""
    readers = Readers(graph)
    value: dict[str, str] = {INPUT: INPUT}  # file layer name -> the value holding its output
    groups: list[Group] = []
    for layer in graph.layers:
        if layer.name in value:  # fused into an earlier group
            continue
        inputs = tuple(value[i] for i in layer.inputs)
        group: Group
        if isinstance(layer, Conv2d):
            bn = readers.sole(layer.name, (BatchNorm2d,))
            act = readers.sole((bn or layer).name, ACTIVATIONS)
            last = (act or bn or layer).name
            add = readers.sole(last, (Add,)) if layer.groups == 1 else None
            other = next((i for i in add.inputs if readers.source(i) != last), None) if add else None
            if other in value:  # the residual is computed by an earlier step: add it in this one
                inputs += (value[other],)
            else:
                add = None
            pool = readers.sole(last, (MaxPool2d,)) if add is None and layer.groups == 1 else None
            if pool is not None and not pools_2x2_blocks(pool, graph.shapes[last], graph.shapes[pool.name]):
                pool = None
            group = ConvGroup(layer, bn, act, add, inputs, pool=pool)
        elif isinstance(layer, Linear):
            flat = readers.layers.get(readers.source(layer.inputs[0]))
            chw = graph.shapes[flat.inputs[0]][1:] if flat is not None and _folds_into_linear(flat, graph, readers) \
                else None
            group = LinearGroup(layer, readers.sole(layer.name, ACTIVATIONS), inputs, chw)
        elif isinstance(layer, BatchNorm2d):
            group = AffineGroup(layer, readers.sole(layer.name, ACTIVATIONS), inputs)
        elif isinstance(layer, ACTIVATIONS):
            group = AffineGroup(None, layer, inputs)
        elif isinstance(layer, (MaxPool2d, AvgPool2d, GlobalAvgPool)):
            group = PoolGroup(layer, inputs)
        elif isinstance(layer, Dropout) or isinstance(layer, Flatten) and _folds_into_linear(layer, graph, readers):
            group = Alias(layer, inputs)
        else:
            group = LayerGroup(layer, inputs)
        output = inputs[0] if isinstance(group, Alias) else output_of(group)
        value.update((covered.name, output) for covered in group.layers)
        groups.append(group)
    return _place_borders(groups)


def runs_winograd(conv: Conv2d, folds_batchnorm: bool) -> bool:
    """Whether the convolution runs by Winograd F(2x2, 3x3): 3x3, stride 1, no dilation, one group,
    float32 weights (a folded BatchNorm makes them so) and WINOGRAD_CHANNELS or more in and out."""
    return (conv.groups == 1 and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and (folds_batchnorm or storage(conv.weight) == "F32")
            and min(conv.in_channels, conv.out_channels) >= WINOGRAD_CHANNELS)


def pools_2x2_blocks(pool: MaxPool2d, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """Whether the max pool takes the max of whole 2x2 blocks (a Winograd tile's, say): 2x2
    windows, stride 2, no padding or dilation, and one output per whole block."""
    return (pool.kernel_size == (2, 2) and pool.stride == (2, 2) and not any(pool.padding)
            and pool.dilation == (1, 1) and tuple(out_shape[2:]) == (in_shape[2] // 2, in_shape[3] // 2))


def _folds_into_linear(flatten: Layer, graph: Graph, readers: Readers) -> bool:
    """A Flatten of an NHWC (rank-4) value read only by Linear layers, which then reorder their
    weight columns instead."""
    users = readers.readers[flatten.name]
    return (isinstance(flatten, Flatten) and len(graph.shapes[flatten.inputs[0]]) == 4
            and bool(users) and all(isinstance(u, Linear) for u in users))


def _place_borders(groups: list[Group]) -> list[Group]:
    """Where a value's only reader is a convolution that takes its padding as a border and its
    producer can write one, the producer writes the padding and the reader reads it."""
    readers: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        if not isinstance(group, Alias):
            for name in group.inputs:
                readers.setdefault(name, []).append(index)
    placed = list(groups)
    for index, producer in enumerate(groups):
        if not getattr(producer, "writes_border", False):
            continue
        users = readers.get(output_of(producer), [])
        reader = groups[users[0]] if len(users) == 1 else None
        if isinstance(reader, ConvGroup) and reader.takes_border and reader.inputs[0] == output_of(producer):
            # placed[index], not producer: a convolution can read a padded input and write a border
            placed[index] = dataclasses.replace(placed[index], border=border(reader.conv.padding))
            placed[users[0]] = dataclasses.replace(placed[users[0]], input_padded=True)
    return placed
