"""Conv2d: any kernel, stride, padding, dilation, groups (depthwise and pointwise included)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..kernels.params import Window, window
from .base import Layer, Shape, window_output_size


class Conv2d(Layer):
    type = "Conv2d"
    param_names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
                   "groups", "bias")
    compressible = True
    weight: np.ndarray  # (Co, Ci/groups, KH, KW), as stored (float32, float16, BF16 bits or int8)
    bias: np.ndarray  # (Co,), present only if has_bias

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.in_channels = self.int_param(params, "in_channels")
        self.out_channels = self.int_param(params, "out_channels")
        self.kernel_size = self.pair_param(params, "kernel_size")
        self.stride = self.pair_param(params, "stride")
        self.padding = self.padding_param(params)
        self.dilation = self.pair_param(params, "dilation")
        self.groups = self.int_param(params, "groups")
        self.has_bias = self.bool_param(params, "bias")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise self.error(f"groups={self.groups} must divide in_channels={self.in_channels} "
                             f"and out_channels={self.out_channels}")

    @property
    def window(self) -> Window:
        return window(self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def is_depthwise(self) -> bool:
        """One input and one output channel per group (more than one group)."""
        return 1 < self.groups == self.in_channels == self.out_channels

    def tensor_shapes(self) -> dict[str, Shape]:
        shapes = {"weight": (self.out_channels, self.in_channels // self.groups, *self.kernel_size)}
        if self.has_bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        if shape[1] != self.in_channels:
            raise self.error(f"expects {self.in_channels} input channels, got shape {shape}")
        top, left, bottom, right = self.padding
        out_h = window_output_size(shape[2], top, bottom, self.kernel_size[0], self.stride[0], self.dilation[0])
        out_w = window_output_size(shape[3], left, right, self.kernel_size[1], self.stride[1], self.dilation[1])
        if out_h < 1 or out_w < 1:
            raise self.error(f"input {shape[2]}x{shape[3]} is smaller than the dilated kernel")
        return (shape[0], self.out_channels, out_h, out_w)

    def macs(self, out_shape: Shape) -> int:
        return int(np.prod(out_shape)) * (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        _, _, out_h, out_w = self.output_shape([x.shape])
        bias = self.bias if self.has_bias else np.zeros(0, np.float32)
        return kernels.conv2d(x, self.float_weight(), bias, self.has_bias, self.window, self.groups, out_h, out_w)
