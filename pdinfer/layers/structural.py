"""Layers that move or combine values without weights: Flatten, Unflatten, Dropout, Add, Mul."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..format import is_int
from .base import Layer, Shape


class Flatten(Layer):
    type = "Flatten"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        if len(shape) < 2:
            raise self.error(f"input must have at least 2 dimensions, got shape {shape}")
        return (shape[0], int(np.prod(shape[1:])))

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


class Unflatten(Layer):
    type = "Unflatten"
    param_names = ("shape",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        shape = params["shape"]
        if not isinstance(shape, list) or len(shape) != 3 or not all(is_int(d) and 1 <= d <= 1 << 24 for d in shape):
            raise self.error(f"param 'shape' must be [C, H, W] integers in [1, {1 << 24}], got {shape!r}")
        self.shape = tuple(shape)

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 2)
        if shape[1] != int(np.prod(self.shape, dtype=object)):
            raise self.error(f"input of {shape[1]} features cannot be viewed as {list(self.shape)}")
        return (shape[0], *self.shape)

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return x.reshape(x.shape[0], *self.shape)


class Dropout(Layer):
    type = "Dropout"
    param_names = ("p",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.p = self.float_param(params, "p", 0.0, 1.0)

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return x


class Add(Layer):
    type = "Add"
    num_inputs = 2
    elementwise = True

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        if in_shapes[0] != in_shapes[1]:
            raise self.error(f"inputs must have the same shape, got {in_shapes[0]} and {in_shapes[1]}")
        return in_shapes[0]

    def forward(self, a: np.ndarray, b: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.add(a, b)


def broadcast_shape(a: Shape, b: Shape) -> Shape | None:
    """Mul's output shape for inputs of shapes a and b, or None if they do not broadcast.

    Both (N, C) or both (N, C, H, W) with the same N; every other axis equal, or 1 in one of them.
    """
    if (len(a) != len(b) or len(a) not in (2, 4) or a[0] != b[0]
            or not all(i == j or 1 in (i, j) for i, j in zip(a[1:], b[1:]))):
        return None
    return tuple(max(i, j) for i, j in zip(a, b))


class Mul(Layer):
    type = "Mul"
    num_inputs = 2

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = broadcast_shape(*in_shapes)
        if shape is None:
            raise self.error(f"inputs of shapes {in_shapes[0]} and {in_shapes[1]} do not broadcast: both "
                             "must be (N, C) or (N, C, H, W) with the same N, each other axis equal or 1 "
                             "in one of them")
        return shape

    def forward(self, a: np.ndarray, b: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        shape = self.output_shape([a.shape, b.shape])
        if len(shape) == 2:  # (N, C) as (N, C, 1, 1)
            return kernels.mul(a[:, :, None, None], b[:, :, None, None], shape[1], 1, 1).reshape(shape)
        return kernels.mul(a, b, *shape[1:])
