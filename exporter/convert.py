"""Trace a torch module with torch.fx and write it as a pdinfer weight file (docs/FORMAT.md)."""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import sys
import warnings
from typing import Any, NamedTuple, Sequence

import numpy as np

try:
    import torch
except ImportError as e:  # torch is a development dependency, not one of pdinfer's
    raise ImportError(f"the exporter needs PyTorch ({e}): pip install 'pdinfer[torch]' "
                      "(README.md: the CPU-only build)") from None
from torch import nn
from torch.fx import GraphModule, Node, symbolic_trace
from torch.fx.passes.shape_prop import ShapeProp

from pdinfer.format import check_overwrite, write_weights

from .compress import compress, metadata
from .mapping import MODULES, Context, LayerSpec, Unsupported, convert, mutated_input, returned_input

# ShapeProp runs the model on a batch of 2, so a view that hard-codes the batch size shows.
_PROBE_BATCH = 2


class UnsupportedModelError(ValueError):
    """The model uses modules or functions the format cannot express; `offenders` lists all."""

    def __init__(self, offenders: list[str]) -> None:
        self.offenders = offenders
        supported = ", ".join(sorted(m.__name__ for m in MODULES))
        super().__init__("the model cannot be exported; unsupported:\n"
                         + "\n".join(f"  - {o}" for o in offenders)
                         + f"\nsupported modules: {supported}, and their functional forms; README.md, "
                           "\"Exporting a PyTorch model\", lists every supported call")


class LayerGraph(NamedTuple):
    """A model as FORMAT.md layers, their float32 tensors, and one image's output shape."""

    layers: list[dict[str, Any]]
    tensors: dict[str, np.ndarray]
    output_shape: tuple[int, ...]


class _Skip(Exception):
    """The node depends on a node already reported as unsupported."""


def _qualified_name(target: Any) -> str:
    module = (getattr(target, "__module__", None) or "torch").removeprefix("_")
    return f"{module}.{getattr(target, '__name__', repr(target))}"


class _Converter:
    """Walks a shape-propagated fx graph once, emitting layers and collecting offenders."""

    def __init__(self, gm: GraphModule) -> None:
        self.graph = gm.graph
        self.modules = dict(gm.named_modules())
        self.ctx = Context()
        self.offenders: list[str] = []
        self.failed: set[Node] = set()
        self.source: dict[Node, str] = {}  # fx node -> name of the layer (or "input") holding its value
        self.layers: list[dict[str, Any]] = []
        self.tensors: dict[str, np.ndarray] = {}
        self.names = {"input"}

    def run(self) -> LayerGraph:
        self._functionalize_inplace()
        live = self._live_nodes()
        nodes = [n for n in self.graph.nodes if n in live]
        inputs = [n for n in nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            self.offenders.append(f"the model takes {len(inputs)} tensor inputs; only one is supported")
        self.source.update((n, "input") for n in inputs)
        for node in nodes:
            if node.op.startswith("call_") and node not in self.failed:
                self._convert(node)
        output = nodes[-1].args[0]
        output_name = self._output_name(output)
        if self.offenders:
            raise UnsupportedModelError(self.offenders)
        self._keep_ancestors_of(output_name)
        return LayerGraph(self.layers, self.tensors, Context.shape(output)[1:])

    def _report(self, node: Node, reason: str) -> None:
        self.failed.add(node)
        if node.op == "call_module":
            kind = type(self.modules[node.target])
            where = f"module '{node.target}' ({kind.__module__}.{kind.__qualname__})"
        elif node.op == "call_method":
            where = f"node '{node.name}' (Tensor.{node.target})"
        else:
            where = f"node '{node.name}' ({_qualified_name(node.target)})"
        self.offenders.append(f"{where}: {reason}")

    def _functionalize_inplace(self) -> None:
        """Make later readers of a tensor changed in place read the in-place node instead.

        A tensor that shares storage with the changed one (a view, nn.Identity's output) and is
        read after the change would see it too; the layer graph cannot express that: reported.
        """
        order = {node: i for i, node in enumerate(self.graph.nodes)}
        storage: dict[Node, Node] = {}  # node -> the earliest node whose tensor it shares
        for node in self.graph.nodes:
            shared = returned_input(node, self.modules) if node.op.startswith("call_") else None
            storage[node] = storage[shared] if shared is not None else node
            changed = mutated_input(node, self.modules) if node.op.startswith("call_") else None
            if changed is None:
                continue
            for user in list(changed.users):
                if order[user] > order[node]:
                    user.replace_input_with(changed, node)
            stale = [alias for alias, root in storage.items()
                     if root is storage[changed] and alias not in (changed, node)
                     and any(order[u] > order[node] for u in alias.users)]
            if stale:
                self._report(node, f"changes '{changed.name}' in place while '{stale[0].name}', "
                                   "which shares its storage, is read later")

    def _live_nodes(self) -> set[Node]:
        output = next(n for n in reversed(self.graph.nodes) if n.op == "output")
        live, pending = set(), [output]
        while pending:
            node = pending.pop()
            if node not in live:
                live.add(node)
                pending.extend(node.all_input_nodes)
        return live

    def _convert(self, node: Node) -> None:
        try:
            result = convert(self.ctx, node, self.modules)
            if isinstance(result, Node):
                self.source[node] = self._layer_of(result)
            elif isinstance(result, LayerSpec):
                self._emit(node, result)
        except _Skip:
            self.failed.add(node)
        except Unsupported as e:
            self._report(node, str(e))

    def _layer_of(self, value: Any) -> str:
        """The layer holding an fx value, or why there is none."""
        if not isinstance(value, Node):
            raise Unsupported(f"uses the constant {value!r} where a tensor is expected")
        if value in self.source:
            return self.source[value]
        if value in self.failed:
            raise _Skip
        pending = self.ctx.pending(value)
        if pending is not None:
            raise Unsupported(f"uses {pending}")
        if value.op == "get_attr":
            raise Unsupported(f"uses the parameter or buffer '{value.target}' as a tensor")
        raise Unsupported(f"uses '{value.name}', which is not a tensor computed by a layer")

    def _emit(self, node: Node, spec: LayerSpec) -> None:
        inputs = [self._layer_of(x) for x in spec.inputs]
        base = node.target if node.op == "call_module" and node.target not in self.names else node.name
        name, suffix = base, itertools.count(1)
        while name in self.names:
            name = f"{base}_{next(suffix)}"
        self.names.add(name)
        self.layers.append({"name": name, "type": spec.type, "inputs": inputs, "params": spec.params,
                            "tensors": {role: f"{name}.{role}" for role in spec.tensors}})
        for role, tensor in spec.tensors.items():
            self.tensors[f"{name}.{role}"] = tensor.detach().cpu().numpy().astype(np.float32)
        self.source[node] = name

    def _output_name(self, output: Any) -> str | None:
        if not isinstance(output, Node):
            self.offenders.append(f"the model returns a {type(output).__name__}; "
                                  "only a single tensor is supported")
            return None
        try:
            name = self._layer_of(output)
        except _Skip:
            return None
        except Unsupported as e:
            self.offenders.append(f"the output {e}")
            return None
        if name == "input":
            self.offenders.append("the model has no layers (it returns its input)")
        return name

    def _keep_ancestors_of(self, output_name: str) -> None:
        """Drop layers the output does not depend on (e.g. one only used for a size)."""
        inputs_of = {layer["name"]: layer["inputs"] for layer in self.layers}
        needed, pending = set(), [output_name]
        while pending:
            name = pending.pop()
            if name != "input" and name not in needed:
                needed.add(name)
                pending.extend(inputs_of[name])
        self.layers = [layer for layer in self.layers if layer["name"] in needed]
        self.tensors = {t: self.tensors[t] for layer in self.layers for t in layer["tensors"].values()}


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                  for d in shape):
        raise ValueError(f"input_shape must be (C, H, W) positive integers, got {input_shape!r}")
    return shape


