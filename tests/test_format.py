"""The .pdw container (docs/FORMAT.md): round trip, the whole-file checksum, the streaming writer,
version 1 files, layout, safetensors compatibility, basic bad files."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import stat
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import pdinfer
import pdinfer.format
from pdinfer.graph import load_graph
from pdinfer.format import (HEADER_ALIGN, ContainerWriter, header_size, read_container, read_weights,
                            write_container, write_weights)

ROOT = Path(__file__).resolve().parent.parent

INPUT_SHAPE = (1, 4, 5)
CLASSES = ["a", "b", "c"]


def tiny_model() -> tuple[list[dict], dict[str, np.ndarray]]:
    """Conv2d 1->2 (3x3) + ReLU + global mean + Linear 2->3 + Softmax, random weights."""
    rng = np.random.default_rng(0)
    layers = [
        {"name": "conv", "type": "Conv2d", "inputs": ["input"],
         "params": {"in_channels": 1, "out_channels": 2, "kernel_size": [3, 3], "stride": [1, 1],
                    "padding": [1, 1, 1, 1], "dilation": [1, 1], "groups": 1, "bias": True},
         "tensors": {"weight": "conv.weight", "bias": "conv.bias"}},
        {"name": "relu", "type": "ReLU", "inputs": ["conv"], "params": {}, "tensors": {}},
        {"name": "mean", "type": "GlobalAvgPool", "inputs": ["relu"], "params": {"keepdim": False},
         "tensors": {}},
        {"name": "fc", "type": "Linear", "inputs": ["mean"],
         "params": {"in_features": 2, "out_features": 3, "bias": True},
         "tensors": {"weight": "fc.weight", "bias": "fc.bias"}},
        {"name": "softmax", "type": "Softmax", "inputs": ["fc"], "params": {"dim": 1}, "tensors": {}},
    ]
    tensors = {"conv.weight": rng.standard_normal((2, 1, 3, 3)), "conv.bias": rng.standard_normal(2),
               "fc.weight": rng.standard_normal((3, 2)), "fc.bias": rng.standard_normal(3)}
    return layers, {name: t.astype(np.float32) for name, t in tensors.items()}


@pytest.fixture
def weights_file(tmp_path) -> Path:
    path = tmp_path / "tiny.pdw"
    layers, tensors = tiny_model()
    write_weights(path, layers, tensors, input_shape=INPUT_SHAPE, classes=CLASSES, producer="tests")
    return path


def split(path: Path) -> tuple[dict, bytes]:
    """The parsed header and the data section of a written file."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def rewrite(path: Path, header: dict, data: bytes) -> None:
    """Write `header` and `data` as a file with a valid (aligned, space-padded) layout."""
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % HEADER_ALIGN)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


# ------------------------------------------------------------------------------ well-formed files

def test_round_trip(weights_file):
    layers, tensors = tiny_model()
    container, read_layers = read_weights(weights_file)
    assert read_layers == layers
    assert list(container.tensors) == list(tensors)  # data order is layer order
    for name, array in tensors.items():
        assert container.tensors[name].dtype == np.float32
        assert np.array_equal(container.tensors[name], array)
    meta = container.metadata
    assert (meta["format"], meta["format_version"], meta["producer"]) == ("pdinfer", "2", "tests")
    assert json.loads(meta["input_shape"]) == list(INPUT_SHAPE) and json.loads(meta["classes"]) == CLASSES
    model = pdinfer.load(weights_file)
    assert model.input_shape == INPUT_SHAPE and model.classes == CLASSES and model.output_shape == (3,)


def test_header_is_aligned_and_padded_with_spaces(weights_file):
    raw = weights_file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % HEADER_ALIGN == 0
    header = raw[8:8 + n]
    text = header.rstrip(b" ")
    assert text.endswith(b"}") and set(header[len(text):]) <= {0x20}
    json.loads(text)
    assert len(raw) - 8 - n == sum(t.nbytes for t in tiny_model()[1].values())


def test_safetensors_reads_written_files(weights_file):
    read = safetensors.numpy.load_file(weights_file)
    for name, array in tiny_model()[1].items():
        assert np.array_equal(read[name], array)
    with safe_open(weights_file, framework="numpy") as f:
        meta = f.metadata()
    assert meta == read_container(weights_file).metadata


# ------------------------------------------------------------------------------ the checksum and the writer

