"""Loader hardening: a bad weight file raises FormatError, quickly and in bounded memory.

Every load here runs under a time limit and tracemalloc. A load either raises FormatError or gives
a model that runs on valid input; mutations that keep the file's meaning give the original's
outputs bit for bit. The small model comes from tests/small_model.py (no torch needed). The
property checks are shared with the long fuzz run in tests/test_soak.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

import pdinfer
from pdinfer import FormatError, UnsupportedLayerError
from pdinfer.format import HEADER_ALIGN, MAX_HEADER_BYTES, MAX_JSON_DEPTH
from pdinfer.graph import load_graph
from small_model import (CLASSES, INPUT_SHAPE, TENSOR_ORDER, sample_images, small_layers,
                         small_tensors, write_raw, write_small_model)

LOAD_SECONDS = 10.0  # a load that takes longer is a hang
MEMORY_SLACK = 1 << 20  # bytes a load may allocate on top of 4x the file's size
MAX_RUN_VALUES = 1 << 20  # run a loaded mutant only if no layer outputs more values per image
IMAGES = sample_images(3)


class LoadTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise LoadTimeout in the main thread if the block runs longer than `seconds`."""
    def expire(signum, frame):
        raise LoadTimeout(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def load_blob(path: Path, blob: bytes, *, verify: bool = True, memory_factor: float = 4.0,
              ) -> tuple[pdinfer.Model, dict]:
    """Write `blob` to `path` and load it; checks the time limit and the allocation peak.

    Returns the model and its graph's per-layer output shapes, or raises FormatError.
    """
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        with time_limit(LOAD_SECONDS):
            graph = load_graph(path, verify_checksum=verify)
            model = pdinfer.Model(graph)
        return model, graph.shapes
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= memory_factor * len(blob) + MEMORY_SLACK, \
            f"loading a {len(blob)}-byte file allocated {peak} bytes"


def check_mutant(path: Path, blob: bytes, *, verify: bool = True) -> np.ndarray | None:
    """A changed file raises FormatError or loads into a model that runs; returns its outputs."""
    try:
        model, shapes = load_blob(path, blob, verify=verify)
    except FormatError:
        return None
    if max(int(np.prod(s)) for s in shapes.values()) > MAX_RUN_VALUES:
        return None  # a valid but huge model (e.g. padding 4000): loading it was the test
    out = model(IMAGES)
    assert out.shape == (len(IMAGES), *model.output_shape) and out.dtype == np.float32
    return out


def header_length(blob: bytes) -> int:
    return struct.unpack("<Q", blob[:8])[0]


def container(header: dict | bytes, data: bytes) -> bytes:
    """A container with this header (a dict, or JSON bytes written as given) and data section."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % HEADER_ALIGN)
    return struct.pack("<Q", len(text)) + text + data


def split(blob: bytes) -> tuple[dict, bytes]:
    """A container's header (parsed) and data section."""
    n = header_length(blob)
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def rejected(path: Path, blob: bytes, match: str, *, verify: bool = True,
             error: type[FormatError] = FormatError) -> None:
    with pytest.raises(error, match=match):
        load_blob(path, blob, verify=verify)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hardening")


@pytest.fixture(scope="module")
def original(work) -> bytes:
    return write_small_model(work / "original.pdw").read_bytes()


@pytest.fixture(scope="module")
def expected(work, original) -> np.ndarray:
    return pdinfer.load(work / "original.pdw")(IMAGES)


def test_original_loads_within_bounds(work, original, expected):
    model, _ = load_blob(work / "m.pdw", original)
    assert model.classes == CLASSES and model.input_shape == INPUT_SHAPE
    assert np.array_equal(model(IMAGES), expected)
    assert split(original)[0]["__metadata__"]["data_sha256"] == model.data_sha256


# -- truncation, bit flips, byte replacement --------------------------------------------------

@pytest.mark.parametrize("verify", [True, False])
def test_truncation_at_every_length_is_rejected(work, original, verify):
    for length in range(len(original)):
        with pytest.raises(FormatError):
            load_blob(work / "cut.pdw", original[:length], verify=verify)


def test_every_data_byte_flip_is_caught_by_the_checksum(work, original):
    begin = 8 + header_length(original)
    for i in range(begin, len(original)):
        blob = bytearray(original)
        blob[i] ^= 1 << (i % 8)
        rejected(work / "flip.pdw", bytes(blob), "checksum mismatch")


def test_every_checksum_character_change_is_caught(work, original):
    header, data = split(original)
    digest = header["__metadata__"]["data_sha256"]
    for i in range(len(digest)):
        for c in ("0", "f", "F"):
            if c != digest[i]:
                header["__metadata__"]["data_sha256"] = digest[:i] + c + digest[i + 1:]
                rejected(work / "sum.pdw", container(header, data), "checksum mismatch")


def check_data_flip_unverified(work: Path, original: bytes, offset: int, bit: int) -> None:
    """With the checksum off, a flipped data bit is read as exactly that weight, or rejected
    if it makes the weight NaN, infinite or a negative variance."""
    n = header_length(original)
    blob = bytearray(original)
    blob[8 + n + offset] ^= 1 << bit
    try:
        model, _ = load_blob(work / "flip.pdw", bytes(blob), verify=False)
    except FormatError as e:
        assert "NaN or infinite" in str(e) or "negative" in str(e), e
        return
    data = np.frombuffer(bytes(blob[8 + n:]), "<f4")
    tensors, start = {}, 0
    for name in TENSOR_ORDER:
        size = small_tensors()[name].size
        tensors[name] = data[start:start + size].reshape(small_tensors()[name].shape)
        start += size
    rewritten = pdinfer.load(write_small_model(work / "rewritten.pdw", tensors=tensors))
    with np.errstate(all="ignore"):
        assert np.array_equal(model(IMAGES), rewritten(IMAGES), equal_nan=True)


@given(data=st.data())
def test_data_flip_with_checksum_off_reads_the_flipped_weight(work, original, data):
    data_size = len(original) - 8 - header_length(original)
    check_data_flip_unverified(work, original, data.draw(st.integers(0, data_size - 1)),
                               data.draw(st.integers(0, 7)))


def check_header_byte(work: Path, original: bytes, expected: np.ndarray, position: int, value: int) -> None:
    """Any byte of the length prefix or header set to any value: FormatError, or a model that
    runs; a change to the space padding is always rejected."""
    blob = bytearray(original)
    if blob[position] == value:
        return
    blob[position] = value
    n = header_length(original)
    padding_begins = 8 + len(original[8:8 + n].rstrip(b" "))
    if position >= padding_begins:
        rejected(work / "byte.pdw", bytes(blob), "followed only by spaces|Extra data")
    else:
        check_mutant(work / "byte.pdw", bytes(blob))


@given(data=st.data())
def test_any_header_byte_replaced(work, original, expected, data):
    position = data.draw(st.integers(0, 8 + header_length(original) - 1))
    check_header_byte(work, original, expected, position, data.draw(st.integers(0, 255)))


def test_every_padding_byte_must_stay_a_space(work, original):
    n = header_length(original)
    for position in range(8 + len(original[8:8 + n].rstrip(b" ")), 8 + n):
        for value in b"\t\n\r\x00x}":
            blob = bytearray(original)
            blob[position] = value
            rejected(work / "pad.pdw", bytes(blob), "followed only by spaces|Extra data")


@given(data=st.data())
def test_random_overwrites_anywhere(work, original, data):
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    check_mutant(work / "overwrite.pdw", bytes(blob))


# -- the length prefix --------------------------------------------------------------------------

@pytest.mark.parametrize("length, match", [
    (0, "not a multiple of 64"),
    (1, "not a multiple of 64"),
    (56, "not valid JSON|JSON object"),
    (MAX_HEADER_BYTES + 56, "exceeds"),
    (2**63, "exceeds"),
    (2**64 - 1, "exceeds"),
    ("past end", "runs past the end"),
    ("one block short", "JSON"),
    ("one block long", "JSON object"),
])
def test_header_length(work, original, length, match):
    n = header_length(original)
    length = {"past end": len(original) - 8 + 64 - (len(original) % 64),
              "one block short": n - 64, "one block long": n + 64}.get(length, length)
    rejected(work / "len.pdw", struct.pack("<Q", length) + original[8:], match)


@pytest.mark.parametrize("blob", [b"", b"\0" * 7, b"\0" * 8, b"PDW\0\0\0\0\0", b" " * 4096])
def test_tiny_or_empty_files(work, blob):
    with pytest.raises(FormatError):
        load_blob(work / "tiny.pdw", blob)


def test_unreadable_paths(work):
    rejected(work / "no-such-file.pdw", b"", "is 0 bytes")
    for path in (work / "missing.pdw", work):
        with pytest.raises(FormatError, match="cannot read file"):
            pdinfer.load(path)


# -- tensor entries in the header ---------------------------------------------------------------

def _with_entry(original: bytes, name: str, **changes) -> bytes:
    header, data = split(original)
    header[name] = {**header[name], **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del header[name][key]
    return container(header, data)


@pytest.mark.parametrize("changes, match", [
    ({"dtype": "F16"}, "only 'F32'"), ({"dtype": "F64"}, "only 'F32'"), ({"dtype": "f32"}, "only 'F32'"),
    ({"dtype": 32}, "only 'F32'"), ({"dtype": None}, "exactly dtype"),
    ({"shape": [4, 1, 3, 4]}, "needs"), ({"shape": [36]}, "order|roles|shape"),
    ({"shape": [4, 1, 3, 0]}, "invalid shape"), ({"shape": [-4, -1, 3, 3]}, "invalid shape"),
    ({"shape": [True, 1, 36]}, "invalid shape"), ({"shape": [4.0, 1, 3, 3]}, "invalid shape"),
    ({"shape": []}, "invalid shape"), ({"shape": [1, 1, 4, 1, 9]}, "invalid shape"),
    ({"shape": [2**62, 2**62]}, "needs"), ({"shape": "4,1,3,3"}, "invalid shape"),
    ({"data_offsets": [0, 148]}, "needs"), ({"data_offsets": [-4, 140]}, "outside"),
    ({"data_offsets": [0, 10**9]}, "outside"), ({"data_offsets": [144, 0]}, "outside"),
    ({"data_offsets": [0.0, 144.0]}, "invalid data_offsets"), ({"data_offsets": [0]}, "invalid data_offsets"),
    ({"data_offsets": [0, 144, 288]}, "invalid data_offsets"), ({"data_offsets": [False, 144]}, "invalid"),
    ({"data_offsets": ["0", "144"]}, "invalid data_offsets"), ({"data_offsets": None}, "exactly"),
    ({"extra": 1}, "exactly dtype, shape and data_offsets"),
])
def test_lying_tensor_entries(work, original, changes, match):
    rejected(work / "entry.pdw", _with_entry(original, "conv0.weight", **changes), match)


def test_overlapping_and_gapped_offsets(work, original):
    header, data = split(original)
    first, second = header["conv0.weight"]["data_offsets"], header["bn0.weight"]["data_offsets"]
    overlapping = {**header, "bn0.weight": {**header["bn0.weight"],
                                            "data_offsets": [second[0] - 4, second[1] - 4]}}
    rejected(work / "o.pdw", container(overlapping, data), "overlaps the previous tensor")
    shifted = {**header, "conv0.weight": {**header["conv0.weight"], "data_offsets": [4, first[1] + 4]}}
    rejected(work / "o.pdw", container(shifted, data), "leaves a gap|overlaps|outside")
    same = {**header, "bn0.bias": {**header["bn0.bias"], "data_offsets": second}}
    rejected(work / "o.pdw", container(same, data), "overlaps")
    rejected(work / "o.pdw", container(header, data + b"\0" * 4), "after the last tensor")
    rejected(work / "o.pdw", container(header, data[:-4]), "outside")


def test_tensor_entries_missing_or_extra(work, original):
    header, data = split(original)
    missing = {k: v for k, v in header.items() if k != "fc.bias"}
    rejected(work / "t.pdw", container(missing, data[:-12]), "not in the file", verify=False)
    extra = {**header, "spare": {"dtype": "F32", "shape": [1], "data_offsets": [len(data), len(data) + 4]}}
    rejected(work / "t.pdw", container(extra, data + b"\0" * 4), "not used by any layer", verify=False)


def test_duplicate_keys_anywhere_in_the_header(work, original):
    n = header_length(original)
    text = original[8:8 + n].rstrip(b" ")
    entry = b'"fc.bias":' + json.dumps(split(original)[0]["fc.bias"]).encode()
    rejected(work / "dup.pdw", container(text[:-1] + b"," + entry + b"}", split(original)[1]),
             "duplicate key 'fc.bias'")
    metadata_dup = text.replace(b'{"format":"pdinfer",', b'{"format":"pdinfer","format":"pdinfer",', 1)
    rejected(work / "dup.pdw", container(metadata_dup, split(original)[1]), "duplicate key 'format'")


# -- the header as JSON ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, match", [
    (b"[]", "JSON object"), (b'"x"', "JSON object"), (b"1", "JSON object"), (b"null", "JSON object"),
    (b"{}", "__metadata__ is missing"), (b'{"__metadata__": []}', "__metadata__"),
    (b'{"__metadata__": {"format": 1}}', "non-string"), (b'{"__metadata__": {"format": null}}', "non-string"),
    (b'{"__metadata__": {"a": ["x"]}}', "non-string"), (b'{"__metadata__": {"a": {}}}', "non-string"),
    (b'{"__metadata__": {}}{}', "not valid JSON"), (b'{"__metadata__": {}} x', "JSON object"),
    (b' {"__metadata__": {}}', "JSON object"), (b'\t{"__metadata__": {}}', "JSON object"),
    (b'{"__metadata__": {}}\n', "JSON object"), (b'{"__metadata__": {"format": "pdinfer"}', "not valid JSON"),
    (b'{"__metadata__": {"a": "\xff"}}', "not valid UTF-8"), (b'{"__metadata__": {"a": "\xc0\x80"}}', "UTF-8"),
    (b'{"__metadata__": {"a": "\xe2\x82"}}', "UTF-8"), (b'{"__metadata__": {"a": "\xed\xa0\x80"}}', "UTF-8"),
    (b'\xef\xbb\xbf{"__metadata__": {}}', "JSON object"),
    (b'{"__metadata__": {"a": "\\ud800"}}', "lone UTF-16 surrogate"),
    (b'{"__metadata__": {}, "x\\udfff": {}}', "lone UTF-16 surrogate"),
    (b'{"__metadata__": {}, "x": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}', "NaN"),
    (b'{"__metadata__": {}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, Infinity]}}', "Infinity"),
    (b'{"__metadata__": {}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [-Infinity, 4]}}', "Infinity"),
    (b'{"__metadata__": {}, "x": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}}', "range of a double"),
    (b'{"__metadata__": {}, "x": {"dtype": "F32", "shape": [1' + b"0" * 5000 + b'], "data_offsets": [0, 4]}}',
     "not valid JSON"),
])
def test_malformed_header_json(work, text, match):
    rejected(work / "json.pdw", container(text, b"\0" * 4), match)


