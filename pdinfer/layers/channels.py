"""Layers that move whole channels: Concat, Slice, ChannelShuffle (dim 1 of any rank >= 2)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..format import is_int
from .base import Layer, Shape


class _ChannelLayer(Layer):
    """Shared checks: the `dim` param (1) and an input of rank >= 2."""

    def check_dim(self, params: dict[str, Any]) -> None:
        if not is_int(params["dim"]) or params["dim"] != 1:
            raise self.error(f"param 'dim' must be 1 (the channel dimension), got {params['dim']!r}")

    def expect_channels(self, shape: Shape, what: str = "input") -> None:
        if len(shape) < 2:
            raise self.error(f"{what} must have at least 2 dimensions (N, C, ...), got shape {shape}")


def _planes(x: np.ndarray) -> np.ndarray:
    """x (N, C, ...) as (N, C, P): every channel's values in one row."""
    return x.reshape(x.shape[0], x.shape[1], -1)


class Concat(_ChannelLayer):
    type = "Concat"
    param_names = ("dim",)
    num_inputs = 2
    variadic = True

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.check_dim(params)

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        first = in_shapes[0]
        self.expect_channels(first)
        for i, shape in enumerate(in_shapes[1:], 1):
            if len(shape) != len(first) or shape[:1] + shape[2:] != first[:1] + first[2:]:
                raise self.error(f"input {i} has shape {shape}; every input must match input 0's "
                                 f"shape {first} except in dim 1")
        return (first[0], sum(shape[1] for shape in in_shapes), *first[2:])

    def forward(self, *xs: np.ndarray, kernels: ModuleType) -> np.ndarray:
        out_shape = self.output_shape([x.shape for x in xs])
        out = np.empty(out_shape, dtype=np.float32)
        flat, offset = _planes(out), 0
        for x in xs:
            kernels.copy_channels(_planes(x), flat, offset)
            offset += x.shape[1]
        return out


class Slice(_ChannelLayer):
    type = "Slice"
    param_names = ("dim", "start", "end")

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.check_dim(params)
        self.start = self.int_param(params, "start", low=0)
        self.end = self.int_param(params, "end")
        if self.end <= self.start:
            raise self.error(f"param 'end' ({self.end}) must be greater than 'start' ({self.start})")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_channels(shape)
        if self.end > shape[1]:
            raise self.error(f"channels [{self.start}, {self.end}) do not fit an input of {shape[1]} "
                             f"channels (shape {shape})")
        return (shape[0], self.end - self.start, *shape[2:])

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        out = kernels.slice_channels(_planes(x), self.start, self.end)
        return out.reshape(self.output_shape([x.shape]))


class ChannelShuffle(_ChannelLayer):
    type = "ChannelShuffle"
    param_names = ("groups",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.groups = self.int_param(params, "groups")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_channels(shape)
        if shape[1] % self.groups:
            raise self.error(f"groups={self.groups} does not divide the {shape[1]} input channels")
        return shape

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.channel_shuffle(_planes(x), self.groups).reshape(x.shape)
