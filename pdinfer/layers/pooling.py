"""MaxPool2d, AvgPool2d, GlobalAvgPool, the adaptive pools and the channel reductions (mean, max)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..kernels.params import Window, window
from .base import Layer, Shape, window_output_size


class _Pool2d(Layer):
    """Shared parameter handling of the windowed pools."""

    dilation = (1, 1)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.kernel_size = self.pair_param(params, "kernel_size")
        self.stride = self.pair_param(params, "stride")
        self.padding = self.padding_param(params)
        self.ceil_mode = self.bool_param(params, "ceil_mode")
        top, left, bottom, right = self.padding
        if max(top, bottom) > self.kernel_size[0] // 2 or max(left, right) > self.kernel_size[1] // 2:
            raise self.error(f"padding {list(self.padding)} must be at most half the kernel "
                             f"{list(self.kernel_size)}")

    @property
    def window(self) -> Window:
        return window(self.kernel_size, self.stride, self.padding, self.dilation)

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        top, left, bottom, right = self.padding
        out_h = window_output_size(shape[2], top, bottom, self.kernel_size[0], self.stride[0],
                                   self.dilation[0], self.ceil_mode)
        out_w = window_output_size(shape[3], left, right, self.kernel_size[1], self.stride[1],
                                   self.dilation[1], self.ceil_mode)
        if out_h < 1 or out_w < 1:
            raise self.error(f"input {shape[2]}x{shape[3]} is smaller than the pooling window")
        return (shape[0], shape[1], out_h, out_w)


class MaxPool2d(_Pool2d):
    type = "MaxPool2d"
    param_names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.dilation = self.pair_param(params, "dilation")

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        _, _, out_h, out_w = self.output_shape([x.shape])
        return kernels.max_pool2d(x, self.window, out_h, out_w)


class AvgPool2d(_Pool2d):
    type = "AvgPool2d"
    param_names = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                   "divisor_override")

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.count_include_pad = self.bool_param(params, "count_include_pad")
        self.divisor_override = self.int_param(params, "divisor_override", low=0)

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        _, _, out_h, out_w = self.output_shape([x.shape])
        return kernels.avg_pool2d(x, self.window, self.count_include_pad, self.divisor_override, out_h, out_w)


class GlobalAvgPool(Layer):
    type = "GlobalAvgPool"
    param_names = ("keepdim",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.keepdim = self.bool_param(params, "keepdim")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        return (shape[0], shape[1], 1, 1) if self.keepdim else (shape[0], shape[1])

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.global_avg_pool(x).reshape(self.output_shape([x.shape]))


class _AdaptivePool2d(Layer):
    """Shared parameters of the adaptive pools: output_size [height, width]."""

    param_names = ("output_size",)

    def load_param(self, params: dict[str, Any]) -> None:
        super().load_param(params)
        self.output_size = self.pair_param(params, "output_size")

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        return (shape[0], shape[1], *self.output_size)


class AdaptiveAvgPool2d(_AdaptivePool2d):
    type = "AdaptiveAvgPool2d"

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.adaptive_avg_pool2d(x, *self.output_size)


class AdaptiveMaxPool2d(_AdaptivePool2d):
    type = "AdaptiveMaxPool2d"

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.adaptive_max_pool2d(x, *self.output_size)


class _ChannelReduction(Layer):
    """A reduction over the channels with keepdim: (N, C, H, W) -> (N, 1, H, W)."""

    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        shape = in_shapes[0]
        self.expect_rank(shape, 4)
        return (shape[0], 1, shape[2], shape[3])


class ChannelMean(_ChannelReduction):
    type = "ChannelMean"

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.channel_mean(x)


class ChannelMax(_ChannelReduction):
    type = "ChannelMax"

    def forward(self, x: np.ndarray, *, kernels: ModuleType) -> np.ndarray:
        return kernels.channel_max(x)