def _nested(depth: int) -> str:
    """JSON nested `depth` levels deep: lists around a number."""
    return "[" * depth + "0" + "]" * depth


@pytest.mark.parametrize("depth, match", [  # the header object and __metadata__ add two levels
    (MAX_JSON_DEPTH - 2, "non-string"), (MAX_JSON_DEPTH - 1, "nested deeper"), (100_000, "nested too deeply")])
def test_deeply_nested_header(work, depth, match):
    text = ('{"__metadata__": {"a": ' + _nested(depth) + "}}").encode()
    rejected(work / "deep.pdw", container(text, b""), match)


@pytest.mark.parametrize("depth, match", [
    (MAX_JSON_DEPTH, "layer 0 must be an object"), (MAX_JSON_DEPTH + 1, "nested deeper"),
    (100_000, "nested too deeply")])
def test_deeply_nested_layers(work, depth, match):
    rejected(work / "deep.pdw", write_raw(work / "deep.pdw", layers_json=_nested(depth)).read_bytes(), match)


# Parsing JSON into Python objects costs up to ~30 bytes per header byte (an empty list is 56
# bytes of object per 3 bytes of "[],"): the one allocation the file's size does not bound 4x.
JSON_MEMORY_FACTOR = 40


@pytest.mark.parametrize("filler", [b"[]", b"{}", b"0", b'""', b"1.5"])
def test_enormous_header_json(work, filler):
    count = (1 << 20) // (len(filler) + 1)
    text = b'{"__metadata__": {}, "a": [' + b",".join([filler] * count) + b"]}"
    with pytest.raises(FormatError, match="non-string|exactly dtype"):
        load_blob(work / "big.pdw", container(text, b""), memory_factor=JSON_MEMORY_FACTOR)


