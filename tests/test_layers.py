"""Every layer type against PyTorch on random parameters and shapes (hypothesis).

Each case builds a small torch module, and `check_against_torch` exports it, runs pdinfer's fast
and reference paths on a random batch and compares both (and every named layer) with torch.
Modules are built after `torch.manual_seed(seed)` with a drawn seed, so a failure replays.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from exporter import randomize_batchnorm
from helpers import check_against_torch

EXAMPLES = settings().max_examples  # from the loaded profile (tests/conftest.py)

seeds = st.integers(0, 2**31 - 1)
batches = st.integers(1, 5)
sizes = st.integers(1, 20)
slopes = st.floats(-3.0, 3.0, allow_nan=False)


class Fn(nn.Module):
    """A functional call or tensor method as a module, so one spelling can be drawn like a layer."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.name, self.fn = name, fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class Residual(nn.Module):
    """`after(x + branch(x))`, the add written as `spelling`."""

    def __init__(self, branch: nn.Module, spelling: str = "+", after: nn.Module | None = None) -> None:
        super().__init__()
        self.branch, self.after, self.spelling = branch, after or nn.Identity(), spelling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch(x)
        if self.spelling == "torch.add":
            s = torch.add(x, y)
        elif self.spelling == "x.add":
            s = x.add(y)
        else:
            s = x + y
        return self.after(s)

    def extra_repr(self) -> str:
        return f"add spelled {self.spelling!r}"


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
    choices = {
        "ReLU": lambda: nn.ReLU(), "F.relu": lambda: Fn("F.relu", F.relu),
        "torch.relu": lambda: Fn("torch.relu", torch.relu), "x.relu()": lambda: Fn("x.relu()", lambda x: x.relu()),
        "ReLU6": lambda: nn.ReLU6(), "F.relu6": lambda: Fn("F.relu6", F.relu6),
        "Hardtanh(0, 6)": lambda: nn.Hardtanh(0.0, 6.0),
        "F.hardtanh(0, 6)": lambda: Fn("F.hardtanh(x, 0, 6)", lambda x: F.hardtanh(x, 0.0, 6.0)),
        "LeakyReLU": lambda: nn.LeakyReLU(slope),
        "F.leaky_relu": lambda: Fn(f"F.leaky_relu(x, {slope})", lambda x: F.leaky_relu(x, slope)),
        "Sigmoid": lambda: nn.Sigmoid(), "torch.sigmoid": lambda: Fn("torch.sigmoid", torch.sigmoid),
        "x.sigmoid()": lambda: Fn("x.sigmoid()", lambda x: x.sigmoid()),
    }
    names = sorted(choices) + (["none"] if with_none else [])
    name = draw(st.sampled_from(names))
    return nn.Identity() if name == "none" else choices[name]()


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
    """A softmax spelling and whether it runs on flattened (2-D) values."""
    flat = draw(st.booleans())
    dims = [1, -1] if flat else [1, -3]
    dim = draw(st.sampled_from(dims))
    spelling = draw(st.sampled_from(["nn.Softmax", "F.softmax", "torch.softmax", "x.softmax"]))
    if spelling == "nn.Softmax":
        return nn.Softmax(dim=dim), flat
    fn = {"F.softmax": lambda x: F.softmax(x, dim), "torch.softmax": lambda x: torch.softmax(x, dim),
          "x.softmax": lambda x: x.softmax(dim)}[spelling]
    return Fn(f"{spelling}(dim={dim})", fn), flat


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
    pool = (Fn(f"F.max_pool2d({window}, dilation={dilation})", lambda x: F.max_pool2d(x, dilation=dilation, **window))
            if functional else nn.MaxPool2d(dilation=dilation, **window))
    assume(runs_in_torch(pool, (c, h, w)))
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed)


@given(seeds, pool_windows(), st.booleans(), st.one_of(st.none(), st.integers(1, 30)), st.booleans(),
       st.integers(1, 6), sizes, sizes, batches)
