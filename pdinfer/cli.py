"""The `pdinfer` command: run a model on images, describe a weight file, warm up, write golden bundles."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from . import __version__
from .errors import PdinferError
from .format import read_container
from .graph import load_graph
from .image import image_files
from .model import Model, load, run
from .progress import Progress

EXIT_CODES = """\
exit status:
  0    every input was diagnosed (or the command succeeded)
  1    some inputs failed; each is named on stderr, the others are printed
  2    usage error, unreadable or invalid weight file, no inputs, or an output that cannot be written
  130  interrupted (Ctrl-C)"""
PLURALS = {"probability": "probabilities", "score": "scores", "logit": "logits"}  # Model.output_kind


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit status 2)."""


def _inputs(names: Sequence[str], recursive: bool) -> list[Path]:
    """Files as given; directories expanded to their .png/.npy files, sorted (see image_files)."""
    paths: list[Path] = []
    for name in names:
        path = Path(name)
        if not path.is_dir():
            paths.append(path)
            continue
        files, skipped = image_files(path, recursive)
        for directory in skipped:
            print(f"warning: {directory}: subdirectory not read (use --recursive)", file=sys.stderr)
        paths += files
    return paths


def labelled(model: Model, path: Path, out: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(row label, one image's flat output) for each image of a file: `file.npy[i]` for a batch."""
    if out.ndim == len(model.output_shape):
        return [(str(path), out.reshape(-1))]
    return [(f"{path}[{i}]", row.reshape(-1)) for i, row in enumerate(out)]


def _table(model: Model, rows: list[tuple[str, np.ndarray]]) -> list[str]:
    """Aligned lines: input, top class, its value, then every class's value (widths from the cells)."""
    cells = [["input", "class", model.output_kind, *model.classes]]
    for name, out in rows:
        top = int(np.argmax(out))
        cells.append([name, model.classes[top], f"{out[top]:.4f}", *(f"{v:.4f}" for v in out)])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
            for row in cells]


def record(model: Model, name: str, out: np.ndarray) -> dict:
    """A `--json` line's object: input, top class, its value and every class's, keyed by model.output_kind."""
    top = int(np.argmax(out))
    kind = model.output_kind
    return {"input": name, "class": model.classes[top], kind: float(out[top]),
            PLURALS[kind]: dict(zip(model.classes, map(float, out)))}


def cmd_run(args: argparse.Namespace) -> int:
    model = load(args.weights)
    paths = _inputs(args.inputs, args.recursive)
    if not paths:
        raise UsageError("no .png or .npy inputs found")
    rows: list[tuple[str, np.ndarray]] = []  # the table is printed at the end, aligned to every label
    failures = 0
    with Progress("run", len(paths)) as progress:
        for n, path in enumerate(paths, 1):
            try:
                named = labelled(model, path, run(model, path))
            except PdinferError as e:
                failures += 1
                progress.clear()
                print(f"error: {e}" if str(path) in str(e) else f"error: {path}: {e}", file=sys.stderr)
            else:
                if args.json:
                    progress.clear()
                    for name, out in named:
                        print(json.dumps(record(model, name, out)), flush=True)
                else:
                    rows += named
            progress(n)
    if rows:
        print("\n".join(_table(model, rows)))
    return 1 if failures else 0


def cmd_info(args: argparse.Namespace) -> int:
    from .format import storage
    from .plan import packed_bytes
    graph = load_graph(args.weights)
    rows = [("layer", "type", "inputs", "output", "MACs", "weights", "params")]
    total_macs = 0
    for layer in graph.layers:
        shape = graph.shapes[layer.name]
        macs = layer.macs(shape)
        total_macs += macs
        has_tensors = any(isinstance(a, np.ndarray) for a in vars(layer).values())
        stored = storage(getattr(layer, "weight")) if layer.compressible else "F32" if has_tensors else "-"
        rows.append((layer.name, layer.type, ",".join(layer.inputs), "x".join(map(str, shape[1:])),
                     f"{macs:,}", stored, layer.describe()))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[6])
    n_params = sum(int(np.prod(a.shape)) for layer in graph.layers
                   for a in vars(layer).values() if isinstance(a, np.ndarray))
    packed = packed_bytes(Model(graph)._plan)
    version = read_container(args.weights, verify_checksum=False).metadata["format_version"]
    print(f"\nfile:       {graph.path} ({Path(graph.path).stat().st_size:,} bytes, format version {version})")
    print("checksum:   " + ("the whole file (header and data) verified" if graph.header_verified else
                            "data section only (version 1): the header (layers, classes) is not protected; "
                            "rewrite the file as version 2 (docs/FORMAT.md, section 6)"))
    print(f"resident:   {packed:,} bytes of weights, packed for the fast kernels as stored "
          f"(what a loaded model keeps; `trace` reads the file's tensors again)")
    print(f"input:      {'x'.join(map(str, graph.input_shape))} (C x H x W)")
    print(f"layers:     {len(graph.layers)}, parameters: {n_params:,}, MACs per image: {total_macs:,}")
    print(f"classes:    {', '.join(graph.classes)}")
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import warmup
    with Progress("warmup", 0) as progress:
        seconds = warmup(progress)
    print(f"kernels compiled or loaded from the cache in {seconds:.1f} s")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import map_image, occlusion_map, one_image
    from .image import pillow
    pillow("drawing an occlusion map")  # before the forward passes, not after them
    model = load(args.weights)
    image = one_image(model, args.image)
    with Progress("explain", 0) as progress:
        occlusion = occlusion_map(model, image, patch=args.patch, stride=args.stride, baseline=args.baseline,
                                  target=args.target, progress=progress)
    scores = model(image).reshape(-1)
    shown = model.classes.index(args.target) if args.target is not None else int(np.argmax(scores))
    about = f"{model.classes[shown]} {model.output_kind} {scores[shown]:.4f}"
    title = f"{Path(args.image).name}: {about}; occluding {args.patch[0]}x{args.patch[1]} patches with {args.baseline:g}"
    map_image(image, occlusion, title).save(args.out, format="PNG")
    print(f"wrote {args.out}: {about}; map from {occlusion.min():+.3g} to {occlusion.max():+.3g}")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    from .golden import write_golden
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a directory")
    options = {}
    if args.layers is not None:
        options["layers"] = [name.strip() for name in args.layers.split(",")]
        if not all(options["layers"]):
            raise UsageError(f"--layers {args.layers!r}: empty layer name (give names separated by commas)")
    with Progress("golden", 0) as progress:
        if progress.enabled:
            options["progress"] = progress
        path = write_golden(args.weights, out, count=args.count, seed=args.seed, **options)
    print(f"wrote {path} (reference outputs only; `python -m exporter.golden` adds PyTorch's, "
          "from a pdinfer checkout)")
    return 0


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _size(text: str) -> tuple[int, int]:
    """argparse type: H,W or N (for N,N), integers >= 1."""
    values = tuple(int(v) for v in text.split(","))
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be N or H,W with integers >= 1, got {text!r}")
    return (values[0], values[-1])