def test_enormous_valid_layer_list_loads(work):
    """10 000 ReLU layers (a 0.9 MB header) load in bounded time and memory and still run."""
    count = 10_000
    layers = [{"name": f"r{i}", "type": "ReLU", "inputs": ["input" if i == 0 else f"r{i - 1}"],
               "params": {}, "tensors": {}} for i in range(count)]
    blob = write_raw(work / "many.pdw", layers_json=json.dumps(layers, separators=(",", ":")), tensors=[],
                     input_shape="[3, 1, 1]", classes='["a", "b", "c"]').read_bytes()
    model, _ = load_blob(work / "many.pdw", blob, memory_factor=JSON_MEMORY_FACTOR)
    x = np.array([[[-1.0]], [[0.5]], [[2.0]]], np.float32)
    assert np.array_equal(model(x).ravel(), [0.0, 0.5, 2.0])


# -- meaning-preserving rewrites load to the same outputs ---------------------------------------

def test_rewrites_that_keep_the_meaning(work, original, expected):
    header, data = split(original)
    tensor_names = [k for k in header if k != "__metadata__"]
    rewrites = {
        "tensor entries in reverse key order": {k: header[k] for k in [*reversed(tensor_names), "__metadata__"]},
        "entry keys reordered": {k: dict(reversed(list(v.items()))) for k, v in header.items()},
        "unknown metadata key": {**header, "__metadata__": {**header["__metadata__"], "x-note": "hi"}},
        "no producer": {**header, "__metadata__": {k: v for k, v in header["__metadata__"].items()
                                                   if k != "producer"}},
    }
    for what, rewritten in rewrites.items():
        model, _ = load_blob(work / "same.pdw", container(rewritten, data))
        assert np.array_equal(model(IMAGES), expected), what
    for what, text in {"indented JSON": json.dumps(header, indent=4).encode(),
                       "ASCII escapes": json.dumps(header, ensure_ascii=True).replace("n", "\\u006e", 3).encode()
                       }.items():
        model, _ = load_blob(work / "same.pdw", container(text, data))
        assert np.array_equal(model(IMAGES), expected), what


