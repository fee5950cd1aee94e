"""Loader hardening: a bad weight file raises FormatError, quickly and in bounded memory.

Every load here runs under a time limit and tracemalloc. With checksums verified (the default),
every change to a file's bytes is rejected. Below the checksum (verify_checksum=False, as a file
written wrong would be), a load either raises FormatError or gives a model that runs on valid
input; mutations that keep the file's meaning give the original's outputs bit for bit. Two models
are mutated: the small model of tests/small_model.py (no torch needed), whose layer list the
parametrized cases edit, and pdinfer.builder.every_layer_type() (every registered layer type), on
which every byte-level mutation runs too. The property checks are shared with the long fuzz run
in tests/test_soak.py, and every mutant is also fed to the Java reader, which must reject exactly
the files pdinfer rejects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
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
from exporter.compress import WEIGHT_STORAGE, compress, to_bf16
from pdinfer import FormatError, UnsupportedLayerError
from pdinfer.builder import every_layer_type
from pdinfer.format import (DTYPES, HEADER_ALIGN, MAX_HEADER_BYTES, MAX_JSON_DEPTH, storage, write_container,
                            write_weights)
from pdinfer.graph import load_graph
from small_model import (CLASSES, INPUT_SHAPE, TENSOR_ORDER, reseal, sample_images, small_layers,
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


def put(path: Path, blob: bytes) -> None:
    """Write `blob` as a new file at `path`. (Rewriting a file in place can cost milliseconds:
    ext4 flushes a truncated file's new data at close.)"""
    path.unlink(missing_ok=True)
    path.write_bytes(blob)


def load_blob(path: Path, blob: bytes, *, verify: bool = True, memory_factor: float = 4.0,
              ) -> tuple[pdinfer.Model, dict]:
    """Write `blob` to `path` and load it; checks the time limit and the allocation peak.

    Returns the model and its graph's per-layer output shapes, or raises FormatError.
    """
    put(path, blob)
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


def images_for(model: pdinfer.Model) -> np.ndarray:
    """IMAGES for a model of the small model's input shape, else seeded random images of its own."""
    if model.input_shape == INPUT_SHAPE:
        return IMAGES
    return np.random.default_rng(1).random((len(IMAGES), *model.input_shape), dtype=np.float32)


def check_mutant(path: Path, blob: bytes, *, verify: bool = True) -> np.ndarray | None:
    """A changed file raises FormatError or loads into a model that runs on images of the shape
    it declares (a mutant may change `input_shape`); returns its outputs."""
    try:
        model, shapes = load_blob(path, blob, verify=verify)
    except FormatError:
        return None
    if max(int(np.prod(s)) for s in shapes.values()) > MAX_RUN_VALUES:
        return None  # a valid but huge model (e.g. padding 4000): loading it was the test
    images = images_for(model)
    out = model(images)
    assert out.shape == (len(IMAGES), *model.output_shape) and out.dtype == np.float32
    return out


def header_length(blob: bytes) -> int:
    return struct.unpack("<Q", blob[:8])[0]


def container(header: dict | bytes, data: bytes, *, seal: bool = True) -> bytes:
    """A container with this header (a dict, or JSON bytes written as given) and data section;
    its file_sha256, if it has one, recomputed unless `seal` is False."""
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % HEADER_ALIGN)
    blob = struct.pack("<Q", len(text)) + text + data
    return reseal(blob) if seal else blob


