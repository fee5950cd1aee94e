"""Golden bundles: inputs and every layer's reference output, for checking ports (docs/GOLDEN.md).

A bundle is a container file (docs/FORMAT.md, section 1) with metadata format `pdinfer-golden`.
It holds, per input i: `input.i` (1, C, H, W), `reference.i.<layer>` from `Model.trace` for every
layer of the bundle (all of them, or the subset asked for), and, when the caller passes a torch
tracer (exporter/golden.py), `torch.i.<layer>`: the same layer's output in PyTorch. The bundle of a
file that computes in int8 (FORMAT.md 1.3) holds the values of its integer reference instead
(`bundle_values`), its uint8 ones stored as float32 levels (manifest `uint8_layers`).

Memory stays bounded by one input's outputs whatever the input count: the writer streams tensors
to the file one at a time (format.ContainerWriter), and the reader checks the whole file in one
streaming pass, then reads one input's tensors at a time from it (format.open_container). NumPy only: this module never imports torch or the exporter.
"""

from __future__ import annotations

import hashlib
import json
import os
import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from . import __version__
from .errors import FormatError, InputError
from .format import (FILE_CHECKSUM, MAX_HEADER_BYTES, Container, ContainerWriter, check_metadata, header_size,
                     open_container, parse_json)
from .graph import INPUT, Graph
from .layers import Shape
from .model import load
from .quantize import int8_steps

GOLDEN_FORMAT = "pdinfer-golden"
GOLDEN_VERSION = "2"  # 2: bundles may hold a subset of the layers (manifest 'subset')
RANDOM_KINDS = ("uniform", "normal")  # the seeded inputs, in turn
EDGE_KINDS = ("zeros", "ones", "large", "negative")  # always added after the random ones
LARGE_SCALE = 1000.0  # "large": uniform [0, 1000)
# Allowed |port - torch| per layer and input: TORCH_ATOL_FACTOR * max(1, max|torch output|).
TORCH_ATOL_FACTOR = 1e-4
# Layers whose reference calls exp, expm1 or tanh (float64 libm): a port may differ from them by
# at most 1 ulp.
EXP_LAYER_TYPES = ("Sigmoid", "Softmax", "SiLU", "Tanh", "GELU", "ELU")
MANIFEST_KEYS = ("weights", "weights_sha256", "inputs", "layers", "subset", "torch_atol_factor")
# Manifest `computation` of an int8-computing file's bundle (absent: float32); its `uint8_layers`
# list the bundle's layers whose outputs are uint8 levels, stored as float32 (0..255 exactly).
INT8_COMPUTATION = "int8"

# One image (1, C, H, W) -> every layer's torch output, by layer name.
TorchTracer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class GoldenInput:
    name: str  # "input.<i>"
    kind: str  # one of RANDOM_KINDS + EDGE_KINDS
    image: np.ndarray  # (1, C, H, W) float32


@dataclass(frozen=True)
class GoldenEntry:
    """One input of a bundle: its image and the outputs of the bundle's layers (read-only views)."""

    name: str  # "input.<i>"
    kind: str
    image: np.ndarray  # (1, C, H, W)
    reference: dict[str, np.ndarray]  # layer name -> reference output, (1, ...)
    torch: Optional[dict[str, np.ndarray]]  # layer name -> torch output, or None (reference only)