def test_layer_list_whitespace_and_escapes_keep_the_meaning(work, expected):
    layers = json.dumps(small_layers(), indent=2).replace('"conv0"', '"\\u0063onv0"')
    model, _ = load_blob(work / "ws.pdw", write_raw(work / "ws.pdw", layers_json=layers).read_bytes())
    assert np.array_equal(model(IMAGES), expected)
    emoji = '["\\ud83d\\ude00 corona", "void", "surface"]'  # a valid surrogate pair
    model, _ = load_blob(work / "ws.pdw", write_raw(work / "ws.pdw", classes=emoji).read_bytes())
    assert model.classes[0] == "\U0001F600 corona" and np.array_equal(model(IMAGES), expected)


# -- metadata -----------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, match", [
    ("format", "safetensors", "'format' is 'safetensors'"), ("format", None, "'format' is None"),
    ("format", "pdinfer-golden", "expected 'pdinfer'"),
    ("format_version", "2", "version '2' is not supported"), ("format_version", "1.0", "not supported"),
    ("format_version", " 1", "not supported"), ("format_version", "0", "not supported"),
    ("format_version", None, "not supported"),
    ("layers", None, "'layers' is missing"), ("layers", "", "not valid JSON"), ("layers", "[]", "non-empty"),
    ("layers", "{}", "non-empty JSON array"), ("layers", "[null]", "layer 0 must be an object"),
    ("layers", "[NaN]", "NaN"), ("layers", "[Infinity]", "Infinity"), ("layers", "[-Infinity]", "Infinity"),
    ("layers", '["\\ud800"]', "surrogate"),
    ("input_shape", None, "missing"), ("input_shape", "[1, 10]", "input_shape"),
    ("input_shape", "[0, 10, 12]", "input_shape"), ("input_shape", "[1, 10, 12.0]", "input_shape"),
    ("input_shape", "[true, 10, 12]", "input_shape"), ("input_shape", "[1, -10, 12]", "input_shape"),
    ("input_shape", "[1, 100000, 100000]", "input_shape"), ("input_shape", "1, 10, 12", "not valid JSON"),
    ("input_shape", "[2, 10, 12]", "expects 1 input channels"), ("input_shape", "[1, 1, 1]", "smaller than"),
    ("classes", None, "missing"), ("classes", '["a", "b"]', "2 class names for 3 output values"),
    ("classes", '["a", "b", "c", "d"]', "4 class names"), ("classes", "[]", "0 class names"),
    ("classes", "[1, 2, 3]", "array of strings"), ("classes", '{"a": 1}', "array of strings"),
    ("classes", '["a", null, "c"]', "array of strings"), ("classes", "a,b,c", "not valid JSON"),
    ("classes", '["a\\udc00", "b", "c"]', "surrogate"),
])
def test_bad_metadata(work, key, value, match):
    rejected(work / "meta.pdw", write_raw(work / "meta.pdw", **{key: value}).read_bytes(), match)


