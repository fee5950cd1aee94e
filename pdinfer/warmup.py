"""Compile ahead of time what models run, so that later processes load it all from Numba's cache.

Without weight files, `warmup` compiles everything a model of pdinfer's layer set can run: every
row kernel of the table interpreter (kernels/rows.py), the interpreter and its helper thread, and
the reference kernels (host steps of layers with no row, `Model.trace`, golden bundles), and the
integer reference of int8 computation (`Model.trace` of an int8 file), through small models that
use every layer type and every int8 step.
Given weight files, it also runs exactly what each of them runs: one image and a batch, with and
without a helper thread, and its trace.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional, Sequence, Union

import numpy as np
from .builder import LayerList, conv2d_params, every_layer_type, max_pool2d_params
from .kernels import rows
from .model import Model, load
from .program import Helper, compile_helper

Progress = Callable[[int, int], None]


def _table_model(directory: str) -> Model:
    """A small model whose steps all have rows (so it runs as a table), with a Winograd convolution."""
    layers = LayerList((2, 8, 8), seed=1)
    layers.add("Conv2d", **conv2d_params(2, 32, 3, padding=1))
    layers.add("ReLU")
    layers.add("Conv2d", **conv2d_params(32, 32, 3, padding=1))
    layers.add("GlobalAvgPool", keepdim=False)
    layers.add("Linear", in_features=32, out_features=3, bias=True)
    layers.add("Softmax", dim=1)
    return load(layers.write(os.path.join(directory, "table.pdw")))


def _step_model(directory: str) -> Model:
    """A model with a layer that has no row kernel (PReLU, a host step between two calls of the
    interpreter), and a Winograd convolution with its fused max pool."""
    layers = LayerList((2, 8, 8), seed=2)
    layers.add("Conv2d", **conv2d_params(2, 32, 3, padding=1))
    layers.add("PReLU", num_parameters=1)
    layers.add("Conv2d", **conv2d_params(32, 32, 3, padding=1))
    layers.add("MaxPool2d", **max_pool2d_params(2))
    layers.add("Flatten")
    layers.add("Linear", in_features=32 * 4 * 4, out_features=3, bias=True)
    return load(layers.write(os.path.join(directory, "steps.pdw")))


def _int8_models(directory: str) -> list[Model]:
    """Two small models quantized to compute in int8 (exporter.compress), with every kind of int8
    step between them: a MobileNet-like one (depthwise, Add, mean, Linear, Softmax in float32) and a
    LeNet-like one (convolution with its max pool, Flatten, Linear through a Dropout, Sigmoid)."""
    from .exporter.compress import compress_file
    light = LayerList((1, 12, 12), seed=3)
    light.add("Conv2d", **conv2d_params(1, 8, 3, stride=2, padding=1))
    stem = light.add("LeakyReLU", negative_slope=0.2)
    light.add("Conv2d", **conv2d_params(8, 8, 3, padding=1, groups=8))
    light.add("ReLU6")
    pointwise = light.add("Conv2d", **conv2d_params(8, 8, 1))
    light.add("Add", [stem, pointwise])
    light.add("GlobalAvgPool", keepdim=False)
    light.add("Linear", in_features=8, out_features=3, bias=True)
    light.add("Softmax", dim=1)
    dense = LayerList((1, 12, 12), seed=4)
    dense.add("Conv2d", **conv2d_params(1, 8, 3, padding=1))
    dense.add("ReLU")
    dense.add("MaxPool2d", **max_pool2d_params(2))
    dense.add("Flatten")
    dense.add("Linear", in_features=8 * 6 * 6, out_features=8, bias=True)
    dense.add("Dropout", p=0.5)
    dense.add("ReLU")
    dense.add("Linear", in_features=8, out_features=3, bias=True)
    dense.add("Sigmoid")
    images = np.random.default_rng(0).uniform(0, 1, (8, 1, 12, 12)).astype(np.float32)
    models = []
    for name, layers in (("light", light), ("dense", dense)):
        src, dst = os.path.join(directory, f"{name}.pdw"), os.path.join(directory, f"{name}.int8.pdw")
        layers.write(src)
        compress_file(src, dst, "int8", images)
        models.append(load(dst))
    return models


def _run_all_ways(model: Model) -> None:
    """Compile its kernels, run the model on one image and on a batch of more than one pass, with
    and without a helper thread, and trace it."""
    model.compile()
    plan = model._plan
    x = np.zeros((1, *model.input_shape), np.float32)
    model(x)
    model(np.zeros((plan.chunk + 1, *model.input_shape), np.float32))
    if plan.program is not None:
        helper = Helper()
        try:
            plan.program.run(x, helper)
        finally:
            helper.close()
    model.trace(x)


def warmup(weights: Sequence[Union[str, os.PathLike]] = (), progress: Optional[Progress] = None) -> float:
    """Compile (or load from Numba's cache) everything models of the layer set run, and exactly
    what the given weight files run (see the module docstring); returns the seconds taken.

    progress(done, total) is called after each step.
    """
    start = time.perf_counter()
    report = progress or (lambda done, total: None)
    given = [load(path) for path in weights]  # a file that does not load fails before any compiling
    total = 6 + len(given)
    report(0, total)
    rows.compile_all()
    compile_helper()
    report(1, total)
    with tempfile.TemporaryDirectory() as tmp:
        layers, classes = every_layer_type()
        models = [load(layers.write(os.path.join(tmp, "every_layer_type.pdw"), classes)), _table_model(tmp),
                  _step_model(tmp), *_int8_models(tmp)]
        for done, model in enumerate(models, 2):
            _run_all_ways(model)
            report(done, total)
    for done, model in enumerate(given, 7):
        _run_all_ways(model)
        report(done, total)
    return time.perf_counter() - start