class Golden:
    """A checked golden bundle: `golden[i]` or iteration reads one input's tensors from the file at a time
    (FormatError if the file was changed since it was checked)."""

    def __init__(self, container: Container, manifest: dict[str, Any]) -> None:
        self.path = container.path
        self.manifest = manifest
        self.layers: list[str] = list(manifest["layers"])  # the layers in the bundle, in execution order
        self.subset: bool = manifest["subset"]  # True: not every layer of the weights is in the bundle
        self.int8: bool = manifest.get("computation") == INT8_COMPUTATION  # the int8 reference's values
        self.uint8_layers = frozenset(manifest.get("uint8_layers", ()))  # read back as uint8 levels
        self.has_torch = any(name.startswith("torch.") for name in container.tensors)
        self._tensors = container.tensors

    def __len__(self) -> int:
        return len(self.manifest["inputs"])

    def __getitem__(self, i: int) -> GoldenEntry:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.path}: no input {i} (the bundle has {len(self)})")

        def outputs(source: str) -> dict[str, np.ndarray]:
            return {layer: self._levels(f"{source}.{i}.{layer}") if layer in self.uint8_layers
                    else self._tensors[f"{source}.{i}.{layer}"] for layer in self.layers}

        return GoldenEntry(f"input.{i}", self.manifest["inputs"][i]["kind"], self._tensors[f"input.{i}"],
                           outputs("reference"), outputs("torch") if self.has_torch else None)

    def __iter__(self) -> Iterator[GoldenEntry]:
        return (self[i] for i in range(len(self)))

    def _levels(self, name: str) -> np.ndarray:
        """A stored uint8 output: float32 levels, each an integer in [0, 255], as uint8."""
        stored = self._tensors[name]
        with np.errstate(invalid="ignore"):  # NaN and infinities: not levels, rejected below
            levels = stored.astype(np.uint8)
        if not np.array_equal(levels, stored):
            raise FormatError(f"{self.path}: tensor {name!r} must hold uint8 levels (integers 0 to 255), "
                              f"as the manifest's 'uint8_layers' says")
        return levels


def input_kinds(count: int) -> list[str]:
    """The kinds of the inputs of a bundle with `count` random inputs, in order."""
    if count < 0:
        raise InputError(f"count must be >= 0, got {count}")
    return [RANDOM_KINDS[i % len(RANDOM_KINDS)] for i in range(count)] + list(EDGE_KINDS)


def make_inputs(input_shape: Sequence[int], count: int, seed: int) -> Iterator[GoldenInput]:
    """`count` seeded random images (uniform [0, 1) and standard normal in turn), then the edge cases.

    A generator: one image at a time, all drawn from one `numpy.random.default_rng(seed)` in order.
    """
    kinds = input_kinds(count)
    rng = np.random.default_rng(seed)
    shape = (1, *input_shape)
    makers = {
        "uniform": lambda: rng.random(shape),
        "normal": lambda: rng.standard_normal(shape),
        "zeros": lambda: np.zeros(shape),
        "ones": lambda: np.ones(shape),
        "large": lambda: rng.random(shape) * LARGE_SCALE,
        "negative": lambda: -rng.random(shape),
    }
    for i, kind in enumerate(kinds):
        yield GoldenInput(f"input.{i}", kind, makers[kind]().astype(np.float32))


def file_sha256(path: str | os.PathLike) -> str:
    """Lowercase hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def golden_path(weights: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Where the bundle of `weights` goes: OUT_DIR/<weights stem>.golden.pdw."""
    return Path(out_dir) / f"{Path(weights).stem}.golden.pdw"


def bundle_tensors(inputs: int, layers: Sequence[str], has_torch: bool) -> Iterator[tuple[str, str]]:
    """A bundle's tensors in data order, as (tensor name, the layer it is an output of, or "input"):
    per input, the image, then the reference (and torch) output of each of `layers`."""
    sources = ("reference", "torch") if has_torch else ("reference",)
    for i in range(inputs):
        yield f"input.{i}", INPUT
        for source in sources:
            for layer in layers:
                yield f"{source}.{i}.{layer}", layer


def bundle_values(graph: Graph) -> tuple[list[str], list[str]]:
    """The layers whose outputs a bundle of `graph` may hold, in execution order, and those of them
    stored as uint8 levels.

    A float32 file: every layer, none uint8. A file that computes in int8: the values of its
    integer reference (`quantize.int8_steps`, `Int8Reference.trace`), one per step: a Conv2d or
    Linear fused with its activation has the activation's value only, a Dropout none; the outputs
    of int8 steps are uint8, except the last value, which is dequantized.
    """
    if graph.activations is None:
        return [layer.name for layer in graph.layers], []
    steps = int8_steps(graph)
    return [step.output for step in steps], [step.output for step in steps[:-1] if step.out is not None]


