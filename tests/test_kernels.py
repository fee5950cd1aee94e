"""The fast kernels against the reference kernels, without torch (TFLite kernel-test style).

Random small graphs are written with pdinfer.format, loaded, and run through the fast plan
(`model(x)`: BatchNorm folded, activations fused, NHWC) and the reference path (`model.trace(x)`).
Also: the reference path is deterministic and float32 everywhere, results do not depend on the
batch an image is in, and the order-free kernels (max pool, global average pool) match bit for bit.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import pdinfer
from helpers import assert_close
from pdinfer import fusion, lowering, plan, program
from pdinfer.kernels.table import HAS_FUTEX
from pdinfer.kernels.table import TAKEN
from pdinfer.program import Helper
from pdinfer.builder import LayerList, conv2d_params
from pdinfer.format import write_weights
from pdinfer.layers.base import window_output_size

EXAMPLES = settings().max_examples  # from the loaded profile (tests/conftest.py)
ACTIVATIONS = ["none", "ReLU", "ReLU6", "LeakyReLU"]
seeds = st.integers(0, 2**31 - 1)


class GraphBuilder:
    """Builds a FORMAT.md layer list with random weights, tracking the current output shape."""

    def __init__(self, draw, rng: np.random.Generator, input_shape: tuple[int, int, int]) -> None:
        self.draw, self.rng = draw, rng
        self.layers: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.last = "input"
        self.shape: tuple[int, ...] = input_shape  # per image: (C, H, W) or (features,)

    def add(self, type_name: str, params: dict[str, Any], tensors: dict[str, np.ndarray] | None = None,
            inputs: list[str] | None = None, shape: tuple[int, ...] | None = None) -> str:
        name = f"{type_name.lower()}_{len(self.layers)}"
        tensors = tensors or {}
        self.layers.append({"name": name, "type": type_name, "inputs": inputs or [self.last],
                            "params": params, "tensors": {role: f"{name}.{role}" for role in tensors}})
        self.tensors.update({f"{name}.{role}": t.astype(np.float32) for role, t in tensors.items()})
        self.last, self.shape = name, shape or self.shape
        return name

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, shape)

    def activation(self) -> None:
        kind = self.draw(st.sampled_from(ACTIVATIONS))
        if kind == "LeakyReLU":
            self.add(kind, {"negative_slope": self.draw(st.floats(-3, 3, allow_nan=False))})
        elif kind != "none":
            self.add(kind, {})

    def batchnorm(self) -> None:
        c = self.shape[0]
        self.add("BatchNorm2d", {"num_features": c, "eps": self.draw(st.sampled_from([1e-5, 1e-3, 0.1]))}, {
            "weight": self.uniform((c,), 0.5, 1.5) * self.rng.choice([-1, 1], c),
            "bias": self.uniform((c,), -0.3, 0.3), "running_mean": self.uniform((c,), -0.5, 0.5),
            "running_var": self.uniform((c,), 0.5, 2.0)})

    def conv(self, out_channels: int | None = None, same: bool = False) -> None:
        """A Conv2d of random geometry (keeping the spatial size if `same`)."""
        draw, (cin, h, w) = self.draw, self.shape
        kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "pointwise"]))
        groups = {"dense": 1, "pointwise": 1, "depthwise": cin,
                  "grouped": draw(st.sampled_from([g for g in range(1, cin + 1) if cin % g == 0]))}[kind]
        if out_channels or kind == "depthwise":
            cout = out_channels or cin
        else:  # up to 40: more than one block of the fast kernels' 16 or 32 channels
            cout = groups * draw(st.integers(1, 4)) if kind == "grouped" else draw(st.integers(1, 40))
        assume(cout % groups == 0)
        if kind == "pointwise" or same and kind != "depthwise":
            kernel, stride, dilation = (1, 1), (1, 1), (1, 1)
            padding = [0, 0, 0, 0]
        else:
            kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
            dilation = (1, 1) if same else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
            stride = (1, 1) if same else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
            if same:
                padding = [(kernel[0] - 1) // 2, (kernel[1] - 1) // 2, kernel[0] // 2, kernel[1] // 2]
            else:
                padding = [draw(st.integers(0, 2)) for _ in range(4)]
        out_h = window_output_size(h, padding[0], padding[2], kernel[0], stride[0], dilation[0])
        out_w = window_output_size(w, padding[1], padding[3], kernel[1], stride[1], dilation[1])
        assume(out_h >= 1 and out_w >= 1)
        has_bias = draw(st.booleans())
        bound = 1 / np.sqrt(cin // groups * kernel[0] * kernel[1])
        tensors = {"weight": self.uniform((cout, cin // groups, *kernel), -bound, bound)}
        if has_bias:
            tensors["bias"] = self.uniform((cout,), -bound, bound)
        self.add("Conv2d", {"in_channels": cin, "out_channels": cout, "kernel_size": list(kernel),
                            "stride": list(stride), "padding": padding, "dilation": list(dilation),
                            "groups": groups, "bias": has_bias}, tensors, shape=(cout, out_h, out_w))

    def pool(self) -> None:
        draw, (c, h, w) = self.draw, self.shape
        kind = draw(st.sampled_from(["MaxPool2d", "AvgPool2d"]))
        kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        stride = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
        padding = [draw(st.integers(0, kernel[i % 2] // 2)) for i in range(4)]
        ceil_mode = draw(st.booleans())
        dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if kind == "MaxPool2d" else (1, 1)
        out_h = window_output_size(h, padding[0], padding[2], kernel[0], stride[0], dilation[0], ceil_mode)
        out_w = window_output_size(w, padding[1], padding[3], kernel[1], stride[1], dilation[1], ceil_mode)
        assume(out_h >= 1 and out_w >= 1)
        params = {"kernel_size": list(kernel), "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
        if kind == "MaxPool2d":
            params["dilation"] = list(dilation)
        else:
            params.update(count_include_pad=draw(st.booleans()), divisor_override=draw(st.integers(0, 9)))
        self.add(kind, params, shape=(c, out_h, out_w))

    def residual(self) -> None:
        """x + f(x) where f keeps the shape (its conv, BatchNorm and activation fuse), then maybe a BN."""
        start = self.last
        self.conv(out_channels=self.shape[0], same=True)
        if self.draw(st.booleans()):
            self.batchnorm()
        self.activation()
        self.add("Add", {}, inputs=self.draw(st.permutations([start, self.last])))
        if self.draw(st.booleans()):
            self.batchnorm()  # after an Add: nothing to fold into

    def head(self) -> None:
        """Global mean or Flatten, then Linear (+ activation), then maybe Softmax or Sigmoid."""
        if self.draw(st.booleans()):
            keepdim = self.draw(st.booleans())
            self.add("GlobalAvgPool", {"keepdim": keepdim})
            if keepdim:
                self.add("Flatten", {})
            self.shape = (self.shape[0],)
        else:
            self.add("Flatten", {}, shape=(int(np.prod(self.shape)),))
        features, out = self.shape[0], self.draw(st.integers(1, 12))
        has_bias = self.draw(st.booleans())
        bound = 1 / np.sqrt(features)
        tensors = {"weight": self.uniform((out, features), -bound, bound)}
        if has_bias:
            tensors["bias"] = self.uniform((out,), -bound, bound)
        self.add("Linear", {"in_features": features, "out_features": out, "bias": has_bias}, tensors,
                 shape=(out,))
        self.activation()
        final = self.draw(st.sampled_from(["none", "Softmax", "Sigmoid"]))
        if final != "none":
            self.add(final, {"dim": 1} if final == "Softmax" else {})


class RandomGraph(NamedTuple):
    layers: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]
    input_shape: tuple[int, int, int]  # (C, H, W)
    output_size: int  # values per image
    seed: int


@st.composite
def random_graphs(draw) -> RandomGraph:
    """A small random graph over the whole layer set, in the shapes the fusions look for."""
    seed = draw(seeds)
    input_shape = (draw(st.integers(1, 8)), draw(st.integers(1, 14)), draw(st.integers(1, 14)))
    g = GraphBuilder(draw, np.random.default_rng(seed), input_shape)
    for _ in range(draw(st.integers(1, 5))):
        block = draw(st.sampled_from(["conv", "conv-bn-act", "bn-act", "act", "pool", "residual", "dropout"]))
        if block in ("conv", "conv-bn-act"):
            g.conv()
        if block in ("conv-bn-act", "bn-act"):
            g.batchnorm()
        if block in ("conv-bn-act", "bn-act", "act"):
            g.activation()
        if block == "pool":
            g.pool()
        elif block == "residual":
            g.residual()
        elif block == "dropout":
            g.add("Dropout", {"p": 0.5})
    if draw(st.booleans()):
        g.head()
    elif draw(st.booleans()):
        g.add("Softmax", {"dim": 1})  # over the channels of (N, C, H, W)
    if not g.layers:  # every block was an activation drawn as "none"
        g.add("Dropout", {"p": 0.0})
    return RandomGraph(g.layers, g.tensors, input_shape, int(np.prod(g.shape)), seed)


def load(graph: RandomGraph, directory: str) -> tuple[pdinfer.Model, np.ndarray]:
    """Write and load the graph; return the model and a random batch of 1 to 4 images (N, C, H, W)."""
    path = Path(directory) / "random.pdw"
    write_weights(path, graph.layers, graph.tensors, input_shape=graph.input_shape,
                  classes=[str(i) for i in range(graph.output_size)])
    rng = np.random.default_rng(graph.seed)
    batch = rng.standard_normal((int(rng.integers(1, 5)), *graph.input_shape)).astype(np.float32)
    return pdinfer.load(path), batch


def describe(graph: RandomGraph) -> str:
    layers = "\n".join(json.dumps(layer) for layer in graph.layers)
    return f"{layers}\ninput {graph.input_shape}, seed {graph.seed}"


@settings(max_examples=8 * EXAMPLES)
@given(random_graphs())
def test_fast_plan_matches_reference(graph):
    """Folded, fused NHWC execution agrees with the unfused NCHW reference within 1e-5 (relative)."""
    with tempfile.TemporaryDirectory() as tmp:
        model, x = load(graph, tmp)
        fast_out = model(x)
        reference_out = next(reversed(model.trace(x).values()))
    # A max pool window in the padding only (dilation > 1) gives -inf, and later layers can make
    # NaN of it; how NaN passes an activation is test_nan_through_activations' business.
    assume(not np.isnan(reference_out).any())
    assert_close(fast_out, reference_out, "fast path vs reference path", describe(graph))


@pytest.fixture(scope="module")
def helper_thread():
    """A program.Helper (its thread sleeps between the calls that hold it)."""
    if not HAS_FUTEX:
        pytest.skip("the helper thread needs Linux's futex")  # not on the machines CI runs
    helper = Helper()
    yield helper
    helper.close()


@given(graph=random_graphs(), images=st.integers(1, 3))
def test_rows_shared_with_the_helper_thread_give_the_same_answer(helper_thread, graph, images):
    """Every convolution row shared with the helper thread (SHARE_MACS and SHARE_WEIGHTS 0: all of
    them, in chunks of pixels, tiles or output channels) writes exactly what one thread writes."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(program, "SHARE_MACS", 0), \
            mock.patch.object(program, "SHARE_WEIGHTS", 0):
        model, _ = load(graph, tmp)
        assume(model._plan.program is not None and model._plan.program.table(images).shares)
        batch = np.random.default_rng(graph.seed).standard_normal((images, *graph.input_shape)).astype(np.float32)
        alone = plan.run_plan(model._plan, batch)
        shared = plan.run_plan(model._plan, batch, helper_thread)
    np.testing.assert_array_equal(shared, alone, err_msg=describe(graph))


