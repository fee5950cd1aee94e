"""The .pdw container: a strict, safe subset of safetensors (see docs/FORMAT.md).

`read_container` and `ContainerWriter` (or its wrapper `write_container`) move tensors and string
metadata in and out of a file; they know nothing of layers. Every file they write carries
`file_sha256`, a SHA-256 of the whole file, which the reader verifies whenever it is present.
One parser checks a container through a byte source: `read_container` reads the file into memory
(weight files), `open_container` checks a file of any size in one streaming pass and reads its
tensors one at a time when asked (golden bundles). `read_weights`/`write_weights` add the
weight-file metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import mmap
import os
import itertools
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, Union

import numpy as np

from .errors import FormatError

FORMAT_NAME = "pdinfer"
FORMAT_VERSION = "2"  # what write_weights writes
# The metadata keys every weight file has, by the versions read_weights reads. Version 1 files
# (before the whole-file checksum) still load: their data is verified, their header is not.
WEIGHT_KEYS = {"1": ("layers", "input_shape", "classes", "data_sha256"),
               "2": ("layers", "input_shape", "classes", "file_sha256")}
FILE_CHECKSUM = "file_sha256"
DATA_CHECKSUM = "data_sha256"
HEADER_ALIGN = 64
MAX_HEADER_BYTES = 16 << 20
MAX_JSON_DEPTH = 64
MAX_TENSOR_RANK = 4
# The tensor types (safetensors dtype -> the numpy dtype a tensor is read as). BF16 has no numpy
# type: its tensors are uint16 arrays of the bit patterns (dequantize converts them).
DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "I8": np.dtype("i1")}


def storage(array: np.ndarray) -> str:
    """The safetensors dtype a tensor read as `array` is stored as (F32 for any other dtype)."""
    return next((name for name, dtype in DTYPES.items() if dtype == array.dtype), "F32")


def dequantize(weight: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """A stored weight as float32 (docs/KERNELS.md, "Compressed weights"): float32 as it is; F16
    exactly; BF16 exactly (its 16 bits are the high half of the float32's); I8 as float32(q) * scale
    of its output channel, one float32 multiply.

    weight: (O, ...) float32, float16, uint16 (BF16 bit patterns) or int8
    scale:  (O,) float32 for an int8 weight, else None
    returns (O, ...) float32 (weight itself if it is float32)
    """
    if weight.dtype == np.float32:
        return weight
    if weight.dtype == np.float16:
        return weight.astype(np.float32)
    if weight.dtype == np.uint16:
        return (weight.astype(np.uint32) << 16).view(np.float32)
    per_channel = scale.reshape(-1, *(1,) * (weight.ndim - 1))
    return weight.astype(np.float32) * per_channel


@dataclass(frozen=True)
class Container:
    """What a container file holds: string metadata and read-only tensors in data order (numpy
    dtypes as DTYPES maps them)."""

    path: str
    metadata: dict[str, str]
    tensors: Mapping[str, np.ndarray]  # name -> tensor; read_container: in memory, open_container: read when looked up
    data_sha256: str  # SHA-256 of the data section, computed (the weights' identity)
    header_verified: bool  # True if a whole-file checksum (header and data) was verified


class _Span(NamedTuple):
    """Where a tensor lies: byte offsets in the data section, its shape and its element type."""

    begin: int
    end: int
    shape: tuple[int, ...]
    dtype: np.dtype  # a value of DTYPES


class _Layout(NamedTuple):
    """A checked container without its tensor bytes: what _parse_container returns."""

    metadata: dict[str, str]
    data_begin: int  # file offset of the data section
    spans: dict[str, _Span]  # tensor name -> span, in data order
    data_sha256: str
    header_verified: bool


# (file offset, length) -> exactly that many bytes of the file, or FormatError.
_ReadAt = Callable[[int, int], "bytes | memoryview"]
HASH_BLOCK = 1 << 20  # bytes hashed per read in the checksum pass


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


def _tensor_entry(name: str, entry: Any, data_size: int, where: str) -> _Span:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"{where}: tensor {name!r} must have exactly dtype, shape and data_offsets")
    if not isinstance(entry["dtype"], str) or entry["dtype"] not in DTYPES:
        raise FormatError(f"{where}: tensor {name!r} has dtype {entry['dtype']!r}; supported: "
                          f"{', '.join(map(repr, DTYPES))}")
    dtype = DTYPES[entry["dtype"]]  # a str key: checked above
    shape, offsets = entry["shape"], entry["data_offsets"]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= MAX_TENSOR_RANK
            or not all(is_int(d) and d >= 1 for d in shape)):
        raise FormatError(f"{where}: tensor {name!r} has invalid shape {shape!r} "
                          f"(1 to {MAX_TENSOR_RANK} dimensions, each >= 1)")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets):
        raise FormatError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        truncated = " (the file is truncated, or the offsets are wrong)" if end > data_size else ""
        raise FormatError(f"{where}: tensor {name!r} data_offsets {offsets} lie outside the "
                          f"{data_size}-byte data section{truncated}")
    needed = dtype.itemsize * int(np.prod(shape, dtype=object))
    if end - begin != needed:
        raise FormatError(f"{where}: tensor {name!r} has {end - begin} bytes but shape {shape} "
                          f"of {entry['dtype']} needs {needed}")
    return _Span(begin, end, tuple(shape), dtype)


def _array(buffer: Any, offset: int, span: _Span) -> np.ndarray:
    """The tensor of `span` as a read-only array over `buffer` (bytes-like), starting at byte `offset`."""
    count = (span.end - span.begin) // span.dtype.itemsize
    return np.frombuffer(buffer, dtype=span.dtype, count=count, offset=offset).reshape(span.shape)


def _file_digest(prefix: bytes, header: bytes, declared: str, where: str) -> "hashlib._Hash":
    """A SHA-256 fed with the length prefix and the header, the 64 hex characters of `declared`
    replaced by '0': the whole-file checksum once the data section is added.

    `declared` must appear in the header exactly once as the bytes "file_sha256":"<declared>".
    """
    if not re.fullmatch("[0-9a-f]{64}", declared):
        raise FormatError(f"{where}: metadata '{FILE_CHECKSUM}' must be 64 lowercase hex digits, "
                          f"got {declared!r}")
    needle = f'"{FILE_CHECKSUM}":"{declared}"'.encode()
    position = header.find(needle)
    if position < 0 or header.find(needle, position + 1) >= 0:
        raise FormatError(f"{where}: the header must hold the bytes \"{FILE_CHECKSUM}\":\"<64 hex>\" "
                          f"exactly once (unescaped, no spaces), found them "
                          f"{header.count(needle)} times")
    digits = position + len(FILE_CHECKSUM) + 4  # after '"file_sha256":"'
    digest = hashlib.sha256(prefix)
    digest.update(memoryview(header)[:digits])
    digest.update(b"0" * 64)
    digest.update(memoryview(header)[digits + 64:])
    return digest


# What a file that is no container may be, by its first bytes (a weight file given in the wrong place).
KNOWN_FILES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\x93NUMPY", "a NumPy .npy array"),
               (b"PK\x03\x04", "a ZIP archive, such as a PyTorch .pt file or a NumPy .npz"))


def _known_file(prefix: bytes) -> str | None:
    """What the first bytes of a file that is no container say it is, or None."""
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle, such as an old-style PyTorch .pt file"
    return next((what for magic, what in KNOWN_FILES if prefix.startswith(magic)), None)


def _parse_container(read_at: _ReadAt, file_size: int, where: str, *, verify_checksum: bool,
                     kind: str) -> _Layout:
    """Check a container of `file_size` bytes read through `read_at`: its header, its tensor
    entries, and (with `verify_checksum`) its declared file_sha256 and data_sha256, hashing the
    data section in blocks of HASH_BLOCK bytes. `kind` names the expected file in the error for
    a file that is no container at all."""

    prefix = bytes(read_at(0, min(8, file_size)))

    def alien(why: str) -> FormatError:
        known = _known_file(prefix)
        return FormatError(f"{where}: not a {kind} ({f'it is {known}' if known else why})")

    if file_size < 8:
        raise alien(f"file is {file_size} bytes, too short for a header length")
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES:
        raise alien(f"its first 8 bytes give a header length of {header_len}, which exceeds "
                    f"the {MAX_HEADER_BYTES}-byte limit")
    if 8 + header_len > file_size:
        raise FormatError(f"{where}: header length {header_len} runs past the end of the "
                          f"{file_size}-byte file (truncated?)")
    header_bytes = bytes(read_at(8, header_len))
    header_text = header_bytes.rstrip(b" ")
    if not header_text.startswith(b"{"):
        raise alien("the header after the 8-byte length is not a JSON object")
    if not header_text.endswith(b"}"):
        raise FormatError(f"{where}: header is not a JSON object followed only by spaces")
    header = parse_json(header_text, "header", where)
    data_begin = 8 + header_len
    data_size = file_size - data_begin

    if "__metadata__" not in header:
        raise alien("the header has no __metadata__: a safetensors file without pdinfer's metadata?")
    metadata = header.pop("__metadata__")
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError(f"{where}: __metadata__ is not an object or holds non-string values")
    format_name = metadata.get("format")
    if format_name is None or not (format_name == FORMAT_NAME or format_name.startswith(FORMAT_NAME + "-")):
        raise alien(f"metadata 'format' is {format_name!r}, not {FORMAT_NAME!r} or {FORMAT_NAME}-*")
    if data_begin % HEADER_ALIGN:
        raise FormatError(f"{where}: data section starts at byte {data_begin}, "
                          f"not a multiple of {HEADER_ALIGN}")

    spans: dict[str, _Span] = {}
    expected_begin = 0
    entries = [(_tensor_entry(name, entry, data_size, where), name) for name, entry in header.items()]
    for span, name in sorted(entries, key=lambda item: (item[0].begin, item[0].end, item[1])):
        if span.begin != expected_begin:
            relation = "overlaps the previous tensor" if span.begin < expected_begin else "leaves a gap before it"
            raise FormatError(f"{where}: tensor {name!r} at byte {span.begin} {relation} "
                              f"(expected it at byte {expected_begin})")
        spans[name] = span
        expected_begin = span.end
    if expected_begin != data_size:
        raise FormatError(f"{where}: {data_size - expected_begin} bytes after the last tensor "
                          f"(tensors cover {expected_begin} of {data_size} data bytes)")

    declared_file = metadata.get(FILE_CHECKSUM) if verify_checksum else None
    file_digest = None if declared_file is None else _file_digest(prefix, header_bytes, declared_file, where)
    data_digest = hashlib.sha256()
    for offset in range(data_begin, file_size, HASH_BLOCK):
        block = read_at(offset, min(HASH_BLOCK, file_size - offset))
        data_digest.update(block)
        if file_digest is not None:
            file_digest.update(block)
    if file_digest is not None and file_digest.hexdigest() != declared_file:
        raise FormatError(f"{where}: whole-file SHA-256 (header and data) mismatch: the file says "
                          f"{declared_file}, its bytes hash to {file_digest.hexdigest()} (the file was "
                          f"changed or corrupted after it was written)")
    digest = data_digest.hexdigest()
    declared = metadata.get(DATA_CHECKSUM)
    if verify_checksum and declared is not None and declared != digest:
        raise FormatError(f"{where}: data checksum mismatch: the file says {declared}, "
                          f"the data hashes to {digest} (corrupted data section)")
    return _Layout(metadata, data_begin, spans, digest, declared_file is not None)


def _pread(fd: int, offset: int, length: int, where: str) -> bytes:
    """Exactly `length` bytes at `offset`, or FormatError if the file has become shorter."""
    block = os.pread(fd, length, offset)
    if len(block) != length:
        raise FormatError(f"{where}: file changed while being read (no byte {offset + len(block)} any more)")
    return block


class _WholeFile:
    """read_container's byte source: the 8-byte length prefix read on its own, then, once the
    parser has checked the header length against the limits, the whole file in memory (the
    tensors are views of it)."""

    def __init__(self, file: Any, file_size: int, where: str) -> None:
        self._file, self._size, self._where = file, file_size, where
        self.raw: memoryview | None = None

    def __call__(self, offset: int, length: int) -> bytes | memoryview:
        if self.raw is None:
            if offset + length <= 8:
                return _pread(self._file.fileno(), offset, length, self._where)
            # In pages of its own (an anonymous map, unmapped when the last tensor view goes), not
            # from malloc: glibc raises its mmap threshold after freeing a block this big, and later
            # blocks of the size then come from the heap, where a model that outlives the file's
            # buffer leaves it as a hole (measured: +0.16 MB per resident PDModel).
            buffer = mmap.mmap(-1, self._size + 1)  # one byte more shows a file that grew
            if self._file.readinto(buffer) != self._size:
                raise FormatError(f"{self._where}: file changed size while being read")
            self.raw = memoryview(buffer)[:self._size]
        return self.raw[offset:offset + length]


def read_container(path: str | os.PathLike, *, verify_checksum: bool = True,
                   kind: str = "pdinfer weight file") -> Container:
    """Read and check a container file; tensors are read-only views of one in-memory copy.

    With `verify_checksum`, a declared `file_sha256` (whole file) and `data_sha256` (data section)
    must match. `kind` names the expected file in the error for a file that is no container at all.
    """
    where = str(path)
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            source = _WholeFile(f, file_size, where)
            layout = _parse_container(source, file_size, where, verify_checksum=verify_checksum, kind=kind)
    except OSError as e:
        raise FormatError(f"{where}: cannot read file: {e.strerror or e}") from None
    tensors = {name: _array(source.raw, layout.data_begin + span.begin, span) for name, span in layout.spans.items()}
    return Container(where, layout.metadata, tensors, layout.data_sha256, layout.header_verified)


def _identity(status: os.stat_result) -> tuple[int, int, int, int]:
    """What must not change between checking a file and reading from it: device, inode, size, mtime."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


class _FileTensors(Mapping[str, np.ndarray]):
    """The tensors of a checked container file, each read from the file (os.pread) when looked
    up, after checking that the file is still the one that was checked (same inode, size, mtime)."""

    def __init__(self, path: str, identity: tuple[int, int, int, int], layout: _Layout) -> None:
        self._path, self._identity, self._layout = path, identity, layout

    def __getitem__(self, name: str) -> np.ndarray:
        span = self._layout.spans[name]
        try:
            with open(self._path, "rb") as f:
                self._check(os.fstat(f.fileno()))
                raw = _pread(f.fileno(), self._layout.data_begin + span.begin, span.end - span.begin, self._path)
                self._check(os.fstat(f.fileno()))
        except OSError as e:
            raise FormatError(f"{self._path}: cannot read tensor {name!r}: {e.strerror or e}") from None
        return _array(raw, 0, span)

    def _check(self, status: os.stat_result) -> None:
        if _identity(status) != self._identity:
            raise FormatError(f"{self._path}: the file was changed or replaced after it was checked "
                              f"(size, modification time or inode differ); open it again")

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.spans)

    def __len__(self) -> int:
        return len(self._layout.spans)