def _select_layers(all_layers: Sequence[str], wanted: Optional[Sequence[str]], where: str,
                   note: str = "") -> list[str]:
    """The bundle's layers in execution order: all of them, or those in `wanted` (each a known name)."""
    if wanted is None:
        return list(all_layers)
    if isinstance(wanted, str):
        raise InputError(f"layers must be a sequence of layer names, not the string {wanted!r}")
    wanted = list(wanted)
    unknown = [name for name in wanted if name not in all_layers]
    if unknown:
        raise InputError(f"{where} has no layer named {', '.join(map(repr, unknown))}{note} "
                         f"(its layers: {', '.join(all_layers)})")
    if not wanted:
        raise InputError("layers must name at least one layer")
    return [name for name in all_layers if name in wanted]


def _check_header_size(metadata: Mapping[str, str], layout: Sequence[tuple[str, Shape]], count: int) -> None:
    """Refuse a bundle whose header would pass the container's limit (format.ContainerWriter
    refuses it too), saying how many inputs would fit."""
    size = header_size(metadata, layout)
    if size > MAX_HEADER_BYTES:
        inputs = count + len(EDGE_KINDS)
        fits = max(0, int(MAX_HEADER_BYTES / (size / inputs)) - len(EDGE_KINDS))
        raise InputError(f"count {count} would give a bundle header of {size} bytes, over the {MAX_HEADER_BYTES}-byte "
                         f"limit of the container format: at most about {fits} random inputs fit with these layers "
                         f"(write fewer, restrict the layers, or write several bundles with different seeds)")


