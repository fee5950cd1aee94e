"""How each supported torch module, function and method maps to a FORMAT.md layer.

A handler takes the fx node's arguments, bound like the torch call they record, and returns a
`LayerSpec`, an fx node whose value it returns unchanged (`nn.Identity`), or None for a node
that makes no layer of its own (a size feeding a flatten, the `x.mean(3)` of
`x.mean(3).mean(2)`, the tuple of a `chunk`, the steps of a channel shuffle before its last
view). It raises `Unsupported` with the reason when the call has no layer.
"""

from __future__ import annotations

import inspect
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.fx import Node

from pdinfer.layers.structural import broadcast_shape


class Unsupported(Exception):
    """The node cannot be written as a FORMAT.md layer; the message says why."""


@dataclass
class LayerSpec:
    """A layer before it is named: FORMAT.md type, input nodes, params, tensors by role."""

    type: str
    inputs: list[Any]
    params: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class MeanChain:
    """Means taken so far of a 4-D `source`: per remaining axis, (original axis, was reduced)."""

    source: Node
    axes: tuple[tuple[int, bool], ...]


@dataclass(frozen=True)
class ShuffleView:
    """A channel shuffle under way: `source` (N, C, H, W) viewed as (N, groups, C / groups, H, W)."""

    source: Node
    groups: int
    transposed: bool  # the transpose(1, 2) is done


@dataclass(frozen=True)
class ChannelSplit:
    """The tuple `chunk`/`split` returns: `source`'s channels [start, end) per item."""

    source: Node
    bounds: tuple[tuple[int, int], ...]


@dataclass
class Context:
    """What handlers share: means over part of H and W, channel shuffles and splits under way,
    the nodes holding sizes, channel reductions."""

    partial_means: dict[Node, MeanChain] = field(default_factory=dict)
    shuffles: dict[Node, ShuffleView] = field(default_factory=dict)
    splits: dict[Node, ChannelSplit] = field(default_factory=dict)
    size_values: dict[Node, Any] = field(default_factory=dict)  # -> its value, None for the batch size
    unsqueezed: dict[Node, Node] = field(default_factory=dict)  # (N, C, 1) -> its (N, C) source
    max_results: dict[Node, LayerSpec] = field(default_factory=dict)  # x.max(1, ...) -> its values' layer
    max_keepdim: dict[Node, bool] = field(default_factory=dict)  # x.max(1, ...) -> its keepdim
    # A mean or max over the channels without keepdim, (N, H, W): a layer where unsqueeze(1) restores it.
    squeezed_channels: dict[Node, LayerSpec] = field(default_factory=dict)

    def pending(self, value: Node) -> str | None:
        """Why `value`, a node that made no layer of its own, cannot be used as a tensor (or None)."""
        if value in self.partial_means:
            return f"'{value.name}', a mean over only one of H and W"
        if value in self.shuffles:
            return (f"'{value.name}', a 5-D view; only a channel shuffle's view(n, groups, C // groups, "
                    "H, W) -> transpose(1, 2) -> view(n, C, H, W) is supported")
        if value in self.splits:
            return f"'{value.name}', the tuple a chunk/split returns; only its items, t[i]"
        if value in self.unsqueezed:
            return f"'{value.name}', a 3-D tensor; only (N, C, H, W) or (N, features) values"
        return None

    @staticmethod
    def shape(value: Any) -> tuple[int, ...]:
        """The shape ShapeProp recorded for a tensor node (batch of 2)."""
        meta = value.meta.get("tensor_meta") if isinstance(value, Node) else None
        if not hasattr(meta, "shape"):
            raise Unsupported(f"operand {value!r} is not a tensor")
        return tuple(meta.shape)


Handler = Callable[..., "LayerSpec | Node | None"]


# ---------------------------------------------------------------------------- shared builders

def _pair(value: Any, what: str) -> list[int]:
    if isinstance(value, (tuple, list)) and len(value) in (1, 2):
        pair = [value[0], value[-1]]
    else:
        pair = [value, value]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise Unsupported(f"{what}={value!r}")
    return pair


def _symmetric_padding(padding: Any) -> list[int]:
    ph, pw = _pair(padding, "padding")
    return [ph, pw, ph, pw]


def _present(**tensors: torch.Tensor | None) -> dict[str, torch.Tensor]:
    return {role: t for role, t in tensors.items() if t is not None}


def _hardtanh(x: Node, min_val: float, max_val: float) -> LayerSpec:
    """ReLU6 for (0, 6), else a general Hardtanh."""
    if (min_val, max_val) == (0, 6):
        return LayerSpec("ReLU6", [x])
    if not all(abs(v) <= 1e30 for v in (min_val, max_val)):
        raise Unsupported(f"hardtanh/clamp bounds ({min_val}, {max_val}); only finite bounds within ±1e30")
    return LayerSpec("Hardtanh", [x], {"min_val": float(min_val), "max_val": float(max_val)})


def _gelu(x: Node, approximate: str) -> LayerSpec:
    if approximate not in ("none", "tanh"):
        raise Unsupported(f"gelu approximate={approximate!r}")
    return LayerSpec("GELU", [x], {"approximate": approximate})


def _elu(x: Node, alpha: float) -> LayerSpec:
    return LayerSpec("ELU", [x], {"alpha": float(alpha)})


def _attribute(value: Any) -> torch.Tensor | None:
    """The parameter or buffer a get_attr node reads, or None for any other value."""
    if not (isinstance(value, Node) and value.op == "get_attr"):
        return None
    tensor = operator.attrgetter(value.target)(value.graph.owning_module)
    return tensor if isinstance(tensor, torch.Tensor) else None


def _prelu(ctx: Context, x: Node, weight: torch.Tensor | None) -> LayerSpec:
    shape = ctx.shape(x)
    if weight is None or weight.dim() != 1:
        raise Unsupported("prelu whose weight is not a 1-D parameter or buffer of the model")
    channels = shape[1] if len(shape) > 1 else 1
    if weight.numel() not in (1, channels):
        raise Unsupported(f"prelu with {weight.numel()} weights on shape {shape}; only 1 or one per channel")
    return LayerSpec("PReLU", [x], {"num_parameters": weight.numel()}, {"weight": weight})


