"""Every layer type against PyTorch on random parameters and shapes (hypothesis).

Each case builds a small torch module, and `check_against_torch` exports it, runs pdinfer's fast
and reference paths on a random batch and compares both (and every named layer) with torch.
Modules are built after `torch.manual_seed(seed)` with a drawn seed, so a failure replays.
"""

from __future__ import annotations

from typing import Callable, Union

import pytest
torch = pytest.importorskip("torch")  # compared with PyTorch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from exporter import randomize_batchnorm
from helpers import check_against_torch

# Spellings drawn on purpose: nn.Softmax() without dim; padding="same" with an even kernel.
pytestmark = pytest.mark.filterwarnings("ignore:Implicit dimension choice", "ignore:Using padding='same'")

EXAMPLES = settings().max_examples  # from the loaded profile (tests/conftest.py)

seeds = st.integers(0, 2**31 - 1)
batches = st.integers(1, 5)
sizes = st.integers(1, 20)
slopes = st.floats(-3.0, 3.0, allow_nan=False)


class Fn(nn.Module):
    """A functional call or tensor method as a module, so one spelling can be drawn like a layer."""

    def __init__(self, spelling: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.spelling, self.fn = spelling, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.spelling


Spellings = dict[str, Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]


def spelled(spellings: Spellings) -> st.SearchStrategy[nn.Module]:
    """One of the spellings of an operation (stateless modules, functions, tensor methods) as a module."""
    return st.sampled_from(sorted(spellings)).map(
        lambda key: spellings[key] if isinstance(spellings[key], nn.Module) else Fn(key, spellings[key]))


ADDS = {"x + y": lambda x, y: x + y, "torch.add(x, y)": torch.add, "x.add(y)": lambda x, y: x.add(y)}


class Residual(nn.Module):
    """`after(x + branch(x))`, the add in one of its spellings (a key of ADDS)."""

    def __init__(self, branch: nn.Module, add: str = "x + y", after: nn.Module | None = None) -> None:
        super().__init__()
        self.branch, self.after, self.add = branch, after or nn.Identity(), add

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(ADDS[self.add](x, self.branch(x)))

    def extra_repr(self) -> str:
        return self.add


def runs_in_torch(module: nn.Module, shape: tuple[int, ...]) -> bool:
    """Whether torch accepts a (1, *shape) input and gives a non-empty output (valid geometry)."""
    try:
        with torch.no_grad():
            return module.eval()(torch.zeros(1, *shape)).numel() > 0
    except RuntimeError:
        return False


@st.composite
def activations(draw, with_none: bool = True) -> nn.Module:
    """An activation in one of its spellings (the ones the planner fuses, and Sigmoid)."""
    slope = draw(slopes)
    spellings: Spellings = {
        "ReLU()": nn.ReLU(), "F.relu": F.relu, "torch.relu": torch.relu, "x.relu()": lambda x: x.relu(),
        "ReLU6()": nn.ReLU6(), "F.relu6": F.relu6, "Hardtanh(0, 6)": nn.Hardtanh(0.0, 6.0),
        "F.hardtanh(x, 0, 6)": lambda x: F.hardtanh(x, 0.0, 6.0),
        f"LeakyReLU({slope})": nn.LeakyReLU(slope),
        f"F.leaky_relu(x, {slope})": lambda x: F.leaky_relu(x, slope),
        "Sigmoid()": nn.Sigmoid(), "torch.sigmoid": torch.sigmoid, "x.sigmoid()": lambda x: x.sigmoid(),
    }
    if with_none:
        spellings["none"] = nn.Identity()
    return draw(spelled(spellings))


def batchnorm(channels: int, seed: int, eps: float, affine: bool = True) -> nn.BatchNorm2d:
    """A BatchNorm2d with random running statistics (and random affine values if affine)."""
    bn = nn.BatchNorm2d(channels, eps=eps, affine=affine)
    randomize_batchnorm(bn, seed)
    return bn


epsilons = st.sampled_from([1e-5, 1e-3, 0.1])


# ------------------------------------------------------------------------------------------ Conv2d

@st.composite
def conv_options(draw) -> tuple[dict, tuple[int, int, int]]:
    """nn.Conv2d arguments of any supported geometry, and an input shape (C, H, W) to try."""
    kind = draw(st.sampled_from(["dense", "grouped", "depthwise", "depthwise-multiplier", "pointwise"]))
    if kind == "grouped":
        groups = draw(st.integers(2, 4))
        cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    elif kind == "depthwise":  # channel counts past 16 and 32 span several blocks of the fast kernels
        cin = cout = groups = draw(st.integers(1, 40))
    elif kind == "depthwise-multiplier":
        cin = groups = draw(st.integers(1, 6))
        cout = cin * draw(st.integers(2, 3))
    else:
        cin, cout, groups = draw(st.integers(1, 9)), draw(st.integers(1, 40)), 1
    if kind == "pointwise":
        kernel, stride, dilation = (1, 1), (1, 1), (1, 1)
        padding = draw(st.sampled_from([0, "valid", "same"]))
    else:
        kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = draw(st.one_of(st.sampled_from(["same", "valid"]),
                                 st.tuples(st.integers(0, 3), st.integers(0, 3))))
        stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    options = dict(in_channels=cin, out_channels=cout, kernel_size=kernel, stride=stride, padding=padding,
                   dilation=dilation, groups=groups, bias=draw(st.booleans()))
    return options, (cin, draw(sizes), draw(sizes))


@settings(max_examples=3 * EXAMPLES)
@given(seeds, conv_options(), st.booleans(), epsilons, activations(), batches)
def test_conv2d(seed, options_and_shape, with_bn, eps, act, batch):
    """Conv2d alone, + BatchNorm2d (folded), + activation (fused), with every geometry."""
    options, shape = options_and_shape
    torch.manual_seed(seed)
    conv = nn.Conv2d(**options)
    assume(runs_in_torch(conv, shape))
    bn = batchnorm(conv.out_channels, seed, eps) if with_bn else nn.Identity()
    check_against_torch(nn.Sequential(conv, bn, act), shape, batch=batch, seed=seed)


# ------------------------------------------------------------------------------------- BatchNorm2d

@given(seeds, st.integers(1, 9), sizes, sizes, epsilons, st.booleans(), activations(), batches)
def test_batchnorm2d_alone(seed, channels, h, w, eps, affine, act, batch):
    """A BatchNorm2d with nothing to fold into (the graph input), then an activation."""
    check_against_torch(nn.Sequential(batchnorm(channels, seed, eps, affine), act), (channels, h, w),
                        batch=batch, seed=seed)


@given(seeds, st.integers(1, 9), sizes, sizes, epsilons, activations(), batches)
def test_batchnorm2d_after_add(seed, channels, h, w, eps, act, batch):
    """BatchNorm2d after a residual Add, so it cannot fold into the convolution."""
    torch.manual_seed(seed)
    branch = nn.Conv2d(channels, channels, 3, padding=1)
    after = nn.Sequential(batchnorm(channels, seed, eps), act)
    check_against_torch(Residual(branch, after=after), (channels, h, w), batch=batch, seed=seed)


# ------------------------------------------------------------------------------------------ Linear

@given(seeds, st.integers(1, 6), st.integers(1, 8), st.integers(1, 8), st.integers(1, 40),
       st.booleans(), activations(), batches)
def test_linear(seed, c, h, w, out_features, bias, act, batch):
    """Flatten then Linear (fused with an activation when one follows)."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, out_features, bias=bias), act)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


# ------------------------------------------------------------------------------------- activations

@given(seeds, activations(with_none=False), st.integers(1, 6), sizes, sizes, st.booleans(),
       st.sampled_from([0.1, 1.0, 4.0, 30.0, 100.0]), batches)
def test_activation(seed, act, c, h, w, flat, scale, batch):
    """Each activation on its own, on (N, C, H, W) and on flattened (N, features) values.

    Scales up to 100 reach ReLU6's clip and the saturated ends of Sigmoid.
    """
    model = nn.Sequential(nn.Flatten(), act) if flat else nn.Sequential(act)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed, input_scale=scale)


# ----------------------------------------------------------------------------------------- Softmax

@st.composite
def softmaxes(draw) -> tuple[nn.Module, bool]:
    """A softmax over dim 1 in one of its spellings, and whether it runs on flattened (2-D) values."""
    flat = draw(st.booleans())
    dim = draw(st.sampled_from([1, -1] if flat else [1, -3]))
    spellings: Spellings = {
        f"Softmax(dim={dim})": nn.Softmax(dim=dim), f"F.softmax(x, {dim})": lambda x: F.softmax(x, dim),
        f"torch.softmax(x, {dim})": lambda x: torch.softmax(x, dim),
        f"x.softmax({dim})": lambda x: x.softmax(dim)}
    if flat:
        spellings["Softmax()"] = nn.Softmax()  # PyTorch's implicit choice is dim 1 on 2-D (PDLightModel)
    return draw(spelled(spellings)), flat


@given(seeds, softmaxes(), st.integers(1, 8), st.integers(1, 6), st.integers(1, 6),
       st.sampled_from([0.1, 1.0, 10.0, 100.0]), batches)
def test_softmax(seed, softmax_and_flat, c, h, w, scale, batch):
    """Softmax over dim 1 (written 1, -1 on 2-D or -3 on 4-D), on 2-D and 4-D values."""
    softmax, flat = softmax_and_flat
    model = nn.Sequential(nn.Flatten(), softmax) if flat else nn.Sequential(softmax)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed, input_scale=scale)


# ----------------------------------------------------------------------------------------- pooling

@st.composite
def pool_windows(draw) -> dict:
    """kernel_size, stride and padding (at most half the kernel) of a pooling window."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    return {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": draw(st.booleans())}


