"""Load a weight file into a checked graph of layers (docs/FORMAT.md, sections 2 to 4)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import FormatError, UnsupportedLayerError
from .format import Container, is_int, parse_json, read_weights, storage
from .layers import LAYER_TYPES, Layer, Shape

INPUT = "input"
ACTIVATIONS_KEY = "activations"  # the metadata key of an int8-computing file (FORMAT.md 1.3)
MAX_VALUES = 1 << 27  # the most values any layer may output for one image
LAYER_KEYS = {"name", "type", "inputs", "params", "tensors"}


@dataclass(frozen=True)
class Graph:
    """The checked layers of a weight file, their output shapes for one image, and its metadata."""

    path: str
    layers: list[Layer]
    shapes: dict[str, Shape]  # layer name (and "input") -> output shape with N = 1
    input_shape: tuple[int, ...]  # (C, H, W)
    classes: list[str]
    data_sha256: str  # SHA-256 of the data section: the weights' identity
    header_verified: bool  # the whole file was checksummed (False for version 1 files)
    activations: Optional[dict] = None  # value -> quantize.Quantization: the model computes in int8 (FORMAT.md 1.3)

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.layers[-1].name]


def _input_shape(text: str, where: str) -> tuple[int, ...]:
    shape = parse_json(text, "metadata 'input_shape'", where)
    if (not isinstance(shape, list) or len(shape) != 3 or not all(is_int(d) and d >= 1 for d in shape)
            or int(np.prod(shape, dtype=object)) > MAX_VALUES):
        raise FormatError(f"{where}: metadata 'input_shape' must be [C, H, W] positive integers "
                          f"with at most {MAX_VALUES} values, got {text!r}")
    return tuple(shape)


def _classes(text: str, where: str) -> list[str]:
    classes = parse_json(text, "metadata 'classes'", where)
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise FormatError(f"{where}: metadata 'classes' must be a JSON array of strings")
    return classes


def _finite(array: np.ndarray) -> bool:
    """No NaN or infinity in a tensor of any stored type (BF16: bit patterns, I8: always)."""
    if storage(array) == "BF16":
        return bool(((array & 0x7F80) != 0x7F80).all())
    return array.dtype == np.int8 or bool(np.isfinite(array).all())


def _build_layer(entry: Any, index: int, shapes: dict[str, Shape], container: Container,
                 used: dict[str, str]) -> Layer:
    """Check one layer-list entry against everything before it and return the loaded layer."""
    where = f"{container.path}: layer {index}"
    if not isinstance(entry, dict) or set(entry) != LAYER_KEYS:
        raise FormatError(f"{where} must be an object with exactly the keys {sorted(LAYER_KEYS)}")
    name, type_name, inputs = entry["name"], entry["type"], entry["inputs"]
    params, tensor_names = entry["params"], entry["tensors"]
    if not isinstance(name, str) or not name or name in shapes:
        raise FormatError(f"{where}: name {name!r} is empty, reserved or used twice")
    where = f"{container.path}: layer {name!r}"
    if not isinstance(type_name, str) or type_name not in LAYER_TYPES:
        raise UnsupportedLayerError(f"{where}: layer type {type_name!r} is not supported "
                                    f"(supported: {', '.join(sorted(LAYER_TYPES))})")
    cls = LAYER_TYPES[type_name]
    if (not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs)
            or not (len(inputs) == cls.num_inputs or cls.variadic and len(inputs) > cls.num_inputs)):
        count = f"{cls.num_inputs} or more" if cls.variadic else cls.num_inputs
        raise FormatError(f"{where}: 'inputs' must list {count} layer name(s), got {inputs!r}")
    for i in inputs:
        if i not in shapes:
            raise FormatError(f"{where}: input {i!r} is not the graph input or an earlier layer")
    if not isinstance(params, dict) or not isinstance(tensor_names, dict):
        raise FormatError(f"{where}: 'params' and 'tensors' must be JSON objects")

    layer = cls(sys.intern(name), [sys.intern(i) for i in inputs])  # one copy of each name for all models
    try:
        layer.load_param(params)
        expected = layer.tensor_shapes()
    except FormatError as e:
        raise type(e)(f"{container.path}: {e}") from None
    weight = container.tensors.get(tensor_names.get("weight")) if isinstance(tensor_names.get("weight"), str) else None
    int8 = layer.compressible and weight is not None and storage(weight) == "I8"
    if int8:
        expected["weight_scale"] = (expected["weight"][0],)
    if set(tensor_names) != set(expected):
        hint = (" (an I8 weight needs its weight_scale)" if int8 else
                " (weight_scale goes only with an I8 weight)" if "weight_scale" in tensor_names else "")
        raise FormatError(f"{where}: tensors must have the roles {sorted(expected)}, got "
                          f"{sorted(tensor_names)}{hint}")
    arrays = {}
    for role, tensor in tensor_names.items():
        if not isinstance(tensor, str) or tensor not in container.tensors:
            raise FormatError(f"{where}: tensor {tensor!r} for role {role!r} is not in the file")
        if tensor in used:
            raise FormatError(f"{where}: tensor {tensor!r} is already used by layer {used[tensor]!r}")
        array = container.tensors[tensor]
        if array.shape != expected[role]:
            raise FormatError(f"{where}: tensor {tensor!r} ({role}) has shape {list(array.shape)}, "
                              f"expected {list(expected[role])}")
        kind = storage(array)
        if kind != "F32" and not (role == "weight" and layer.compressible):
            raise FormatError(f"{where}: tensor {tensor!r} ({role}) is stored as {kind}; only the weight "
                              f"of Conv2d and Linear may be F16, BF16 or I8")
        if not _finite(array):
            raise FormatError(f"{where}: tensor {tensor!r} holds NaN or infinite values")
        if role == "weight_scale" and not (array > 0).all():
            raise FormatError(f"{where}: tensor {tensor!r} (weight_scale) must be > 0 for every output "
                              f"channel, holds {float(array.min())!r}")
        used[tensor] = name
        arrays[role] = array
    try:
        layer.load_model(arrays)
        shape = layer.output_shape([shapes[i] for i in inputs])
    except FormatError as e:
        raise type(e)(f"{container.path}: {e}") from None
    if int(np.prod(shape, dtype=object)) > MAX_VALUES:
        raise FormatError(f"{where}: output shape {list(shape)} exceeds {MAX_VALUES} values per image")
    shapes[name] = shape
    return layer


def load_graph(path: str | os.PathLike, *, verify_checksum: bool = True) -> Graph:
    """Read a weight file and check every layer, tensor, reference and shape in it."""
    container, entries = read_weights(path, verify_checksum=verify_checksum)
    where = container.path
    input_shape = _input_shape(container.metadata["input_shape"], where)
    classes = _classes(container.metadata["classes"], where)

    shapes: dict[str, Shape] = {INPUT: (1, *input_shape)}
    used: dict[str, str] = {}
    layers = [_build_layer(entry, index, shapes, container, used) for index, entry in enumerate(entries)]

    if list(used) != list(container.tensors):
        unused = [t for t in container.tensors if t not in used]
        raise FormatError(f"{where}: tensors not used by any layer: {unused}" if unused else
                          f"{where}: tensors are not stored in the order the layers use them")
    consumed = {i for layer in layers for i in layer.inputs}
    dangling = [layer.name for layer in layers[:-1] if layer.name not in consumed]
    if dangling:
        raise FormatError(f"{where}: layers whose output nobody uses (only the last layer may be "
                          f"the output): {dangling}")
    n_outputs = int(np.prod(shapes[layers[-1].name][1:]))
    if len(classes) != n_outputs:
        raise FormatError(f"{where}: {len(classes)} class names for {n_outputs} output values")
    activations = None
    if ACTIVATIONS_KEY in container.metadata:
        from .quantize import decode  # (quantize.py builds on this module)
        activations = decode(container.metadata[ACTIVATIONS_KEY], shapes, where)
    graph = Graph(where, layers, shapes, input_shape, classes, container.data_sha256, container.header_verified,
                  activations)
    if activations is not None:
        from .quantize import check_complete
        check_complete(graph)
    return graph
