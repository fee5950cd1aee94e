"""The issue-9 single-input layers against PyTorch (hypothesis), their exporter spellings, and the
loader's checks of their parameters.

Activations (Hardswish, Hardsigmoid, SiLU, GELU, Tanh, Hardtanh, ELU, PReLU), adaptive pools to
any size, AvgPool2d with ceil_mode, the channel mean and max with keepdim, and zero padding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # compared with PyTorch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

import pdinfer
from exporter import to_layers
from exporter.convert import UnsupportedModelError
from helpers import check_against_torch
from pdinfer.errors import FormatError, UnsupportedLayerError
from pdinfer.format import write_weights
from test_layers import EXAMPLES, Fn, Spellings, batches, runs_in_torch, seeds, sizes, spelled

FEW = max(10, EXAMPLES // 5)  # examples per test: each case exports and loads a model
scales = st.sampled_from([0.1, 1.0, 4.0, 30.0])
bounds = st.floats(-8.0, 8.0, allow_nan=False, width=32)
alphas = st.floats(-3.0, 3.0, allow_nan=False)


# ------------------------------------------------------------------------------------- activations

@st.composite
def new_activations(draw) -> nn.Module:
    """A new activation in one of its spellings (module, F.*, torch.*, tensor method, in place)."""
    low, high = sorted((draw(bounds), draw(bounds)))
    alpha = draw(alphas)
    approximate = draw(st.sampled_from(["none", "tanh"]))
    spellings: Spellings = {
        "Hardswish()": nn.Hardswish(), "F.hardswish": F.hardswish,
        "F.hardswish(inplace)": lambda x: F.hardswish(x, inplace=True),
        "Hardswish(inplace)": nn.Hardswish(inplace=True),
        "Hardsigmoid()": nn.Hardsigmoid(), "F.hardsigmoid": F.hardsigmoid,
        "Hardsigmoid(inplace)": nn.Hardsigmoid(inplace=True),
        "SiLU()": nn.SiLU(), "SiLU(inplace)": nn.SiLU(inplace=True), "F.silu": F.silu,
        f"GELU({approximate!r})": nn.GELU(approximate=approximate),
        f"F.gelu(x, approximate={approximate!r})": lambda x: F.gelu(x, approximate=approximate),
        "Tanh()": nn.Tanh(), "torch.tanh": torch.tanh, "F.tanh": F.tanh, "x.tanh()": lambda x: x.tanh(),
        "x.tanh_()": lambda x: x.tanh_(), "torch.tanh_": torch.tanh_,
        f"Hardtanh({low}, {high})": nn.Hardtanh(low, high) if low < high else nn.Hardtanh(),
        f"F.hardtanh(x, {low}, {high})": lambda x: F.hardtanh(x, low, high),
        f"F.hardtanh_(x, {low}, {high})": lambda x: F.hardtanh_(x, low, high),
        f"ELU({alpha})": nn.ELU(alpha), f"ELU({alpha}, inplace)": nn.ELU(alpha, inplace=True),
        f"F.elu(x, {alpha})": lambda x: F.elu(x, alpha),
        f"F.elu_(x, {alpha})": lambda x: F.elu_(x, alpha),
        f"torch.clamp(x, {low}, {high})": lambda x: torch.clamp(x, low, high),
        f"x.clamp(min={low}, max={high})": lambda x: x.clamp(min=low, max=high),
        f"x.clip_({low}, {high})": lambda x: x.clip_(low, high),
    }
    return draw(spelled(spellings))


@settings(max_examples=2 * FEW)
@given(seeds, new_activations(), st.integers(1, 6), sizes, sizes, st.booleans(), scales, batches)
def test_new_activation(seed, act, c, h, w, flat, scale, batch):
    """Each activation alone on (N, C, H, W) or flattened values; scales reach the saturated ends."""
    model = nn.Sequential(nn.Flatten(), act) if flat else nn.Sequential(act)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed, input_scale=scale)


@settings(max_examples=FEW)
@given(seeds, st.integers(1, 6), sizes, sizes, st.booleans(), st.booleans(), st.booleans(), scales, batches)
def test_prelu(seed, c, h, w, per_channel, flat, functional, scale, batch):
    """PReLU with one weight or one per channel (dim 1: C on 4-D values, the features when flat)."""
    torch.manual_seed(seed)
    channels = (c * h * w if flat else c) if per_channel else 1
    prelu = nn.PReLU(channels)
    nn.init.uniform_(prelu.weight, -2.0, 2.0)
    if functional:  # F.prelu with the weight as a parameter of the model (a get_attr node)
        holder = nn.Module()
        holder.weight = prelu.weight
        prelu = Fn("F.prelu(x, self.weight)", lambda x: F.prelu(x, holder.weight))
        prelu.holder = holder
    model = nn.Sequential(nn.Flatten(), prelu) if flat else nn.Sequential(prelu)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed, input_scale=scale)


def test_prelu_inside_a_conv_block():
    """PReLU after a convolution and BatchNorm (its own step in the plan)."""
    torch.manual_seed(0)
    prelu = nn.PReLU(4)
    nn.init.uniform_(prelu.weight, -1.0, 1.0)
    check_against_torch(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4).eval(), prelu), (3, 8, 9))


# ------------------------------------------------------------------------------------------ pooling

@st.composite
def adaptive_sizes(draw) -> object:
    """An output_size as torch takes it: an int, a pair, or a pair with None entries (keep that axis)."""
    side = st.integers(1, 24)  # bigger than the input too: overlapping bins
    return draw(st.one_of(side, st.tuples(st.one_of(st.none(), side), st.one_of(st.none(), side))))


@settings(max_examples=2 * FEW)
@given(seeds, st.sampled_from(["avg", "max"]), adaptive_sizes(), st.booleans(), st.integers(1, 6), sizes,
       sizes, batches)
def test_adaptive_pool2d(seed, kind, output_size, functional, c, h, w, batch):
    """AdaptiveAvgPool2d and AdaptiveMaxPool2d to any size, with PyTorch's bins."""
    if kind == "avg":
        pool = Fn(f"F.adaptive_avg_pool2d(x, {output_size})", lambda x: F.adaptive_avg_pool2d(x, output_size)) \
            if functional else nn.AdaptiveAvgPool2d(output_size)
    else:
        pool = Fn(f"F.adaptive_max_pool2d(x, {output_size})", lambda x: F.adaptive_max_pool2d(x, output_size)) \
            if functional else nn.AdaptiveMaxPool2d(output_size)
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed, input_scale=10.0)


