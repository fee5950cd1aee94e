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

from pdinfer.builder import LayerList, conv2d_params, max_pool2d_params
from pdinfer.format import write_container, write_weights

INPUT_SHAPE = (1, 10, 12)  # (C, H, W)
CLASSES = ["corona", "void", "surface"]


def _small(seed: int = 0) -> LayerList:
    layers = LayerList(INPUT_SHAPE, seed)
    layers.add("Conv2d", name="conv0", **conv2d_params(1, 4, 3, padding=1, bias=False))
    layers.add("BatchNorm2d", name="bn0", num_features=4, eps=1e-5)
    layers.add("LeakyReLU", name="act0", negative_slope=0.2)
    layers.add("Conv2d", name="dw", **conv2d_params(4, 4, 3, padding=1, groups=4, bias=False))
    layers.add("BatchNorm2d", name="bn1", num_features=4, eps=1e-5)
    layers.add("ReLU6", name="act1")
    layers.add("Add", ["act0", "act1"], name="add")
    layers.add("Conv2d", name="pw", **conv2d_params(4, 8, 1))
    layers.add("MaxPool2d", name="pool", **max_pool2d_params(2))
    layers.add("GlobalAvgPool", name="gap", keepdim=False)
    layers.add("Linear", name="fc", in_features=8, out_features=len(CLASSES), bias=True)
    layers.add("Softmax", name="softmax", dim=1)
    return layers


def small_layers() -> list[dict]:
    """The layer list of the small model (FORMAT.md section 2)."""
    return _small().entries


def small_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random float32 weights of the right shapes (BatchNorm variances positive)."""
    return _small(seed).tensors


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
