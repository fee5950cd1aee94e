"""The `pdinfer` command: run a model on images, describe a weight file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from .errors import PdinferError
from .format import FORMAT_VERSION
from .graph import load_graph
from .model import Model, load, run

IMAGE_SUFFIXES = (".png", ".npy")


def _inputs(paths: Sequence[str]) -> Iterator[Path]:
    """Files as given; directories expanded to their .png/.npy files, sorted."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def _row(name: str, width: int, model: Model, probs: np.ndarray) -> str:
    """One table row: input name, top class, its probability, then every class's value."""
    top = int(np.argmax(probs))
    return (f"{name:<{width}}  {model.classes[top]:<12} {probs[top]:.4f}   "
            + " ".join(f"{p:>{max(6, len(c))}.4f}" for c, p in zip(model.classes, probs)))


def cmd_run(args: argparse.Namespace) -> int:
    model = load(args.weights)
    paths = list(_inputs(args.inputs))
    if not paths:
        print("error: no .png or .npy inputs found", file=sys.stderr)
        return 2
    width = max(len("input"), *(len(str(p)) for p in paths))
    if not args.json:
        print(f"{'input':<{width}}  {'class':<12} {'prob':<6}   "
              + " ".join(f"{c:>{max(6, len(c))}}" for c in model.classes))
    show_progress = len(paths) > 20 and sys.stderr.isatty()
    failures = 0
    for n, path in enumerate(paths, 1):
        try:
            probs = run(model, path)
        except PdinferError as e:
            failures += 1
            print(f"error: {e}" if str(path) in str(e) else f"error: {path}: {e}", file=sys.stderr)
            continue
        named = [(str(path), probs)] if probs.ndim == 1 else [(f"{path}[{i}]", p) for i, p in enumerate(probs)]
        for name, p in named:
            if args.json:
                print(json.dumps({"input": name, "class": model.classes[int(np.argmax(p))],
                                  "probabilities": dict(zip(model.classes, map(float, p)))}))
            else:
                print(_row(name, width, model, p))
        if show_progress:
            print(f"\r{n}/{len(paths)}", end="", file=sys.stderr, flush=True)
    if show_progress:
        print(file=sys.stderr)
    return 1 if failures else 0


def cmd_info(args: argparse.Namespace) -> int:
    graph = load_graph(args.weights)
    rows = [("layer", "type", "inputs", "output", "MACs", "params")]
    total_macs = 0
    for layer in graph.layers:
        shape = graph.shapes[layer.name]
        macs = layer.macs(shape)
        total_macs += macs
        rows.append((layer.name, layer.type, ",".join(layer.inputs), "x".join(map(str, shape[1:])),
                     f"{macs:,}", layer.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[5])
    n_params = sum(int(np.prod(a.shape)) for layer in graph.layers
                   for a in vars(layer).values() if isinstance(a, np.ndarray))
    print(f"\nfile:       {graph.path} ({Path(graph.path).stat().st_size:,} bytes, format v{FORMAT_VERSION})")
    print(f"input:      {'x'.join(map(str, graph.input_shape))} (C x H x W)")
    print(f"layers:     {len(graph.layers)}, parameters: {n_params:,}, MACs per image: {total_macs:,}")
    print(f"classes:    {', '.join(graph.classes)}")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import warmup
    print(f"kernels compiled or loaded from the cache in {warmup():.1f} s")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from .golden import find_torch_tracer, write_golden
    tracer, torch_version, why_not = (None, None, "--no-torch") if args.no_torch else find_torch_tracer(args.weights)
    path = write_golden(args.weights, args.out, count=args.count, seed=args.seed,
                        torch_tracer=tracer, torch_version=torch_version)
    print(f"wrote {path} (reference outputs" + (f" and torch {torch_version} outputs)" if tracer else
                                                f" only; no torch outputs: {why_not})"))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pdinfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="print each input's class probabilities")
    run.add_argument("weights", help="a .pdw weight file")
    run.add_argument("inputs", nargs="+", help=".png/.npy files or directories of them")
    run.add_argument("--json", action="store_true", help="one JSON object per input")
    run.set_defaults(handler=cmd_run)
    info = commands.add_parser("info", help="describe a weight file: layers, shapes, MACs, classes")
    info.add_argument("weights", help="a .pdw weight file")
    info.set_defaults(handler=cmd_info)
    warm = commands.add_parser("warmup", help="compile every kernel now (cached on disk for later runs)")
    warm.set_defaults(handler=cmd_warmup)
    golden = commands.add_parser("golden", help="write a golden bundle: inputs and every layer's output")
    golden.add_argument("weights", help="a .pdw weight file")
    golden.add_argument("--out", required=True, help="directory for WEIGHTS-STEM.golden.pdw")
    golden.add_argument("--count", type=int, default=2, help="seeded random inputs (default 2)")
    golden.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    golden.add_argument("--no-torch", action="store_true", help="reference outputs only")
    golden.set_defaults(handler=cmd_golden)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PdinferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
