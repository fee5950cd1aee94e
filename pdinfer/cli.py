"""The `pdinfer` command: run a model on images, describe a weight file or golden bundle, warm up, write
golden bundles, compress weights."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from . import __version__, background
from .errors import FormatError, PdinferError
from .format import check_overwrite, open_container, read_container
from .golden import EDGE_KINDS, GOLDEN_FORMAT, golden_path, read_golden
from .graph import load_graph
from .image import IMAGE_SUFFIXES, image_files
from .model import Model, _cold_start, load, run
from .progress import Progress

if TYPE_CHECKING:
    from ._jit import CompileWatch

EXIT_CODES = """\
exit status:
  0    every input was diagnosed (or the command succeeded)
  1    some inputs failed; each is named on stderr, the others are printed
  2    usage error, unreadable or invalid weight file, no inputs, or an output that cannot be written
  130  interrupted (Ctrl-C)"""
COMMAND_EXIT_CODES = """\
exit status:
  0    the command succeeded
  2    usage error, unreadable or invalid file, or an output that cannot be written
  130  interrupted (Ctrl-C)"""  # every command but run
PLURALS = {"probability": "probabilities", "score": "scores", "logit": "logits"}  # Model.output_kind


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit status 2)."""


def _inputs(names: Sequence[str], recursive: bool) -> list[Path]:
    """Files as given; directories expanded to their .png/.npy files, sorted (see image_files); a
    file reached twice (given alone and through its directory) only the first time."""
    paths: dict[Path, Path] = {}  # the file (resolved) -> the path as reached first
    for name in names:
        path = Path(name)
        if not path.is_dir():
            paths.setdefault(path.resolve(), path)
            continue
        files, skipped = image_files(path, recursive)
        for directory in skipped:
            print(f"warning: {directory}: subdirectory not read (use --recursive)", file=sys.stderr)
        for file in files:
            paths.setdefault(file.resolve(), file)
    return list(paths.values())


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


COMPILING = "compiling kernels for this CPU, first run only (later runs load them from the cache)"


ANSWERED_WITH_NUMPY = ("answered with NumPy while this CPU's kernels compile in the background (a first run); "
                      "`pdinfer warmup` compiles them once")


def _compile_notice(progress: Progress) -> "CompileWatch":
    """Says COMPILING once on stderr when this thread starts compiling (PDINFER_COLD_START=compile, or
    warmup), and shows the bar from there on."""
    from ._jit import CompileWatch  # Numba's
    def say() -> None:
        progress.clear()
        print(COMPILING, file=sys.stderr, flush=True)
        progress.show(0)
    return CompileWatch(say, threading.current_thread())


def cmd_run(args: argparse.Namespace) -> int:
    try:
        model = load(args.weights)
    except FormatError as e:
        if Path(args.weights).suffix.lower() in IMAGE_SUFFIXES or any(n.endswith(".pdw") for n in args.inputs):
            raise UsageError(f"{e}\nusage: pdinfer run WEIGHTS INPUT... (the weight file comes first)") from None
        raise
    paths = _inputs(args.inputs, args.recursive)
    if not paths:
        raise UsageError(f"no .png or .npy inputs found in {', '.join(args.inputs)}")
    rows: list[tuple[str, np.ndarray]] = []  # the table is printed at the end, aligned to every label
    failures = 0
    # Answering on NumPy while the kernels compile (the default), this thread compiles nothing.
    numpy_first = _cold_start() == "numpy"
    with Progress("run", len(paths)) as progress, contextlib.nullcontext() if numpy_first else _compile_notice(progress):
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
    if not model.compiled:
        print(ANSWERED_WITH_NUMPY, file=sys.stderr)
    return 1 if failures else 0