def _leaky_relu(x: Node, negative_slope: float) -> LayerSpec:
    return LayerSpec("LeakyReLU", [x], {"negative_slope": float(negative_slope)})


def _softmax(ctx: Context, x: Node, dim: int | None) -> LayerSpec:
    rank = len(ctx.shape(x))
    if dim is None:  # PyTorch's implicit choice for softmax(dim=None)
        dim = 0 if rank in (0, 1, 3) else 1
    if dim < 0:
        dim += rank
    if dim != 1:
        raise Unsupported(f"softmax over dim {dim} of a rank-{rank} tensor; only dim 1")
    return LayerSpec("Softmax", [x], {"dim": 1})


def _max_pool(x: Node, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
              ceil_mode: bool, return_indices: bool) -> LayerSpec:
    if return_indices:
        raise Unsupported("return_indices=True")
    kernel = _pair(kernel_size, "kernel_size")
    return LayerSpec("MaxPool2d", [x], {
        "kernel_size": kernel, "stride": _pair(stride, "stride") if stride else kernel,
        "padding": _symmetric_padding(padding), "dilation": _pair(dilation, "dilation"),
        "ceil_mode": bool(ceil_mode)})


def _avg_pool(x: Node, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
              count_include_pad: bool, divisor_override: int | None) -> LayerSpec:
    kernel = _pair(kernel_size, "kernel_size")
    return LayerSpec("AvgPool2d", [x], {
        "kernel_size": kernel, "stride": _pair(stride, "stride") if stride else kernel,
        "padding": _symmetric_padding(padding), "ceil_mode": bool(ceil_mode),
        "count_include_pad": bool(count_include_pad), "divisor_override": divisor_override or 0})


def _adaptive_output_size(ctx: Context, x: Node, output_size: Any) -> list[int]:
    """[height, width] of an adaptive pool's output; None entries keep the input's size."""
    shape = ctx.shape(x)
    if len(shape) != 4:
        raise Unsupported(f"adaptive pool of shape {shape}; only of (N, C, H, W)")
    size = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * 2
    if len(size) != 2:
        raise Unsupported(f"adaptive pool to {output_size!r}")
    size = [shape[2 + i] if v is None else v for i, v in enumerate(size)]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise Unsupported(f"adaptive pool to {output_size!r}")
    return size


def _adaptive_avg_pool(ctx: Context, x: Node, output_size: Any) -> LayerSpec:
    size = _adaptive_output_size(ctx, x, output_size)
    if size == [1, 1]:
        return LayerSpec("GlobalAvgPool", [x], {"keepdim": True})
    return LayerSpec("AdaptiveAvgPool2d", [x], {"output_size": size})


def _adaptive_max_pool(ctx: Context, x: Node, output_size: Any, return_indices: bool) -> LayerSpec:
    if return_indices:
        raise Unsupported("return_indices=True")
    return LayerSpec("AdaptiveMaxPool2d", [x], {"output_size": _adaptive_output_size(ctx, x, output_size)})


def _zero_pad(ctx: Context, x: Node, pad: Any, mode: str = "constant", value: float | None = 0) -> LayerSpec:
    """F.pad's (left, right[, top, bottom]) with zeros on (N, C, H, W), as [top, left, bottom, right]."""
    if mode != "constant" or not (value is None or value == 0 and math.copysign(1.0, value) > 0):
        raise Unsupported(f"pad with mode={mode!r}, value={value!r}; only zeros (constant mode, value 0)")
    if len(ctx.shape(x)) != 4:
        raise Unsupported(f"pad of shape {ctx.shape(x)}; only of (N, C, H, W)")
    amounts = list(pad) if isinstance(pad, (tuple, list)) else []
    if len(amounts) not in (2, 4) or not all(isinstance(v, int) and not isinstance(v, bool) for v in amounts):
        raise Unsupported(f"pad={pad!r}; only (left, right) or (left, right, top, bottom) of H and W")
    if min(amounts) < 0:
        raise Unsupported(f"pad={pad!r}: negative amounts crop; only padding (amounts >= 0)")
    left, right, top, bottom = (amounts + [0, 0])[:4]
    return LayerSpec("ZeroPad2d", [x], {"padding": [top, left, bottom, right]})


def _is_unsqueeze_1(node: Node) -> bool:
    """True for `t.unsqueeze(1)`, `t.unsqueeze(-3)` or `torch.unsqueeze(t, 1)` (t of rank 3)."""
    if not (node.op == "call_method" and node.target == "unsqueeze" or node.target is torch.unsqueeze):
        return False
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return _is_int(dim, 1, -3)


def _channel_reduction(ctx: Context, node: Node, spec: LayerSpec, keepdim: bool) -> LayerSpec | None:
    """`spec` (ChannelMean or ChannelMax) with keepdim; without, remembered for its unsqueeze(1)."""
    if keepdim:
        return spec
    if not node.users or not all(_is_unsqueeze_1(user) for user in node.users):
        raise Unsupported("a mean or max over the channel dimension without keepdim; only with keepdim=True "
                          "or followed by unsqueeze(1)")
    ctx.squeezed_channels[node] = spec
    return None


def _global_mean(ctx: Context, node: Node, chain: MeanChain, dim: Any, keepdim: bool) -> LayerSpec | None:
    """Apply one mean to the chain; a layer once H and W are both reduced, else remember it."""
    rank = len(chain.axes)
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims or not all(isinstance(d, int) and -rank <= d < rank for d in dims):
        raise Unsupported(f"mean over dim={dim!r}")
    picked = {d % rank for d in dims}
    if picked == {1} and len(chain.axes) == 4 and not any(reduced for _, reduced in chain.axes):
        return _channel_reduction(ctx, node, LayerSpec("ChannelMean", [chain.source]), keepdim)
    if any(chain.axes[i][0] < 2 for i in picked):
        raise Unsupported("mean over the batch dimension, or over channels with other dimensions; "
                          "only over H and W, or over the channels alone")
    axes = tuple((axis, reduced or i in picked) for i, (axis, reduced) in enumerate(chain.axes)
                 if keepdim or i not in picked)
    if axes == ((0, False), (1, False)):
        return LayerSpec("GlobalAvgPool", [chain.source], {"keepdim": False})
    if axes == ((0, False), (1, False), (2, True), (3, True)):
        return LayerSpec("GlobalAvgPool", [chain.source], {"keepdim": True})
    ctx.partial_means[node] = MeanChain(chain.source, axes)
    return None