def open_container(path: str | os.PathLike, *, kind: str, dtypes: Sequence[str] = tuple(DTYPES)) -> Container:
    """Check a container file of any size in bounded memory, checksums always verified, in one
    streaming pass; its tensors are read from the file one at a time when looked up (no memory
    map: a file truncated while mapped would kill the process). A file changed after the check
    is a FormatError when a tensor is read. `dtypes`: the tensor types a `kind` file may hold."""
    where = str(path)
    try:
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            layout = _parse_container(lambda offset, length: _pread(f.fileno(), offset, length, where),
                                      before.st_size, where, verify_checksum=True, kind=kind)
            changed = _identity(os.fstat(f.fileno())) != _identity(before)
    except OSError as e:
        raise FormatError(f"{where}: cannot read file: {e.strerror or e}") from None
    if changed:
        raise FormatError(f"{where}: file changed while it was being checked")
    stored_as = {dtype: name for name, dtype in DTYPES.items()}
    for name, span in layout.spans.items():
        if stored_as[span.dtype] not in dtypes:
            raise FormatError(f"{where}: tensor {name!r} is {stored_as[span.dtype]}; a {kind} holds only "
                              f"{', '.join(dtypes)}")
    return Container(where, layout.metadata, _FileTensors(where, _identity(before), layout),
                     layout.data_sha256, layout.header_verified)