def cmd_info(args: argparse.Namespace) -> int:
    from .format import storage
    from .plan import packed_bytes
    kind = open_container(args.weights, kind="pdinfer weight file or golden bundle").metadata.get("format")
    if kind == GOLDEN_FORMAT:
        return _golden_info(args.weights)
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
                     f"{macs:,}", stored, layer.describe(compact=not args.wide)))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[6])
    n_params = sum(int(np.prod(a.shape)) for layer in graph.layers
                   for a in vars(layer).values() if isinstance(a, np.ndarray))
    packed = packed_bytes(Model(graph)._plan)
    version = read_container(args.weights, verify_checksum=False).metadata["format_version"]
    print(f"\nfile:       {graph.path} ({Path(graph.path).stat().st_size:,} bytes, format version {version})")
    print("checksum:   " + ("the whole file (header and data) verified" if graph.header_verified else
                            "data section only (version 1): the header (layers, classes) is not protected;\n"
                            "            rewrite the file as version 2 (docs/FORMAT.md, section 6)"))
    print(f"resident:   {packed:,} bytes of weights, packed: what a loaded model keeps (`trace` reads the file again)")
    print("computes:   " + ("in int8: its values are quantized (docs/FORMAT.md, section 1.3)" if graph.activations
                            else "in float32"))
    print(f"input:      {'x'.join(map(str, graph.input_shape))} (C x H x W)")
    print(f"layers:     {len(graph.layers)}, parameters: {n_params:,}, MACs per image: {total_macs:,}")
    print(f"classes:    {', '.join(graph.classes)}")
    return 0


def _golden_info(path: str) -> int:
    """`pdinfer info` of a golden bundle: what it holds (docs/GOLDEN.md)."""
    bundle = read_golden(path)
    manifest = bundle.manifest
    kinds = [entry["kind"] for entry in manifest["inputs"]]
    print(f"golden bundle: {bundle.path} ({Path(bundle.path).stat().st_size:,} bytes, whole file verified)")
    print(f"weights:       {manifest['weights']} (SHA-256 {manifest['weights_sha256']})")
    print(f"inputs:        {len(kinds)}: {', '.join(kinds)} (seed {manifest.get('seed')})")
    print(f"layers:        {len(bundle.layers)}" + (" (a subset): " + ", ".join(bundle.layers) if bundle.subset else
                                                     ", every layer of the weights"))
    print("outputs:       reference" + (f" and torch {manifest.get('torch_version')}" if bundle.has_torch else " only"))
    return 0