def _flatten(ctx: Context, node: Node, x: Node) -> LayerSpec:
    batch, *rest = ctx.shape(x)
    out = ctx.shape(node)
    if out != (batch, math.prod(rest)):
        raise Unsupported(f"reshapes {ctx.shape(x)} to {out} (batch of 2); only a flatten to "
                          "(N, features) is supported")
    return LayerSpec("Flatten", [x])


def _is_int(value: Any, *allowed: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in allowed


def _is_batch_size(value: Any) -> bool:
    """True for `t.size(0)`, `t.size()[0]` or `t.shape[0]` (every supported tensor is batch-first)."""
    if not isinstance(value, Node):
        return False
    if value.op == "call_method" and value.target == "size":
        return _is_int(value.args[1] if len(value.args) > 1 else value.kwargs.get("dim"), 0)
    whole = value.args[0] if value.args else None
    if value.target is operator.getitem and isinstance(whole, Node) and _is_int(value.args[1], 0):
        whole_size = (whole.op == "call_method" and whole.target == "size"
                      and len(whole.args) == 1 and not whole.kwargs)
        return whole_size or (whole.target is getattr and whole.args[1] == "shape")
    return False


def _flatten_view(ctx: Context, node: Node, x: Node, shape: tuple[Any, ...]) -> LayerSpec:
    features = math.prod(ctx.shape(x)[1:])
    if len(shape) == 2 and isinstance(shape[1], Node):  # x.view(b, c) with b, c = x.size()[:2]
        shape = (shape[0], ctx.size_values.get(shape[1]))
    if not (len(shape) == 2 and (_is_int(shape[0], -1) or _is_batch_size(shape[0]))
            and _is_int(shape[1], -1, features)
            and not (_is_int(shape[0], -1) and _is_int(shape[1], -1))):
        raise Unsupported(f"view/reshape to {shape}; only (-1, features), (n, -1) with "
                          "n = x.size(0) or x.shape[0] flatten")
    return _flatten(ctx, node, x)


_SIZE_USERS = {torch.reshape, operator.getitem, operator.floordiv, operator.mul, torch.split, torch.chunk,
               torch.narrow, F.max_pool2d, torch.max_pool2d, F.avg_pool2d}
_SIZE_USER_METHODS = {"view", "reshape", "split", "chunk", "narrow"}


def _size_value(ctx: Context, node: Node) -> None:
    for user in node.users:
        if not (user.op == "call_method" and user.target in _SIZE_USER_METHODS or user.target in _SIZE_USERS):
            raise Unsupported(f"a size used by '{user.name}'; only a view/reshape, a slice, a pool window "
                              "(or `//`, `*` feeding one) may use one")
    ctx.size_values[node] = _size_of(ctx, node)


def _size_of(ctx: Context, node: Node) -> Any:
    """The value of a size expression (an int or a tuple of them), None where it is the batch size."""
    first = node.args[0]
    if node.target in ("size", getattr):
        shape = (None, *ctx.shape(first)[1:])
        dim = node.args[1] if node.target == "size" and len(node.args) > 1 else node.kwargs.get("dim")
        return shape if dim is None else shape[dim]
    a, b = (ctx.size_values.get(v) if isinstance(v, Node) else v for v in node.args)
    if node.target is operator.getitem:
        return a[b] if isinstance(a, tuple) else None
    return node.target(a, b) if isinstance(a, int) and isinstance(b, int) else None  # `//`, `*`


def _constant(ctx: Context, value: Any, what: str) -> Any:
    """A bound given as a number or as a size expression that does not involve the batch size."""
    if isinstance(value, Node):
        value = ctx.size_values.get(value)
        if not isinstance(value, int):
            raise Unsupported(f"{what} computed at run time or from the batch size; only constants or "
                              "sizes of C, H, W")
    return value


def _is_batch_arg(value: Any) -> bool:
    """The first entry of a view's shape that keeps the batch: -1 or the batch size."""
    return _is_int(value, -1) or _is_batch_size(value)


def _channel_dim(ctx: Context, x: Any, dim: Any, what: str) -> int:
    """The channel count of x, checking that `dim` is its dim 1 (after normalising a negative dim)."""
    shape = ctx.shape(x)
    rank = len(shape)
    if not (isinstance(dim, int) and not isinstance(dim, bool) and -rank <= dim < rank and dim % rank == 1):
        raise Unsupported(f"{what} along dim {dim!r} of a rank-{rank} tensor; only along the channels "
                          "(dim 1)")
    return shape[1]


def _slice(ctx: Context, x: Node, start: int, end: int) -> LayerSpec | Node:
    """Channels [start, end) of x (x itself if that is all of them)."""
    if (start, end) == (0, ctx.shape(x)[1]):
        return x
    return LayerSpec("Slice", [x], {"dim": 1, "start": start, "end": end})


def _channel_split(ctx: Context, node: Node, x: Any, dim: Any, what: str) -> None:
    """Remember a chunk/split along channels; its items (`t[i]`) become Slice layers."""
    _channel_dim(ctx, x, dim, what)
    starts = [0]
    for item in node.meta["tensor_meta"]:  # ShapeProp's shape of every item
        starts.append(starts[-1] + item.shape[1])
    ctx.splits[node] = ChannelSplit(x, tuple(zip(starts, starts[1:])))


def _tensor_index(ctx: Context, x: Node, index: Any) -> LayerSpec | Node:
    """`x[:, a:b]` (any trailing `:` or `...`) as a Slice of channels [a, b)."""
    shape = ctx.shape(x)
    items = index if isinstance(index, tuple) else (index,)
    if items.count(Ellipsis) == 1:
        at = items.index(Ellipsis)
        items = items[:at] + (slice(None),) * (len(shape) - len(items) + 1) + items[at + 1:]
    items += (slice(None),) * (len(shape) - len(items))
    if len(items) != len(shape) or not all(isinstance(s, slice) for s in items):
        raise Unsupported(f"indexing with {index!r}; only slicing the channels, x[:, a:b]")
    items = tuple(slice(*(_constant(ctx, v, "slice bounds") for v in (s.start, s.stop, s.step))) for s in items)
    bounds = [s.indices(size) for s, size in zip(items, shape)]
    if any(b != (0, size, 1) for i, (b, size) in enumerate(zip(bounds, shape)) if i != 1):
        raise Unsupported(f"slicing with {index!r}; only along the channels, x[:, a:b]")
    start, end, step = bounds[1]
    if step != 1 or end <= start:
        raise Unsupported(f"channel slice {index!r}: only a non-empty slice with step 1")
    return _slice(ctx, x, start, end)


def _shuffle_view(ctx: Context, node: Node, x: Node, shape: tuple[Any, ...]) -> None:
    """The first view of a channel shuffle: (N, C, H, W) -> (N, groups, C // groups, H, W)."""
    source, out = ctx.shape(x), ctx.shape(node)
    if not (len(shape) == 5 and _is_batch_arg(shape[0]) and len(source) == 4
            and out[:1] + out[3:] == source[:1] + source[2:] and out[1] * out[2] == source[1]):
        raise Unsupported(f"view/reshape to {shape}; the only 5-D view supported is a channel shuffle's "
                          "(n, groups, C // groups, H, W) of (N, C, H, W), n = -1 or x.size(0)")
    ctx.shuffles[node] = ShuffleView(x, out[1], False)


def _shuffle_end(ctx: Context, node: Node, shuffle: ShuffleView, batch_kept: bool) -> LayerSpec:
    """The last view of a channel shuffle, back to (N, C, H, W): one ChannelShuffle layer."""
    if not (shuffle.transposed and batch_kept and ctx.shape(node) == ctx.shape(shuffle.source)):
        raise Unsupported(f"view/reshape of a 5-D view to {ctx.shape(node)} (batch of 2); only a channel "
                          "shuffle's transpose(1, 2) viewed back to (n, C, H, W), n = -1 or x.size(0)")
    return LayerSpec("ChannelShuffle", [shuffle.source], {"groups": shuffle.groups})


def _unflatten(ctx: Context, node: Node, x: Node, batch_kept: bool) -> LayerSpec:
    """(N, F) viewed as (N, C, H, W): `y.view(b, c, 1, 1)` of squeeze-and-excitation."""
    source, out = ctx.shape(x), ctx.shape(node)
    if not (batch_kept and len(source) == 2 and len(out) == 4 and out[0] == source[0]):
        raise Unsupported(f"view/reshape of shape {source} to {out} (batch of 2); only (N, features) to "
                          "(n, C, H, W) with n = -1 or x.size(0), or a flatten")
    return LayerSpec("Unflatten", [x], {"shape": list(out[1:])})


def _reshape(ctx: Context, node: Node, x: Node, shape: tuple[Any, ...]) -> LayerSpec | None:
    """view/reshape: a flatten, an unflatten to 4-D, or the first or last step of a channel shuffle."""
    if x in ctx.shuffles:
        return _shuffle_end(ctx, node, ctx.shuffles[x], bool(shape) and _is_batch_arg(shape[0]))
    if len(ctx.shape(node)) == 5:
        return _shuffle_view(ctx, node, x, shape)
    if ctx.shape(node) == ctx.shape(x) and bool(shape) and _is_batch_arg(shape[0]):
        return x  # a view to the shape it has
    if len(ctx.shape(node)) == 4:
        return _unflatten(ctx, node, x, bool(shape) and _is_batch_arg(shape[0]))
    return _flatten_view(ctx, node, x, shape)


def _transposed_shuffle(ctx: Context, node: Node, x: Any, dims: list[Any]) -> None:
    """transpose(1, 2) / permute(0, 2, 1, 3, 4) of a channel shuffle's 5-D view."""
    shuffle = ctx.shuffles.get(x)
    if shuffle is None or shuffle.transposed or dims != [0, 2, 1, 3, 4]:
        raise Unsupported("transpose/permute; only a channel shuffle's transpose(1, 2) of its "
                          "(n, groups, C // groups, H, W) view")
    ctx.shuffles[node] = ShuffleView(shuffle.source, shuffle.groups, True)


def _channel_shuffle(ctx: Context, x: Node, groups: Any) -> LayerSpec:
    if len(ctx.shape(x)) != 4 or not isinstance(groups, int):
        raise Unsupported(f"channel shuffle of shape {ctx.shape(x)} with groups={groups!r}; only of "
                          "(N, C, H, W) with integer groups")
    return LayerSpec("ChannelShuffle", [x], {"groups": groups})


def _dropout(x: Node, p: float) -> LayerSpec:
    if not 0 <= p < 1:
        raise Unsupported(f"dropout p={p}; the format takes p in [0, 1)")
    return LayerSpec("Dropout", [x], {"p": float(p)})


def _conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> list[int]:
    """[top, left, bottom, right]; 'same' as PyTorch pads it (the odd pixel at the end)."""
    if padding == "valid":
        return [0, 0, 0, 0]
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
    return _symmetric_padding(padding)


# ---------------------------------------------------------------------------- modules

def _conv2d(ctx: Context, node: Node, x: Node, m: nn.Conv2d) -> LayerSpec:
    if m.padding_mode != "zeros":
        raise Unsupported(f"padding_mode={m.padding_mode!r}; only 'zeros'")
    return LayerSpec("Conv2d", [x], {
        "in_channels": m.in_channels, "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size), "stride": list(m.stride),
        "padding": _conv_padding(m.padding, m.kernel_size, m.dilation),
        "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
    }, _present(weight=m.weight, bias=m.bias))


def _batchnorm2d(ctx: Context, node: Node, x: Node, m: nn.BatchNorm2d) -> LayerSpec:
    if m.running_mean is None or m.running_var is None:
        raise Unsupported("track_running_stats=False (normalises with batch statistics)")
    n = m.num_features  # affine=False, or BatchNorm2d(bias=False), leaves a parameter None
    return LayerSpec("BatchNorm2d", [x], {"num_features": n, "eps": float(m.eps)}, {
        "weight": torch.ones(n) if m.weight is None else m.weight,
        "bias": torch.zeros(n) if m.bias is None else m.bias,
        "running_mean": m.running_mean, "running_var": m.running_var})


def _linear(ctx: Context, node: Node, x: Node, m: nn.Linear) -> LayerSpec:
    if len(ctx.shape(x)) != 2:
        raise Unsupported(f"Linear on shape {ctx.shape(x)}; only on (N, features)")
    return LayerSpec("Linear", [x], {
        "in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None,
    }, _present(weight=m.weight, bias=m.bias))


MODULES: dict[type[nn.Module], Handler] = {
    nn.Conv2d: _conv2d,
    nn.BatchNorm2d: _batchnorm2d,
    nn.Linear: _linear,
    nn.ReLU: lambda ctx, node, x, m: LayerSpec("ReLU", [x]),
    nn.ReLU6: lambda ctx, node, x, m: _hardtanh(x, m.min_val, m.max_val),
    nn.Hardtanh: lambda ctx, node, x, m: _hardtanh(x, m.min_val, m.max_val),
    nn.Hardswish: lambda ctx, node, x, m: LayerSpec("Hardswish", [x]),
    nn.Hardsigmoid: lambda ctx, node, x, m: LayerSpec("Hardsigmoid", [x]),
    nn.SiLU: lambda ctx, node, x, m: LayerSpec("SiLU", [x]),
    nn.GELU: lambda ctx, node, x, m: _gelu(x, m.approximate),
    nn.Tanh: lambda ctx, node, x, m: LayerSpec("Tanh", [x]),
    nn.ELU: lambda ctx, node, x, m: _elu(x, m.alpha),
    nn.PReLU: lambda ctx, node, x, m: _prelu(ctx, x, m.weight),
    nn.LeakyReLU: lambda ctx, node, x, m: _leaky_relu(x, m.negative_slope),
    nn.Sigmoid: lambda ctx, node, x, m: LayerSpec("Sigmoid", [x]),
    nn.Softmax: lambda ctx, node, x, m: _softmax(ctx, x, m.dim),
    nn.MaxPool2d: lambda ctx, node, x, m: _max_pool(
        x, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices),
    nn.AvgPool2d: lambda ctx, node, x, m: _avg_pool(
        x, m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override),
    nn.AdaptiveAvgPool2d: lambda ctx, node, x, m: _adaptive_avg_pool(ctx, x, m.output_size),
    nn.AdaptiveMaxPool2d: lambda ctx, node, x, m: _adaptive_max_pool(ctx, x, m.output_size, m.return_indices),
    nn.ZeroPad2d: lambda ctx, node, x, m: _zero_pad(ctx, x, m.padding),
    nn.ConstantPad2d: lambda ctx, node, x, m: _zero_pad(ctx, x, m.padding, value=m.value),
    nn.Flatten: lambda ctx, node, x, m: _flatten(ctx, node, x),
    nn.Dropout: lambda ctx, node, x, m: _dropout(x, m.p),
    nn.Identity: lambda ctx, node, x, m: x,
    nn.ChannelShuffle: lambda ctx, node, x, m: _channel_shuffle(ctx, x, m.groups),
    nn.Unflatten: lambda ctx, node, x, m: _unflatten(ctx, node, x, m.dim in (1, -1)),
}


# ---------------------------------------------------------------------------- functions and methods
# Each signature after (ctx, node) is the torch call's own, so fx's args bind as torch binds them.

def _relu(ctx, node, input, inplace=False):
    return LayerSpec("ReLU", [input])


def _f_leaky_relu(ctx, node, input, negative_slope=0.01, inplace=False):
    return _leaky_relu(input, negative_slope)


def _f_relu6(ctx, node, input, inplace=False):
    return LayerSpec("ReLU6", [input])


def _f_hardtanh(ctx, node, input, min_val=-1.0, max_val=1.0, inplace=False):
    return _hardtanh(input, min_val, max_val)


def _f_hardswish(ctx, node, input, inplace=False):
    return LayerSpec("Hardswish", [input])


def _f_hardsigmoid(ctx, node, input, inplace=False):
    return LayerSpec("Hardsigmoid", [input])


def _f_silu(ctx, node, input, inplace=False):
    return LayerSpec("SiLU", [input])


def _f_gelu(ctx, node, input, approximate="none"):
    return _gelu(input, approximate)


def _tanh(ctx, node, input):
    return LayerSpec("Tanh", [input])


def _clamp(ctx, node, input, min=None, max=None):
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (min, max))
    if not numbers or not min <= max:
        raise Unsupported(f"clamp(min={min!r}, max={max!r}); only with two numbers, min <= max (a Hardtanh)")
    return _hardtanh(input, min, max)


