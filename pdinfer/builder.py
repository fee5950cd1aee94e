"""Weight files written from code: layer-list entries and seeded random tensors of the right shapes.

`LayerList` builds a FORMAT.md layer list one layer at a time; each layer's tensors get their
shapes from the layer class itself (`tensor_shapes`), so no shape is written twice. It backs
`pdinfer warmup`, and the tests' hand-made models:

    layers = LayerList((1, 10, 12), seed=0)
    layers.add("Conv2d", **conv2d_params(1, 4, 3, padding=1))   # reads "input"
    layers.add("ReLU")                                           # reads the layer before
    layers.write("model.pdw", classes=[...])

`every_layer_type()` is one small model that uses every registered layer type and every fast
kernel variant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .format import write_weights
from .layers import LAYER_TYPES


def _pair(value: int | Sequence[int]) -> list[int]:
    return [int(value), int(value)] if isinstance(value, (int, np.integer)) else [int(v) for v in value]


def _padding(value: int | Sequence[int]) -> list[int]:
    """[top, left, bottom, right] from one int, an (h, w) pair or four values."""
    if isinstance(value, (int, np.integer)):
        return [int(value)] * 4
    value = [int(v) for v in value]
    return value * 2 if len(value) == 2 else value


def conv2d_params(in_channels: int, out_channels: int, kernel_size: int | Sequence[int], *,
                  stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                  dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True) -> dict[str, Any]:
    """Conv2d params as FORMAT.md spells them, from PyTorch-style arguments."""
    return {"in_channels": in_channels, "out_channels": out_channels, "kernel_size": _pair(kernel_size),
            "stride": _pair(stride), "padding": _padding(padding), "dilation": _pair(dilation),
            "groups": groups, "bias": bias}


def max_pool2d_params(kernel_size: int | Sequence[int], *, stride: Optional[int | Sequence[int]] = None,
                      padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1,
                      ceil_mode: bool = False) -> dict[str, Any]:
    """MaxPool2d params (stride defaults to the kernel size, as in PyTorch)."""
    return {"kernel_size": _pair(kernel_size), "stride": _pair(kernel_size if stride is None else stride),
            "padding": _padding(padding), "dilation": _pair(dilation), "ceil_mode": ceil_mode}


def avg_pool2d_params(kernel_size: int | Sequence[int], *, stride: Optional[int | Sequence[int]] = None,
                      padding: int | Sequence[int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
                      divisor_override: int = 0) -> dict[str, Any]:
    """AvgPool2d params (stride defaults to the kernel size; divisor_override 0 is none)."""
    return {"kernel_size": _pair(kernel_size), "stride": _pair(kernel_size if stride is None else stride),
            "padding": _padding(padding), "ceil_mode": ceil_mode, "count_include_pad": count_include_pad,
            "divisor_override": divisor_override}


class LayerList:
    """A layer list under construction, with seeded random tensors for every layer that takes some.

    Weights and biases are uniform in [-scale, scale] with scale = 1 / sqrt(fan-in), BatchNorm
    weights in [0.5, 1.5], running variances in [0.5, 2], other per-channel tensors in [-0.5, 0.5].
    """

    def __init__(self, input_shape: Sequence[int], seed: int = 0) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)  # (C, H, W)
        self.entries: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {"input": (1, *self.input_shape)}  # per layer, N = 1
        self.last = "input"
        self._rng = np.random.default_rng(seed)

    def add(self, type_name: str, inputs: Optional[Sequence[str]] = None, *, name: Optional[str] = None,
            **params: Any) -> str:
        """Append a layer reading `inputs` (default: the layer added before); returns its name."""
        name = name or f"{type_name.lower()}_{len(self.entries)}"
        inputs = list(inputs) if inputs is not None else [self.last]
        layer = LAYER_TYPES[type_name](name, inputs)
        layer.load_param(params)
        self.shapes[name] = layer.output_shape([self.shapes[i] for i in inputs])
        shapes = layer.tensor_shapes()
        for role, shape in shapes.items():
            self.tensors[f"{name}.{role}"] = self._random(type_name, role, shape)
        self.entries.append({"name": name, "type": type_name, "inputs": inputs, "params": params,
                             "tensors": {role: f"{name}.{role}" for role in shapes}})
        self.last = name
        return name

    def _random(self, type_name: str, role: str, shape: tuple[int, ...]) -> np.ndarray:
        if role == "running_var":
            low, high = 0.5, 2.0
        elif type_name == "BatchNorm2d" and role == "weight":
            low, high = 0.5, 1.5
        elif len(shape) == 1 and type_name == "BatchNorm2d":
            low, high = -0.5, 0.5
        else:
            fan_in = int(np.prod(shape[1:])) if role == "weight" and len(shape) > 1 else 1
            low, high = -1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in)
        return self._rng.uniform(low, high, shape).astype(np.float32)

    def write(self, path: str | os.PathLike, classes: Optional[Sequence[str]] = None, producer: str = "") -> Path:
        """Write the weight file; classes default to "0", "1", ... (one per output value)."""
        if classes is None:
            classes = [str(i) for i in range(int(np.prod(self.shapes[self.last][1:])))]
        write_weights(path, self.entries, self.tensors, input_shape=self.input_shape, classes=classes,
                      producer=producer)
        return Path(path)


def every_layer_type(seed: int = 0) -> tuple[LayerList, list[str]]:
    """A small model (input 2 x 9 x 11) that uses every registered layer type and every fast-kernel
    variant; returns it and its classes.

    A strided stem with BatchNorm and LeakyReLU, a depthwise conv with ReLU6, a
    pointwise conv fused with the residual Add, a BatchNorm with nothing to fold into, a grouped
    conv, ceil-mode max pooling, padded average pooling; then zero padding, every smooth and
    clipping activation, PReLU, adaptive pools, a channel split, concat and shuffle, spatial
    attention (channel mean and max, a gate multiplied in), squeeze-and-excitation (a global mean,
    Linear, Sigmoid, Unflatten, multiplied in); a global mean, Flatten and Dropout before a Linear
    with a fused LeakyReLU, Sigmoid and Softmax.
    """
    layers = LayerList((2, 9, 11), seed)
    layers.add("Conv2d", name="stem", **conv2d_params(2, 4, 3, stride=2, padding=1, bias=False))
    layers.add("BatchNorm2d", name="stem_bn", num_features=4, eps=1e-5)
    stem_act = layers.add("LeakyReLU", name="stem_act", negative_slope=0.2)
    layers.add("Conv2d", name="dw", **conv2d_params(4, 4, 3, padding=1, groups=4))
    layers.add("ReLU6", name="dw_act")
    layers.add("Conv2d", name="pw", **conv2d_params(4, 4, 1))
    layers.add("Add", [stem_act, "pw"], name="residual")
    layers.add("BatchNorm2d", name="post_bn", num_features=4, eps=1e-5)
    layers.add("ReLU", name="post_act")
    layers.add("Conv2d", name="grouped", **conv2d_params(4, 6, 3, padding=1, groups=2))
    layers.add("ReLU", name="grouped_act")
    layers.add("MaxPool2d", name="max", **max_pool2d_params(2, ceil_mode=True))
    layers.add("AvgPool2d", name="avg", **avg_pool2d_params(2, stride=1, padding=1, count_include_pad=False))
    layers.add("ZeroPad2d", name="pad", padding=[1, 0, 0, 1])  # 6 x 5 x 5
    layers.add("Hardswish", name="hardswish")
    layers.add("Hardsigmoid", name="hardsigmoid")
    layers.add("SiLU", name="silu")
    layers.add("GELU", name="gelu", approximate="none")
    layers.add("GELU", name="gelu_tanh", approximate="tanh")
    layers.add("Tanh", name="tanh")
    layers.add("Hardtanh", name="hardtanh", min_val=-0.5, max_val=0.5)
    layers.add("ELU", name="elu", alpha=1.0)
    layers.add("PReLU", name="prelu", num_parameters=6)
    layers.add("AdaptiveMaxPool2d", name="adaptive_max", output_size=[3, 2])
    pooled = layers.add("AdaptiveAvgPool2d", name="adaptive_avg", output_size=[2, 2])  # 6 x 2 x 2
    low = layers.add("Slice", [pooled], name="low", dim=1, start=0, end=2)
    high = layers.add("Slice", [pooled], name="high", dim=1, start=2, end=6)
    layers.add("Concat", [high, low], name="cat", dim=1)
    shuffled = layers.add("ChannelShuffle", name="shuffle", groups=2)
    mean = layers.add("ChannelMean", [shuffled], name="channel_mean")
    peak = layers.add("ChannelMax", [shuffled], name="channel_max")
    layers.add("Add", [mean, peak], name="spatial")
    layers.add("Sigmoid", name="spatial_gate")
    attended = layers.add("Mul", [shuffled, "spatial_gate"], name="spatial_mul")
    layers.add("GlobalAvgPool", name="squeeze", keepdim=False)
    layers.add("Linear", name="excite", in_features=6, out_features=6, bias=True)
    layers.add("Sigmoid", name="excite_gate")
    layers.add("Unflatten", name="excite_view", shape=[6, 1, 1])
    layers.add("Mul", [attended, "excite_view"], name="se_mul")
    layers.add("GlobalAvgPool", name="gap", keepdim=True)
    layers.add("Flatten", name="flat")
    layers.add("Dropout", name="drop", p=0.5)
    layers.add("Linear", name="fc", in_features=6, out_features=3, bias=True)
    layers.add("LeakyReLU", name="fc_act", negative_slope=0.1)
    layers.add("Sigmoid", name="sig")
    layers.add("Softmax", name="prob", dim=1)
    return layers, ["a", "b", "c"]