@pytest.mark.parametrize("checksum", ["", "0" * 64, None])
def test_checksum_mismatch_is_ignored_only_when_asked(work, original, expected, checksum):
    header, data = split(original)
    if checksum is None:
        del header["__metadata__"]["data_sha256"]
        rejected(work / "sum.pdw", container(header, data), "'data_sha256' is missing", verify=False)
        return
    header["__metadata__"]["data_sha256"] = checksum
    rejected(work / "sum.pdw", container(header, data), "checksum mismatch")
    model, _ = load_blob(work / "sum.pdw", container(header, data), verify=False)
    assert np.array_equal(model(IMAGES), expected)


# -- layers ---------------------------------------------------------------------------------------

def _set(index: int, path: str, value) -> callable:
    """A mutation: set small_layers()[index] at a '/'-separated key path (None value: delete)."""
    def mutate(layers: list) -> None:
        *parents, last = path.split("/")
        target = layers[index]
        for key in parents:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    mutate.label = f"{small_layers()[index]['name']}.{path}={value!r}"[:60]
    return mutate


LAYER_CASES = [  # (mutation, error message pattern); layers: 0 conv0 1 bn0 2 act0 3 dw 4 bn1
    # 5 act1 6 add 7 pw 8 pool 9 gap 10 fc 11 softmax
    (_set(9, "type", "Conv3d"), "type 'Conv3d' is not supported"),
    (_set(9, "type", "globalavgpool"), "not supported"), (_set(9, "type", 5), "not supported"),
    (_set(9, "type", ["GlobalAvgPool"]), "not supported"), (_set(9, "type", {"a": 1}), "not supported"),
    (_set(9, "type", None), "exactly the keys"), (_set(9, "bias", 1), "exactly the keys"),
    (_set(9, "params", None), "exactly the keys"), (_set(9, "params", []), "must be JSON objects"),
    (_set(9, "tensors", ["x"]), "must be JSON objects"),
    # Conv2d params
    (_set(0, "params/kernel_size", [0, 0]), "kernel_size"), (_set(0, "params/kernel_size", [-3, 3]), "kernel_size"),
    (_set(0, "params/kernel_size", 3), "kernel_size"), (_set(0, "params/kernel_size", [3.0, 3.0]), "kernel_size"),
    (_set(0, "params/kernel_size", [True, True]), "kernel_size"), (_set(0, "params/kernel_size", [3]), "kernel_size"),
    (_set(0, "params/kernel_size", [3, 4]), "has shape"), (_set(0, "params/kernel_size", [5000, 3]), "kernel_size"),
    (_set(0, "params/stride", [0, 1]), "stride"), (_set(0, "params/stride", [1, -1]), "stride"),
    (_set(0, "params/dilation", [0, 1]), "dilation"), (_set(0, "params/dilation", [6, 6]), "smaller than"),
    (_set(0, "params/in_channels", 0), "in_channels"), (_set(0, "params/in_channels", -1), "in_channels"),
    (_set(0, "params/in_channels", True), "in_channels"), (_set(0, "params/in_channels", 1.0), "in_channels"),
    (_set(0, "params/in_channels", "1"), "in_channels"), (_set(0, "params/in_channels", 10**400), "in_channels"),
    (_set(0, "params/in_channels", 2), "has shape|expects"), (_set(0, "params/out_channels", 0), "out_channels"),
    (_set(0, "params/out_channels", 2**30), "out_channels"),
    (_set(0, "params/groups", 0), "groups"), (_set(0, "params/groups", 3), "must divide"),
    (_set(0, "params/groups", True), "groups"), (_set(3, "params/groups", 2), "has shape"),
    (_set(0, "params/bias", 1), "true or false"), (_set(0, "params/bias", "false"), "true or false"),
    (_set(0, "params/bias", True), "roles"), (_set(0, "params/padding", [1, 1, 1]), "padding"),
    (_set(0, "params/padding", [-1, 1, 1, 1]), "padding"), (_set(0, "params/padding", [10**9] * 4), "padding"),
    (_set(0, "params/padding", [4096] * 4), "exceeds 134217728 values"), (_set(0, "params/padding", 1), "padding"),
    (_set(0, "params/groups", None), "missing \\['groups'\\]"), (_set(0, "params/group", 1), "unknown \\['group'\\]"),
    # BatchNorm2d, activations, pools, Linear, Softmax
    (_set(1, "params/eps", 0), "eps"), (_set(1, "params/eps", -1e-5), "eps"), (_set(1, "params/eps", True), "eps"),
    (_set(1, "params/eps", "1e-5"), "eps"), (_set(1, "params/eps", 2.0), "eps"),
    (_set(1, "params/num_features", 3), "has shape"), (_set(1, "params/num_features", 0), "num_features"),
    (_set(2, "params/negative_slope", "0.2"), "negative_slope"), (_set(2, "params/negative_slope", None), "missing"),
    (_set(2, "params/negative_slope", True), "negative_slope"), (_set(2, "params/negative_slope", 1e31), "negative_slope"),
    (_set(5, "params/x", 1), "unknown \\['x'\\]"),
    (_set(8, "params/padding", [2, 2, 2, 2]), "at most half"), (_set(8, "params/ceil_mode", 0), "true or false"),
    (_set(8, "params/dilation", None), "missing"), (_set(8, "params/kernel_size", [20, 20]), "smaller than"),
    (_set(8, "params/count_include_pad", True), "unknown"), (_set(8, "type", "AvgPool2d"), "missing"),
    (_set(9, "params/keepdim", "no"), "true or false"), (_set(9, "params/keepdim", True), "must have 2 dimensions"),
    (_set(10, "params/in_features", 9), "has shape"), (_set(10, "params/out_features", 4), "has shape"),
    (_set(10, "params/in_features", 0), "in_features"), (_set(10, "params/bias", False), "roles"),
    (_set(11, "params/dim", 0), "only dim=1"), (_set(11, "params/dim", -1), "only dim=1"),
    (_set(11, "params/dim", 2), "only dim=1"), (_set(11, "params/dim", 1.0), "only dim=1"),
    (_set(11, "params/dim", True), "only dim=1"), (_set(11, "params/dim", "1"), "only dim=1"),
    # names and inputs: a cycle cannot be written, since inputs must be earlier layers
    (_set(1, "name", ""), "empty, reserved or used twice"), (_set(1, "name", "input"), "reserved"),
    (_set(1, "name", "conv0"), "used twice"), (_set(1, "name", 5), "used twice"),
    (_set(1, "inputs", ["nope"]), "'nope' is not the graph input or an earlier layer"),
    (_set(1, "inputs", ["bn0"]), "'bn0' is not the graph input or an earlier layer"),
    (_set(1, "inputs", ["act0"]), "'act0' is not the graph input or an earlier layer"),
    (_set(1, "inputs", "conv0"), "'inputs' must list 1"), (_set(1, "inputs", []), "'inputs' must list 1"),
    (_set(1, "inputs", ["conv0", "conv0"]), "must list 1"), (_set(1, "inputs", [0]), "must list 1"),
    (_set(6, "inputs", ["act0"]), "must list 2"), (_set(6, "inputs", ["act1", "input"]), "same shape"),
    (_set(0, "inputs", ["softmax"]), "not the graph input or an earlier layer"),
    # tensors
    (_set(1, "tensors/running_var", None), "roles"), (_set(1, "tensors/extra", "bn0.bias"), "roles"),
    (_set(1, "tensors/weight", "nope"), "'nope' for role 'weight' is not in the file"),
    (_set(1, "tensors/weight", ["bn0.weight"]), "not in the file"),
    (_set(4, "tensors/weight", "bn0.weight"), "already used by layer 'bn0'"),
    (_set(4, "tensors/weight", "pw.bias"), "has shape"),
    (_set(1, "tensors/weight", "bn0.bias"), "already used|not in"),
]


