"""Concat, Slice, ChannelShuffle and Mul against PyTorch, in every spelling, on drawn shapes.

Each case builds a small torch module after `torch.manual_seed(seed)`, and `check_against_torch`
exports it, runs pdinfer's fast and reference paths and compares both with torch. Uneven channel
counts, 2 to 5 concatenated inputs, uneven splits and both operand orders of a multiply are drawn.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # compared with PyTorch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import pdinfer
from exporter import UnsupportedModelError, to_layers
from helpers import check_against_torch
from pdinfer.errors import FormatError
from pdinfer.format import write_weights
from pdinfer.graph import load_graph
from test_golden import java
from test_layers import Fn, batches, seeds

channels = st.integers(1, 9)
sizes = st.integers(1, 9)

Combine = Callable[[list[torch.Tensor]], torch.Tensor]
CATS: dict[str, Combine] = {
    "torch.cat(list, 1)": lambda xs: torch.cat(xs, 1),
    "torch.cat(tuple, dim=1)": lambda xs: torch.cat(tuple(xs), dim=1),
    "torch.concat(xs, -3)": lambda xs: torch.concat(xs, -3),
    "torch.concatenate(xs, axis=1)": lambda xs: torch.concatenate(xs, axis=1),
}
FEATURE_CATS: dict[str, Combine] = {  # of (N, F) values
    "torch.cat(list, 1)": lambda xs: torch.cat(xs, 1), "torch.cat(xs, -1)": lambda xs: torch.cat(xs, -1),
}
Split = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]  # indexed, as torch.fx traces it


class Branches(nn.Module):
    """`combine` of every branch's output: each branch reads x, or its piece of `split(x)`.

    With a split, the outputs are combined in reverse order (so a slice that is not the first
    ends up first).
    """

    def __init__(self, branches: list[nn.Module], combine: str, cats: dict[str, Combine] = CATS,
                 split: tuple[str, Split] | None = None) -> None:
        super().__init__()
        self.branches, self.combine, self.cats, self.split = nn.ModuleList(branches), combine, cats, split

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = self.split[1](x) if self.split else [x] * len(self.branches)
        outs = [branch(pieces[i]) for i, branch in enumerate(self.branches)]
        return self.cats[self.combine](outs[::-1] if self.split else outs)

    def extra_repr(self) -> str:
        return f"{self.split[0] if self.split else 'x'} -> {self.combine}"


def branch(kind: str, cin: int, cout: int) -> nn.Module:
    """A branch of a concat: a 3x3 conv to cout channels, a ReLU, or the identity."""
    return {"conv": lambda: nn.Conv2d(cin, cout, 3, padding=1), "relu": nn.ReLU, "identity": nn.Identity}[kind]()


# ------------------------------------------------------------------------------------------ Concat

@given(seeds, st.lists(st.tuples(st.sampled_from(["conv", "relu", "identity"]), channels), min_size=2,
                       max_size=5), st.sampled_from(sorted(CATS)), channels, sizes, sizes, batches)
def test_concat(seed, kinds, combine, c, h, w, batch):
    """2 to 5 branches of odd widths (the input itself possibly several times) concatenated."""
    torch.manual_seed(seed)
    model = Branches([branch(kind, c, cout) for kind, cout in kinds], combine)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


@given(seeds, st.integers(2, 5), st.sampled_from(sorted(FEATURE_CATS)), channels, sizes, sizes, batches)
def test_concat_of_features(seed, count, combine, c, h, w, batch):
    """Flattened feature vectors (N, F) concatenated along dim 1 (an ensemble's head)."""
    torch.manual_seed(seed)
    heads = [nn.Sequential(nn.Conv2d(c, i + 1, 1), nn.Flatten()) for i in range(count)]
    model = nn.Sequential(Branches(heads, combine, FEATURE_CATS),
                          nn.Linear(sum(i + 1 for i in range(count)) * h * w, 3))
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


# ------------------------------------------------------------------------------------------- Slice

@st.composite
def channel_splits(draw, c: int) -> tuple[str, Split]:
    """A way to cut c channels into pieces: chunk, split by size or sizes, slicing, narrow."""
    kind = draw(st.sampled_from(["x.chunk", "torch.chunk", "torch.split(int)", "x.split(list)",
                                 "x.split(size // k)", "slicing", "slicing ...", "narrow"]
                                + ["slicing by size"] * (c > 1)))
    if kind in ("x.chunk", "torch.chunk"):
        k, dim = draw(st.integers(1, c + 1)), draw(st.sampled_from([1, -3]))
        fn = (lambda x: x.chunk(k, dim=dim)) if kind == "x.chunk" else (lambda x: torch.chunk(x, k, dim))
        return f"{kind}({k}, {dim})", fn
    if kind == "torch.split(int)":
        size = draw(st.integers(1, c))
        return f"torch.split(x, {size}, 1)", lambda x: torch.split(x, size, 1)
    if kind == "x.split(size // k)":
        k = draw(st.integers(1, c))
        return f"x.split(x.size(1) // {k}, 1)", lambda x: x.split(x.size(1) // k, 1)
    if kind == "slicing by size":  # bounds computed from the shape, as ShuffleNetV2 ports write it
        return "x[:, :x.shape[1] // 2], x[:, x.shape[1] // 2:]", lambda x: (x[:, :x.shape[1] // 2],
                                                                          x[:, x.shape[1] // 2:])
    if kind == "x.split(list)":
        cuts = sorted(draw(st.sets(st.integers(1, c - 1), max_size=3))) if c > 1 else []
        sections = [b - a for a, b in zip([0, *cuts], [*cuts, c])]
        return f"x.split({sections}, 1)", lambda x: x.split(sections, 1)
    start = draw(st.integers(-c, c - 1))
    begin = start % c
    end = draw(st.integers(begin + 1, c))
    stop = draw(st.sampled_from([end, end - c])) if end < c else draw(st.sampled_from([end, None]))
    if kind == "slicing":
        return f"x[:, {start}:{stop}]", lambda x: (x[:, start:stop], x)
    if kind == "slicing ...":
        return f"x[:, {start}:{stop}, ...]", lambda x: (x[:, start:stop, ...], x[:, :, :])
    return f"x.narrow(1, {start}, {end - begin})", lambda x: (x.narrow(1, start, end - begin), x)


@given(seeds, st.data(), channels, sizes, sizes, batches)
def test_slice(seed, data, c, h, w, batch):
    """Pieces of the channels, each through its own conv or ReLU, concatenated in reverse order."""
    torch.manual_seed(seed)
    split = data.draw(channel_splits(c))
    widths = [p.shape[1] for p in split[1](torch.zeros(1, c, h, w))]
    kinds = data.draw(st.lists(st.sampled_from(["conv", "relu"]), min_size=len(widths), max_size=len(widths)))
    branches = [branch(kind, width, width + 1) for kind, width in zip(kinds, widths)]
    model = Branches(branches, "torch.cat(list, 1)", split=split)
    check_against_torch(model, (c, h, w), batch=batch, seed=seed)


@given(seeds, st.integers(2, 40), st.data(), batches)
def test_slice_of_features(seed, features, data, batch):
    """Slicing flattened (N, F) features: x.flatten(1)[:, a:b]."""
    a = data.draw(st.integers(0, features - 1))
    b = data.draw(st.integers(a + 1, features))
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), Fn(f"x[:, {a}:{b}]", lambda x: x[:, a:b]), nn.Linear(b - a, 2))
    check_against_torch(model, (features, 1, 1), batch=batch, seed=seed)


# ---------------------------------------------------------------------------------- ChannelShuffle

def shuffle_torchvision(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's shufflenetv2.channel_shuffle, verbatim."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    x = x.view(batchsize, -1, height, width)
    return x


def shuffle_paper(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The ShuffleNet reference-code spelling: sizes from x.data.size(), channels computed."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).permute(0, 2, 1, 3, 4)
    return x.reshape(n, c, h, w)


def shuffle_minus_one(x: torch.Tensor, groups: int) -> torch.Tensor:
    """With -1 for the batch, transpose(2, 1), flatten(1, 2), and a no-op view after it."""
    _, c, h, w = x.size()
    x = x.view(-1, groups, c // groups, h, w).transpose(2, 1).contiguous().flatten(1, 2)
    return x.view(x.size(0), c, h, w)


SHUFFLES = {"torchvision": shuffle_torchvision, "paper": shuffle_paper, "view(-1, ...)": shuffle_minus_one,
            "F.channel_shuffle": lambda x, g: F.channel_shuffle(x, g)}


@given(seeds, st.integers(1, 4), st.integers(1, 5), st.sampled_from([*SHUFFLES, "nn.ChannelShuffle"]),
       sizes, sizes, batches)
def test_channel_shuffle(seed, groups, per_group, spelling, h, w, batch):
    c = groups * per_group
    torch.manual_seed(seed)
    shuffle = nn.ChannelShuffle(groups) if spelling == "nn.ChannelShuffle" else Fn(
        f"{spelling}(x, {groups})", lambda x: SHUFFLES[spelling](x, groups))
    check_against_torch(nn.Sequential(nn.Conv2d(c, c, 1), shuffle), (c, h, w), batch=batch, seed=seed)


# --------------------------------------------------------------------------------------------- Mul

MULS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "a * b": lambda a, b: a * b, "torch.mul(a, b)": torch.mul, "a.mul(b)": lambda a, b: a.mul(b),
    "a.mul_(b)": lambda a, b: a.mul_(b), "torch.multiply(a, b)": torch.multiply,
}
GATES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "y.sigmoid()": lambda y: y.sigmoid(), "torch.sigmoid(y)": torch.sigmoid, "y": lambda y: y,
}


UNFLATTENS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {  # (N, C) -> (N, C, 1, 1)
    "y.view(b, c, 1, 1)": lambda y, c: y.view(y.size(0), c, 1, 1),
    "y.reshape(-1, c, 1, 1)": lambda y, c: y.reshape(-1, c, 1, 1),
    "y.unsqueeze(-1).unsqueeze(-1)": lambda y, c: y.unsqueeze(-1).unsqueeze(-1),
    "torch.unsqueeze(y.unsqueeze(2), 3)": lambda y, c: torch.unsqueeze(y.unsqueeze(2), 3),
}


class Gate(nn.Module):
    """`mul(x, gate(attention(x)))` (or the operands swapped): the attention shape is drawn.

    "se-linear" is SENet's SE: a global mean viewed as (N, C), Linear, viewed back as (N, C, 1, 1)
    in one of the UNFLATTENS spellings (or nn.Unflatten), expanded as x.
    """

    def __init__(self, kind: str, c: int, mul: str, gate: str, swap: bool, unflatten: str = "") -> None:
        super().__init__()
        self.kind, self.mul, self.gate, self.swap, self.c, self.unflatten = kind, mul, gate, swap, c, unflatten
        self.conv = nn.Conv2d(c, 1 if kind == "spatial" else c, 1 if kind == "se" else 3, padding=0 if kind == "se" else 1)
        self.fc = nn.Linear(c, c)
        self.unflatten_module = nn.Unflatten(1, (c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "se":
            y = self.conv(x.mean((2, 3), keepdim=True))  # (N, C, 1, 1)
        elif self.kind == "se-pool":
            y = self.conv(F.adaptive_avg_pool2d(x, 1))  # (N, C, 1, 1) (the 3x3 conv sees one pixel)
        elif self.kind == "se-linear":
            b, c, _, _ = x.size()
            y = self.fc(F.adaptive_avg_pool2d(x, 1).view(b, c))
            y = self.unflatten_module(y) if self.unflatten == "nn.Unflatten" else UNFLATTENS[self.unflatten](y, self.c)
        else:
            y = self.conv(x)  # (N, 1, H, W) or same-shape
        y = GATES[self.gate](y)
        if self.kind == "se-linear":
            y = y.expand_as(x)
        in_place_gate = self.mul == "a.mul_(b)" and self.kind != "same"  # a must have the output's shape
        a, b = (y, x.relu()) if self.swap and not in_place_gate else (x.relu(), y)
        return MULS[self.mul](a, b)

    def extra_repr(self) -> str:
        return f"{self.kind}, {self.mul}, {self.gate}, swap={self.swap}, {self.unflatten}"


@given(seeds, st.sampled_from(["se", "se-pool", "se-linear", "spatial", "same"]), st.sampled_from(sorted(MULS)),
       st.sampled_from(sorted(GATES)), st.booleans(), st.sampled_from([*sorted(UNFLATTENS), "nn.Unflatten"]),
       channels, sizes, sizes, batches)
def test_mul(seed, kind, mul, gate, swap, unflatten, c, h, w, batch):
    """SE (N, C, 1, 1), spatial (N, 1, H, W) and same-shape products, either operand order."""
    torch.manual_seed(seed)
    check_against_torch(Gate(kind, c, mul, gate, swap, unflatten), (c, h, w), batch=batch, seed=seed)


@given(seeds, channels, st.booleans(), batches)
def test_mul_of_features(seed, c, one_column, batch):
    """`x *= gate` on flattened (N, F) values, the gate (N, F) or (N, 1)."""
    torch.manual_seed(seed)

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x *= x[:, :1].sigmoid() if one_column else x.sigmoid()
        return x

    check_against_torch(nn.Sequential(nn.Conv2d(c, c, 1), Fn("x *= gate", forward)), (c, 2, 3),
                        batch=batch, seed=seed)


# -------------------------------------------------------------------------- what stays unsupported

@pytest.mark.parametrize("spelling, forward, reason", [
    ("cat along H", lambda x: torch.cat([x, x], 2), "only along the channels"),
    ("chunk along W", lambda x: x.chunk(2, 3)[0], "only along the channels"),
    ("strided slice", lambda x: x[:, ::2], "step 1"),
    ("split by the batch size", lambda x: x.split(x.size(0), 1)[0], "from the batch size"),
    ("slice to the batch size", lambda x: x[:, :x.size(0)], "from the batch size"),
    ("pool window from the batch size", lambda x: F.avg_pool2d(x, x.size(0)), "pool window computed"),
    ("slice along H", lambda x: x[:, :, 1:], "only along the channels"),
    ("integer index", lambda x: x[:, 0], "indexing"),
    ("the chunk tuple", lambda x: torch.cat(x.chunk(2, 1), 1), "only of a list or tuple"),
    ("scale by a constant", lambda x: x * 2, "constant"),
    ("5-D view not a shuffle", lambda x: x.view(x.size(0), 2, 2, 36, 1), "only 5-D view"),
    ("shuffle without the transpose", lambda x: x.view(-1, 2, 2, 6, 6).view(-1, 4, 6, 6), "transpose(1, 2)"),
    ("other transpose", lambda x: x.transpose(2, 3), "only a channel shuffle's transpose"),
    ("unsqueeze of the channels", lambda x: x.flatten(1).unsqueeze(1).unsqueeze(1).relu(), "unsqueezing the last"),
    ("expand feeding an add", lambda x: x + x.mean((2, 3), keepdim=True).expand_as(x), "only feeding a multiply"),
    ("view of features as 3-D", lambda x: x.flatten(1).view(-1, 4, 36).relu(), "view/reshape to (-1, 4, 36)"),
    ("unflatten with the batch hard-coded", lambda x: x.flatten(1).view(2, 4, 6, 6).relu(), "n = -1"),
    ("hard-coded batch", lambda x: x.view(2, 2, 2, 6, 6).transpose(1, 2).reshape(2, 4, 6, 6), "n = -1"),
])
def test_unsupported_says_why(spelling, forward, reason):
    with pytest.raises(UnsupportedModelError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        to_layers(Fn(spelling, forward), (4, 6, 6))


# ------------------------------------------------------------------------------ file checks at load

def _layer(name: str, type_name: str, inputs: list[str], **params) -> dict:
    return {"name": name, "type": type_name, "inputs": inputs, "params": params, "tensors": {}}


BAD_LAYERS = [
    (_layer("cat", "Concat", ["input"], dim=1), r"'inputs' must list 2 or more"),
    (_layer("cat", "Concat", ["input", "input"], dim=2), "param 'dim' must be 1"),
    (_layer("cat", "Concat", ["input", "flat"], dim=1), "every input must match"),
    (_layer("slice", "Slice", ["input"], dim=1, start=2, end=5), r"channels \[2, 5\) do not fit"),
    (_layer("slice", "Slice", ["input"], dim=1, start=2, end=2), "must be greater than 'start'"),
    (_layer("slice", "Slice", ["input"], dim=1, start=-1, end=2), "param 'start'"),
    (_layer("shuffle", "ChannelShuffle", ["input"], groups=3), "does not divide the 4 input channels"),
    (_layer("shuffle", "ChannelShuffle", ["input"], groups=True), "param 'groups'"),
    (_layer("mul", "Mul", ["input", "flat"]), "do not broadcast"),
    (_layer("mul", "Mul", ["input"]), "'inputs' must list 2 "),
    (_layer("unflat", "Unflatten", ["flat"], shape=[4, 3, 3]), "24 features cannot be viewed as"),
    (_layer("unflat", "Unflatten", ["flat"], shape=[24, 1]), "param 'shape' must be"),
    (_layer("unflat", "Unflatten", ["input"], shape=[24, 1, 1]), "must have 2 dimensions"),
]


def bad_file(path: Path, layer: dict) -> Path:
    """Input (1, 4, 3, 2); 'flat' is its flatten (1, 24); `layer` comes last."""
    layers = [_layer("flat", "Flatten", ["input"])] * ("flat" in layer["inputs"]) + [layer]
    write_weights(path, layers, {}, input_shape=[4, 3, 2], classes=[str(i) for i in range(100)])
    return path


@pytest.mark.parametrize("layer, reason", BAD_LAYERS)
def test_bad_layer_params_and_shapes_are_refused(layer, reason, tmp_path):
    with pytest.raises(FormatError, match=reason):
        load_graph(bad_file(tmp_path / "bad.pdw", layer))


def test_the_java_reader_refuses_them_too(java_classes, tmp_path):
    for i, (layer, reason) in enumerate(BAD_LAYERS):
        result = java(java_classes, "Info", bad_file(tmp_path / f"bad{i}.pdw", layer))
        assert result.returncode == 2 and re.search(reason, result.stderr), (layer, result.stderr)


def test_concat_and_slice_run_on_numpy_alone(tmp_path):
    """A hand-written file: channels cut, shuffled, concatenated and multiplied, against NumPy."""
    layers = [_layer("a", "Slice", ["input"], dim=1, start=1, end=4), _layer("b", "Slice", ["input"], dim=1, start=0, end=2),
              _layer("cat", "Concat", ["a", "b", "input"], dim=1), _layer("shuffle", "ChannelShuffle", ["cat"], groups=3),
              _layer("gate", "Slice", ["shuffle"], dim=1, start=0, end=1), _layer("mul", "Mul", ["gate", "shuffle"])]
    path = tmp_path / "numpy.pdw"
    write_weights(path, layers, {}, input_shape=[4, 3, 2], classes=[str(i) for i in range(54)])
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 2)).astype(np.float32)
    cat = np.concatenate([x[:, 1:4], x[:, 0:2], x], 1)
    shuffled = cat.reshape(2, 3, 3, 3, 2).transpose(0, 2, 1, 3, 4).reshape(2, 9, 3, 2)
    expected = shuffled[:, :1] * shuffled
    model = pdinfer.load(path)
    assert np.array_equal(model.trace(x)["mul"], expected)
    assert np.array_equal(model(x), expected)
