"""The layer registry: every type a weight file may name, by its FORMAT.md name."""

from .activations import (ELU, GELU, PReLU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU, ReLU, ReLU6,
                          Sigmoid, SiLU, Tanh)
from .base import Layer, Shape
from .batchnorm2d import BatchNorm2d
from .channels import ChannelShuffle, Concat, Slice
from .conv2d import Conv2d
from .linear import Linear
from .padding import ZeroPad2d
from .pooling import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, ChannelMax, ChannelMean,
                      GlobalAvgPool, MaxPool2d)
from .softmax import Softmax
from .structural import Add, Dropout, Flatten, Mul, Unflatten

LAYER_TYPES: dict[str, type[Layer]] = {cls.type: cls for cls in (
    Conv2d, BatchNorm2d, Linear, ReLU, ReLU6, LeakyReLU, Sigmoid, Softmax,
    MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, Dropout, Add,
    Hardswish, Hardsigmoid, SiLU, GELU, Tanh, Hardtanh, ELU, PReLU,
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, ChannelMean, ChannelMax, ZeroPad2d,
    Mul, Concat, Slice, ChannelShuffle, Unflatten)}

__all__ = ["LAYER_TYPES", "Layer", "Shape"]