def test_file_sha256_is_the_hash_of_the_file_with_its_digits_zeroed(weights_file):
    """FORMAT.md's rule, computed here independently of the reader."""
    raw = weights_file.read_bytes()
    declared = read_container(weights_file).metadata["file_sha256"]
    entry = f'"file_sha256":"{declared}"'.encode()
    assert raw.count(entry) == 1
    zeroed = raw.replace(entry, f'"file_sha256":"{"0" * 64}"'.encode())
    assert hashlib.sha256(zeroed).hexdigest() == declared
    assert "data_sha256" not in read_container(weights_file).metadata
    assert read_container(weights_file).data_sha256 == hashlib.sha256(split(weights_file)[1]).hexdigest()
    assert read_container(weights_file).header_verified
    assert not read_container(weights_file, verify_checksum=False).header_verified


def test_streaming_writer_matches_write_container(tmp_path):
    layout = [("a", (2, 3)), ("b", (4,)), ("c", (1, 1, 1, 2))]
    arrays = {name: np.arange(np.prod(shape), dtype=np.float64).reshape(shape) - 1.5 for name, shape in layout}
    meta = {"format": "pdinfer-test", "format_version": "1", "data_sha256": "stale", "file_sha256": "stale"}
    with ContainerWriter(tmp_path / "streamed.pdw", meta, layout) as writer:
        for name, _ in layout:
            writer.write(name, arrays[name].tolist())  # anything float32-convertible
    write_container(tmp_path / "whole.pdw", meta, list(arrays.items()))
    assert (tmp_path / "streamed.pdw").read_bytes() == (tmp_path / "whole.pdw").read_bytes()
    container = read_container(tmp_path / "streamed.pdw")
    assert set(container.metadata) == {"format", "format_version", "file_sha256"}  # checksums are the writer's
    for name, array in arrays.items():
        assert np.array_equal(container.tensors[name], array.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.pdw", "whole.pdw"]


@pytest.mark.parametrize("writes, match", [
    ([("b", (4,))], "out of layout order \\(expected 'a'\\)"),
    ([("a", (3, 2))], "has shape \\[3, 2\\], the layout says \\[2, 3\\]"),
    ([("a", (2, 3))], "1 tensor\\(s\\) of the layout were not written, from 'b' on"),
    ([("a", (2, 3)), ("b", (4,)), ("b", (4,))], "expected 'no more tensors'"),
])
def test_writer_misuse_leaves_no_file(tmp_path, writes, match):
    target = tmp_path / "out.pdw"
    target.write_bytes(b"previous")
    with pytest.raises(pdinfer.FormatError, match=match):
        with ContainerWriter(target, {"format": "pdinfer-test"}, [("a", (2, 3)), ("b", (4,))]) as writer:
            for name, shape in writes:
                writer.write(name, np.zeros(shape))
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["out.pdw"]


def test_writer_removes_its_temporary_file_on_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with ContainerWriter(tmp_path / "out.pdw", {"format": "pdinfer-test"}, [("a", (1,))]) as writer:
            raise KeyError("the caller failed")
    with pytest.raises(ValueError):
        with ContainerWriter(tmp_path / "out.pdw", {"format": "pdinfer-test"}, [("a", (1,))]) as writer:
            writer.write("a", ["not a number"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("layout", [[("a", ())], [("a", (0, 2))], [("a", (1, 1, 1, 1, 1))],
                                    [("a", (1,)), ("a", (1,))], [("__metadata__", (1,))]])
def test_writer_refuses_a_layout_the_reader_would_reject(tmp_path, layout):
    with pytest.raises(pdinfer.FormatError):
        ContainerWriter(tmp_path / "out.pdw", {"format": "pdinfer-test"}, layout)
    assert list(tmp_path.iterdir()) == []


def test_a_large_alien_file_is_refused_from_its_first_8_bytes(tmp_path):
    """FORMAT.md section 4: the length is checked before anything else is read (a 256 MiB file
    that starts like a PNG is not read into memory)."""
    path = tmp_path / "image.png"
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(256 << 20)  # sparse
    tracemalloc.start()
    try:
        with pytest.raises(pdinfer.FormatError, match=r"not a pdinfer weight file \(it is a PNG image\)"):
            read_container(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak


def test_writer_refuses_a_header_over_the_limit_up_front(tmp_path, monkeypatch):
    """Every reader refuses a header over MAX_HEADER_BYTES, so the writer refuses to start one."""
    layout = [(f"t{i}", (1,)) for i in range(200)]
    size = header_size({"format": "pdinfer-test"}, layout)
    monkeypatch.setattr(pdinfer.format, "MAX_HEADER_BYTES", size - 1)
    with pytest.raises(pdinfer.FormatError, match=f"would be {size} bytes, over the {size - 1}-byte limit"):
        ContainerWriter(tmp_path / "out.pdw", {"format": "pdinfer-test"}, layout)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(pdinfer.format, "MAX_HEADER_BYTES", size)
    write_container(tmp_path / "out.pdw", {"format": "pdinfer-test"}, [(n, np.zeros(s)) for n, s in layout])
    assert struct.unpack("<Q", (tmp_path / "out.pdw").read_bytes()[:8])[0] == size
    assert len(read_container(tmp_path / "out.pdw").tensors) == 200


def test_writer_syncs_the_file_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append("fsync directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        fsync(fd)

    def record_replace(src, dst) -> None:
        events.append("rename")
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    write_container(tmp_path / "out.pdw", {"format": "pdinfer-test"}, [("a", np.ones(3))])
    assert events == ["fsync file", "rename", "fsync directory"]


def test_version_1_files_still_load():
    """tests/data/tiny_v1.pdw is docs/tiny.pdw as the version 1 writer wrote it (data_sha256 only)."""
    old, new = pdinfer.load(ROOT / "tests" / "data" / "tiny_v1.pdw"), pdinfer.load(ROOT / "docs" / "tiny.pdw")
    x = np.random.default_rng(0).random((5, 1, 2, 2), dtype=np.float32)
    assert old(x).tobytes() == new(x).tobytes() and old.data_sha256 == new.data_sha256
    assert read_container(ROOT / "tests" / "data" / "tiny_v1.pdw").metadata["format_version"] == "1"
    assert not load_graph(ROOT / "tests" / "data" / "tiny_v1.pdw").header_verified
    assert load_graph(ROOT / "docs" / "tiny.pdw").header_verified


@pytest.mark.parametrize("path", ["weights/pd_light.pdw", "weights/pd_model.pdw", "docs/tiny.pdw"])
def test_shipped_files_are_version_2_with_the_whole_file_verified(path):
    assert read_container(ROOT / path).metadata["format_version"] == "2"
    assert load_graph(ROOT / path).header_verified


def test_format_md_example_matches_docs_tiny_pdw():
    """FORMAT.md section 5: the checksum, where its digits lie, and pdinfer's output."""
    text, raw = (ROOT / "docs" / "FORMAT.md").read_text(), (ROOT / "docs" / "tiny.pdw").read_bytes()
    declared = read_container(ROOT / "docs" / "tiny.pdw").metadata["file_sha256"]
    offset = raw.index(b'"file_sha256":"')
    assert f'"file_sha256": "{declared}"' in text
    assert f"starts at file offset {offset} (0x{offset:x})" in text and f"`P = {offset + 15} … {offset + 78}`" in text
    out = pdinfer.load(ROOT / "docs" / "tiny.pdw")(np.array([[[[0.5, -1.0], [2.0, 0.0]]]], np.float32))
    assert f"| pdinfer (reference and fast path) | {out[0, 0].item()!r} | {out[0, 1].item()!r} |" in text


def test_format_md_dump_is_what_tiny_example_prints(tmp_path, capsys, monkeypatch):
    """FORMAT.md section 5 shows exactly what `python -m exporter.tiny_example` prints, and the
    file it writes is docs/tiny.pdw; its example names pdinfer's value and torch's apart. The file's
    `producer` names the torch that wrote it: this one is made to give the same name."""
    torch = pytest.importorskip("torch")
    from exporter import tiny_example

    producer = read_container(ROOT / "docs" / "tiny.pdw").metadata["producer"]
    monkeypatch.setattr(torch, "__version__", re.fullmatch(r"pdinfer exporter \(torch (.+)\)", producer).group(1))
    assert tiny_example.main([str(tmp_path / "tiny.pdw")]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "tiny.pdw").read_bytes() == (ROOT / "docs" / "tiny.pdw").read_bytes()
    section = (ROOT / "docs" / "FORMAT.md").read_text().split("## 5. Example")[1]
    assert section.split("```\n")[1] == printed
    out = pdinfer.load(ROOT / "docs" / "tiny.pdw")(np.array(tiny_example.EXAMPLE_INPUT, np.float32))
    assert f"pdinfer (this file): {out.tolist()}" in printed


def test_not_a_pdinfer_file(tmp_path):
    """A PNG, a text file, a safetensors file without pdinfer's metadata: one clear message."""
    safetensors.numpy.save_file({"x": np.zeros(3, np.float32)}, tmp_path / "plain.safetensors")
    safetensors.numpy.save_file({"x": np.zeros(3, np.float16)}, tmp_path / "meta.safetensors",
                                metadata={"format": "pt"})
    (tmp_path / "notes.txt").write_text("just some text\n" * 20)
    (tmp_path / "short.txt").write_text("hi\n")
    files = [ROOT / "weights" / "samples" / "corona_1.png", *sorted(tmp_path.iterdir())]
    for path in files:
        with pytest.raises(pdinfer.FormatError, match=f"^{re.escape(str(path))}: not a pdinfer weight file \\("):
            pdinfer.load(path)


def test_a_file_of_another_kind_is_named(tmp_path):
    """A weight file argument that is an image, an array, an archive or a pickle says which."""
    np.save(tmp_path / "array.npy", np.zeros(3, np.float32))
    np.savez(tmp_path / "arrays.npz", x=np.zeros(3))
    (tmp_path / "model.pt").write_bytes(pickle.dumps({"weight": [1.0, 2.0]}, protocol=2))
    cases = {ROOT / "weights" / "samples" / "void_1.png": "a PNG image", tmp_path / "array.npy": "a NumPy .npy array",
             tmp_path / "arrays.npz": "a ZIP archive", tmp_path / "model.pt": "a Python pickle"}
    for path, what in cases.items():
        with pytest.raises(pdinfer.FormatError, match=f"^{re.escape(str(path))}: not a pdinfer weight file \\(it is {what}"):
            pdinfer.load(path)


def test_a_truncated_file_says_so(tmp_path):
    """Cut anywhere past its first 8 bytes, a file is reported as truncated (`head -c 400000` of the
    shipped light model, and every length of a tiny one)."""
    light = (ROOT / "weights" / "pd_light.pdw").read_bytes()
    write_weights(tmp_path / "small.pdw", *tiny_model(), input_shape=INPUT_SHAPE, classes=CLASSES)
    small = (tmp_path / "small.pdw").read_bytes()
    for whole, size in [(light, 400_000), *((small, size) for size in range(8, len(small)))]:
        (tmp_path / "cut.pdw").write_bytes(whole[:size])
        with pytest.raises(pdinfer.FormatError, match="truncated"):
            pdinfer.load(tmp_path / "cut.pdw")


# ------------------------------------------------------------------------------ bad files

def test_truncated_data_section(weights_file):
    weights_file.write_bytes(weights_file.read_bytes()[:-4])
    with pytest.raises(pdinfer.FormatError, match="outside the .*data section"):
        pdinfer.load(weights_file)


def test_truncated_header(weights_file):
    weights_file.write_bytes(weights_file.read_bytes()[:40])
    with pytest.raises(pdinfer.FormatError, match="past the end.*truncated"):
        pdinfer.load(weights_file)


def test_shorter_than_the_length_field(weights_file):
    weights_file.write_bytes(b"\x10\x00\x00")
    with pytest.raises(pdinfer.FormatError, match="too short"):
        pdinfer.load(weights_file)


@pytest.mark.parametrize("where, flip, problem", [
    (0, 0x01, "not a JSON object"),  # '{' -> 'z'
    (1, 0x01, "not valid JSON"),  # '"' -> '#'
    (2, 0xFF, "not valid UTF-8"),  # '_' -> 0xa0, a continuation byte with nothing to continue
])
def test_flipped_header_byte(weights_file, where, flip, problem):
    raw = bytearray(weights_file.read_bytes())
    raw[8 + where] ^= flip
    weights_file.write_bytes(bytes(raw))
    with pytest.raises(pdinfer.FormatError, match=problem):
        pdinfer.load(weights_file)


def test_flipped_data_byte(weights_file):
    raw = bytearray(weights_file.read_bytes())
    raw[-1] ^= 0x01
    weights_file.write_bytes(bytes(raw))
    with pytest.raises(pdinfer.FormatError, match=r"whole-file SHA-256 \(header and data\) mismatch"):
        pdinfer.load(weights_file)


def test_offset_past_the_end(weights_file):
    header, data = split(weights_file)
    header["fc.bias"]["data_offsets"] = [len(data) + 64, len(data) + 76]
    rewrite(weights_file, header, data)
    with pytest.raises(pdinfer.FormatError, match="'fc.bias' data_offsets .* outside"):
        pdinfer.load(weights_file)


def test_unsupported_layer_type(tmp_path):
    layers, tensors = tiny_model()
    layers[1] = {"name": "relu", "type": "Upsample", "inputs": ["conv"], "params": {}, "tensors": {}}
    write_weights(tmp_path / "bad.pdw", layers, tensors, input_shape=INPUT_SHAPE, classes=CLASSES)
    with pytest.raises(pdinfer.UnsupportedLayerError, match="'Upsample' is not supported"):
        pdinfer.load(tmp_path / "bad.pdw")


@pytest.mark.parametrize("shape", [(1, 5, 4), (2, 4, 5), (3, 1, 4, 5, 1), (4, 5), (0, 1, 4, 5)])
def test_wrong_input_shape(weights_file, shape):
    model = pdinfer.load(weights_file)
    with pytest.raises(pdinfer.InputError, match=r"input shape must be \(1, 4, 5\)"):
        model(np.zeros(shape, np.float32))
