"""ZeroPad2d: zeros around each (H, W) plane."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .base import Layer, Shape


class ZeroPad2d(Layer):
    type = "ZeroPad2d"
    param_names = ("padding",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.padding = self.padding_param(params)

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        top, left, bottom, right = self.padding
        return (shape[0], shape[1], shape[2] + top + bottom, shape[3] + left + right)

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.zero_pad2d(x, *self.padding)