def parser() -> argparse.ArgumentParser:
    """The command line (`pdinfer --help`)."""
    top = argparse.ArgumentParser(prog="pdinfer", description=__doc__, epilog=EXIT_CODES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"pdinfer {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                   epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)

    run_ = command("run", "print each input's class values (probability, score or logit: from the last layer)")
    run_.add_argument("weights", help="a .pdw weight file")
    run_.add_argument("inputs", nargs="+", help=".png/.npy files or directories of them")
    run_.add_argument("--json", action="store_true", help="one JSON object per image, printed as it is done")
    run_.add_argument("--recursive", "-r", action="store_true", help="read the subdirectories of directories too")
    run_.set_defaults(handler=cmd_run)
    info = command("info", "describe a weight file: layers, shapes, MACs, classes")
    info.add_argument("weights", help="a .pdw weight file")
    info.set_defaults(handler=cmd_info)
    warm = command("warmup", "compile every kernel now (cached on disk for later processes)")
    warm.set_defaults(handler=cmd_warmup)
    explain = command("explain", "draw where an image's class comes from: an occlusion sensitivity map (PNG)")
    explain.add_argument("weights", help="a .pdw weight file")
    explain.add_argument("image", help="one .png/.npy image")
    explain.add_argument("--out", required=True, help="the PNG to write")
    explain.add_argument("--patch", type=_size, default=(6, 6), metavar="H[,W]", help="occluded patch (default 6,6)")
    explain.add_argument("--stride", type=_size, metavar="H[,W]", help="patch step (default: half the patch)")
    explain.add_argument("--baseline", type=float, default=0.0, help="value of occluded pixels (default 0)")
    explain.add_argument("--class", dest="target", metavar="NAME", help="explain this class (default: the top one)")
    explain.set_defaults(handler=cmd_explain)
    golden = command("golden", "write a golden bundle: inputs and every layer's reference output")
    golden.add_argument("weights", help="a .pdw weight file")
    golden.add_argument("--out", required=True, help="directory for WEIGHTS-STEM.golden.pdw")
    golden.add_argument("--count", type=_count, default=2, help="seeded random inputs (default 2)")
    golden.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    golden.add_argument("--layers", metavar="A,B,...", help="only these layers' outputs (a smaller bundle)")
    golden.set_defaults(handler=cmd_golden)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (see EXIT_CODES)."""
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except (PdinferError, UsageError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