def _f_elu(ctx, node, input, alpha=1.0, inplace=False):
    return _elu(input, alpha)


def _f_prelu(ctx, node, input, weight):
    return _prelu(ctx, input, _attribute(weight))


def _sigmoid(ctx, node, input):
    return LayerSpec("Sigmoid", [input])


def _f_softmax(ctx, node, input, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        raise Unsupported(f"softmax with dtype={dtype}")
    return _softmax(ctx, input, dim)


def _window(ctx: Context, value: Any) -> Any:
    """A pool's kernel_size or stride, its entries possibly sizes: `(x.size(2), x.size(3))` (CBAM)."""
    if isinstance(value, (tuple, list)):
        return type(value)(_constant(ctx, v, "pool window") for v in value)
    return _constant(ctx, value, "pool window")


def _f_max_pool2d(ctx, node, input, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False, return_indices=False):
    return _max_pool(input, _window(ctx, kernel_size), _window(ctx, stride), padding, dilation, ceil_mode,
                     return_indices)


def _f_avg_pool2d(ctx, node, input, kernel_size, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True, divisor_override=None):
    return _avg_pool(input, _window(ctx, kernel_size), _window(ctx, stride), padding, ceil_mode,
                     count_include_pad, divisor_override)


def _f_adaptive_avg_pool2d(ctx, node, input, output_size):
    return _adaptive_avg_pool(ctx, input, output_size)


def _f_adaptive_max_pool2d(ctx, node, input, output_size, return_indices=False):
    return _adaptive_max_pool(ctx, input, output_size, return_indices)


def _f_pad(ctx, node, input, pad, mode="constant", value=None):
    return _zero_pad(ctx, input, pad, mode, value)


def _channel_max(ctx: Context, input: Node, dim: Any) -> LayerSpec:
    if len(ctx.shape(input)) != 4 or not _is_int(dim, 1, -3):
        raise Unsupported(f"max over dim={dim!r} of shape {ctx.shape(input)}; only over the channels "
                          "(dim 1) of (N, C, H, W)")
    return LayerSpec("ChannelMax", [input])


def _amax(ctx, node, input, dim=(), keepdim=False):
    dims = list(dim) if isinstance(dim, (tuple, list)) else [dim]
    return _channel_reduction(ctx, node, _channel_max(ctx, input, dims[0] if len(dims) == 1 else dims), keepdim)


def _max(ctx, node, input, dim=None, keepdim=False):
    """`x.max(1, keepdim=True)`: (values, indices); the values become a layer where they are read."""
    if dim is None or isinstance(dim, Node):
        raise Unsupported("max of a whole tensor or of two tensors; only over the channels with keepdim")
    ctx.max_results[node] = _channel_max(ctx, input, dim)
    ctx.max_keepdim[node] = keepdim
    return None


def _max_values(ctx: Context, node: Node, result: Node) -> LayerSpec | None:
    """`x.max(1, ...)[0]` or `.values`: the ChannelMax layer."""
    return _channel_reduction(ctx, node, ctx.max_results[result], ctx.max_keepdim[result])


def _unsqueeze_channels(ctx, node, input, dim):
    """`m.unsqueeze(1)` of a channel mean or max taken without keepdim: that layer (CBAM's ChannelPool)."""
    if input not in ctx.squeezed_channels or not _is_int(dim, 1, -3):
        raise Unsupported(f"unsqueeze({dim!r}); only of a mean or max over the channels, at dim 1")
    return ctx.squeezed_channels[input]


def _mean(ctx, node, input, dim=None, keepdim=False, *, dtype=None):
    if dim is None or dtype is not None:
        raise Unsupported("mean over every dimension or with a dtype; only over H and W")
    chain = ctx.partial_means.get(input)
    if chain is None:
        if len(ctx.shape(input)) != 4:
            raise Unsupported(f"mean of shape {ctx.shape(input)}; only over H and W of (N, C, H, W)")
        chain = MeanChain(input, tuple((axis, False) for axis in range(4)))
    return _global_mean(ctx, node, chain, dim, keepdim)


def _flatten_call(ctx, node, input, start_dim=0, end_dim=-1):
    if input in ctx.shuffles:  # the channel shuffle's last step written x.flatten(1, 2)
        return _shuffle_end(ctx, node, ctx.shuffles[input], (start_dim, end_dim) == (1, 2))
    return _flatten(ctx, node, input)


def _view(ctx, node, input, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return _reshape(ctx, node, input, shape)


def _torch_reshape(ctx, node, input, shape):
    return _reshape(ctx, node, input, tuple(shape))


def _transpose(ctx, node, input, dim0, dim1):
    dims = [0, 1, 2, 3, 4]
    if all(isinstance(d, int) and -5 <= d < 5 for d in (dim0, dim1)):
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return _transposed_shuffle(ctx, node, input, dims)


def _permute(ctx, node, input, *dims):
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else list(dims)
    return _transposed_shuffle(ctx, node, input, [d % 5 if isinstance(d, int) else d for d in dims])


def _contiguous(ctx, node, input, memory_format=torch.contiguous_format):
    if input in ctx.shuffles:
        ctx.shuffles[node] = ctx.shuffles[input]
        return None
    return input


def _unsqueeze(ctx, node, input, dim):
    """(N, C) -> (N, C, 1) -> (N, C, 1, 1), the trailing unit axes one at a time; or a channel
    reduction's dim 1 restored."""
    if input in ctx.squeezed_channels:
        return _unsqueeze_channels(ctx, node, input, dim)
    source = ctx.unsqueezed.get(input, input)
    rank = len(ctx.shape(input))
    if not (isinstance(dim, int) and dim % (rank + 1) == rank and len(ctx.shape(source)) == 2 and rank in (2, 3)):
        raise Unsupported(f"unsqueeze({dim!r}) of shape {ctx.shape(input)}; only (N, C) -> (N, C, 1, 1) "
                          "by unsqueezing the last axis twice, and unsqueeze(1) only of a mean or max over "
                          "the channels")
    if rank == 2:
        ctx.unsqueezed[node] = source
        return None
    return _unflatten(ctx, node, source, True)


def _expand_as(ctx, node, input, other):
    """A broadcast a multiply does by itself: the input unchanged."""
    if not all(user.target in _MULTIPLIES for user in node.users):
        raise Unsupported("expand/expand_as; only feeding a multiply (which broadcasts by itself)")
    return input


def _expand(ctx, node, input, *sizes):
    return _expand_as(ctx, node, input, None)


def _f_channel_shuffle(ctx, node, input, groups):
    return _channel_shuffle(ctx, input, groups)


def _cat(ctx, node, tensors, dim=0, *, out=None):
    if out is not None:
        raise Unsupported("cat with out=")
    if not isinstance(tensors, (tuple, list)) or not tensors:
        raise Unsupported("cat of a sequence made at run time; only of a list or tuple of tensors")
    _channel_dim(ctx, tensors[0], dim, "cat")
    return tensors[0] if len(tensors) == 1 else LayerSpec("Concat", list(tensors), {"dim": 1})


def _concatenate(ctx, node, tensors, axis=0, out=None):
    return _cat(ctx, node, tensors, axis, out=out)


def _chunk(ctx, node, input, chunks, dim=0):
    _constant(ctx, chunks, "chunk count")
    return _channel_split(ctx, node, input, dim, "chunk")


def _split(ctx, node, tensor, split_size_or_sections, dim=0):
    sizes = split_size_or_sections
    for size in sizes if isinstance(sizes, (tuple, list)) else [sizes]:
        _constant(ctx, size, "split sizes")
    return _channel_split(ctx, node, tensor, dim, "split")


def _narrow(ctx, node, input, dim, start, length):
    channels = _channel_dim(ctx, input, dim, "narrow")
    start, length = _constant(ctx, start, "narrow start") % channels, _constant(ctx, length, "narrow length")
    return _slice(ctx, input, start, start + length)


def _mul(ctx, node, input, other, *, out=None):
    if input in ctx.size_values or other in ctx.size_values:  # arithmetic on sizes
        return _size_value(ctx, node)
    if out is not None or not (isinstance(input, Node) and isinstance(other, Node)):
        raise Unsupported("multiply by a constant or with out=; only of two tensors")
    a, b = ctx.shape(input), ctx.shape(other)
    if broadcast_shape(a, b) is None:
        raise Unsupported(f"multiply of shapes {a} and {b}; only of two (N, C) or two (N, C, H, W) "
                          "tensors whose other axes are equal or 1 in one of them")
    return LayerSpec("Mul", [input, other])


def _floordiv(ctx, node, input, other):
    if input not in ctx.size_values and other not in ctx.size_values:
        raise Unsupported("floor division; only of sizes (C // groups)")
    return _size_value(ctx, node)


def _f_dropout(ctx, node, input, p=0.5, training=True, inplace=False):
    if training:
        raise Unsupported("F.dropout with training=True drops at inference too; "
                          "pass training=self.training")
    return _dropout(input, p)


def _add(ctx, node, input, other, *, alpha=1):
    if alpha != 1:
        raise Unsupported(f"add with alpha={alpha}")
    a, b = ctx.shape(input), ctx.shape(other)
    if a != b:
        raise Unsupported(f"add of shapes {a} and {b}; only of two same-shape tensors")
    return LayerSpec("Add", [input, other])


def _size(ctx, node, input, dim=None):
    return _size_value(ctx, node)


def _getattr(ctx, node, obj, name):
    if obj in ctx.max_results and name == "values":
        return _max_values(ctx, node, obj)
    if name != "shape":
        raise Unsupported(f"attribute {name!r} of a tensor")
    return _size_value(ctx, node)


def _getitem(ctx, node, obj, index):
    if obj in ctx.max_results and _is_int(index, 0):
        return _max_values(ctx, node, obj)
    if obj in ctx.size_values:
        return _size_value(ctx, node)
    split = ctx.splits.get(obj)
    meta = obj.meta.get("tensor_meta") if isinstance(obj, Node) else None
    if split is None and isinstance(meta, (tuple, list)) and not hasattr(meta, "shape"):
        raise Unsupported(f"indexing item {index!r} of '{obj.name}', a tuple; only the items of a chunk/split "
                          "along the channels, or the values ([0]) of a max over the channels")
    if split is None:
        return _tensor_index(ctx, obj, index)
    if not (_is_int(index, *range(-len(split.bounds), len(split.bounds)))):
        raise Unsupported(f"item {index!r} of a chunk/split; only a constant item index")
    return _slice(ctx, split.source, *split.bounds[index])


FUNCTIONS: dict[Any, Handler] = {
    F.relu: _relu, torch.relu: _relu, torch.relu_: _relu,
    F.leaky_relu: _f_leaky_relu, F.leaky_relu_: _f_leaky_relu,
    F.relu6: _f_relu6,
    F.hardtanh: _f_hardtanh, F.hardtanh_: _f_hardtanh,
    F.hardswish: _f_hardswish, F.hardsigmoid: _f_hardsigmoid, F.silu: _f_silu, F.gelu: _f_gelu,
    torch.tanh: _tanh, torch.tanh_: _tanh, F.elu: _f_elu, F.elu_: _f_elu,
    F.prelu: _f_prelu, torch.prelu: _f_prelu,
    torch.clamp: _clamp, torch.clip: _clamp, torch.clamp_: _clamp, torch.clip_: _clamp,
    torch.sigmoid: _sigmoid,
    F.softmax: _f_softmax, torch.softmax: _f_softmax,
    F.max_pool2d: _f_max_pool2d, torch.max_pool2d: _f_max_pool2d,
    F.avg_pool2d: _f_avg_pool2d,
    F.adaptive_avg_pool2d: _f_adaptive_avg_pool2d, F.adaptive_max_pool2d: _f_adaptive_max_pool2d,
    F.pad: _f_pad, torch.amax: _amax, torch.max: _max,
    torch.mean: _mean,
    torch.flatten: _flatten_call, torch.reshape: _torch_reshape,
    F.dropout: _f_dropout,
    operator.add: _add, operator.iadd: _add, torch.add: _add,
    operator.mul: _mul, operator.imul: _mul, torch.mul: _mul, torch.multiply: _mul,
    operator.floordiv: _floordiv,
    torch.cat: _cat, torch.concat: _cat, torch.concatenate: _concatenate,
    torch.chunk: _chunk, torch.split: _split, torch.narrow: _narrow,
    torch.transpose: _transpose, torch.permute: _permute, torch.unsqueeze: _unsqueeze,
    F.channel_shuffle: _f_channel_shuffle, torch.channel_shuffle: _f_channel_shuffle,
    getattr: _getattr, operator.getitem: _getitem,
}

METHODS: dict[str, Handler] = {
    "relu": _relu, "relu_": _relu, "sigmoid": _sigmoid, "sigmoid_": _sigmoid,
    "softmax": _f_softmax, "mean": _mean, "flatten": _flatten_call,
    "tanh": _tanh, "tanh_": _tanh, "amax": _amax, "max": _max,
    "clamp": _clamp, "clamp_": _clamp, "clip": _clamp, "clip_": _clamp,
    "view": _view, "reshape": _view, "add": _add, "add_": _add, "size": _size,
    "mul": _mul, "mul_": _mul, "multiply": _mul, "multiply_": _mul,
    "chunk": _chunk, "split": _split, "narrow": _narrow,
    "transpose": _transpose, "permute": _permute, "contiguous": _contiguous,
    "unsqueeze": _unsqueeze, "expand_as": _expand_as, "expand": _expand,
}
_MULTIPLIES = {operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "mul_", "multiply", "multiply_"}

_INPLACE_FUNCTIONS = {torch.relu_, F.leaky_relu_, F.hardtanh_, operator.iadd, operator.imul, torch.tanh_,
                      F.elu_, torch.clamp_, torch.clip_}
_VIEW_MODULES = (nn.Identity, nn.Dropout, nn.Flatten)
_VIEW_FUNCTIONS = {F.dropout, torch.flatten, torch.reshape, torch.chunk, torch.split, torch.narrow,
                   torch.transpose, torch.permute, torch.unsqueeze, operator.getitem}
_VIEW_METHODS = {"view", "reshape", "flatten", "chunk", "split", "narrow", "transpose", "permute",
                 "contiguous", "unsqueeze", "expand_as", "expand"}


# ---------------------------------------------------------------------------- dispatch

def _stochastic_depth(ctx, node, input, p, mode, training=True):
    """torchvision.ops.stochastic_depth (EfficientNet, ConvNeXt): the identity at inference."""
    if training and p > 0:
        raise Unsupported("stochastic_depth with training=True drops at inference too")
    return input


# Functions of libraries the exporter does not import, by module and name: torch.fx.wrap'ed
# functions (torchvision's) reach the graph as calls rather than being traced through.
NAMED_FUNCTIONS: dict[str, Handler] = {
    "torchvision.ops.stochastic_depth.stochastic_depth": _stochastic_depth,
}


def _function_handler(node: Node) -> Handler | None:
    if node.op == "call_method":
        return METHODS.get(node.target)
    name = f"{getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', '')}"
    return FUNCTIONS.get(node.target) or NAMED_FUNCTIONS.get(name)


def _bind(handler: Handler, ctx: Context | None, node: Node) -> inspect.BoundArguments:
    try:
        bound = inspect.signature(handler).bind(ctx, node, *node.args, **node.kwargs)
    except TypeError as e:
        raise Unsupported(f"arguments not understood ({e})") from None
    bound.apply_defaults()
    return bound


def _module_input(node: Node) -> Any:
    values = [*node.args, *node.kwargs.values()]
    if len(values) != 1:
        raise Unsupported(f"module called with {len(values)} arguments; only with one tensor")
    return values[0]


# Supported layers that can take the place of unsupported ones (when the model is retrained with
# them), by the unsupported module's or function's name in lower case without underscores.
ALTERNATIVES = {
    "logsoftmax": "Softmax (and the log of its output, outside the model)", "logsigmoid": "Sigmoid",
    "mish": "SiLU or Hardswish", "softplus": "SiLU or ReLU", "selu": "ELU", "celu": "ELU", "rrelu": "LeakyReLU",
    "layernorm": "BatchNorm2d", "groupnorm": "BatchNorm2d", "instancenorm2d": "BatchNorm2d",
    "localresponsenorm": "BatchNorm2d", "lppool2d": "AvgPool2d or MaxPool2d", "fractionalmaxpool2d": "MaxPool2d",
    "conv1d": "Conv2d with a (1, k) kernel", "softmax2d": "Softmax(dim=1)",
}


def _not_supported(name: str) -> Unsupported:
    """The error for a module or function the exporter does not know, with an alternative if there is one."""
    alternative = ALTERNATIVES.get(name.lower().replace("_", ""))
    return Unsupported("not supported" + (f" (instead: {alternative})" if alternative else ""))


def convert(ctx: Context, node: Node, modules: dict[str, nn.Module]) -> LayerSpec | Node | None:
    """Map one call node (call_module, call_function or call_method); raises `Unsupported`."""
    if node.op == "call_module":
        module = modules[node.target]
        handler = MODULES.get(type(module))
        if handler is None:
            raise _not_supported(type(module).__name__)
        return handler(ctx, node, _module_input(node), module)
    handler = _function_handler(node)
    if handler is None:
        raise _not_supported(node.target if isinstance(node.target, str) else getattr(node.target, "__name__", ""))
    bound = _bind(handler, ctx, node)
    return handler(*bound.args, **bound.kwargs)


def mutated_input(node: Node, modules: dict[str, nn.Module]) -> Node | None:
    """The tensor this node changes in place (and returns), if any."""
    first = node.args[0] if node.args else None
    if node.op == "call_module":
        inplace = getattr(modules[node.target], "inplace", False) is True
    elif node.op == "call_method":
        inplace = node.target.endswith("_") and not node.target.endswith("__")
    elif node.op == "call_function":
        handler = _function_handler(node)
        inplace = node.target in _INPLACE_FUNCTIONS
        if not inplace and handler is not None:
            try:
                inplace = _bind(handler, None, node).arguments.get("inplace") is True
            except Unsupported:
                inplace = False
    else:
        inplace = False
    return first if inplace and isinstance(first, Node) else None


def returned_input(node: Node, modules: dict[str, nn.Module]) -> Node | None:
    """The input whose tensor (itself or a view of it) this node returns, if any."""
    first = node.args[0] if node.args and isinstance(node.args[0], Node) else None
    if (node.op == "call_module" and isinstance(modules[node.target], _VIEW_MODULES)
            or node.op == "call_function" and node.target in _VIEW_FUNCTIONS
            or node.op == "call_method" and node.target in _VIEW_METHODS):
        return first
    return mutated_input(node, modules)
