"""Numerical comparisons: `assert_close` (NumPy only) and `check_against_torch`.

`check_against_torch` (tinygrad `helper_test_op` style: one call per case) exports a module with
the exporter, loads the file with pdinfer and compares, on one random batch, torch's output with
pdinfer's fast path (`model(x)`), its reference path (`model.trace(x)`) and the reference kernels'
NumPy forms (what a model runs before its kernels are compiled), and every traced layer named after
a torch module with that module's output (captured with forward hooks).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import pdinfer
from pdinfer.kernels import vectorized
from pdinfer.model import _run_layers

if TYPE_CHECKING:
    import torch

# Allowed error, relative to the larger of 1 and the largest magnitude of the expected values.
TOLERANCE = 1e-5


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str, context: str = "",
                 atol_scale: float = TOLERANCE) -> None:
    """Same shape, float32, and max|actual - expected| <= atol_scale * max(1, max|expected|)."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}\n{context}"
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}, expected float32\n{context}"
    # Equal infinities and NaN where both have NaN count as equal: a max pool window that lies in
    # the padding only (possible with dilation) gives -inf, as in PyTorch, and inf - inf is NaN.
    equal = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore"):
        diff = np.where(equal, 0.0, np.nan_to_num(np.abs(actual.astype(np.float64) - expected), nan=np.inf))
    finite = np.abs(expected[np.isfinite(expected)])
    bound = atol_scale * max(1.0, float(finite.max(initial=0.0)))
    if diff.size and not diff.max() <= bound:
        where = np.unravel_index(int(diff.argmax()), diff.shape)
        raise AssertionError(
            f"{what}: max |actual - expected| = {diff[where]:.3g} > {bound:.3g} at index "
            f"{tuple(map(int, where))} (actual {actual[where]!r}, expected {expected[where]!r})\n{context}")


def torch_outputs(module: "torch.nn.Module", x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """torch's output on x (N, C, H, W), and the output of every submodule called exactly once."""
    import torch

    outputs: dict[str, np.ndarray] = {}
    calls: Counter[str] = Counter()

    def recorder(name: str):
        def record(_module, _inputs, output) -> None:
            calls[name] += 1
            if isinstance(output, torch.Tensor):
                outputs[name] = output.detach().numpy().copy()
        return record

    handles = [m.register_forward_hook(recorder(name)) for name, m in module.named_modules() if name]
    try:
        with torch.no_grad():
            out = module(torch.from_numpy(x.copy())).numpy()
    finally:
        for handle in handles:
            handle.remove()
    return out, {name: value for name, value in outputs.items() if calls[name] == 1}


def check_against_torch(module: "torch.nn.Module", input_shape: tuple, *, batch: int = 2, seed: int = 0,
                        atol_scale: float = TOLERANCE, input_scale: float = 1.0) -> None:
    """Export `module` (eval mode), run it in pdinfer and in torch on a random batch, compare.

    input_shape: (C, H, W); the batch holds `batch` images of N(0, input_scale^2) values.
    """
    import exporter  # needs torch: imported here so the NumPy-only tests can use assert_close

    module.eval()
    x = (np.random.default_rng(seed).standard_normal((batch, *input_shape)) * input_scale).astype(np.float32)
    expected, by_module = torch_outputs(module, x)
    context = f"module: {module!r}\ninput: {(batch, *input_shape)}, seed {seed}, scale {input_scale}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pdw"
        exporter.export(module, path, input_shape=input_shape)
        model = pdinfer.load(path)
        fast = model(x)
        trace = model.trace(x)
        numpy_kernels = _run_layers(model.reference_graph().layers, x, vectorized)
    assert_close(fast, expected, "fast path model(x) vs torch", context, atol_scale)
    assert_close(numpy_kernels, expected, "NumPy kernels (kernels/vectorized.py) vs torch", context, atol_scale)
    assert_close(next(reversed(trace.values())), expected, "reference path model.trace(x) vs torch",
                 context, atol_scale)
    for name, value in trace.items():
        if name in by_module:
            assert_close(value, by_module[name], f"traced layer {name!r} vs torch", context, atol_scale)