@given(seeds, pool_windows(), st.tuples(st.integers(1, 3), st.integers(1, 3)), st.booleans(),
       st.integers(1, 6), sizes, sizes, batches)
def test_max_pool2d(seed, window, dilation, functional, c, h, w, batch):
    options = dict(window, dilation=dilation)
    pool = Fn(f"F.max_pool2d(x, **{options})", lambda x: F.max_pool2d(x, **options)) if functional else \
        nn.MaxPool2d(**options)
    assume(runs_in_torch(pool, (c, h, w)))
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed)


@given(seeds, pool_windows(), st.booleans(), st.one_of(st.none(), st.integers(1, 30)), st.booleans(),
       st.integers(1, 6), sizes, sizes, batches)
def test_avg_pool2d(seed, window, count_include_pad, divisor_override, functional, c, h, w, batch):
    options = dict(window, count_include_pad=count_include_pad, divisor_override=divisor_override)
    pool = Fn(f"F.avg_pool2d(x, **{options})", lambda x: F.avg_pool2d(x, **options)) if functional else \
        nn.AvgPool2d(**options)
    assume(runs_in_torch(pool, (c, h, w)))
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed)


GLOBAL_MEANS: Spellings = {
    "AdaptiveAvgPool2d(1)": nn.AdaptiveAvgPool2d(1),
    "AdaptiveAvgPool2d((1, 1))": nn.AdaptiveAvgPool2d((1, 1)),
    "F.adaptive_avg_pool2d(x, 1)": lambda x: F.adaptive_avg_pool2d(x, 1),
    "x.mean((2, 3))": lambda x: x.mean((2, 3)),
    "x.mean((2, 3), keepdim=True)": lambda x: x.mean((2, 3), keepdim=True),
    "x.mean(3).mean(2)": lambda x: x.mean(3).mean(2),
    "torch.mean(x, (-1, -2))": lambda x: torch.mean(x, (-1, -2)),
}