@pytest.mark.parametrize("mutate, match", LAYER_CASES, ids=[m.label for m, _ in LAYER_CASES])
def test_bad_layers(work, mutate, match):
    layers = small_layers()
    mutate(layers)
    blob = write_raw(work / "layer.pdw", layers_json=json.dumps(layers)).read_bytes()
    rejected(work / "layer.pdw", blob, match)


def test_unsupported_type_is_an_unsupported_layer_error(work):
    layers = small_layers()
    layers[5]["type"] = "Mish"
    blob = write_raw(work / "mish.pdw", layers_json=json.dumps(layers)).read_bytes()
    rejected(work / "mish.pdw", blob, "'Mish' is not supported", error=UnsupportedLayerError)


def test_graph_level_checks(work):
    layers = small_layers()
    layers.insert(2, {"name": "spare", "type": "ReLU", "inputs": ["bn0"], "params": {}, "tensors": {}})
    rejected(work / "g.pdw", write_raw(work / "g.pdw", layers_json=json.dumps(layers)).read_bytes(),
             "nobody uses.*'spare'")
    weights = small_tensors()
    reordered = [(name, weights[name]) for name in sorted(TENSOR_ORDER)]
    rejected(work / "g.pdw", write_raw(work / "g.pdw", tensors=reordered).read_bytes(), "order")
    extra = [(name, weights[name]) for name in TENSOR_ORDER] + [("spare", np.zeros(2, np.float32))]
    rejected(work / "g.pdw", write_raw(work / "g.pdw", tensors=extra).read_bytes(), "not used by any layer")