_temporary_names = itertools.count()


# A layout entry: (name, shape), or (name, shape, dtype) with dtype a DTYPES key (default F32).
LayoutEntry = Union[tuple[str, tuple[int, ...]], tuple[str, tuple[int, ...], str]]


def _typed(layout: Sequence[LayoutEntry]) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape of ints, dtype) for each entry."""
    return [(entry[0], tuple(int(d) for d in entry[1]), entry[2] if len(entry) > 2 else "F32") for entry in layout]


def _header(metadata: Mapping[str, str], layout: Sequence[tuple[str, tuple[int, ...], str]]) -> bytes:
    """The length prefix and padded header ContainerWriter writes, file_sha256 all zeros."""
    meta = {k: str(v) for k, v in metadata.items() if k not in (FILE_CHECKSUM, DATA_CHECKSUM)}
    header: dict[str, Any] = {"__metadata__": {**meta, FILE_CHECKSUM: "0" * 64}}
    offset = 0
    for name, shape, dtype in layout:
        nbytes = DTYPES[dtype].itemsize * int(np.prod(shape, dtype=object))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % HEADER_ALIGN)
    return struct.pack("<Q", len(text)) + text


def header_size(metadata: Mapping[str, str], layout: Sequence[LayoutEntry]) -> int:
    """The header length ContainerWriter would write for this metadata and (name, shape[, dtype])
    layout (readers refuse more than MAX_HEADER_BYTES)."""
    return len(_header(metadata, _typed(layout))) - 8


def _fsync_directory(directory: Path) -> None:
    """Flush a rename in `directory` to disk where the platform allows (POSIX; Windows and some
    filesystems refuse, and the rename has happened either way)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ContainerWriter:
    """Write a container file in one pass, one tensor at a time (memory: one tensor).

        with ContainerWriter(path, metadata, [(name, shape), ...]) as w:
            w.write(name, array)   # in layout order; anything float32-convertible of that shape

    A layout entry may add a dtype, `(name, shape, "I8")`: that tensor must then be written as an
    array of exactly the numpy dtype DTYPES gives (F32, the default, converts anything).

    The header (metadata plus `file_sha256`, which the writer computes: checksum keys given in
    `metadata` are replaced) is written first with a placeholder digest, the tensors are hashed
    as they are written, and on a clean exit the digest is patched in and the temporary file is
    renamed to `path` atomically. On an exception, or if a tensor is missing, the temporary file
    is removed and `path` is left as it was.
    """

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, str],
                 layout: Sequence[LayoutEntry]) -> None:
        self.path = Path(path)
        self._layout = _typed(layout)
        names = [name for name, _, _ in self._layout]
        if len(set(names)) != len(names) or "__metadata__" in names:
            raise FormatError(f"{path}: tensor names must be unique and not '__metadata__'")
        for name, shape, dtype in self._layout:
            if not 1 <= len(shape) <= MAX_TENSOR_RANK or min(shape) < 1:
                raise FormatError(f"{path}: tensor {name!r} has shape {list(shape)}; the format allows "
                                  f"1 to {MAX_TENSOR_RANK} dimensions, each >= 1")
            if dtype not in DTYPES:
                raise FormatError(f"{path}: tensor {name!r} has dtype {dtype!r}; supported: {', '.join(DTYPES)}")
        head = _header(metadata, self._layout)
        if len(head) - 8 > MAX_HEADER_BYTES:
            raise FormatError(f"{path}: the header of {len(self._layout)} tensors would be {len(head) - 8} bytes, "
                              f"over the {MAX_HEADER_BYTES}-byte limit every reader enforces (write fewer tensors)")
        # json.dumps escapes every '"' inside strings, so this is the checksum's own entry.
        self._digest_at = head.index(f'"{FILE_CHECKSUM}":"{"0" * 64}"'.encode()) + len(FILE_CHECKSUM) + 4
        # A new name in the target's directory (for an atomic rename), created with the umask's
        # permissions like any other file.
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{next(_temporary_names)}.tmp")
        self._file = os.fdopen(os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        self._hash = hashlib.sha256(head)
        self._next = 0
        try:
            self._file.write(head)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __enter__(self) -> "ContainerWriter":
        return self

    def write(self, name: str, array: Any) -> None:
        """Append the next tensor of the layout (F32: converted to little-endian float32)."""
        if self._next >= len(self._layout) or self._layout[self._next][0] != name:
            expected = self._layout[self._next][0] if self._next < len(self._layout) else "no more tensors"
            raise FormatError(f"{self.path}: tensor {name!r} written out of layout order "
                              f"(expected {expected!r})")
        _, shape, dtype = self._layout[self._next]
        if dtype != "F32" and np.asarray(array).dtype != DTYPES[dtype]:
            raise FormatError(f"{self.path}: tensor {name!r} is {np.asarray(array).dtype}, the layout says "
                              f"{dtype} ({DTYPES[dtype]})")
        values = np.ascontiguousarray(array, dtype=DTYPES[dtype])
        if values.shape != shape:
            raise FormatError(f"{self.path}: tensor {name!r} has shape {list(values.shape)}, the layout "
                              f"says {list(shape)}")
        chunk = memoryview(values).cast("B")
        self._hash.update(chunk)
        self._file.write(chunk)
        self._next += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self._next != len(self._layout):
                    raise FormatError(f"{self.path}: {len(self._layout) - self._next} tensor(s) of the "
                                      f"layout were not written, from {self._layout[self._next][0]!r} on")
                self._file.seek(self._digest_at)
                self._file.write(self._hash.hexdigest().encode())
                self._file.flush()
                os.fsync(self._file.fileno())  # the data is on disk before the name points at it
                self._file.close()
                os.replace(self._tmp, self.path)
                _fsync_directory(self.path.parent)
        finally:
            self._file.close()
            self._tmp.unlink(missing_ok=True)


def check_overwrite(path: str | os.PathLike, force: bool, how: str = "give --force") -> None:
    """Raise FileExistsError if `path` exists, unless `force` and it is a regular file (a directory
    or other non-file is never replaced). `how` says how to allow it (`--force`, `force=True`)."""
    if os.path.lexists(path) and not (force and os.path.isfile(path)):
        why = f"exists ({how} to overwrite it)" if os.path.isfile(path) else "exists and is not a regular file"
        raise FileExistsError(f"{path} {why}")


def write_container(path: str | os.PathLike, metadata: Mapping[str, str],
                    tensors: Sequence[tuple[str, np.ndarray]]) -> None:
    """Write tensors (in the given order) and metadata; adds `file_sha256`. An array of a DTYPES
    numpy dtype is stored as that type (float16 as F16, uint16 as BF16 bits, int8 as I8), anything
    else as F32."""
    layout = [(name, np.shape(t), storage(np.asarray(t))) for name, t in tensors]
    with ContainerWriter(path, metadata, layout) as writer:
        for name, t in tensors:
            writer.write(name, t)


def check_metadata(container: Container, format_name: str, versions: str | Sequence[str],
                   keys: Sequence[str]) -> None:
    """Raise FormatError unless the container is `format_name` at one of `versions` and has every key."""
    meta, where = container.metadata, container.path
    versions = (versions,) if isinstance(versions, str) else tuple(versions)
    if meta.get("format") != format_name:
        raise FormatError(f"{where}: metadata 'format' is {meta.get('format')!r}, expected {format_name!r}")
    if meta.get("format_version") not in versions:
        raise FormatError(f"{where}: {format_name} format version {meta.get('format_version')!r} is not "
                          f"supported (this pdinfer reads version{'s' * (len(versions) > 1)} {' and '.join(versions)})")
    for key in keys:
        if key not in meta:
            raise FormatError(f"{where}: metadata key {key!r} is missing")


def read_weights(path: str | os.PathLike, *, verify_checksum: bool = True) -> tuple[Container, list[Any]]:
    """Read a weight file: its container and its parsed (not yet validated) layer list."""
    container = read_container(path, verify_checksum=verify_checksum)
    meta, where = container.metadata, container.path
    check_metadata(container, FORMAT_NAME, tuple(WEIGHT_KEYS), WEIGHT_KEYS.get(meta.get("format_version"), ()))
    layers = parse_json(meta["layers"], "metadata 'layers'", where)
    if not isinstance(layers, list) or not layers:
        raise FormatError(f"{where}: metadata 'layers' must be a non-empty JSON array")
    return container, layers


def write_weights(path: str | os.PathLike, layers: Sequence[Mapping[str, Any]],
                  tensors: Mapping[str, np.ndarray], *, input_shape: Sequence[int],
                  classes: Sequence[str], producer: str = "", metadata: Mapping[str, str] | None = None) -> None:
    """Write a weight file: tensors in layer order, roles in the order each layer lists them
    (each stored as write_container says); `metadata` adds informational keys."""
    ordered = [(name, tensors[name]) for layer in layers for name in layer.get("tensors", {}).values()]
    header = {
        **(metadata or {}),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layers": json.dumps(list(layers), separators=(",", ":"), allow_nan=False),
        "input_shape": json.dumps([int(d) for d in input_shape]),
        "classes": json.dumps([str(c) for c in classes]),
    }
    if producer:
        header["producer"] = producer
    write_container(path, header, ordered)
