"""Per-step profile: each pdinfer plan step's time next to torch's time for the same modules.

pdinfer: the plan's Program runs each row of its table in an interpreter call of its own, timed
(Program.run's timer; a step's time includes its dequantize row, and adds ~2 us of call overhead
per row); the whole call is timed as users run it. torch: forward hooks time every leaf module of the
eager model; a step covers file layers whose names are torch module paths (FORMAT.md), so the
step's torch time is the sum over those modules. Functional calls (add, mean, view) have no module
and no torch time. Hooks add a few microseconds per module to torch.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from pdinfer.graph import load_graph
from pdinfer.plan import Plan


def _pdinfer_steps(model: Any, x: np.ndarray, runs: int) -> tuple[list[float], list[int], float]:
    """Median seconds of each plan step, its kernel calls per model call, and the median seconds of
    the whole call, over `runs` calls on x (N, C, H, W).

    A call may run the batch through the steps in several passes of a few images: a step's time
    in one call is the sum over all its kernel calls.
    """
    plan: Plan = model._plan
    in_call = [0.0] * len(plan.steps)
    calls = [0] * len(plan.steps)

    def timer(step: int, seconds: float) -> None:
        in_call[step] += seconds
        calls[step] += 1

    def timed_call() -> None:  # run_plan's chunks, each row of the table timed on its own
        for i in range(0, len(x), plan.chunk):
            plan.program.run(x[i:i + plan.chunk], None, timer)

    timed_call()  # warm-up
    per_call = list(calls)
    times: list[list[float]] = [[] for _ in plan.steps]
    whole = []
    for _ in range(runs):  # alternating, so a busy spell of the machine hits both alike
        in_call[:] = [0.0] * len(plan.steps)
        timed_call()
        for t, seconds in zip(times, in_call):
            t.append(seconds)
        start = time.perf_counter()
        model(x)
        whole.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], per_call, statistics.median(whole)


def _torch_modules(module: Any, x: np.ndarray, runs: int) -> tuple[dict[str, float], float]:
    """Median seconds of each leaf module (by module path) and of the whole call."""
    import torch
    times: dict[str, list[float]] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, m in module.named_modules():
        if name and not list(m.children()):
            times[name] = []
            handles.append(m.register_forward_pre_hook(
                lambda _m, _i, name=name: starts.__setitem__(name, time.perf_counter())))
            handles.append(m.register_forward_hook(
                lambda _m, _i, _o, name=name: times[name].append(time.perf_counter() - starts[name])))
    tensor = torch.from_numpy(x)
    with torch.inference_mode():
        module(tensor)
        for t in times.values():
            t.clear()
        for _ in range(runs):
            module(tensor)
        for h in handles:
            h.remove()
        whole = []
        for _ in range(runs):
            start = time.perf_counter()
            module(tensor)
            whole.append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items() if t}, statistics.median(whole)


def describe(layers: list[Any]) -> str:
    """A short name for a step: its first layer with its geometry, then the fused layer types."""
    head = layers[0]
    if head.type == "Conv2d":
        kind = "dwconv" if head.groups == head.in_channels == head.out_channels else "conv"
        text = (f"{kind} {head.kernel_size[0]}x{head.kernel_size[1]}/{head.stride[0]} "
                f"{head.in_channels}->{head.out_channels}")
    elif head.type == "Linear":
        text = f"linear {head.in_features}->{head.out_features}"
    else:
        text = head.type
    return " + ".join([text, *(layer.type for layer in layers[1:])])


def profile(model: Any, torch_module: Any, x: np.ndarray, runs: int) -> dict:
    """Per-step rows for batch x (N, C, H, W): layers, output shape, MACs, pdinfer and torch seconds."""
    graph = load_graph(model.path)
    layers = {layer.name: layer for layer in graph.layers}
    n = x.shape[0]
    step_s, calls, pdinfer_total = _pdinfer_steps(model, x, runs)
    torch_s, torch_total = _torch_modules(torch_module, x, runs) if torch_module is not None else ({}, None)
    rows = []
    for step, seconds, kernel_calls in zip(model._plan.steps, step_s, calls):
        covered = [name for name in step.layers if name in torch_s]
        rows.append({
            "layers": list(step.layers), "what": describe([layers[name] for name in step.layers]),
            "output_shape": [n, *graph.shapes[step.output][1:]],
            "macs": n * sum(layers[name].macs(graph.shapes[name]) for name in step.layers),
            "pdinfer_s": seconds, "kernel_calls": kernel_calls,
            "torch_s": sum(torch_s[name] for name in covered) if covered else None})
    return {"batch": n, "steps": rows, "pdinfer_total_s": pdinfer_total,
            "pdinfer_outside_steps_s": pdinfer_total - sum(step_s), "torch_total_s": torch_total}