def split(blob: bytes) -> tuple[dict, bytes]:
    """A container's header (parsed) and data section."""
    n = header_length(blob)
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def rejected(path: Path, blob: bytes, match: str | None, *, verify: bool = True,
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


def write_every_layer_type(path: Path) -> Path:
    layers, classes = every_layer_type()
    return layers.write(path, classes)


MODELS = {"small": write_small_model, "every-layer-type": write_every_layer_type}


@pytest.fixture(scope="module", params=list(MODELS))
def model_name(request) -> str:
    """Each model the byte-level mutations run on (MODELS)."""
    return request.param


@pytest.fixture(scope="module")
def any_original(work, model_name) -> bytes:
    return MODELS[model_name](work / f"{model_name}.pdw").read_bytes()


def test_original_loads_within_bounds(work, original, expected):
    model, _ = load_blob(work / "m.pdw", original)
    assert model.classes == CLASSES and model.input_shape == INPUT_SHAPE
    assert np.array_equal(model(IMAGES), expected)
    assert model.data_sha256 == hashlib.sha256(split(original)[1]).hexdigest()
    assert load_graph(work / "m.pdw").header_verified
    assert not load_graph(work / "m.pdw", verify_checksum=False).header_verified


WHOLE_FILE = r"whole-file SHA-256 \(header and data\) mismatch"


# -- truncation, bit flips, byte replacement --------------------------------------------------

@pytest.mark.parametrize("verify", [True, False])
def test_truncation_at_every_length_is_rejected(work, any_original, verify):
    for length in range(len(any_original)):
        with pytest.raises(FormatError):
            load_blob(work / "cut.pdw", any_original[:length], verify=verify)


def test_every_data_byte_flip_is_caught_by_the_checksum(work, any_original):
    begin = 8 + header_length(any_original)
    for i in range(begin, len(any_original)):
        blob = bytearray(any_original)
        blob[i] ^= 1 << (i % 8)
        rejected(work / "flip.pdw", bytes(blob), WHOLE_FILE)


def test_every_checksum_character_change_is_caught(work, any_original):
    header, data = split(any_original)
    digest = header["__metadata__"]["file_sha256"]
    for i in range(len(digest)):
        for c, match in (("0", WHOLE_FILE), ("f", WHOLE_FILE), ("F", "64 lowercase hex")):
            if c != digest[i]:
                header["__metadata__"]["file_sha256"] = digest[:i] + c + digest[i + 1:]
                rejected(work / "sum.pdw", container(header, data, seal=False), match)


HEADER_BYTE_CHANGES = (lambda b: (b + 1) % 256, lambda b: b ^ 0x20, lambda b: ord("0"), lambda b: ord(" "))


def header_byte_mutants(original: bytes):
    """(position, value, file) for every byte of the length prefix and header set to each of
    HEADER_BYTE_CHANGES' values (+1, case flip, '0', ' ') where that changes it."""
    for position in range(8 + header_length(original)):
        for change in HEADER_BYTE_CHANGES:
            value = change(original[position])
            if value != original[position]:
                yield position, value, original[:position] + bytes([value]) + original[position + 1:]


def test_every_header_byte_change_is_rejected(work, any_original):
    """Exhaustive over positions: with checksums verified no header byte can change a model."""
    path, count, loaded = work / "header-byte.pdw", 0, []
    for position, value, blob in header_byte_mutants(any_original):
        put(path, blob)
        try:
            load_graph(path)
            loaded.append((position, value))
        except FormatError:
            count += 1
    assert not loaded, f"(position, new value) of header bytes whose change loaded: {loaded}"
    assert count > 3 * (8 + header_length(any_original))


SHIPPED = Path(__file__).resolve().parent.parent / "weights" / "pd_light.pdw"


@pytest.mark.parametrize("old, new", [
    (b'\\"eps\\":1e-05', b'\\"eps\\":1e-01'),  # the first BatchNorm's eps
    (b'\\"negative_slope\\":0.2', b'\\"negative_slope\\":0.9'),  # the first LeakyReLU's slope
    (b'\\"void\\"', b'\\"vold\\"'),  # a class name
], ids=["bn-eps", "leaky-slope", "class-name"])
def test_issue_13_header_edits_of_the_shipped_model_are_rejected(tmp_path, old, new):
    """One-byte header edits that flipped void_1.npy to corona loaded before file_sha256."""
    raw = SHIPPED.read_bytes()
    assert raw.count(old) >= 1
    path = tmp_path / "edited.pdw"
    path.write_bytes(raw.replace(old, new, 1))
    with pytest.raises(FormatError, match=WHOLE_FILE):
        pdinfer.load(path)
    assert not load_graph(path, verify_checksum=False).header_verified  # it is the checksum that stops it


def check_data_flip_unverified(work: Path, original: bytes, offset: int, bit: int) -> None:
    """With the checksum off, a flipped data bit is read as exactly that weight (the same outputs
    as the flipped tensors written as a valid file), or rejected if it makes the weight NaN,
    infinite or a negative variance."""
    n = header_length(original)
    blob = bytearray(original)
    blob[8 + n + offset] ^= 1 << bit
    try:
        model, _ = load_blob(work / "flip.pdw", bytes(blob), verify=False)
    except FormatError as e:
        assert "NaN or infinite" in str(e) or "negative" in str(e), e
        return
    header, data = split(bytes(blob))
    metadata = header.pop("__metadata__")
    tensors = [(name, np.frombuffer(data, DTYPES[entry["dtype"]], (end - begin) // DTYPES[entry["dtype"]].itemsize,
                                    begin).reshape(entry["shape"]))
               for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"])
               for begin, end in [entry["data_offsets"]]]
    write_container(work / "rewritten.pdw", metadata, tensors)
    rewritten = pdinfer.load(work / "rewritten.pdw")
    with np.errstate(all="ignore"):
        images = images_for(model)
        assert np.array_equal(model(images), rewritten(images), equal_nan=True)


def fuzz_data_flip(work: Path, original: bytes, data: st.DataObject) -> None:
    data_size = len(original) - 8 - header_length(original)
    check_data_flip_unverified(work, original, data.draw(st.integers(0, data_size - 1)),
                               data.draw(st.integers(0, 7)))


@given(data=st.data())
def test_data_flip_with_checksum_off_reads_the_flipped_weight(work, any_original, data):
    fuzz_data_flip(work, any_original, data)


def check_header_byte(work: Path, original: bytes, position: int, value: int) -> None:
    """Any byte of the length prefix or header set to any value: rejected when checksums are
    verified; below the checksum, FormatError or a model that runs, and a change to the space
    padding is always rejected."""
    blob = bytearray(original)
    if blob[position] == value:
        return
    blob[position] = value
    rejected(work / "byte.pdw", bytes(blob), None)
    n = header_length(original)
    padding_begins = 8 + len(original[8:8 + n].rstrip(b" "))
    if position >= padding_begins:
        rejected(work / "byte.pdw", bytes(blob), "followed only by spaces|Extra data", verify=False)
    else:
        check_mutant(work / "byte.pdw", bytes(blob), verify=False)


def fuzz_header_byte(work: Path, original: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, 8 + header_length(original) - 1))
    check_header_byte(work, original, position, data.draw(st.integers(0, 255)))