@pytest.mark.parametrize("tensor, value, match", [
    ("conv0.weight", np.nan, "NaN or infinite"), ("fc.bias", np.inf, "NaN or infinite"),
    ("bn0.running_mean", -np.inf, "NaN or infinite"), ("bn1.running_var", -1.0, "negative"),
])
def test_bad_weight_values(work, tensor, value, match):
    weights = small_tensors()
    weights[tensor] = weights[tensor].copy()
    weights[tensor].flat[1] = value
    blob = write_raw(work / "w.pdw", tensors=[(name, weights[name]) for name in TENSOR_ORDER]).read_bytes()
    rejected(work / "w.pdw", blob, match)


# -- any JSON value anywhere in the layer list ---------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 5) | st.integers() | st.sampled_from([4096, 4097, 2**24 + 1])
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
    | st.sampled_from(["input", "conv0", "act1", "softmax", "bn0.weight", "Conv2d", "Add"]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)


def _key_paths(value, prefix=()):
    """Every key path into a JSON value (dict keys and list indices)."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, child in items:
        yield from _key_paths(child, (*prefix, key))


LAYER_PATHS = [p for p in _key_paths(small_layers()) if p]


def check_layer_value(work: Path, path: tuple, value) -> None:
    """Any JSON value put at any place in the layer list: FormatError, or a model that runs."""
    layers = small_layers()
    target = layers
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    check_mutant(work / "value.pdw", write_raw(work / "value.pdw", layers_json=json.dumps(layers)).read_bytes())


@given(path=st.sampled_from(LAYER_PATHS), value=json_values)
def test_any_value_anywhere_in_the_layer_list(work, path, value):
    check_layer_value(work, path, value)


# -- a read-only install -----------------------------------------------------------------------

RUN_MODEL = ("import json, numpy as np, pdinfer; m = pdinfer.load({path!r}); "
             "print(json.dumps(m(np.full((2, 1, 10, 12), 0.5, np.float32)).tolist()))")
DROP_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner",
            "--inh-caps=-dac_override,-dac_read_search,-fowner"]


def _unprivileged_prefix() -> list[str]:
    """How to run a command that file permissions apply to, or skip the test."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: root ignores a read-only directory")
    # Root without the capabilities that bypass permission checks: still root (so the venv under
    # /root stays readable, unlike for `nobody`), but a read-only directory stays read-only.
    probe = subprocess.run([*DROP_DAC, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.decode().strip()}")
    return DROP_DAC


def test_works_from_a_read_only_package_directory(tmp_path):
    """Numba caches next to the sources if it can, else in the user's cache directory, else
    nowhere; pdinfer gives the same answers in all three cases."""
    prefix = _unprivileged_prefix()
    install, home, no_home = tmp_path / "site", tmp_path / "home", tmp_path / "readonly-home"
    shutil.copytree(Path(pdinfer.__file__).parent, install / "pdinfer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    model_path = write_small_model(install / "model.pdw")
    home.mkdir()
    no_home.mkdir()
    for path in (install, no_home):
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)

    def run(home_dir: Path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
        env.update(HOME=str(home_dir), PYTHONPATH=str(install))
        return subprocess.Popen([*prefix, sys.executable, "-c", RUN_MODEL.format(path=str(model_path))],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    try:
        # The two cold runs compile every kernel: run them side by side.
        with_home, without_home = run(home), run(no_home)
        outputs = [p.communicate(timeout=300) for p in (with_home, without_home)]
        for process, (out, err) in zip((with_home, without_home), outputs):
            assert process.returncode == 0, err
        assert not [p for p in install.rglob("*") if p.suffix in (".nbi", ".nbc")]
        cached = list((home / ".cache" / "numba").rglob("*.nbi"))
        assert cached, "Numba's per-user cache directory holds no index files"
        warm = run(home)
        out, err = warm.communicate(timeout=300)
        assert warm.returncode == 0, err
        expected = pdinfer.load(model_path)(np.full((2, 1, 10, 12), 0.5, np.float32)).tolist()
        assert [json.loads(o) for o, _ in outputs] + [json.loads(out)] == [expected] * 3
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(install), str(no_home)], check=True)