@settings(max_examples=FEW)
@given(seeds, st.integers(2, 5), st.integers(2, 5), st.integers(1, 4), st.booleans(), st.integers(1, 6),
       sizes, sizes, batches)
def test_avg_pool2d_ceil_mode(seed, kh, kw, stride, count_include_pad, c, h, w, batch):
    """ceil_mode with padding, so the last window can reach past the padding, both divisor rules."""
    pool = nn.AvgPool2d((kh, kw), stride, padding=(kh // 2, kw // 2), ceil_mode=True,
                        count_include_pad=count_include_pad)
    assume(runs_in_torch(pool, (c, h, w)))
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed)


CHANNEL_REDUCTIONS: Spellings = {
    "x.mean(1, keepdim=True)": lambda x: x.mean(1, keepdim=True),
    "torch.mean(x, dim=1, keepdim=True)": lambda x: torch.mean(x, dim=1, keepdim=True),
    "x.mean(-3, keepdim=True)": lambda x: x.mean(-3, keepdim=True),
    "x.mean((1,), keepdim=True)": lambda x: x.mean((1,), keepdim=True),
    "x.max(1, keepdim=True)[0]": lambda x: x.max(1, keepdim=True)[0],
    "torch.max(x, dim=1, keepdim=True).values": lambda x: torch.max(x, dim=1, keepdim=True).values,
    "torch.max(x, 1, True)[0]": lambda x: torch.max(x, 1, True)[0],
    "torch.amax(x, 1, keepdim=True)": lambda x: torch.amax(x, 1, keepdim=True),
    "x.amax(dim=(1,), keepdim=True)": lambda x: x.amax(dim=(1,), keepdim=True),
    # CBAM's own ChannelPool: the reduction without keepdim, then unsqueeze(1)
    "torch.max(x, 1)[0].unsqueeze(1)": lambda x: torch.max(x, 1)[0].unsqueeze(1),
    "torch.mean(x, 1).unsqueeze(1)": lambda x: torch.mean(x, 1).unsqueeze(1),
    "torch.unsqueeze(x.amax(1), -3)": lambda x: torch.unsqueeze(x.amax(1), -3),
    "x.max(dim=1).values.unsqueeze(dim=1)": lambda x: x.max(dim=1).values.unsqueeze(dim=1),
}


@settings(max_examples=FEW)
@given(seeds, spelled(CHANNEL_REDUCTIONS), st.integers(1, 40), sizes, sizes, scales, batches)
def test_channel_reduction(seed, reduce, c, h, w, scale, batch):
    """Mean and max over the channels with keepdim (CBAM's spatial attention)."""
    check_against_torch(nn.Sequential(reduce), (c, h, w), batch=batch, seed=seed, input_scale=scale)