@given(data=st.data())
def test_any_header_byte_replaced(work, any_original, data):
    fuzz_header_byte(work, any_original, data)


def test_every_padding_byte_must_stay_a_space(work, any_original):
    n = header_length(any_original)
    for position in range(8 + len(any_original[8:8 + n].rstrip(b" ")), 8 + n):
        for value in b"\t\n\r\x00x}":
            blob = bytearray(any_original)
            blob[position] = value
            rejected(work / "pad.pdw", bytes(blob), "followed only by spaces|Extra data")


def fuzz_overwrites(work: Path, original: bytes, data: st.DataObject, max_writes: int = 8) -> None:
    """Up to `max_writes` bytes anywhere set to any value: rejected by the checksum if the file
    changed, and FormatError or a model that runs below it."""
    blob = bytearray(original)
    for _ in range(data.draw(st.integers(1, max_writes))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    if blob != original:
        rejected(work / "overwrite.pdw", bytes(blob), None)
    check_mutant(work / "overwrite.pdw", bytes(blob), verify=False)


@given(data=st.data())
def test_random_overwrites_anywhere(work, any_original, data):
    fuzz_overwrites(work, any_original, data)


# -- the length prefix --------------------------------------------------------------------------

@pytest.mark.parametrize("length, match", [
    (0, "not a pdinfer weight file"),
    (1, "not a JSON object"),
    ("one byte short", "not a multiple of 64"),  # the JSON still ends before the padding
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
              "one block short": n - 64, "one block long": n + 64, "one byte short": n - 1}.get(length, length)
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


TENSOR_ENTRY_CASES = [
    ({"dtype": "F16"}, "of F16 needs"), ({"dtype": "I8"}, "of I8 needs"), ({"dtype": "F64"}, "supported: 'F32'"),
    ({"dtype": "f32"}, "supported: 'F32'"), ({"dtype": 32}, "supported: 'F32'"), ({"dtype": None}, "exactly dtype"),
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
]


@pytest.mark.parametrize("changes, match", TENSOR_ENTRY_CASES)
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

HEADER_JSON_CASES = [
    (b"[]", "JSON object"), (b'"x"', "JSON object"), (b"1", "JSON object"), (b"null", "JSON object"),
    (b"{}", "not a pdinfer weight file .*no __metadata__"), (b'{"__metadata__": []}', "__metadata__"),
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
]


@pytest.mark.parametrize("text, match", HEADER_JSON_CASES)
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
    with pytest.raises(FormatError, match="not a pdinfer weight file"):
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
    # The checksum entry itself must stay the exact bytes "file_sha256":"<hex>" (FORMAT.md).
    indented = json.dumps(header, indent=4).replace('"file_sha256": "', '"file_sha256":"')
    escaped = json.dumps(header, separators=(",", ":"), ensure_ascii=True).replace("n", "\\u006e", 3)
    for what, text in {"indented JSON": indented.encode(), "ASCII escapes": escaped.encode()}.items():
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

METADATA_CASES = [
    ("format", "safetensors", "'format' is 'safetensors'"), ("format", None, "'format' is None"),
    ("format", "pdinfer-golden", "expected 'pdinfer'"),
    ("format_version", "3", "version '3' is not supported"), ("format_version", "1.0", "not supported"),
    ("format_version", "1", "'data_sha256' is missing"),
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
]


@pytest.mark.parametrize("key, value, match", METADATA_CASES)
def test_bad_metadata(work, key, value, match):
    rejected(work / "meta.pdw", write_raw(work / "meta.pdw", **{key: value}).read_bytes(), match)


@pytest.mark.parametrize("checksum, match", [
    ("", "64 lowercase hex"), ("0" * 64, WHOLE_FILE), ("A" * 64, "64 lowercase hex"), (None, None)])
def test_checksum_mismatch_is_ignored_only_when_asked(work, original, expected, checksum, match):
    header, data = split(original)
    if checksum is None:
        del header["__metadata__"]["file_sha256"]
        rejected(work / "sum.pdw", container(header, data), "'file_sha256' is missing", verify=False)
        return
    header["__metadata__"]["file_sha256"] = checksum
    rejected(work / "sum.pdw", container(header, data, seal=False), match)
    model, _ = load_blob(work / "sum.pdw", container(header, data, seal=False), verify=False)
    assert np.array_equal(model(IMAGES), expected)


def checksum_entry_mutants(original: bytes) -> dict[str, tuple[bytes, str]]:
    """The checksum entry escaped, spaced, or copied into a tensor entry: (file, error pattern)."""
    n = header_length(original)
    text, data = original[8:8 + n].rstrip(b" "), original[8 + n:]
    entry = text[text.index(b'"file_sha256":'):][:len('"file_sha256":"') + 65]
    edits = {"escaped": (b'"file_sha256":', b'"file\\u005fsha256":', "exactly once.*found them 0"),
             "spaced": (b'"file_sha256":', b'"file_sha256": ', "exactly once.*found them 0"),
             "copied": (b'"fc.bias":{', b'"fc.bias":{' + entry + b",", "exactly dtype")}
    return {what: (container(text.replace(old, new), data, seal=False), match)
            for what, (old, new, match) in edits.items()}


def test_the_checksum_entry_must_appear_once_as_written(work, original):
    """The reader finds the declared digest as the exact bytes "file_sha256":"<hex>"."""
    for blob, match in checksum_entry_mutants(original).values():
        rejected(work / "esc.pdw", blob, match)


def version_1(original: bytes) -> bytes:
    """The small model as a version 1 file: no file_sha256, a data_sha256 of the data section."""
    header, data = split(original)
    meta = {k: v for k, v in header["__metadata__"].items() if k != "file_sha256"}
    header["__metadata__"] = {**meta, "format_version": "1", "data_sha256": hashlib.sha256(data).hexdigest()}
    return container(header, data)


def version_1_mutants(original: bytes) -> dict[str, bytes]:
    """A version 1 file, with a data bit flipped, with a LeakyReLU slope edited, without data_sha256."""
    v1 = version_1(original)
    header, data = split(v1)
    del header["__metadata__"]["data_sha256"]
    return {"v1": v1, "v1-data-flip": v1[:-1] + bytes([v1[-1] ^ 1]),
            "v1-slope": v1.replace(b'\\"negative_slope\\":0.2', b'\\"negative_slope\\":0.9'),
            "v1-no-checksum": container(header, data)}


def test_version_1_files_load_with_their_data_verified(work, original, expected):
    v1 = version_1_mutants(original)
    model, _ = load_blob(work / "v1.pdw", v1["v1"])
    assert np.array_equal(model(IMAGES), expected)
    assert not load_graph(work / "v1.pdw").header_verified
    rejected(work / "v1.pdw", v1["v1-data-flip"], "data checksum mismatch")
    # The documented limit of version 1: a header edit is not detected.
    model, _ = load_blob(work / "v1.pdw", v1["v1-slope"])
    assert not np.array_equal(model(IMAGES), expected)
    rejected(work / "v1.pdw", v1["v1-no-checksum"], "'data_sha256' is missing", verify=False)


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


# -- the Java reader rejects exactly the files pdinfer rejects (issue 12) -------------------------

def write_mutants(directory: Path, model_name: str, original: bytes) -> list[Path]:
    """The mutants this file feeds the loader, written to `directory`. For every model: every
    header-byte change of test_every_header_byte_change_is_rejected, every truncation, every
    data-byte flip, the checksum-entry and version 1 cases. For the small model also the
    malformed files of the parametrized tests, which edit its entries and layer list."""
    blobs = {f"byte-{position}-{value}": blob for position, value, blob in header_byte_mutants(original)}
    blobs |= {f"cut-{length}": original[:length] for length in range(len(original))}
    for i in range(8 + header_length(original), len(original)):
        blobs[f"flip-{i}"] = original[:i] + bytes([original[i] ^ 1 << (i % 8)]) + original[i + 1:]
    blobs |= {f"entry-{what}": blob for what, (blob, _) in checksum_entry_mutants(original).items()}
    blobs |= version_1_mutants(original)
    if model_name != "small":
        return _write_all(directory, blobs)
    blobs |= {f"entry-{k}": _with_entry(original, "conv0.weight", **changes)
              for k, (changes, _) in enumerate(TENSOR_ENTRY_CASES)}
    blobs |= {f"json-{k}": container(text, b"\0" * 4) for k, (text, _) in enumerate(HEADER_JSON_CASES)}
    blobs |= {f"deep-{depth}": container(('{"__metadata__": {"a": ' + _nested(depth) + "}}").encode(), b"")
              for depth in (MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1, 100_000)}
    paths = _write_all(directory, blobs)
    paths += [write_raw(directory / f"meta-{k}.pdw", **{key: value})
              for k, (key, value, _) in enumerate(METADATA_CASES)]
    paths += [write_raw(directory / f"layers-deep-{depth}.pdw", layers_json=_nested(depth))
              for depth in (MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 100_000)]
    for k, (mutate, _) in enumerate(LAYER_CASES):
        layers = small_layers()
        mutate(layers)
        paths.append(write_raw(directory / f"layer-{k}.pdw", layers_json=json.dumps(layers)))
    return paths


def _write_all(directory: Path, blobs: dict[str, bytes]) -> list[Path]:
    """Each blob written to directory/<name>.pdw; the paths, in order."""
    paths = [directory / f"{name}.pdw" for name in blobs]
    for path, blob in zip(paths, blobs.values()):
        path.write_bytes(blob)
    return paths


def python_verdict(path: Path, verify: bool) -> str:
    try:
        load_graph(path, verify_checksum=verify)
    except FormatError as e:
        return f"REJECTED {e}"
    return "OK"


def test_java_rejects_exactly_the_files_pdinfer_rejects(java_classes, tmp_path, model_name, any_original):
    """All mutants of a model in one JVM (java/src/pdinfer/Check.java), with and without checksums."""
    paths = write_mutants(tmp_path, model_name, any_original)
    listing = "".join(f"{path}\n" for path in paths)
    for verify in (True, False):
        result = subprocess.run(["java", "-cp", str(java_classes), "pdinfer.Check",
                                 *([] if verify else ["--no-verify"])],
                                input=listing, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        java = result.stdout.splitlines()
        assert len(java) == len(paths), result.stderr
        python = [python_verdict(path, verify) for path in paths]
        differ = [f"{path.name}:\n  pdinfer: {p}\n  Java:    {j}" for path, p, j in zip(paths, python, java)
                  if (p == "OK") != (j == "OK") or j.startswith("CRASH")]
        assert not differ, (f"verify={verify}: {len(differ)} of {len(paths)} files judged differently\n"
                            + "\n".join(differ[:20]))
        if verify:  # every mutant changed the file's bytes; a version 1 header is not protected
            assert [path.stem for path, p in zip(paths, python) if p == "OK"] == ["v1", "v1-slope"]
        else:
            assert 0 < python.count("OK") < len(paths)  # loadable and rejected mutants below the checksum


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


# -- compressed weights: F16, BF16, I8 with weight_scale (issue 10) ---------------------------

def compressed_small_model(storage: str) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The small model as the exporter writes it with --weights `storage` (BatchNorm folded)."""
    return compress(small_layers(), small_tensors(), storage)


def write_compressed(path: Path, layers: list[dict], tensors: dict[str, np.ndarray]) -> Path:
    write_weights(path, layers, tensors, input_shape=INPUT_SHAPE, classes=CLASSES, producer="tests")
    return path


def _put_tensor(name: str, value):
    def edit(layers: list[dict], tensors: dict) -> None:
        tensors[name] = value(tensors[name]) if callable(value) else value
    return edit


def _entry_at(index: int, value):
    def edit(tensors: np.ndarray) -> np.ndarray:
        changed = np.array(tensors)
        changed.reshape(-1)[index] = value
        return changed
    return edit


def _role(layer: str, role: str, tensor: str | None, value=None):
    """Give `layer` the role `role` (holding `value`), or with `tensor` None remove the role."""
    def edit(layers: list[dict], tensors: dict) -> None:
        entry = next(e for e in layers if e["name"] == layer)
        if tensor is None:
            del tensors[entry["tensors"].pop(role)]
        else:
            entry["tensors"][role] = tensor
            tensors[tensor] = value
    return edit


# name -> (storage, edit(layers, tensors), what pdinfer's FormatError says)
BAD_COMPRESSED = {
    "zero scale": ("int8", _put_tensor("pw.weight_scale", _entry_at(1, 0.0)), "weight_scale\\) must be > 0"),
    "negative scale": ("int8", _put_tensor("fc.weight_scale", _entry_at(0, -0.5)), "must be > 0"),
    "NaN scale": ("int8", _put_tensor("conv0.weight_scale", _entry_at(2, np.nan)), "NaN or infinite"),
    "infinite scale": ("int8", _put_tensor("dw.weight_scale", _entry_at(3, np.inf)), "NaN or infinite"),
    "scale too long": ("int8", _put_tensor("pw.weight_scale", np.ones(9, np.float32)), "has shape \\[9\\]"),
    "scale 2-d": ("int8", _put_tensor("pw.weight_scale", np.ones((8, 1), np.float32)), "has shape \\[8, 1\\]"),
    "F16 scale": ("int8", _put_tensor("pw.weight_scale", lambda s: s.astype(np.float16)), "stored as F16"),
    "I8 scale": ("int8", _put_tensor("pw.weight_scale", np.ones(8, np.int8)), "stored as I8"),
    "I8 weight without scale": ("int8", _role("fc", "weight_scale", None), "needs its weight_scale"),
    "scale with an F16 weight": ("f16", _role("pw", "weight_scale", "pw.weight_scale", np.ones(8, np.float32)),
                                 "goes only with an I8 weight"),
    "scale with an F32 weight": ("f32", _role("pw", "weight_scale", "pw.weight_scale", np.ones(8, np.float32)),
                                 "goes only with an I8 weight"),
    "F16 bias": ("f16", _put_tensor("pw.bias", lambda b: b.astype(np.float16)), "\\(bias\\) is stored as F16"),
    "BF16 bias": ("bf16", _put_tensor("fc.bias", lambda b: to_bf16(b)), "\\(bias\\) is stored as BF16"),
    "I8 BatchNorm weight": ("f32", _put_tensor("bn0.weight", np.ones(4, np.int8)), "\\(weight\\) is stored as I8"),
    "F16 infinity": ("f16", _put_tensor("dw.weight", _entry_at(5, np.inf)), "NaN or infinite"),
    "BF16 NaN": ("bf16", _put_tensor("conv0.weight", _entry_at(0, 0x7FC0)), "NaN or infinite"),
    "BF16 infinity": ("bf16", _put_tensor("fc.weight", _entry_at(4, 0xFF80)), "NaN or infinite"),
}


def bad_compressed_files(directory: Path) -> dict[str, tuple[Path, str]]:
    files = {}
    for name, (kind, edit, match) in BAD_COMPRESSED.items():
        layers, tensors = compressed_small_model(kind)
        edit(layers, tensors)
        files[name] = (write_compressed(directory / f"bad-{name.replace(' ', '_')}.pdw", layers, tensors), match)
    return files


@pytest.mark.parametrize("case", sorted(BAD_COMPRESSED))
def test_bad_compressed_weights_are_rejected(tmp_path, case):
    path, match = bad_compressed_files(tmp_path)[case]
    with pytest.raises(FormatError, match=match):
        load_graph(path)


@pytest.mark.parametrize("storage", ["f16", "bf16", "int8"])
def test_compressed_files_truncated_or_flipped_are_rejected(tmp_path, storage):
    """Every truncation is rejected; every flipped data bit is caught by the checksum, and with the
    checksum off is rejected (a NaN/infinite weight or a bad scale) or loads a model that runs."""
    original = write_compressed(tmp_path / "c.pdw", *compressed_small_model(storage)).read_bytes()
    assert storage_types(load_graph(tmp_path / "c.pdw")) == {"F32", WEIGHT_STORAGE[storage]}
    for length in range(len(original)):
        with pytest.raises(FormatError):
            load_blob(tmp_path / "cut.pdw", original[:length])
    for i in range(8 + header_length(original), len(original)):
        blob = original[:i] + bytes([original[i] ^ 1 << (i % 8)]) + original[i + 1:]
        rejected(tmp_path / "flip.pdw", blob, WHOLE_FILE)
        try:
            check_mutant(tmp_path / "flip.pdw", blob, verify=False)
        except FormatError as e:
            assert re.search("NaN or infinite|must be > 0", str(e)), e


def storage_types(graph) -> set[str]:
    return {storage(getattr(layer, role)) for layer in graph.layers
            for role in layer.tensor_shapes() if hasattr(layer, role)}


def test_java_rejects_the_compressed_files_pdinfer_rejects(java_classes, tmp_path):
    """The Java checker accepts the compressed small models and rejects every bad one above, and
    every truncation and checksum-off data flip of the int8 model exactly when pdinfer does."""
    good = [write_compressed(tmp_path / f"good-{s}.pdw", *compressed_small_model(s)) for s in ("f16", "bf16", "int8")]
    bad = [path for path, _ in bad_compressed_files(tmp_path).values()]
    original = good[-1].read_bytes()
    mutants = []
    for i in range(len(original)):
        mutants.append(tmp_path / f"cut-{i}.pdw")
        mutants[-1].write_bytes(original[:i])
    for i in range(8 + header_length(original), len(original)):
        mutants.append(tmp_path / f"flip-{i}.pdw")
        mutants[-1].write_bytes(original[:i] + bytes([original[i] ^ 1 << (i % 8)]) + original[i + 1:])
    paths = good + bad + mutants
    for verify in (True, False):
        result = subprocess.run(["java", "-cp", str(java_classes), "pdinfer.Check", *([] if verify else ["--no-verify"])],
                                input="".join(f"{p}\n" for p in paths), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        java = result.stdout.splitlines()
        python = [python_verdict(path, verify) for path in paths]
        assert java[:3] == python[:3] == ["OK"] * 3, java[:3]
        differ = [f"{path.name}:\n  pdinfer: {p}\n  Java:    {j}" for path, p, j in zip(paths, python, java)
                  if (p == "OK") != (j == "OK") or j.startswith("CRASH")]
        assert not differ, f"verify={verify}: " + "\n".join(differ[:20])
        assert all(j.startswith("REJECTED") for j in java[3:3 + len(bad)])