def _propagate_shapes(gm: GraphModule, input_shape: tuple[int, int, int]) -> None:
    """Record every node's output shape; one ValueError naming the failing node if the model fails."""
    # ShapeProp prints the traceback of a failing node to stderr before it re-raises: that is
    # dropped; anything else written to stderr meanwhile (the model's warnings) is passed on.
    held = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stderr(held):
        warnings.filterwarnings("ignore", message="Implicit dimension choice")  # nn.Softmax()
        try:
            ShapeProp(gm).propagate(torch.zeros(_PROBE_BATCH, *input_shape))
        except Exception as e:
            failed = next((n for n in gm.graph.nodes if "type" not in n.meta), None)  # ShapeProp sets "type"
            where = ("" if failed is None else
                     f" at module '{failed.target}'" if failed.op == "call_module" else f" at node '{failed.name}'")
            cause = e.__cause__ or e
            raise ValueError(f"the model does not run on input shape {input_shape}{where}: "
                             f"{type(cause).__name__}: {cause}") from None
    sys.stderr.write(held.getvalue())


def to_layers(module: nn.Module, input_shape: Sequence[int]) -> LayerGraph:
    """Trace `module` (switched to eval mode) into FORMAT.md layers and float32 tensors.

    Raises UnsupportedModelError naming every unsupported module or call, ValueError when
    the model does not run on a (N, *input_shape) input or holds non-float32 weights.
    """
    shape = _check_input_shape(input_shape)
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise ValueError(f"'{name}' is {tensor.dtype}; the format stores float32 (call .float())")
    module.eval()
    try:
        gm = symbolic_trace(module)
    except Exception as e:
        raise UnsupportedModelError([f"torch.fx cannot trace the model: {e}"]) from e
    _propagate_shapes(gm, shape)
    return _Converter(gm).run()


def export(module: nn.Module, path: str | os.PathLike, *, input_shape: Sequence[int],
           classes: Sequence[str] | None = None, weights: str = "f32", force: bool = False) -> None:
    """Write `module` (switched to eval mode) for images of `input_shape` (C, H, W) to a .pdw file.

    `classes` names the output values; None names them "0", "1", ... `weights` stores the Conv2d
    and Linear weights as "f32", "f16", "bf16" or "int8" (per output channel); a compressed file
    has its BatchNorm2d layers folded into the convolutions before them (exporter/compress.py).
    An existing `path` raises FileExistsError unless `force`; a module in training mode warns.
    """
    check_overwrite(path, force, "pass force=True")
    if module.training:
        warnings.warn(f"{type(module).__name__} is in training mode: it is switched to eval mode and exported so "
                      "(BatchNorm's running statistics, no Dropout); call .eval() first to silence this",
                      stacklevel=2)
    graph = to_layers(module, input_shape)
    layers, tensors = compress(graph.layers, graph.tensors, weights)
    size = math.prod(graph.output_shape)
    names = [str(i) for i in range(size)] if classes is None else [str(c) for c in classes]
    if len(names) != size:
        raise ValueError(f"{len(names)} class names for {size} output values")
    write_weights(path, layers, tensors, input_shape=list(input_shape), classes=names,
                  producer=f"pdinfer exporter (torch {torch.__version__})", metadata=metadata(weights))
