"""Element-wise activations: ReLU, ReLU6, LeakyReLU, Sigmoid (any input shape)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels import reference
from .base import Layer


class ReLU(Layer):
    type = "ReLU"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return reference.relu(x)


class ReLU6(Layer):
    type = "ReLU6"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return reference.relu6(x)


class LeakyReLU(Layer):
    type = "LeakyReLU"
    param_names = ("negative_slope",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.negative_slope = self.float_param(params, "negative_slope")

    def forward(self, x: np.ndarray) -> np.ndarray:
        return reference.leaky_relu(x, np.float32(self.negative_slope))


class Sigmoid(Layer):
    type = "Sigmoid"

    def forward(self, x: np.ndarray) -> np.ndarray:
        return reference.sigmoid(x)
