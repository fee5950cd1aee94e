"""The `pdinfer` command: run a model on images, describe a weight file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from .errors import PdinferError
from .model import Model, load, read_image

IMAGE_SUFFIXES = (".png", ".npy")


def _inputs(paths: Sequence[str]) -> Iterator[Path]:
    """Files as given; directories expanded to their .png/.npy files, sorted."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def _table(path: Path, model: Model, probs: np.ndarray) -> str:
    order = np.argsort(-probs, kind="stable")
    top = order[0]
    lines = [f"{path}: {model.classes[top]} ({probs[top]:.4f})"]
    lines += [f"    {model.classes[i]:<16} {probs[i]:.4f}" for i in order]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    model = load(args.weights)
    paths = list(_inputs(args.inputs))
    failures = 0
    show_progress = len(paths) > 20 and not args.json and sys.stderr.isatty()
    for n, path in enumerate(paths, 1):
        try:
            image = read_image(path, model.input_shape[0])
            if image.ndim == 2 and model.input_shape[0] == 1:
                image = image[None]
            probs = model(image)
        except PdinferError as e:
            failures += 1
            print(f"error: {path}: {e}" if str(path) not in str(e) else f"error: {e}", file=sys.stderr)
            continue
        if probs.ndim != 1:
            probs = probs.reshape(-1) if probs.shape[0] == 1 else probs
        if args.json:
            record = {"input": str(path), "class": model.classes[int(np.argmax(probs))],
                      "probabilities": dict(zip(model.classes, map(float, probs)))}
            print(json.dumps(record))
        else:
            print(_table(path, model, probs))
        if show_progress:
            print(f"\r{n}/{len(paths)}", end="", file=sys.stderr, flush=True)
    if show_progress:
        print(file=sys.stderr)
    if not paths:
        print("error: no .png or .npy inputs found", file=sys.stderr)
        return 2
    return 1 if failures else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pdinfer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="print each input's class probabilities")
    run.add_argument("weights", help="a .pdw weight file")
    run.add_argument("inputs", nargs="+", help=".png/.npy files or directories of them")
    run.add_argument("--json", action="store_true", help="one JSON object per input")
    run.set_defaults(handler=cmd_run)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except PdinferError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