def cmd_warmup(args: argparse.Namespace) -> int:
    from .warmup import warmup
    with Progress("warmup", 0) as progress, _compile_notice(progress) as watch:
        seconds = warmup(args.weights, progress)
    print(f"kernels compiled or loaded from the cache in {seconds:.1f} s ({len(watch.compiled)} functions compiled)")
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
    check_overwrite(golden_path(args.weights, out), args.force)
    options = {}
    if args.layers is not None:
        options["layers"] = [name.strip() for name in args.layers.split(",")]
        if not all(options["layers"]):
            raise UsageError(f"--layers {args.layers!r}: empty layer name (give names separated by commas)")
    with Progress("golden", 0) as progress:
        if progress.enabled:
            options["progress"] = progress
        path = write_golden(args.weights, out, count=args.count, seed=args.seed, **options)
    print(f"wrote {path}: {path.stat().st_size:,} bytes, {args.count + len(EDGE_KINDS)} inputs ({args.count} "
          f"random, {len(EDGE_KINDS)} edge cases: {', '.join(EDGE_KINDS)}); reference outputs only "
          "(`python -m pdinfer.exporter.golden` adds PyTorch's: the torch extra)")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from .exporter.compress import calibration_images, compress_file
    check_overwrite(args.out, args.force)
    if args.calibrate and not args.activations:
        raise UsageError("--calibrate goes with --activations int8")
    try:
        calibration = calibration_images(args.calibrate) if args.activations else None
        compress_file(args.src, args.out, args.weights, calibration)
    except ValueError as e:  # already compressed, a weight beyond the range of the type, int8 activations without int8 weights
        raise UsageError(str(e)) from None
    computes = ", int8 activations" if args.activations else ""
    print(f"wrote {args.out} ({args.weights} weights{computes}, {Path(args.out).stat().st_size:,} bytes)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .onnx_import import convert_onnx
    classes = None if args.classes is None else [name.strip() for name in args.classes.split(",")]
    shape = None
    if args.input_shape is not None:
        try:
            shape = [int(d) for d in args.input_shape.split(",")]
        except ValueError:
            raise UsageError(f"--input-shape {args.input_shape!r}: give C,H,W as integers") from None
    path = convert_onnx(args.model, args.out, classes=classes, input_shape=shape, force=args.force)
    model = load(path)
    print(f"wrote {path}: {len(model.layer_names)} layers, input {model.input_shape}, classes {model.classes}")
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
    from .exporter.compress import WEIGHT_STORAGE
    top = argparse.ArgumentParser(prog="pdinfer", description=__doc__, epilog=EXIT_CODES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--version", action="version", version=f"pdinfer {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    def command(name: str, help: str, epilog: str = COMMAND_EXIT_CODES) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".",
                                   epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)

    run_ = command("run", "print each input's class values (probability, score or logit: from the last layer)",
                   EXIT_CODES)
    run_.add_argument("weights", help="a .pdw weight file")
    run_.add_argument("inputs", nargs="+", help=".png/.npy files or directories of them")
    run_.add_argument("--json", action="store_true", help="one JSON object per image, printed as it is done")
    run_.add_argument("--recursive", "-r", action="store_true", help="read the subdirectories of directories too")
    run_.set_defaults(handler=cmd_run)
    info = command("info", "describe a weight file (layers, shapes, MACs, classes) or a golden bundle")
    info.add_argument("weights", help="a .pdw weight file or golden bundle")
    info.add_argument("--wide", action="store_true", help="every parameter of every layer, as the file gives it")
    info.set_defaults(handler=cmd_info)
    warm = command("warmup", "compile every kernel now, and what the weight files given run "
                             "(cached on disk for later processes)")
    warm.add_argument("weights", nargs="*", help=".pdw weight files to run once each")
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
    golden.add_argument("--count", type=_count, default=2,
                        help=f"seeded random inputs (default 2); {len(EDGE_KINDS)} edge-case inputs "
                             f"({', '.join(EDGE_KINDS)}) are always added")
    golden.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    golden.add_argument("--layers", metavar="A,B,...", help="only these layers' outputs (a smaller bundle)")
    golden.add_argument("--force", action="store_true", help="overwrite the bundle if it exists")
    golden.set_defaults(handler=cmd_golden)
    compress = command("compress", "write a float32 weight file again with float16, bfloat16 or int8 weights "
                       "(and, with int8, int8 computation)")
    compress.add_argument("src", metavar="SRC.pdw", help="a float32 weight file")
    compress.add_argument("--weights", required=True, choices=[w for w in WEIGHT_STORAGE if w != "f32"],
                          help="storage of the Conv2d and Linear weights (BatchNorm is folded into them)")
    compress.add_argument("--activations", choices=["int8"],
                          help="compute in int8: calibrate the quantization of every value (with --weights int8)")
    compress.add_argument("--calibrate", metavar="DIR", help="the .png/.npy calibration images (default: 120 "
                          "synthetic PRPD images)")
    compress.add_argument("--out", required=True, metavar="DST.pdw", help="the compressed file to write")
    compress.add_argument("--force", action="store_true", help="overwrite DST.pdw if it exists")
    compress.set_defaults(handler=cmd_compress)
    convert = command("convert", "convert an ONNX model to a weight file (needs the onnx extra)")
    convert.add_argument("model", help="an .onnx file (external data beside it is read too)")
    convert.add_argument("out", help="the .pdw file to write")
    convert.add_argument("--classes", metavar="A,B,...", help="class names (default: the model's metadata "
                         "'classes', else 0, 1, ...)")
    convert.add_argument("--input-shape", metavar="C,H,W", help="the image size, if the model leaves it dynamic")
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.set_defaults(handler=cmd_convert)
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (see EXIT_CODES)."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare `pdinfer`: what it can do
        parser().print_help(sys.stderr)
        return 2
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


def entry() -> None:
    """The `pdinfer` command: main(), then exit at once, even while the background worker compiles
    kernels for later calls (this process makes none: waiting would only delay the exit)."""
    code = main()
    if background.busy():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # closed, or a closed pipe
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
