"""The layer registry: every type a weight file may name, by its FORMAT.md name."""

from .activations import LeakyReLU, ReLU, ReLU6, Sigmoid
from .base import Layer, Shape
from .batchnorm2d import BatchNorm2d
from .channels import ChannelShuffle, Concat, Slice
from .conv2d import Conv2d
from .linear import Linear
from .pooling import AvgPool2d, GlobalAvgPool, MaxPool2d
from .softmax import Softmax
from .structural import Add, Dropout, Flatten, Mul

LAYER_TYPES: dict[str, type[Layer]] = {cls.type: cls for cls in (
    Conv2d, BatchNorm2d, Linear, ReLU, ReLU6, LeakyReLU, Sigmoid, Softmax,
    MaxPool2d, AvgPool2d, GlobalAvgPool, Flatten, Dropout, Add,
    Mul, Concat, Slice, ChannelShuffle)}

__all__ = ["LAYER_TYPES", "Layer", "Shape"]
