"""The .pdw container: a strict, safe subset of safetensors (see docs/FORMAT.md).

`read_container` and `write_container` move tensors and string metadata in and out of a file;
they know nothing of layers. `read_weights`/`write_weights` add the weight-file metadata.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import FormatError

FORMAT_NAME = "pdinfer"
FORMAT_VERSION = "1"
HEADER_ALIGN = 64
MAX_HEADER_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
MAX_TENSOR_RANK = 4


@dataclass(frozen=True)
class Container:
    """What a container file holds: string metadata and read-only float32 tensors in data order."""

    path: str
    metadata: dict[str, str]
    tensors: dict[str, np.ndarray]
    data_sha256: str


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of the range of a double")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value: a scalar is 0, `[]` is 1, `[[]]` is 2."""
    depth, level = 0, [value]
    while True:
        level = [v for v in level if isinstance(v, (dict, list))]
        if not level:
            return depth
        depth += 1
        level = [c for v in level for c in (v.values() if isinstance(v, dict) else v)]


def parse_json(text: str | bytes, what: str, where: str) -> Any:
    """Parse strict JSON (no duplicate keys, no NaN/Infinity, bounded depth, Unicode strings) or
    raise FormatError."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_unique_object, parse_constant=_reject_constant,
                           parse_float=_finite_float)
    except UnicodeDecodeError as e:
        raise FormatError(f"{where}: {what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise FormatError(f"{where}: {what} is nested too deeply") from None
    except ValueError as e:
        raise FormatError(f"{where}: {what} is not valid JSON: {e}") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise FormatError(f"{where}: {what} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # json.loads turns an escaped lone surrogate ("\ud800") into one
        raise FormatError(f"{where}: {what} escapes a lone UTF-16 surrogate, which is not Unicode text") from None
    return value


def is_int(value: Any) -> bool:
    """True for a JSON integer (Python's bool is excluded)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_entry(name: str, entry: Any, data_size: int, where: str) -> tuple[int, int, tuple[int, ...]]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{where}: tensor {name!r} must have exactly dtype, shape and data_offsets")
    if entry["dtype"] != "F32":
        raise FormatError(f"{where}: tensor {name!r} has dtype {entry['dtype']!r}; only 'F32' is supported")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_TENSOR_RANK
            or not all(is_int(d) and d >= 1 for d in shape)):
        raise FormatError(f"{where}: tensor {name!r} has invalid shape {shape!r} "
                          f"(1 to {MAX_TENSOR_RANK} dimensions, each >= 1)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets):
        raise FormatError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise FormatError(f"{where}: tensor {name!r} data_offsets {offsets} lie outside the "
                          f"{data_size}-byte data section")
    if end - begin != 4 * int(np.prod(shape, dtype=object)):
        raise FormatError(f"{where}: tensor {name!r} has {end - begin} bytes but shape {shape} "
                          f"needs {4 * int(np.prod(shape, dtype=object))}")
    return begin, end, tuple(shape)


def read_container(path: str | os.PathLike, *, verify_checksum: bool = True) -> Container:
    """Read and check a container file; tensors are read-only views of one in-memory copy."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if file_size < 8:
                raise FormatError(f"{where}: file is {file_size} bytes, too short for a header length")
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > MAX_HEADER_BYTES:
                raise FormatError(f"{where}: header length {header_len} exceeds the "
                                  f"{MAX_HEADER_BYTES}-byte limit")
            if 8 + header_len > file_size:
                raise FormatError(f"{where}: header length {header_len} runs past the end of the "
                                  f"{file_size}-byte file (truncated?)")
            if (8 + header_len) % HEADER_ALIGN:
                raise FormatError(f"{where}: data section starts at byte {8 + header_len}, "
                                  f"not a multiple of {HEADER_ALIGN}")
            raw = f.read(file_size - 8)
    except OSError as e:
        raise FormatError(f"{where}: cannot read file: {e.strerror or e}") from None
    if len(raw) != file_size - 8:
        raise FormatError(f"{where}: file changed size while being read")

    header_text = raw[:header_len].rstrip(b" ")
    if not (header_text.startswith(b"{") and header_text.endswith(b"}")):
        raise FormatError(f"{where}: header is not a JSON object followed only by spaces")
    header = parse_json(header_text, "header", where)
    data = memoryview(raw)[header_len:]
    data_size = len(data)

    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{where}: __metadata__ is missing or holds non-string values")

    spans = sorted((_tensor_entry(name, entry, data_size, where), name) for name, entry in header.items())
    expected_begin = 0
    tensors: dict[str, np.ndarray] = {}
    for (begin, end, shape), name in spans:
        if begin != expected_begin:
            kind = "overlaps the previous tensor" if begin < expected_begin else "leaves a gap before it"
            raise FormatError(f"{where}: tensor {name!r} at byte {begin} {kind} "
                              f"(expected it at byte {expected_begin})")
        array = np.frombuffer(data, dtype="<f4", count=(end - begin) // 4, offset=begin).reshape(shape)
        tensors[name] = array
        expected_begin = end
    if expected_begin != data_size:
        raise FormatError(f"{where}: {data_size - expected_begin} bytes after the last tensor "
                          f"(tensors cover {expected_begin} of {data_size} data bytes)")

    digest = hashlib.sha256(data).hexdigest()
    declared = metadata.get("data_sha256")
    if verify_checksum and declared is not None and declared != digest:
        raise FormatError(f"{where}: data checksum mismatch: the file says {declared}, "
                          f"the data hashes to {digest} (corrupted data section)")
    return Container(where, metadata, tensors, digest)


def write_container(path: str | os.PathLike, metadata: Mapping[str, str],
                    tensors: Sequence[tuple[str, np.ndarray]]) -> None:
    """Write tensors (in the given order, as float32) and metadata; adds `data_sha256`."""
    arrays = [(name, np.ascontiguousarray(t, dtype="<f4")) for name, t in tensors]
    names = [name for name, _ in arrays]
    if len(set(names)) != len(names) or "__metadata__" in names:
        raise FormatError(f"{path}: tensor names must be unique and not '__metadata__'")
    data = b"".join(a.tobytes() for _, a in arrays)
    header: dict[str, Any] = {"__metadata__": {**metadata, "data_sha256": hashlib.sha256(data).hexdigest()}}
    offset = 0
    for name, a in arrays:
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % HEADER_ALIGN)
    tmp = Path(f"{path}.tmp{os.getpid()}")
    tmp.write_bytes(struct.pack("<Q", len(text)) + text + data)
    os.replace(tmp, path)


def check_metadata(container: Container, format_name: str, version: str, keys: Sequence[str]) -> None:
    """Raise FormatError unless the container is `format_name` at `version` and has every key."""
    meta, where = container.metadata, container.path
    if meta.get("format") != format_name:
        raise FormatError(f"{where}: metadata 'format' is {meta.get('format')!r}, expected {format_name!r}")
    if meta.get("format_version") != version:
        raise FormatError(f"{where}: {format_name} format version {meta.get('format_version')!r} is not "
                          f"supported (this pdinfer reads version {version})")
    for key in keys:
        if key not in meta:
            raise FormatError(f"{where}: metadata key {key!r} is missing")


def read_weights(path: str | os.PathLike, *, verify_checksum: bool = True) -> tuple[Container, list[Any]]:
    """Read a weight file: its container and its parsed (not yet validated) layer list."""
    container = read_container(path, verify_checksum=verify_checksum)
    meta, where = container.metadata, container.path
    check_metadata(container, FORMAT_NAME, FORMAT_VERSION, ("layers", "input_shape", "classes", "data_sha256"))
    layers = parse_json(meta["layers"], "metadata 'layers'", where)
    if not isinstance(layers, list) or not layers:
        raise FormatError(f"{where}: metadata 'layers' must be a non-empty JSON array")
    return container, layers


def write_weights(path: str | os.PathLike, layers: Sequence[Mapping[str, Any]],
                  tensors: Mapping[str, np.ndarray], *, input_shape: Sequence[int],
                  classes: Sequence[str], producer: str = "") -> None:
    """Write a weight file: tensors in layer order, roles in the order each layer lists them."""
    ordered = [(name, tensors[name]) for layer in layers for name in layer.get("tensors", {}).values()]
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layers": json.dumps(list(layers), separators=(",", ":"), allow_nan=False),
        "input_shape": json.dumps([int(d) for d in input_shape]),
        "classes": json.dumps([str(c) for c in classes]),
    }
    if producer:
        metadata["producer"] = producer
    write_container(path, metadata, ordered)
