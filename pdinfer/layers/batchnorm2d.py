"""BatchNorm2d in eval mode; folded into the preceding convolution by the planner."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .base import Layer, Shape


class BatchNorm2d(Layer):
    type = "BatchNorm2d"
    param_names = ("num_features", "eps")
    weight: np.ndarray  # (C,)
    bias: np.ndarray  # (C,)
    running_mean: np.ndarray  # (C,)
    running_var: np.ndarray  # (C,)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.num_features = self.int_param(params, "num_features")
        self.eps = self.float_param(params, "eps", 0.0, 1.0, low_open=True)

    def tensor_shapes(self) -> dict[str, Shape]:
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c}

    def load_model(self, tensors: dict[str, np.ndarray]) -> None:
        super().load_model(tensors)
        if not np.all(self.running_var >= 0):
            raise self.error("running_var has negative or NaN entries")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        if shape[1] != self.num_features:
            raise self.error(f"expects {self.num_features} channels, got shape {shape}")
        return shape

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-channel affine map this layer applies, in float64: y = x * scale + shift."""
        scale = self.weight.astype(np.float64) / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.batchnorm2d(x, self.weight, self.bias, self.running_mean, self.running_var,
                                     np.float32(self.eps))
