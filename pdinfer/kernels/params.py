"""The small parameter structs kernels take (TFLite style), shared by the reference and fast kernels.

They are NamedTuples, so a kernel takes `window` instead of ten positional integers. A kernel is
called with the struct as a plain tuple and rebuilds it in its first line (`window =
Window(*window)`): Numba's dispatcher types a NamedTuple argument through a slow path, about
0.6 us per argument and call (measured), which adds up to a tenth of a small model's latency,
while a plain tuple costs a tenth of that. Build structs with the functions below, which fix every
field's type (a field that is sometimes a bool and sometimes an int would compile a kernel twice).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

ACT_NONE, ACT_RELU, ACT_RELU6, ACT_LEAKY = 0, 1, 2, 3  # activation codes of fused kernels


class Window(NamedTuple):
    """A sliding window over H and W (convolution and pooling), as PyTorch parameterises it."""

    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    pad_bottom: int
    pad_right: int
    dilation_h: int
    dilation_w: int


class Border(NamedTuple):
    """Rows and columns of zeros a fast kernel writes around each output image: the padding of
    the convolution that reads the output, which then needs no padded copy of its input."""

    top: int
    left: int
    bottom: int
    right: int


class Activation(NamedTuple):
    """The activation a fast kernel applies after the bias: `code` (ACT_*) and LeakyReLU's slope."""

    code: int
    slope: np.float32


def window(kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
           dilation: Sequence[int] = (1, 1)) -> Window:
    """A Window from (h, w) pairs and padding (top, left, bottom, right)."""
    return Window(*(int(v) for v in (*kernel, *stride, *padding, *dilation)))


def unpadded(w: Window) -> Window:
    """The same window without padding (for an input that already carries it as a border)."""
    return w._replace(pad_top=0, pad_left=0, pad_bottom=0, pad_right=0)


def border(padding: Sequence[int] = (0, 0, 0, 0)) -> Border:
    """A Border from (top, left, bottom, right); no argument: none."""
    return Border(*(int(v) for v in padding))


def activation(code: int = ACT_NONE, slope: float = 0.0) -> Activation:
    """An Activation; no argument: none."""
    return Activation(int(code), np.float32(slope))


POINTWISE = window((1, 1), (1, 1), (0, 0, 0, 0))  # a 1x1 convolution, and Linear run as one
NO_BORDER = border()
