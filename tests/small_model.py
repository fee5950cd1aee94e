"""A small valid weight file written with pdinfer.format.write_weights directly (no torch).

Conv2d + BatchNorm2d + LeakyReLU, a depthwise Conv2d + BatchNorm2d + ReLU6, a residual Add,
a pointwise Conv2d with bias, MaxPool2d, GlobalAvgPool, Linear and Softmax: every kind of step
the planner fuses, on a 1 x 10 x 12 input, in a file of a few kilobytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from pdinfer.format import write_container, write_weights

INPUT_SHAPE = (1, 10, 12)  # (C, H, W)
CLASSES = ["corona", "void", "surface"]


def _conv(name: str, inputs: str, cin: int, cout: int, k: int, groups: int, bias: bool) -> dict:
    pad = k // 2
    tensors = {"weight": f"{name}.weight"} | ({"bias": f"{name}.bias"} if bias else {})
    return {"name": name, "type": "Conv2d", "inputs": [inputs],
            "params": {"in_channels": cin, "out_channels": cout, "kernel_size": [k, k],
                       "stride": [1, 1], "padding": [pad, pad, pad, pad], "dilation": [1, 1],
                       "groups": groups, "bias": bias},
            "tensors": tensors}


def _bn(name: str, inputs: str, channels: int) -> dict:
    return {"name": name, "type": "BatchNorm2d", "inputs": [inputs],
            "params": {"num_features": channels, "eps": 1e-5},
            "tensors": {role: f"{name}.{role}" for role in ("weight", "bias", "running_mean", "running_var")}}


def _plain(name: str, type_name: str, inputs: list[str], params: dict | None = None) -> dict:
    return {"name": name, "type": type_name, "inputs": inputs, "params": params or {}, "tensors": {}}


def small_layers() -> list[dict]:
    """The layer list of the small model (FORMAT.md section 2)."""
    return [
        _conv("conv0", "input", 1, 4, 3, 1, False),
        _bn("bn0", "conv0", 4),
        _plain("act0", "LeakyReLU", ["bn0"], {"negative_slope": 0.2}),
        _conv("dw", "act0", 4, 4, 3, 4, False),
        _bn("bn1", "dw", 4),
        _plain("act1", "ReLU6", ["bn1"]),
        _plain("add", "Add", ["act0", "act1"]),
        _conv("pw", "add", 4, 8, 1, 1, True),
        _plain("pool", "MaxPool2d", ["pw"], {"kernel_size": [2, 2], "stride": [2, 2],
                                            "padding": [0, 0, 0, 0], "dilation": [1, 1],
                                            "ceil_mode": False}),
        _plain("gap", "GlobalAvgPool", ["pool"], {"keepdim": False}),
        {"name": "fc", "type": "Linear", "inputs": ["gap"],
         "params": {"in_features": 8, "out_features": len(CLASSES), "bias": True},
         "tensors": {"weight": "fc.weight", "bias": "fc.bias"}},
        _plain("softmax", "Softmax", ["fc"], {"dim": 1}),
    ]


def small_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights of the right shapes (BatchNorm variances positive)."""
    rng = np.random.default_rng(seed)
    shapes = {"conv0.weight": (4, 1, 3, 3), "dw.weight": (4, 1, 3, 3), "pw.weight": (8, 4, 1, 1),
              "pw.bias": (8,), "fc.weight": (len(CLASSES), 8), "fc.bias": (len(CLASSES),)}
    for bn in ("bn0", "bn1"):
        shapes |= {f"{bn}.{role}": (4,) for role in ("weight", "bias", "running_mean", "running_var")}
    tensors = {name: rng.normal(0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}
    for bn in ("bn0", "bn1"):
        tensors[f"{bn}.running_var"] = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    return tensors


def write_small_model(path: str | Path, layers: list[dict] | None = None,
                      tensors: dict[str, np.ndarray] | None = None, **kwargs) -> Path:
    """Write the small model (or a variant of its layers/tensors/metadata) to `path`."""
    options = {"input_shape": INPUT_SHAPE, "classes": CLASSES, "producer": "tests"} | kwargs
    write_weights(path, small_layers() if layers is None else layers,
                  small_tensors() if tensors is None else tensors, **options)
    return Path(path)


def sample_images(n: int, seed: int = 1) -> np.ndarray:
    """(n, 1, 10, 12) float32 images in [0, 1]."""
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE), dtype=np.float32)


def write_raw(path: str | Path, layers_json: str | None = None,
              tensors: list[tuple[str, np.ndarray]] | None = None, **metadata: str) -> Path:
    """Write a container with the small model's metadata, overridden by `metadata` (None drops
    a key), its layer list as the text `layers_json`, and `tensors` in that order: for files
    write_weights would refuse to write."""
    base = {"format": "pdinfer", "format_version": "2",
            "layers": json.dumps(small_layers()) if layers_json is None else layers_json,
            "input_shape": json.dumps(list(INPUT_SHAPE)), "classes": json.dumps(CLASSES)}
    base |= metadata
    weights = small_tensors()
    ordered = [(name, weights[name]) for name in TENSOR_ORDER] if tensors is None else tensors
    write_container(path, {k: v for k, v in base.items() if v is not None}, ordered)
    return Path(path)


# The tensor names in data order (layer order, roles in the order each layer lists them).
TENSOR_ORDER = [name for layer in small_layers() for name in layer["tensors"].values()]


def reseal(blob: bytes) -> bytes:
    """`blob` with its `file_sha256` recomputed by FORMAT.md's rule (the hash of the file with the
    64 digits read as '0'), so that an edited header passes the checksum and reaches the check a
    test is about. A file without the key is returned as it is."""
    key = b'"file_sha256":"'
    at = blob.find(key) + len(key)
    if at < len(key):
        return blob
    zeroed = blob[:at] + b"0" * 64 + blob[at + 64:]
    return blob[:at] + hashlib.sha256(zeroed).hexdigest().encode() + blob[at + 64:]
