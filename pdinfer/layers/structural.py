"""Layers that move or combine values without weights: Flatten, Dropout, Add."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import reference
from .base import Layer, Shape


class Flatten(Layer):
    type = "Flatten"

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        if len(shape) < 2:
            raise self.error(f"input must have at least 2 dimensions, got shape {shape}")
        return (shape[0], int(np.prod(shape[1:])))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


class Dropout(Layer):
    type = "Dropout"
    param_names = ("p",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.p = self.float_param(params, "p", 0.0, 1.0)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x


class Add(Layer):
    type = "Add"
    num_inputs = 2
    elementwise = True

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        if in_shapes[0] != in_shapes[1]:
            raise self.error(f"inputs must have the same shape, got {in_shapes[0]} and {in_shapes[1]}")
        return in_shapes[0]

    def forward(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return reference.add(a, b)