def test_cbam_spatial_attention_inputs():
    """cat is the other branch's work; here: mean and max of one tensor both feed later layers."""
    torch.manual_seed(1)

    class Spatial(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 7, padding=3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.conv(x.mean(1, keepdim=True) + torch.max(x, 1, keepdim=True)[0]))

    check_against_torch(Spatial(), (5, 11, 13))


# ------------------------------------------------------------------------------------------ padding

@st.composite
def zero_pads(draw) -> tuple[nn.Module, int]:
    """Zero padding in one of its spellings, and the kernel size of a conv it may feed."""
    amounts = draw(st.tuples(*[st.integers(0, 4)] * 4))
    left, right, top, bottom = amounts
    spellings: Spellings = {
        f"ZeroPad2d({amounts})": nn.ZeroPad2d(amounts), f"ZeroPad2d({left})": nn.ZeroPad2d(left),
        f"ConstantPad2d({amounts}, 0.0)": nn.ConstantPad2d(amounts, 0.0),
        f"F.pad(x, {amounts})": lambda x: F.pad(x, amounts),
        f"F.pad(x, ({left}, {right}))": lambda x: F.pad(x, (left, right)),
        f"F.pad(x, {amounts}, 'constant', 0)": lambda x: F.pad(x, amounts, "constant", 0),
    }
    return draw(spelled(spellings))


@settings(max_examples=FEW)
@given(seeds, zero_pads(), st.booleans(), st.integers(1, 5), sizes, sizes, batches)
def test_zero_pad2d(seed, pad, feeds_conv, c, h, w, batch):
    """Zero padding alone or feeding a convolution (the asymmetric 'same' padding of TF-style models)."""
    torch.manual_seed(seed)
    model = nn.Sequential(pad, nn.Conv2d(c, 3, 3, stride=2)) if feeds_conv else nn.Sequential(pad)
    assume(runs_in_torch(model, (c, h, w)))
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


# ------------------------------------------------------------------------------------------ exporter

class Net(nn.Module):
    def __init__(self, forward, **modules: nn.Module) -> None:
        super().__init__()
        self._forward = forward
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self, x)


SHAPE = (3, 6, 7)

# model -> (layer types, params of the last layer)
SPELLINGS = {
    "relu6-kept": (Net(lambda m, x: m.h(F.hardtanh(x, 0.0, 6.0)), h=nn.Hardtanh(0, 6)), ["ReLU6"] * 2, {}),
    "hardtanh-default": (Net(lambda m, x: F.hardtanh(x)), ["Hardtanh"], {"min_val": -1.0, "max_val": 1.0}),
    "gelu-tanh": (Net(lambda m, x: m.g(x), g=nn.GELU(approximate="tanh")), ["GELU"], {"approximate": "tanh"}),
    "elu-default": (Net(lambda m, x: F.elu(x)), ["ELU"], {"alpha": 1.0}),
    "clamp-0-6": (Net(lambda m, x: x.clamp(0, 6)), ["ReLU6"], {}),
    "clamp-int": (Net(lambda m, x: torch.clip(x, -1, 2)), ["Hardtanh"], {"min_val": -1.0, "max_val": 2.0}),
    "prelu": (Net(lambda m, x: m.p(x), p=nn.PReLU(3)), ["PReLU"], {"num_parameters": 3}),
    "global-mean-kept": (Net(lambda m, x: m.p(x), p=nn.AdaptiveAvgPool2d((1, 1))), ["GlobalAvgPool"],
                         {"keepdim": True}),
    "adaptive-none": (Net(lambda m, x: m.p(x), p=nn.AdaptiveAvgPool2d((None, 2))), ["AdaptiveAvgPool2d"],
                      {"output_size": [6, 2]}),
    "adaptive-max-1": (Net(lambda m, x: m.p(x), p=nn.AdaptiveMaxPool2d(1)), ["AdaptiveMaxPool2d"],
                       {"output_size": [1, 1]}),
    "channel-mean": (Net(lambda m, x: x.mean(1, keepdim=True)), ["ChannelMean"], {}),
    "channel-max": (Net(lambda m, x: x.max(dim=1, keepdim=True).values), ["ChannelMax"], {}),
    "pad-order": (Net(lambda m, x: F.pad(x, (1, 2, 3, 4))), ["ZeroPad2d"], {"padding": [3, 1, 4, 2]}),
}