def _cpu_ticks(thread_id: int) -> int:
    """A thread's user + system CPU time so far, in clock ticks (/proc: Linux, as the helper)."""
    fields = Path(f"/proc/self/task/{thread_id}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def test_the_helper_thread_sleeps_soon_after_a_call(tmp_path):
    """After a call the helper polls for the next one for about a millisecond (HELPER_SPINS), then
    sleeps: idle, it takes no CPU time."""
    if not HAS_FUTEX:
        pytest.skip("the helper thread needs Linux's futex")
    layers = LayerList((4, 40, 40), seed=5)
    layers.add("Conv2d", **conv2d_params(4, 32, 3, padding=1))
    model = pdinfer.load(layers.write(tmp_path / "conv.pdw"))
    helper = Helper()
    try:
        x = np.zeros((1, 4, 40, 40), np.float32)
        plan.run_plan(model._plan, x, helper)  # starts the helper thread
        thread = helper._thread
        time.sleep(0.2)  # past its polling: asleep
        before = _cpu_ticks(thread.native_id)
        time.sleep(1.0)
        assert _cpu_ticks(thread.native_id) - before <= 2  # a spinning thread would take ~100 ticks
    finally:
        helper.close()


def test_the_helper_thread_takes_chunks_of_a_big_convolution(helper_thread, tmp_path):
    """A 3x3 64 -> 64 convolution on a 40x40 image (Winograd, above SHARE_MACS) is shared: the
    helper, once up, runs some of its chunks, and every answer equals one thread's."""
    rng = np.random.default_rng(0)
    layers = [{"name": "conv", "type": "Conv2d", "inputs": ["input"], "tensors": {"weight": "w", "bias": "b"},
               "params": {"in_channels": 64, "out_channels": 64, "kernel_size": [3, 3], "stride": [1, 1],
                          "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1, "bias": True}}]
    tensors = {"w": rng.uniform(-0.05, 0.05, (64, 64, 3, 3)).astype(np.float32),
               "b": rng.uniform(-0.1, 0.1, 64).astype(np.float32)}
    write_weights(tmp_path / "conv.pdw", layers, tensors, input_shape=(64, 40, 40),
                  classes=[str(i) for i in range(64 * 40 * 40)])
    model = pdinfer.load(tmp_path / "conv.pdw")
    x = rng.standard_normal((1, 64, 40, 40)).astype(np.float32)
    assert model._plan.program.table(1).shares
    alone = plan.run_plan(model._plan, x)
    taken, deadline = helper_thread.box[TAKEN], time.monotonic() + 300
    # The helper compiles its loop on its first call (seconds with an empty cache); until it runs,
    # the calling thread takes every chunk.
    while helper_thread.box[TAKEN] == taken and time.monotonic() < deadline:
        np.testing.assert_array_equal(plan.run_plan(model._plan, x, helper_thread), alone)
    assert helper_thread.box[TAKEN] > taken
    for _ in range(50):
        np.testing.assert_array_equal(plan.run_plan(model._plan, x, helper_thread), alone)


@given(random_graphs(), st.integers(2, 20), st.sampled_from([1 << 10, 1 << 14, plan.PASS_BYTES]))
def test_a_batch_gives_its_images_answers_bit_for_bit(graph, images, pass_bytes):
    """A batch run as tables (pdinfer/program.py), cut into segments and passes of any size, writes
    for each image what a call of that image alone writes."""
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(plan, "PASS_BYTES", pass_bytes):
        model, _ = load(graph, tmp)
    batch = np.random.default_rng(graph.seed).standard_normal((images, *graph.input_shape)).astype(np.float32)
    compiled = model._plan
    context = f"{describe(graph)}\n{images} images, PASS_BYTES {pass_bytes}, segments {compiled.segments}"
    one_by_one = np.concatenate([plan.run_plan(compiled, batch[i:i + 1]) for i in range(images)])
    np.testing.assert_array_equal(plan.run_plan(compiled, batch), one_by_one, err_msg=context)


@pytest.mark.parametrize("activation", ["ReLU", "ReLU6", "LeakyReLU"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "alone"])
def test_nan_through_activations(tmp_path, activation, fused):
    """A NaN made inside the model passes each activation the same way in both paths.

    MaxPool2d(kernel [1, 2], dilation [1, 2], padding 1) on a 1x1 image has only padding taps: -inf
    (as in PyTorch). A 1x1 conv with weights [1, -1] makes NaN of -inf and -inf. With `fused` the
    activation follows the conv directly; otherwise an Add (conv + conv) comes between them.
    """
    layers = [
        {"name": "pool", "type": "MaxPool2d", "inputs": ["input"], "tensors": {},
         "params": {"kernel_size": [1, 2], "stride": [1, 1], "padding": [0, 1, 0, 1], "dilation": [1, 2],
                    "ceil_mode": False}},
        {"name": "conv", "type": "Conv2d", "inputs": ["pool"], "tensors": {"weight": "conv.weight"},
         "params": {"in_channels": 2, "out_channels": 1, "kernel_size": [1, 1], "stride": [1, 1],
                    "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1, "bias": False}}]
    if not fused:
        layers.append({"name": "add", "type": "Add", "inputs": ["conv", "conv"], "params": {}, "tensors": {}})
    layers.append({"name": "act", "type": activation, "inputs": [layers[-1]["name"]], "tensors": {},
                   "params": {"negative_slope": 0.2} if activation == "LeakyReLU" else {}})
    path = tmp_path / "nan.pdw"
    write_weights(path, layers, {"conv.weight": np.array([1, -1], np.float32).reshape(1, 2, 1, 1)},
                  input_shape=(2, 1, 1), classes=["0"])
    model, x = pdinfer.load(path), np.ones((1, 2, 1, 1), np.float32)
    trace = model.trace(x)
    assert np.isnan(trace[layers[-2]["name"]]).all()
    assert np.array_equal(model(x), trace["act"], equal_nan=True)


@given(random_graphs())
def test_reference_is_float32_deterministic_and_batch_independent(graph):
    """Every traced layer is float32 and bit-identical across runs and batch compositions."""
    with tempfile.TemporaryDirectory() as tmp:
        model, x = load(graph, tmp)
        first, second = model.trace(x), model.trace(x)
        alone = model.trace(x[-1:])
        fast_batch, fast_alone = model(x), model(x[-1])
    context = describe(graph)
    for name, value in first.items():
        assert value.dtype == np.float32, f"{name}: dtype {value.dtype}\n{context}"
        assert np.array_equal(value, second[name], equal_nan=True), f"{name}: differs between runs\n{context}"
        assert np.array_equal(value[-1:], alone[name], equal_nan=True), f"{name}: batch-dependent\n{context}"
    assert fast_batch.dtype == np.float32
    assert np.array_equal(fast_batch[-1], fast_alone, equal_nan=True), f"fast path: batch-dependent\n{context}"


def one_layer(type_name: str, params: dict[str, Any], input_shape: tuple[int, int, int], output_size: int,
              seed: int) -> RandomGraph:
    layer = {"name": "layer", "type": type_name, "inputs": ["input"], "params": params, "tensors": {}}
    return RandomGraph([layer], {}, input_shape, output_size, seed)


input_shapes = st.tuples(st.integers(1, 40), st.integers(1, 12), st.integers(1, 12))
scales = st.sampled_from([1e-3, 1.0, 1e4])


@given(seeds, input_shapes, st.booleans(), scales)
def test_global_avg_pool_fast_is_bit_exact(seed, input_shape, keepdim, scale):
    """The fast global mean sums each channel in the reference's order: equal bit for bit."""
    graph = one_layer("GlobalAvgPool", {"keepdim": keepdim}, input_shape, input_shape[0], seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, x = load(graph, tmp)
        x *= np.float32(scale)
        assert np.array_equal(model(x), model.trace(x)["layer"]), describe(graph)


@given(seeds, input_shapes, st.tuples(*[st.integers(1, 4)] * 2), st.tuples(*[st.integers(1, 3)] * 2),
       st.tuples(*[st.integers(1, 2)] * 2), st.booleans())
def test_max_pool2d_fast_is_bit_exact(seed, input_shape, kernel, stride, dilation, ceil_mode):
    """A maximum has one right answer: the fast max pool equals the reference bit for bit."""
    c, h, w = input_shape
    padding = [kernel[0] // 2, kernel[1] // 2, kernel[0] // 2, kernel[1] // 2]
    out_h = window_output_size(h, padding[0], padding[2], kernel[0], stride[0], dilation[0], ceil_mode)
    out_w = window_output_size(w, padding[1], padding[3], kernel[1], stride[1], dilation[1], ceil_mode)
    assume(out_h >= 1 and out_w >= 1)
    params = {"kernel_size": list(kernel), "stride": list(stride), "padding": padding,
              "dilation": list(dilation), "ceil_mode": ceil_mode}
    graph = one_layer("MaxPool2d", params, input_shape, c * out_h * out_w, seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, x = load(graph, tmp)
        assert np.array_equal(model(x), model.trace(x)["layer"]), describe(graph)


@settings(max_examples=EXAMPLES // 2)
@given(seeds, st.integers(fusion.WINOGRAD_CHANNELS, 70), st.integers(fusion.WINOGRAD_CHANNELS, 70),
       st.integers(1, 11), st.integers(1, 11), st.tuples(*[st.integers(0, 2)] * 4),
       st.sampled_from(["none", "ReLU", "ReLU6", "LeakyReLU"]), st.sampled_from(["none", "residual", "pool"]),
       st.integers(1, 3))
def test_winograd_convolution_matches_reference(seed, cin, cout, h, w, padding, act, after, batch):
    """3x3 stride-1 convolutions this wide run by Winograd F(2x2, 3x3), odd sizes, padding and
    partial tiles included; with an activation and, when the shapes allow, a residual Add or a
    2x2 max pool (fused: the pool of each tile is written)."""
    out_h, out_w = h + padding[0] + padding[2] - 2, w + padding[1] + padding[3] - 2
    assume(out_h >= 1 and out_w >= 1)
    residual = after == "residual" and cin == cout and (out_h, out_w) == (h, w)
    pool = after == "pool" and min(out_h, out_w) >= 2
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(9 * cin)
    layers = [{"name": "conv", "type": "Conv2d", "inputs": ["input"],
               "params": {"in_channels": cin, "out_channels": cout, "kernel_size": [3, 3], "stride": [1, 1],
                          "padding": list(padding), "dilation": [1, 1], "groups": 1, "bias": True},
               "tensors": {"weight": "conv.weight", "bias": "conv.bias"}}]
    tensors = {"conv.weight": rng.uniform(-bound, bound, (cout, cin, 3, 3)).astype(np.float32),
               "conv.bias": rng.uniform(-bound, bound, cout).astype(np.float32)}
    if act != "none":
        layers.append({"name": "act", "type": act, "inputs": [layers[-1]["name"]],
                       "params": {"negative_slope": 0.1} if act == "LeakyReLU" else {}, "tensors": {}})
    if residual:
        layers.append({"name": "add", "type": "Add", "inputs": [layers[-1]["name"], "input"], "params": {},
                       "tensors": {}})
    if pool:
        layers.append({"name": "pool", "type": "MaxPool2d", "inputs": [layers[-1]["name"]], "tensors": {},
                       "params": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0, 0, 0],
                                  "dilation": [1, 1], "ceil_mode": False}})
        out_h, out_w = out_h // 2, out_w // 2
    graph = RandomGraph(layers, tensors, (cin, h, w), cout * out_h * out_w, seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load(graph, tmp)
        x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
        [step] = model._plan.steps
        assert isinstance(step.kernel, lowering.WinogradConv) and step.kernel.pool == pool, describe(graph)
        fast_out = model(x)
        reference_out = next(reversed(model.trace(x).values()))
    assert_close(fast_out, reference_out, "Winograd vs reference", describe(graph))


@given(seeds, st.integers(1, 40), st.integers(1, 40), st.integers(2, 13), st.integers(2, 13),
       st.tuples(st.integers(1, 4), st.integers(1, 4)), st.tuples(st.integers(1, 2), st.integers(1, 2)),
       st.tuples(*[st.integers(0, 1)] * 4), st.sampled_from(["none", "ReLU", "LeakyReLU"]), st.integers(1, 3),
       st.sampled_from(["F32", "I8"]))
def test_a_max_pool_fused_into_a_direct_convolution_matches_reference(seed, cin, cout, h, w, kernel, stride,
                                                                      padding, act, batch, weights):
    """A one-group convolution followed by a 2x2 max pool writes the pool (tiles of three pooled
    pixels, partial ones at the end), any geometry, float32 or int8 weights."""
    out_h = window_output_size(h, padding[0], padding[2], kernel[0], stride[0], 1)
    out_w = window_output_size(w, padding[1], padding[3], kernel[1], stride[1], 1)
    assume(out_h >= 2 and out_w >= 2)
    rng = np.random.default_rng(seed)
    bound = 1 / np.sqrt(cin * kernel[0] * kernel[1])
    weight = rng.uniform(-bound, bound, (cout, cin, *kernel)).astype(np.float32)
    tensors = {"conv.bias": rng.uniform(-bound, bound, cout).astype(np.float32)}
    conv_tensors = {"weight": "conv.weight", "bias": "conv.bias"}
    if weights == "I8":
        scale = np.maximum(np.abs(weight).reshape(cout, -1).max(axis=1), 1e-3) / 127
        tensors["conv.weight"] = np.round(weight / scale[:, None, None, None]).astype(np.int8)
        tensors["conv.weight_scale"] = scale.astype(np.float32)
        conv_tensors["weight_scale"] = "conv.weight_scale"
    else:
        tensors["conv.weight"] = weight
    layers = [{"name": "conv", "type": "Conv2d", "inputs": ["input"], "tensors": conv_tensors,
               "params": {"in_channels": cin, "out_channels": cout, "kernel_size": list(kernel),
                          "stride": list(stride), "padding": list(padding), "dilation": [1, 1], "groups": 1,
                          "bias": True}}]
    if act != "none":
        layers.append({"name": "act", "type": act, "inputs": ["conv"], "tensors": {},
                       "params": {"negative_slope": 0.1} if act == "LeakyReLU" else {}})
    layers.append({"name": "pool", "type": "MaxPool2d", "inputs": [layers[-1]["name"]], "tensors": {},
                   "params": {"kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0, 0, 0],
                              "dilation": [1, 1], "ceil_mode": False}})
    graph = RandomGraph(layers, tensors, (cin, h, w), cout * (out_h // 2) * (out_w // 2), seed)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load(graph, tmp)
        x = rng.standard_normal((batch, cin, h, w)).astype(np.float32)
        [step] = model._plan.steps
        assert step.kernel.pool, describe(graph)
        fast_out = model(x)
        reference_out = next(reversed(model.trace(x).values()))
    assert_close(fast_out, reference_out, "fused max pool vs reference", describe(graph))
