"""Golden bundles: inputs and every layer's reference output, for checking ports (docs/GOLDEN.md).

A bundle is a container file (docs/FORMAT.md, section 1) with metadata format `pdinfer-golden`.
It holds, per input i: `input.i` (1, C, H, W), `reference.i.<layer>` from `Model.trace` for every
layer, and, when the weights are a seed model and torch is installed, `torch.i.<layer>`: the
same layer's output in PyTorch (exporter/golden.py). NumPy only: torch is found at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numba
import numpy as np

from . import __version__
from .errors import FormatError, InputError
from .format import check_metadata, parse_json, read_container, write_container
from .model import load

GOLDEN_FORMAT = "pdinfer-golden"
GOLDEN_VERSION = "1"
RANDOM_KINDS = ("uniform", "normal")  # the seeded inputs, in turn
EDGE_KINDS = ("zeros", "ones", "large", "negative")  # always added after the random ones
LARGE_SCALE = 1000.0  # "large": uniform [0, 1000)
# Allowed |port - torch| per layer and input: TORCH_ATOL_FACTOR * max(1, max|torch output|).
TORCH_ATOL_FACTOR = 1e-4
# Layers whose reference calls exp, expm1 or tanh (float64 libm): a port may differ from them by
# at most 1 ulp.
EXP_LAYER_TYPES = ("Sigmoid", "Softmax", "SiLU", "Tanh", "GELU", "ELU")

# One image (1, C, H, W) -> every layer's torch output, by layer name.
TorchTracer = Callable[[np.ndarray], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class GoldenInput:
    name: str  # "input.<i>"
    kind: str  # one of RANDOM_KINDS + EDGE_KINDS
    image: np.ndarray  # (1, C, H, W) float32


@dataclass(frozen=True)
class Golden:
    """A read golden bundle: its manifest and, per input, the input and each layer's outputs."""

    path: str
    manifest: dict[str, Any]
    inputs: list[np.ndarray]  # per input: (1, C, H, W)
    reference: list[dict[str, np.ndarray]]  # per input: layer name -> reference output
    torch: Optional[list[dict[str, np.ndarray]]]  # per input: layer name -> torch output, or None

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])


def make_inputs(input_shape: Sequence[int], count: int, seed: int) -> list[GoldenInput]:
    """`count` seeded random images (uniform [0, 1) and standard normal in turn), then the edge cases."""
    if count < 0:
        raise InputError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    shape = (1, *input_shape)
    kinds = [RANDOM_KINDS[i % len(RANDOM_KINDS)] for i in range(count)] + list(EDGE_KINDS)
    makers = {
        "uniform": lambda: rng.random(shape),
        "normal": lambda: rng.standard_normal(shape),
        "zeros": lambda: np.zeros(shape),
        "ones": lambda: np.ones(shape),
        "large": lambda: rng.random(shape) * LARGE_SCALE,
        "negative": lambda: -rng.random(shape),
    }
    return [GoldenInput(f"input.{i}", kind, makers[kind]().astype(np.float32))
            for i, kind in enumerate(kinds)]


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


