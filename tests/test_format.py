"""The .pdw container (docs/FORMAT.md): round trip, layout, safetensors compatibility, basic bad files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import pdinfer
from pdinfer.format import HEADER_ALIGN, read_container, read_weights, write_weights

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
    with pytest.raises(pdinfer.FormatError, match="checksum mismatch"):
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