def test_avg_pool2d(seed, window, count_include_pad, divisor_override, functional, c, h, w, batch):
    options = dict(window, count_include_pad=count_include_pad, divisor_override=divisor_override)
    pool = (Fn(f"F.avg_pool2d({options})", lambda x: F.avg_pool2d(x, **options))
            if functional else nn.AvgPool2d(**options))
    assume(runs_in_torch(pool, (c, h, w)))
    check_against_torch(nn.Sequential(pool), (c, h, w), batch=batch, seed=seed)


GLOBAL_MEANS = {
    "AdaptiveAvgPool2d(1)": lambda: nn.AdaptiveAvgPool2d(1),
    "AdaptiveAvgPool2d((1, 1))": lambda: nn.AdaptiveAvgPool2d((1, 1)),
    "F.adaptive_avg_pool2d(x, 1)": lambda: Fn("F.adaptive_avg_pool2d(x, 1)", lambda x: F.adaptive_avg_pool2d(x, 1)),
    "x.mean((2, 3))": lambda: Fn("x.mean((2, 3))", lambda x: x.mean((2, 3))),
    "x.mean((2, 3), keepdim=True)": lambda: Fn("x.mean((2, 3), keepdim=True)", lambda x: x.mean((2, 3), keepdim=True)),
    "x.mean(3).mean(2)": lambda: Fn("x.mean(3).mean(2)", lambda x: x.mean(3).mean(2)),
    "torch.mean(x, (-1, -2))": lambda: Fn("torch.mean(x, (-1, -2))", lambda x: torch.mean(x, (-1, -2))),
}


@given(seeds, st.sampled_from(sorted(GLOBAL_MEANS)), st.integers(1, 9), sizes, sizes,
       st.sampled_from([1.0, 100.0]), batches)
def test_global_avg_pool(seed, spelling, c, h, w, scale, batch):
    check_against_torch(nn.Sequential(GLOBAL_MEANS[spelling]()), (c, h, w), batch=batch, seed=seed,
                        input_scale=scale)


# ------------------------------------------------------------------------------ Flatten, Dropout, Add

FLATTENS = {
    "nn.Flatten()": lambda: nn.Flatten(),
    "torch.flatten(x, 1)": lambda: Fn("torch.flatten(x, 1)", lambda x: torch.flatten(x, 1)),
    "x.flatten(1)": lambda: Fn("x.flatten(1)", lambda x: x.flatten(1)),
    "x.view(x.size(0), -1)": lambda: Fn("x.view(x.size(0), -1)", lambda x: x.view(x.size(0), -1)),
    "x.reshape(x.shape[0], -1)": lambda: Fn("x.reshape(x.shape[0], -1)", lambda x: x.reshape(x.shape[0], -1)),
}


@given(seeds, st.sampled_from(sorted(FLATTENS)), st.booleans(), st.integers(1, 6), st.integers(1, 9),
       st.integers(1, 9), batches)
def test_flatten(seed, spelling, with_head, c, h, w, batch):
    """Flatten (channel-major, as PyTorch) after a convolution, alone or feeding a Linear."""
    torch.manual_seed(seed)
    head = nn.Linear(c * h * w, 5) if with_head else nn.Identity()
    model = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), FLATTENS[spelling](), head)
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


@given(seeds, st.sampled_from(["+", "torch.add", "x.add"]),
       st.sampled_from(["conv", "conv-bn-act", "identity"]), st.integers(1, 8), sizes, sizes, batches)
def test_add(seed, spelling, branch_kind, c, h, w, batch):
    """A residual add: x + conv(x), x + act(bn(conv(x))), and x + x."""
    torch.manual_seed(seed)
    branch = {
        "conv": lambda: nn.Conv2d(c, c, 3, padding=1),
        "conv-bn-act": lambda: nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                             batchnorm(c, seed, 1e-5), nn.ReLU6()),
        "identity": lambda: nn.Identity(),
    }[branch_kind]()
    check_against_torch(Residual(branch, spelling), (c, h, w), batch=batch, seed=seed)
