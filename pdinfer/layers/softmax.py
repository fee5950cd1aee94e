"""Softmax along dim 1 (classes or channels)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..format import is_int
from .base import Layer, Shape


class Softmax(Layer):
    type = "Softmax"
    param_names = ("dim",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        if not is_int(params["dim"]) or params["dim"] != 1:
            raise self.unsupported(f"only dim=1 (an integer) is supported, got dim={params['dim']!r}")
        self.dim = 1

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        if len(in_shapes[0]) < 2:
            raise self.error(f"input must have at least 2 dimensions, got shape {in_shapes[0]}")
        return in_shapes[0]

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        channels_last = np.moveaxis(x, 1, -1)
        rows = np.ascontiguousarray(channels_last).reshape(-1, x.shape[1])
        out = kernels.softmax_rows(rows).reshape(channels_last.shape)
        return np.ascontiguousarray(np.moveaxis(out, -1, 1))