def write_golden(weights: str | os.PathLike, out_dir: str | os.PathLike, *, count: int = 2, seed: int = 0,
                 torch_tracer: Optional[TorchTracer] = None, torch_version: Optional[str] = None) -> Path:
    """Write the golden bundle of `weights` into out_dir; torch outputs too if a tracer is given."""
    model = load(weights)
    inputs = make_inputs(model.input_shape, count, seed)
    tensors: list[tuple[str, np.ndarray]] = []
    for i, item in enumerate(inputs):
        tensors.append((item.name, item.image))
        trace = model.trace(item.image)
        tensors += [(f"reference.{i}.{name}", out) for name, out in trace.items()]
        if torch_tracer is not None:
            outputs = torch_tracer(item.image)
            for name, out in trace.items():
                if name not in outputs:
                    raise FormatError(f"{weights}: torch gave no output for layer {name!r}")
                if outputs[name].shape != out.shape:
                    raise FormatError(f"{weights}: torch output of layer {name!r} has shape "
                                      f"{outputs[name].shape}, the reference {out.shape}")
                tensors.append((f"torch.{i}.{name}", outputs[name]))
    manifest = {
        "weights": Path(weights).name,
        "weights_sha256": file_sha256(weights),
        "weights_data_sha256": model.data_sha256,
        "pdinfer_version": __version__,
        "numpy_version": np.__version__,
        "numba_version": numba.__version__,
        "machine": platform.machine(),
        "torch_version": torch_version if torch_tracer is not None else None,
        "torch_atol_factor": TORCH_ATOL_FACTOR,
        "exp_layer_types": list(EXP_LAYER_TYPES),
        "seed": seed,
        "inputs": [{"name": item.name, "kind": item.kind} for item in inputs],
        "layers": list(model.layer_names),
    }
    metadata = {"format": GOLDEN_FORMAT, "format_version": GOLDEN_VERSION,
                "manifest": json.dumps(manifest, separators=(",", ":"), allow_nan=False),
                "producer": f"pdinfer {__version__} golden"}
    path = golden_path(weights, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_container(path, metadata, tensors)
    return path


def _check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    def fail(what: str) -> FormatError:
        return FormatError(f"{where}: manifest {what}")

    if not isinstance(manifest, dict):
        raise fail("is not a JSON object")
    for key in ("weights", "weights_sha256", "inputs", "layers", "torch_atol_factor"):
        if key not in manifest:
            raise fail(f"lacks the key {key!r}")
    inputs, layers = manifest["inputs"], manifest["layers"]
    if (not isinstance(inputs, list) or not inputs
            or not all(isinstance(e, dict) and e.get("name") == f"input.{i}" for i, e in enumerate(inputs))):
        raise fail("'inputs' must be a non-empty list of {\"name\": \"input.<i>\", ...} in order")
    if (not isinstance(layers, list) or not layers or not all(isinstance(n, str) and n for n in layers)
            or len(set(layers)) != len(layers)):
        raise fail("'layers' must be a non-empty list of unique layer names")
    factor = manifest["torch_atol_factor"]
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < 1:
        raise fail(f"'torch_atol_factor' must be a number in (0, 1), got {factor!r}")
    if not isinstance(manifest["weights_sha256"], str):
        raise fail("'weights_sha256' must be a string")
    return manifest


def read_golden(path: str | os.PathLike) -> Golden:
    """Read and check a golden bundle: every input has every layer's reference output (and torch's, or none)."""
    container = read_container(path)
    meta, where = container.metadata, container.path
    check_metadata(container, GOLDEN_FORMAT, GOLDEN_VERSION, ("manifest",))
    manifest = _check_manifest(parse_json(meta["manifest"], "metadata 'manifest'", where), where)
    tensors = container.tensors
    has_torch = any(name.startswith("torch.") for name in tensors)
    sources = ("reference", "torch") if has_torch else ("reference",)
    expected = [f"input.{i}" for i in range(len(manifest["inputs"]))]
    expected += [f"{source}.{i}.{layer}" for i in range(len(manifest["inputs"]))
                 for source in sources for layer in manifest["layers"]]
    missing = [name for name in expected if name not in tensors]
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise FormatError(f"{where}: tensors do not match the manifest"
                          + (f"; missing {missing[:5]}" if missing else "")
                          + (f"; unexpected {extra[:5]}" if extra else ""))
    per_input = range(len(manifest["inputs"]))
    return Golden(
        where, manifest,
        inputs=[tensors[f"input.{i}"] for i in per_input],
        reference=[{layer: tensors[f"reference.{i}.{layer}"] for layer in manifest["layers"]} for i in per_input],
        torch=([{layer: tensors[f"torch.{i}.{layer}"] for layer in manifest["layers"]} for i in per_input]
               if has_torch else None))


def find_torch_tracer(weights: str | os.PathLike) -> tuple[Optional[TorchTracer], Optional[str], str]:
    """A torch tracer of `weights` and torch's version, or (None, None, why there is none).

    There is one when torch and the exporter import and the file holds a seed model
    (exporter/golden.py rebuilds it in PyTorch with the file's weights).
    """
    try:
        import torch
        from exporter import golden as torch_golden
    except ImportError as e:
        return None, None, f"torch or the exporter package is not importable ({e})"
    try:
        return torch_golden.seed_model_tracer(weights), torch.__version__, ""
    except torch_golden.NotASeedModel as e:
        return None, None, str(e)
