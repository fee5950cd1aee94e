"""Linear: y = x W^T + b on (N, in_features)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .base import Layer, Shape


class Linear(Layer):
    type = "Linear"
    param_names = ("in_features", "out_features", "bias")
    compressible = True
    weight: np.ndarray  # (O, I), as stored (float32, float16, BF16 bits or int8)
    bias: np.ndarray  # (O,), present only if has_bias

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.in_features = self.int_param(params, "in_features", high=1 << 27)
        self.out_features = self.int_param(params, "out_features")
        self.has_bias = self.bool_param(params, "bias")

    def tensor_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.has_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 2)
        if shape[1] != self.in_features:
            raise self.error(f"expects {self.in_features} input features, got shape {shape}")
        return (shape[0], self.out_features)

    def macs(self, out_shape: Shape) -> int:
        return int(np.prod(out_shape)) * self.in_features

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        bias = self.bias if self.has_bias else np.zeros(0, np.float32)
        return kernels.linear(x, self.float_weight(), bias, self.has_bias)