def write_golden(weights: str | os.PathLike, out_dir: str | os.PathLike, *, count: int = 2, seed: int = 0,
                 layers: Sequence[str] | None = None, torch_tracer: Optional[TorchTracer] = None,
                 torch_version: Optional[str] = None,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the golden bundle of `weights` into out_dir and return its path.

    `layers` restricts it to those layers' outputs (default: every layer); with `torch_tracer`,
    torch's outputs are stored too. `progress(done, total)` is called after each input. Memory
    holds one input's trace at a time, whatever `count`. A file that computes in int8 gets the
    values of its integer reference (`bundle_values`), without torch outputs.
    """
    kinds = input_kinds(count)
    model = load(weights)
    graph = model.reference_graph()  # the graph trace runs: the file is read again once, not twice
    values, uint8 = bundle_values(graph)
    int8 = graph.activations is not None
    note = " with a value of its own in its int8 computation" if int8 else ""
    chosen = _select_layers(values, layers, str(weights), note)
    has_torch = torch_tracer is not None
    if int8 and has_torch:
        raise InputError(f"{weights} computes in int8: its bundle holds the integer reference's values only, "
                         "no torch outputs")
    manifest = {
        "weights": Path(weights).name,
        "weights_sha256": file_sha256(weights),
        "weights_data_sha256": model.data_sha256,
        "pdinfer_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": importlib.metadata.version("numba"),
        "machine": platform.machine(),
        "torch_version": torch_version if has_torch else None,
        "torch_atol_factor": TORCH_ATOL_FACTOR,
        "exp_layer_types": list(EXP_LAYER_TYPES),
        "seed": seed,
        "inputs": [{"name": f"input.{i}", "kind": kind} for i, kind in enumerate(kinds)],
        "layers": chosen,
        "subset": len(chosen) != len(values),
    }
    if int8:
        manifest |= {"computation": INT8_COMPUTATION, "uint8_layers": [name for name in chosen if name in uint8]}
    metadata = {"format": GOLDEN_FORMAT, "format_version": GOLDEN_VERSION,
                "manifest": json.dumps(manifest, separators=(",", ":"), allow_nan=False),
                "producer": f"pdinfer {__version__} golden"}
    layout = [(name, graph.shapes[layer]) for name, layer in bundle_tensors(len(kinds), chosen, has_torch)]
    _check_header_size(metadata, layout, count)
    path = golden_path(weights, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ContainerWriter(path, metadata, layout) as writer:
        for i, item in enumerate(make_inputs(model.input_shape, count, seed)):
            writer.write(item.name, item.image)
            trace = model.trace(item.image)
            for name in chosen:
                writer.write(f"reference.{i}.{name}", trace[name])
            if torch_tracer is not None:
                del trace  # keep one trace at a time
                outputs = torch_tracer(item.image)
                for name in chosen:
                    if name not in outputs:
                        raise FormatError(f"{weights}: torch gave no output for layer {name!r}")
                    if outputs[name].shape != graph.shapes[name]:
                        raise FormatError(f"{weights}: torch output of layer {name!r} has shape "
                                          f"{outputs[name].shape}, the reference {graph.shapes[name]}")
                    writer.write(f"torch.{i}.{name}", outputs[name])
                del outputs
            if progress is not None:
                progress(i + 1, len(kinds))
    return path


def _check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    def fail(what: str) -> FormatError:
        return FormatError(f"{where}: manifest {what}")

    if not isinstance(manifest, dict):
        raise fail("is not a JSON object")
    for key in MANIFEST_KEYS:
        if key not in manifest:
            raise fail(f"lacks the key {key!r}")
    inputs, layers = manifest["inputs"], manifest["layers"]
    if (not isinstance(inputs, list) or not inputs
            or not all(isinstance(e, dict) and e.get("name") == f"input.{i}" and isinstance(e.get("kind"), str)
                       for i, e in enumerate(inputs))):
        raise fail("'inputs' must be a non-empty list of {\"name\": \"input.<i>\", \"kind\": ...} in order")
    if (not isinstance(layers, list) or not layers or not all(isinstance(n, str) and n for n in layers)
            or len(set(layers)) != len(layers)):
        raise fail("'layers' must be a non-empty list of unique layer names")
    if not isinstance(manifest["subset"], bool):
        raise fail(f"'subset' must be true or false, got {manifest['subset']!r}")
    factor = manifest["torch_atol_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise fail(f"'torch_atol_factor' must be a number in (0, 1), got {factor!r}")
    if not isinstance(manifest["weights_sha256"], str):
        raise fail("'weights_sha256' must be a string")
    if "computation" in manifest or "uint8_layers" in manifest:
        if manifest.get("computation") != INT8_COMPUTATION:
            raise fail(f"'computation' must be {INT8_COMPUTATION!r} (or absent: float32), "
                       f"got {manifest.get('computation')!r}")
        uint8 = manifest.get("uint8_layers")
        if (not isinstance(uint8, list) or not all(isinstance(n, str) and n in layers for n in uint8)
                or len(set(uint8)) != len(uint8)):
            raise fail("'uint8_layers' must list layers of the bundle, each once")
    return manifest


def read_golden(path: str | os.PathLike) -> Golden:
    """Read and check a golden bundle: every input has each listed layer's reference output (and
    torch's, or none). The whole file is checksummed here; its tensors are read when used."""
    container = open_container(path, kind="pdinfer golden bundle", dtypes=("F32",))
    where = container.path
    check_metadata(container, GOLDEN_FORMAT, GOLDEN_VERSION, ("manifest", FILE_CHECKSUM))
    manifest = _check_manifest(parse_json(container.metadata["manifest"], "metadata 'manifest'", where), where)
    has_torch = any(name.startswith("torch.") for name in container.tensors)
    expected = {name for name, _ in bundle_tensors(len(manifest["inputs"]), manifest["layers"], has_torch)}
    missing = sorted(expected - set(container.tensors))
    extra = sorted(set(container.tensors) - expected)
    if missing or extra:
        raise FormatError(f"{where}: tensors do not match the manifest"
                          + (f"; missing {missing[:5]}" if missing else "")
                          + (f"; unexpected {extra[:5]}" if extra else ""))
    return Golden(container, manifest)