@given(seeds, spelled(GLOBAL_MEANS), st.integers(1, 40), sizes, sizes, st.sampled_from([1.0, 100.0]), batches)
def test_global_avg_pool(seed, mean, c, h, w, scale, batch):
    check_against_torch(nn.Sequential(mean), (c, h, w), batch=batch, seed=seed, input_scale=scale)


# ------------------------------------------------------------------------------ Flatten, Dropout, Add

FLATTENS: Spellings = {
    "nn.Flatten()": nn.Flatten(), "torch.flatten(x, 1)": lambda x: torch.flatten(x, 1),
    "x.flatten(1)": lambda x: x.flatten(1), "x.view(x.size(0), -1)": lambda x: x.view(x.size(0), -1),
    "x.reshape(x.shape[0], -1)": lambda x: x.reshape(x.shape[0], -1),
}


@given(seeds, spelled(FLATTENS), st.booleans(), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9),
       batches)
def test_flatten(seed, flatten, with_head, c, h, w, batch):
    """Flatten (channel-major, as PyTorch) after a convolution, alone or feeding a Linear."""
    torch.manual_seed(seed)
    head = nn.Linear(c * h * w, 5) if with_head else nn.Identity()
    model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), flatten, head)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


@given(seeds, st.floats(0.0, 0.99), st.sampled_from(["alone", "nn.Dropout", "F.dropout"]),
       st.integers(1, 6), sizes, sizes, batches)
def test_dropout(seed, p, where, c, h, w, batch):
    """Dropout is the identity at inference: as the only layer, or between a conv and its ReLU."""
    torch.manual_seed(seed)
    if where == "alone":
        model = nn.Sequential(nn.Dropout(p))
    else:
        dropout = nn.Dropout(p) if where == "nn.Dropout" else Fn(
            f"F.dropout(x, {p}, training=False)", lambda x: F.dropout(x, p, training=False))
        model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), dropout, nn.ReLU())
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


@given(seeds, st.sampled_from(sorted(ADDS)),
       st.sampled_from(["conv", "conv-bn-act", "identity"]), st.integers(1, 8), sizes, sizes, batches)
def test_add(seed, add, branch_kind, c, h, w, batch):
    """A residual add: x + conv(x), x + act(bn(conv(x))), and x + x."""
    torch.manual_seed(seed)
    branch = {
        "conv": lambda: nn.Conv2d(c, c, 3, padding=1),
        "conv-bn-act": lambda: nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                             batchnorm(c, seed, 1e-5), nn.ReLU6()),
        "identity": lambda: nn.Identity(),
    }[branch_kind]()
    check_against_torch(Residual(branch, add), (c, h, w), batch=batch, seed=seed)