@pytest.mark.parametrize("name", SPELLINGS)
def test_spelling_exports(name):
    model, expected_types, params = SPELLINGS[name]
    graph = to_layers(model, SHAPE)
    assert [layer["type"] for layer in graph.layers] == expected_types
    assert {k: graph.layers[-1]["params"][k] for k in params} == params


def test_prelu_weight_is_exported():
    prelu = nn.PReLU(3)
    nn.init.uniform_(prelu.weight, -1.0, 1.0)
    graph = to_layers(Net(lambda m, x: m.p(x), p=prelu), SHAPE)
    np.testing.assert_array_equal(graph.tensors["p.weight"], prelu.weight.detach().numpy())


def test_an_in_place_change_of_one_unsqueeze_is_seen_by_the_other():
    def forward(m, x):
        mean = x.mean(1)
        a, b = mean.unsqueeze(1), mean.unsqueeze(1)
        a.relu_()
        return a + b

    with pytest.raises(UnsupportedModelError, match="shares its storage"):
        to_layers(Net(forward), SHAPE)


@pytest.mark.parametrize("forward, reason", [
    (lambda m, x: F.pad(x, (1, -1)), "negative amounts crop"),
    (lambda m, x: F.pad(x, (1, 1, 1, 1, 1, 1)), "only (left, right) or (left, right, top, bottom)"),
    (lambda m, x: F.pad(x, (1, 1), value=1.0), "only zeros"),
    (lambda m, x: F.pad(x, (1, 1), value=-0.0), "only zeros"),
    (lambda m, x: F.pad(x.flatten(1), (1, 1)), "only of (N, C, H, W)"),
    (lambda m, x: x.mean(1), "without keepdim"),
    (lambda m, x: x.mean(1).unsqueeze(2), "or followed by unsqueeze(1)"),
    (lambda m, x: x.max(1)[0].relu(), "or followed by unsqueeze(1)"),
    (lambda m, x: x.unsqueeze(1), "only of a mean or max over the channels"),
    (lambda m, x: x.clamp(min=0), "only with two numbers"),
    (lambda m, x: x.clamp(0, float("inf")), "only finite bounds"),
    (lambda m, x: torch.clamp(x, x.relu(), x.relu() + x), "only with two numbers"),
    (lambda m, x: x.mean((1, 2), keepdim=True), "over the channels alone"),
    (lambda m, x: torch.amax(x, 1), "without keepdim"),
    (lambda m, x: torch.amax(x, (1, 2), keepdim=True), "only over the channels"),
    (lambda m, x: x.max(2, keepdim=True)[0], "only over the channels"),
    (lambda m, x: torch.max(x), "whole tensor"),
    (lambda m, x: torch.max(x, x.relu()), "of two tensors"),
    (lambda m, x: x.max(1, keepdim=True)[1], "indexing"),
    (lambda m, x: F.adaptive_max_pool2d(x, 2, return_indices=True)[0], "adaptive_max_pool2d_with_indices"),
    (lambda m, x: F.adaptive_avg_pool2d(x.flatten(2), 2), "only of (N, C, H, W)"),
    (lambda m, x: F.prelu(x, x.mean((0, 2, 3))), "not a 1-D parameter"),
])
def test_unsupported_call_says_why(forward, reason):
    with pytest.raises(UnsupportedModelError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        to_layers(Net(forward), SHAPE)


# ------------------------------------------------------------------------------------------ loader

def _file(tmp_path, layer: dict, tensors: dict | None = None, input_shape=(3, 4, 5), flatten_first=False,
          classes=("a",)):
    """A weight file of [Flatten,] `layer`, Flatten (so any output shape is valid)."""
    source = "flat" if flatten_first else "input"
    layers = ([{"name": "flat", "type": "Flatten", "inputs": ["input"], "params": {}, "tensors": {}}]
              if flatten_first else [])
    layers.append({"name": "x", "inputs": [source], "tensors": {r: f"x.{r}" for r in (tensors or {})},
                   "params": {}, **layer})
    layers.append({"name": "out", "type": "Flatten", "inputs": ["x"], "params": {}, "tensors": {}})
    path = tmp_path / "m.pdw"
    arrays = {f"x.{r}": np.asarray(v, np.float32) for r, v in (tensors or {}).items()}
    write_weights(path, layers, arrays, input_shape=input_shape, classes=list(classes), producer="tests")
    return path


BAD_LAYERS = [
    ({"type": "GELU", "params": {"approximate": "erf"}}, {}, UnsupportedLayerError, "approximate"),
    ({"type": "GELU", "params": {}}, {}, FormatError, "missing \\['approximate'\\]"),
    ({"type": "Tanh", "params": {"inplace": True}}, {}, FormatError, "unknown \\['inplace'\\]"),
    ({"type": "Hardtanh", "params": {"min_val": 2.0, "max_val": 1.0}}, {}, FormatError, "must not exceed"),
    ({"type": "Hardtanh", "params": {"min_val": "a", "max_val": 1.0}}, {}, FormatError, "'min_val' must be a number"),
    ({"type": "ELU", "params": {"alpha": True}}, {}, FormatError, "'alpha' must be a number"),
    ({"type": "PReLU", "params": {"num_parameters": 0}}, {"weight": np.ones(1)}, FormatError,
     "'num_parameters' must be an integer"),
    ({"type": "PReLU", "params": {"num_parameters": 4}}, {"weight": np.ones(4)}, FormatError, "4 channels"),
    ({"type": "PReLU", "params": {"num_parameters": 3}}, {"weight": np.ones(2)}, FormatError, "expected \\[3\\]"),
    ({"type": "PReLU", "params": {"num_parameters": 3}}, {}, FormatError, "roles \\['weight'\\]"),
    ({"type": "AdaptiveAvgPool2d", "params": {"output_size": [0, 2]}}, {}, FormatError, "'output_size'"),
    ({"type": "AdaptiveMaxPool2d", "params": {"output_size": [2]}}, {}, FormatError, "'output_size'"),
    ({"type": "AdaptiveMaxPool2d", "params": {"output_size": [5000, 1]}}, {}, FormatError, "'output_size'"),
    ({"type": "ZeroPad2d", "params": {"padding": [-1, 0, 0, 0]}}, {}, FormatError, "'padding'"),
    ({"type": "ZeroPad2d", "params": {"padding": [1, 2, 3]}}, {}, FormatError, "'padding'"),
    ({"type": "ChannelMean", "params": {"keepdim": True}}, {}, FormatError, "unknown \\['keepdim'\\]"),
]


@pytest.mark.parametrize("layer, tensors, error, match", BAD_LAYERS, ids=[c[0]["type"] + str(i)
                                                                         for i, c in enumerate(BAD_LAYERS)])
def test_bad_params_are_rejected(tmp_path, layer, tensors, error, match):
    path = _file(tmp_path, layer, tensors)
    with pytest.raises(error, match=match):
        pdinfer.load(path)


@pytest.mark.parametrize("type_name, params", [
    ("AdaptiveAvgPool2d", {"output_size": [2, 2]}), ("AdaptiveMaxPool2d", {"output_size": [1, 1]}),
    ("ChannelMean", {}), ("ChannelMax", {}), ("ZeroPad2d", {"padding": [1, 1, 1, 1]}),
])
def test_four_d_layers_refuse_flat_input(tmp_path, type_name, params):
    path = _file(tmp_path, {"type": type_name, "params": params}, flatten_first=True)
    with pytest.raises(FormatError, match="must have 4 dimensions"):
        pdinfer.load(path)


def test_hardtanh_and_elu_scalars_are_float32(tmp_path):
    """Bounds and alpha are rounded once to float32, as LeakyReLU's slope (docs/KERNELS.md)."""
    path = _file(tmp_path, {"type": "Hardtanh", "params": {"min_val": -0.1, "max_val": 0.3}}, input_shape=(1, 1, 3),
                 classes="abc")
    x = np.array([[[[-1.0, 0.2, 1.0]]]], np.float32)
    assert pdinfer.load(path).trace(x)["x"].ravel().tolist() == [np.float32(-0.1), np.float32(0.2), np.float32(0.3)]
    assert json.loads(pdinfer.format.read_container(path).metadata["layers"])[0]["params"]["min_val"] == -0.1


# ------------------------------------------------------------------------------------- model heads

def test_alexnet_and_vgg_style_heads_on_a_pd_image():
    """torchvision's AlexNet/VGG shape on a 1x60x120 PD image, channels cut down: the adaptive
    average pool shrinks (AlexNet's 6x6 from 7x14) or grows (VGG's 7x7 from 1x3) the feature map."""
    torch.manual_seed(0)
    alexnet = nn.Sequential(
        nn.Conv2d(1, 8, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 8, 5, padding=2), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((6, 6)), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(8 * 6 * 6, 16), nn.ReLU(inplace=True), nn.Linear(16, 6))
    check_against_torch(alexnet, (1, 60, 120))
    vgg = nn.Sequential(
        *[layer for cin, cout in ((1, 4), (4, 8), (8, 8), (8, 8), (8, 8))
          for layer in (nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))],
        nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), nn.Linear(8 * 7 * 7, 6))
    check_against_torch(vgg, (1, 60, 120))
