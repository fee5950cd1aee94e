"""Compile every kernel ahead of time by running a tiny model that uses every layer type."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from .format import write_weights
from .model import load


def _conv(name: str, source: str, cin: int, cout: int, kernel: int, *, stride: int = 1, pad: int = 0,
          groups: int = 1, bias: bool = True) -> dict[str, Any]:
    return {"name": name, "type": "Conv2d", "inputs": [source],
            "params": {"in_channels": cin, "out_channels": cout, "kernel_size": [kernel, kernel],
                       "stride": [stride, stride], "padding": [pad] * 4, "dilation": [1, 1],
                       "groups": groups, "bias": bias},
            "tensors": {"weight": f"{name}.weight", **({"bias": f"{name}.bias"} if bias else {})}}


def _layer(name: str, type_name: str, inputs: list[str], **params: Any) -> dict[str, Any]:
    return {"name": name, "type": type_name, "inputs": inputs, "params": params, "tensors": {}}


def tiny_model_layers() -> tuple[list[dict[str, Any]], dict[str, np.ndarray], tuple[int, int, int]]:
    """A small graph touching every layer type and every fast-kernel variant.

    Returns (layer list, tensors, input shape (C, H, W)); weights are seeded random.
    """
    bn_roles = ("weight", "bias", "running_mean", "running_var")
    layers = [
        _conv("stem", "input", 2, 4, 3, stride=2, pad=1, bias=False),
        {"name": "stem_bn", "type": "BatchNorm2d", "inputs": ["stem"],
         "params": {"num_features": 4, "eps": 1e-5}, "tensors": {r: f"stem_bn.{r}" for r in bn_roles}},
        _layer("stem_act", "LeakyReLU", ["stem_bn"], negative_slope=0.2),
        _conv("dw", "stem_act", 4, 4, 3, pad=1, groups=4),
        _layer("dw_act", "ReLU6", ["dw"]),
        _conv("pw", "dw_act", 4, 4, 1),
        _layer("residual", "Add", ["stem_act", "pw"]),
        {"name": "post_bn", "type": "BatchNorm2d", "inputs": ["residual"],
         "params": {"num_features": 4, "eps": 1e-5}, "tensors": {r: f"post_bn.{r}" for r in bn_roles}},
        _layer("post_act", "ReLU", ["post_bn"]),
        _conv("grouped", "post_act", 4, 6, 3, pad=1, groups=2),
        _layer("grouped_act", "ReLU", ["grouped"]),
        _layer("max", "MaxPool2d", ["grouped_act"], kernel_size=[2, 2], stride=[2, 2], padding=[0, 0, 0, 0],
               dilation=[1, 1], ceil_mode=True),
        _layer("avg", "AvgPool2d", ["max"], kernel_size=[2, 2], stride=[1, 1], padding=[1, 1, 1, 1],
               ceil_mode=False, count_include_pad=False, divisor_override=0),
        _layer("low", "Slice", ["avg"], dim=1, start=0, end=2),
        _layer("high", "Slice", ["avg"], dim=1, start=2, end=6),
        _layer("cat", "Concat", ["high", "low"], dim=1),
        _layer("shuffle", "ChannelShuffle", ["cat"], groups=2),
        _layer("gate", "Mul", ["shuffle", "avg"]),
        _layer("gap", "GlobalAvgPool", ["gate"], keepdim=True),
        _layer("flat", "Flatten", ["gap"]),
        _layer("drop", "Dropout", ["flat"], p=0.5),
        {"name": "fc", "type": "Linear", "inputs": ["drop"],
         "params": {"in_features": 6, "out_features": 3, "bias": True},
         "tensors": {"weight": "fc.weight", "bias": "fc.bias"}},
        _layer("fc_act", "LeakyReLU", ["fc"], negative_slope=0.1),
        _layer("sig", "Sigmoid", ["fc_act"]),
        _layer("prob", "Softmax", ["sig"], dim=1),
    ]
    shapes = {"stem.weight": (4, 2, 3, 3), "dw.weight": (4, 1, 3, 3), "dw.bias": (4,),
              "pw.weight": (4, 4, 1, 1), "pw.bias": (4,), "grouped.weight": (6, 2, 3, 3),
              "grouped.bias": (6,), "fc.weight": (3, 6), "fc.bias": (3,),
              **{f"{bn}.{r}": (4,) for bn in ("stem_bn", "post_bn") for r in bn_roles}}
    rng = np.random.default_rng(0)
    tensors = {name: rng.uniform(0.5 if name.endswith("running_var") else -1, 1.5, shape).astype(np.float32)
               for name, shape in shapes.items()}
    return layers, tensors, (2, 9, 11)


def warmup() -> float:
    """Compile (or load from Numba's cache) every fast and reference kernel; returns seconds taken."""
    start = time.perf_counter()
    layers, tensors, input_shape = tiny_model_layers()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "warmup.pdw")
        write_weights(path, layers, tensors, input_shape=input_shape, classes=["a", "b", "c"])
        model = load(path)
        x = np.zeros((1, *input_shape), np.float32)
        model(x)
        model.trace(x)
    return time.perf_counter() - start
