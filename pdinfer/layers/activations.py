"""Element-wise activations (any input shape): ReLU, ReLU6, LeakyReLU, Sigmoid, Hardswish,
Hardsigmoid, SiLU, GELU, Tanh, Hardtanh, ELU, and PReLU (one weight, or one per channel).

Their kernels run on the values flattened, so that each compiles once, whatever the rank."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .base import Layer, Shape


class ReLU(Layer):
    type = "ReLU"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.relu(x.reshape(-1)).reshape(x.shape)


class ReLU6(Layer):
    type = "ReLU6"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.relu6(x.reshape(-1)).reshape(x.shape)


class LeakyReLU(Layer):
    type = "LeakyReLU"
    elementwise = True
    param_names = ("negative_slope",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.negative_slope = self.float_param(params, "negative_slope")

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.leaky_relu(x.reshape(-1), np.float32(self.negative_slope)).reshape(x.shape)


class Sigmoid(Layer):
    type = "Sigmoid"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.sigmoid(x.reshape(-1)).reshape(x.shape)


class Hardswish(Layer):
    type = "Hardswish"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.hardswish(x.reshape(-1)).reshape(x.shape)


class Hardsigmoid(Layer):
    type = "Hardsigmoid"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.hardsigmoid(x.reshape(-1)).reshape(x.shape)


class SiLU(Layer):
    type = "SiLU"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.silu(x.reshape(-1)).reshape(x.shape)


class Tanh(Layer):
    type = "Tanh"
    elementwise = True

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.tanh(x.reshape(-1)).reshape(x.shape)


class GELU(Layer):
    """GELU with the exact erf form (approximate "none") or the tanh approximation ("tanh")."""

    type = "GELU"
    elementwise = True
    param_names = ("approximate",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        if params["approximate"] not in ("none", "tanh"):
            raise self.unsupported(f"param 'approximate' must be \"none\" or \"tanh\", "
                                   f"got {params['approximate']!r}")
        self.approximate = params["approximate"]

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.gelu(x.reshape(-1), self.approximate == "tanh").reshape(x.shape)


class Hardtanh(Layer):
    type = "Hardtanh"
    elementwise = True
    param_names = ("min_val", "max_val")

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.min_val = self.float_param(params, "min_val")
        self.max_val = self.float_param(params, "max_val")
        if not np.float32(self.min_val) <= np.float32(self.max_val):
            raise self.error(f"min_val={self.min_val} must not exceed max_val={self.max_val}")

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.hardtanh(x.reshape(-1), np.float32(self.min_val), np.float32(self.max_val)).reshape(x.shape)


class ELU(Layer):
    type = "ELU"
    elementwise = True
    param_names = ("alpha",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.alpha = self.float_param(params, "alpha")

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.elu(x.reshape(-1), np.float32(self.alpha)).reshape(x.shape)


class PReLU(Layer):
    """y = x if x > 0 else weight[c] * x: one weight for every value, or one per channel (dim 1)."""

    type = "PReLU"
    param_names = ("num_parameters",)
    weight: np.ndarray  # (num_parameters,)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.num_parameters = self.int_param(params, "num_parameters")

    def tensor_shapes(self) -> dict[str, Shape]:
        return {"weight": (self.num_parameters,)}

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        if self.num_parameters > 1 and (len(shape) < 2 or shape[1] != self.num_parameters):
            raise self.error(f"{self.num_parameters} weights need an input with {self.num_parameters} "
                             f"channels (dim 1), got shape {shape}")
        return shape

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.prelu(x.reshape(x.shape[0], x.shape[1], -1), self.weight).reshape(x.shape)
