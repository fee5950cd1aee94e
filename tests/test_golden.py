"""Golden bundles (pdinfer/golden.py, exporter/golden.py) and the Java kit that checks them (java/).

The Java tests use conftest.py's `java_classes` (java/src compiled once per session): without
javac they fail under CI=true and are skipped elsewhere (java/run.sh --install-jdk installs a
JDK 17). The seed-model test also needs torch.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import pdinfer
import pdinfer.golden
from pdinfer.errors import FormatError, InputError
from pdinfer.format import read_container, write_container, write_weights
from pdinfer.cli import main as cli_main
from pdinfer.graph import load_graph
from pdinfer.golden import (EDGE_KINDS, GOLDEN_FORMAT, GOLDEN_VERSION, TORCH_ATOL_FACTOR, file_sha256,
                            make_inputs, read_golden, write_golden)
from small_model import reseal, small_layers, small_tensors

ROOT = Path(__file__).resolve().parent.parent
INPUT_SHAPE = (2, 9, 11)  # (C, H, W) of the all-layer-types model
COUNT = 2  # seeded random inputs per bundle, as the CLI's default

# ----------------------------------------------------------------------------- a model with every layer type


def _layer(name: str, type_name: str, inputs: list[str], params: dict | None = None, roles=()) -> dict:
    return {"name": name, "type": type_name, "inputs": inputs, "params": params or {},
            "tensors": {role: f"{name}.{role}" for role in roles}}


def _conv(cin: int, cout: int, kernel, stride, padding, dilation, groups: int, bias: bool) -> dict:
    return {"in_channels": cin, "out_channels": cout, "kernel_size": kernel, "stride": stride,
            "padding": padding, "dilation": dilation, "groups": groups, "bias": bias}


def _avg(kernel, stride, padding, ceil_mode: bool, count_include_pad: bool, divisor_override: int) -> dict:
    return {"kernel_size": kernel, "stride": stride, "padding": padding, "ceil_mode": ceil_mode,
            "count_include_pad": count_include_pad, "divisor_override": divisor_override}


def all_layer_types_model(path: Path, seed: int = 0) -> Path:
    """Every FORMAT.md layer type with uncommon parameters: grouped, dilated, asymmetrically
    padded convolution; ReLU6 that clips at both ends; ceil-mode pools; the three AvgPool2d
    divisor rules; Softmax over a 4-D tensor; GlobalAvgPool with keepdim; Linear without bias."""
    bn_roles = ("weight", "bias", "running_mean", "running_var")
    layers = [
        _layer("conv", "Conv2d", ["input"], _conv(2, 6, [3, 2], [2, 1], [2, 1, 1, 0], [2, 1], 2, True),
               ("weight", "bias")),
        _layer("bn", "BatchNorm2d", ["conv"], {"num_features": 6, "eps": 1e-3}, bn_roles),
        _layer("leaky", "LeakyReLU", ["bn"], {"negative_slope": 0.1}),
        _layer("relu6", "ReLU6", ["leaky"]),
        _layer("maxpool", "MaxPool2d", ["relu6"], {"kernel_size": [3, 3], "stride": [2, 2],
                                                  "padding": [1, 1, 0, 1], "dilation": [1, 2], "ceil_mode": True}),
        _layer("dw", "Conv2d", ["maxpool"], _conv(6, 6, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 6, False), ("weight",)),
        _layer("add", "Add", ["maxpool", "dw"]),
        _layer("relu", "ReLU", ["add"]),
        _layer("avg_pad", "AvgPool2d", ["relu"], _avg([3, 3], [1, 1], [1, 1, 1, 1], False, True, 0)),
        _layer("avg_ceil", "AvgPool2d", ["avg_pad"], _avg([2, 2], [2, 2], [1, 0, 0, 1], True, False, 0)),
        _layer("avg_div", "AvgPool2d", ["avg_ceil"], _avg([2, 2], [1, 1], [0, 0, 0, 0], False, False, 3)),
        _layer("sigmoid", "Sigmoid", ["avg_div"]),
        _layer("softmax4d", "Softmax", ["sigmoid"], {"dim": 1}),
        _layer("gap", "GlobalAvgPool", ["softmax4d"], {"keepdim": True}),
        _layer("flatten", "Flatten", ["gap"]),
        _layer("dropout", "Dropout", ["flatten"], {"p": 0.5}),
        _layer("fc0", "Linear", ["dropout"], {"in_features": 6, "out_features": 8, "bias": False}, ("weight",)),
        _layer("fc1", "Linear", ["fc0"], {"in_features": 8, "out_features": 4, "bias": True}, ("weight", "bias")),
        _layer("softmax", "Softmax", ["fc1"], {"dim": 1}),
    ]
    rng = np.random.default_rng(seed)
    shapes = {"conv.weight": (6, 1, 3, 2), "conv.bias": (6,), "dw.weight": (6, 1, 3, 3),
              "fc0.weight": (8, 6), "fc1.weight": (4, 8), "fc1.bias": (4,)}
    tensors = {name: rng.normal(0, 1, shape) for name, shape in shapes.items()}
    tensors |= {"bn.weight": rng.uniform(1, 4, 6), "bn.bias": rng.uniform(-1, 1, 6),
                "bn.running_mean": rng.uniform(-0.5, 0.5, 6), "bn.running_var": rng.uniform(0.2, 2, 6)}
    write_weights(path, layers, {k: v.astype(np.float32) for k, v in tensors.items()},
                  input_shape=INPUT_SHAPE, classes=list("abcd"), producer="tests")
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return all_layer_types_model(tmp_path_factory.mktemp("weights") / "all_types.pdw")


@pytest.fixture(scope="module")
def golden_file(model_file, tmp_path_factory) -> Path:
    return write_golden(model_file, tmp_path_factory.mktemp("golden"), count=COUNT, seed=7)


def rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a container, letting `edit(name, array) -> array` change tensors (write_container)."""
    container = read_container(src)
    write_container(dst, container.metadata, [(name, edit(name, np.array(a))) for name, a in container.tensors.items()])
    return dst


# ----------------------------------------------------------------------------- the Python side


def test_inputs_are_seeded_and_include_the_edge_cases():
    inputs = list(make_inputs(INPUT_SHAPE, 3, seed=5))
    assert [i.kind for i in inputs] == ["uniform", "normal", "uniform", *EDGE_KINDS]
    assert [i.name for i in inputs] == [f"input.{i}" for i in range(7)]
    again = make_inputs(INPUT_SHAPE, 3, seed=5)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(inputs, again, strict=True))
    by_kind = {i.kind: i.image for i in inputs[3:]}
    assert all(i.image.shape == (1, *INPUT_SHAPE) and i.image.dtype == np.float32 for i in inputs)
    assert not by_kind["zeros"].any() and (by_kind["ones"] == 1).all()
    assert by_kind["large"].max() > 900 and (by_kind["negative"] <= 0).all() and by_kind["negative"].min() < -0.9
    assert 0 <= inputs[0].image.min() and inputs[0].image.max() < 1 and inputs[1].image.min() < 0
    with pytest.raises(InputError, match="count must be >= 0"):
        list(make_inputs(INPUT_SHAPE, -1, seed=5))


def check_against_trace(golden, model_file: Path, count: int, seed: int, layers: list[str]) -> None:
    """Every stored input and reference output equals make_inputs and Model.trace bit for bit."""
    model = pdinfer.load(model_file)
    assert golden.layers == layers and len(golden) == count + len(EDGE_KINDS)
    for entry, item in zip(golden, make_inputs(model.input_shape, count, seed), strict=True):
        assert (entry.name, entry.kind) == (item.name, item.kind)
        assert np.array_equal(entry.image, item.image)
        trace = model.trace(item.image)
        assert list(entry.reference) == layers
        for name in layers:
            assert entry.reference[name].tobytes() == trace[name].tobytes(), name


def test_golden_round_trip(model_file, golden_file):
    golden = read_golden(golden_file)
    model = pdinfer.load(model_file)
    manifest = golden.manifest
    assert golden_file.name == "all_types.golden.pdw"
    assert read_container(golden_file).metadata["format"] == GOLDEN_FORMAT
    assert manifest["weights"] == "all_types.pdw" and manifest["weights_sha256"] == file_sha256(model_file)
    assert manifest["weights_data_sha256"] == model.data_sha256
    assert manifest["pdinfer_version"] == pdinfer.__version__ and manifest["torch_version"] is None
    assert manifest["torch_atol_factor"] == TORCH_ATOL_FACTOR
    assert manifest["subset"] is False and not golden.subset and not golden.has_torch
    assert golden[0].torch is None
    check_against_trace(golden, model_file, COUNT, 7, model.layer_names)
    with pytest.raises(IndexError, match="no input 6"):
        golden[len(golden)]


def test_subset_bundle_round_trip(model_file, tmp_path):
    path = write_golden(model_file, tmp_path, count=1, seed=3, layers=["softmax", "conv", "add"])
    golden = read_golden(path)
    assert golden.subset and golden.manifest["layers"] == ["conv", "add", "softmax"]  # execution order
    assert len(read_container(path).tensors) == len(golden) * 4
    check_against_trace(golden, model_file, 1, 3, ["conv", "add", "softmax"])
    assert path.stat().st_size < golden_size(model_file, tmp_path / "full") / 3


def golden_size(model_file: Path, out_dir: Path) -> int:
    return write_golden(model_file, out_dir, count=1, seed=3).stat().st_size


def test_unknown_or_no_layers_are_input_errors(model_file, tmp_path):
    with pytest.raises(InputError, match=r"no layer named 'fc9', 'Conv'.*its layers: conv, bn, leaky"):
        write_golden(model_file, tmp_path, layers=["conv", "fc9", "Conv"])
    with pytest.raises(InputError, match="at least one layer"):
        write_golden(model_file, tmp_path, layers=[])
    with pytest.raises(InputError, match="not the string 'conv'"):
        write_golden(model_file, tmp_path, layers="conv")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


def test_a_count_whose_header_passes_the_limit_is_refused_up_front(model_file, tmp_path, monkeypatch):
    """Readers refuse headers over MAX_HEADER_BYTES, so the writer refuses before computing anything."""
    limit = 40_000
    monkeypatch.setattr(pdinfer.golden, "MAX_HEADER_BYTES", limit)
    with pytest.raises(InputError, match=r"count 60 would give a bundle header of \d+ bytes, over the 40000-byte "
                                         r"limit.*at most about (\d+) random inputs") as error:
        write_golden(model_file, tmp_path, count=60, progress=lambda *_: pytest.fail("computed an input"))
    assert not list(tmp_path.iterdir())
    fits = int(re.search(r"at most about (\d+)", str(error.value)).group(1))
    path = write_golden(model_file, tmp_path, count=fits)
    assert struct.unpack("<Q", path.read_bytes()[:8])[0] <= limit


def test_progress_is_called_after_each_input(model_file, tmp_path):
    calls = []
    write_golden(model_file, tmp_path, count=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 3 + len(EDGE_KINDS)) for i in range(1, 8)]


def test_a_failing_tracer_leaves_no_file(model_file, tmp_path):
    def tracer(image: np.ndarray) -> dict:
        return {}  # no layer's output

    with pytest.raises(FormatError, match="torch gave no output for layer 'conv'"):
        write_golden(model_file, tmp_path, torch_tracer=tracer, torch_version="fake")
    assert not list(tmp_path.iterdir())


def test_memory_is_bounded_by_one_trace_whatever_the_count(tmp_path):
    """Peak traced memory writing 40 random inputs exceeds that of 2 by far less than one trace."""
    shape = (1, 96, 160)  # the small model is fully convolutional up to its global pool
    weights = tmp_path / "small.pdw"
    write_weights(weights, small_layers(), small_tensors(), input_shape=shape, classes=["a", "b", "c"])
    model = pdinfer.load(weights)
    one_trace = sum(out.nbytes for out in model.trace(np.zeros(shape, np.float32)).values())
    assert one_trace > 2_000_000

    def peak(count: int) -> int:
        write_golden(weights, tmp_path / "warm", count=1)  # compiled and cached before measuring
        tracemalloc.start()
        try:
            write_golden(weights, tmp_path / str(count), count=count)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, many = peak(2), peak(40)
    assert few > one_trace  # the measurement sees the trace
    assert many - few < one_trace / 4, (few, many, one_trace)
    golden = read_golden(tmp_path / "40" / "small.golden.pdw")
    assert len(golden) == 40 + len(EDGE_KINDS)


def test_reading_is_bounded_too(tmp_path):
    """read_golden checks the file in a streaming pass and reads one input at a time: opening and
    iterating a bundle allocates a few inputs' worth (the entry being read and the one before)."""
    shape = (1, 96, 160)
    weights = tmp_path / "small.pdw"
    write_weights(weights, small_layers(), small_tensors(), input_shape=shape, classes=["a", "b", "c"])
    path = write_golden(weights, tmp_path, count=20)
    tracemalloc.start()
    try:
        total = sum(float(out.sum()) for entry in read_golden(path) for out in entry.reference.values())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = path.stat().st_size
    assert np.isfinite(total) and size > 50_000_000
    one_input = size / (20 + len(EDGE_KINDS))
    assert peak < 3 * one_input and peak < size / 8, (peak, size)


def test_read_golden_rejects_a_weight_file_and_a_bundle_missing_a_tensor(model_file, golden_file, tmp_path):
    with pytest.raises(FormatError, match="expected 'pdinfer-golden'"):
        read_golden(model_file)
    container = read_container(golden_file)
    metadata = container.metadata
    write_container(tmp_path / "short.pdw", metadata, [(n, a) for n, a in container.tensors.items()
                                                        if n != "reference.1.fc0"])
    with pytest.raises(FormatError, match="missing.*reference.1.fc0"):
        read_golden(tmp_path / "short.pdw")
    manifest = json.loads(metadata["manifest"])
    for key, value, reason in (("subset", "no", "'subset' must be true or false"),
                               ("inputs", [{"name": "input.0"}], "'inputs' must be")):
        write_container(tmp_path / "bad.pdw", metadata | {"manifest": json.dumps(manifest | {key: value})},
                        list(container.tensors.items()))
        with pytest.raises(FormatError, match=reason):
            read_golden(tmp_path / "bad.pdw")
    write_container(tmp_path / "v1.pdw", metadata | {"format_version": "1"}, list(container.tensors.items()))
    with pytest.raises(FormatError, match="version '1' is not supported"):
        read_golden(tmp_path / "v1.pdw")


@pytest.mark.parametrize("cut", [4, 8 + 3, -4])
def test_read_golden_rejects_a_truncated_or_corrupted_bundle(golden_file, tmp_path, cut):
    raw = golden_file.read_bytes()
    (tmp_path / "bad.pdw").write_bytes(raw[:cut] if cut > 0 else raw[:cut - 1] + bytes([raw[cut - 1] ^ 1]) + raw[cut:])
    with pytest.raises(FormatError, match="too short|runs past the end|whole-file SHA-256"):
        read_golden(tmp_path / "bad.pdw")


@pytest.mark.parametrize("change", ["truncated", "rewritten in place", "replaced"])
def test_a_bundle_changed_after_it_was_checked_is_a_format_error(golden_file, tmp_path, change):
    """read_golden checks the whole file, then reads per input: a file changed in between (size,
    modification time or inode) is refused when read, never read as garbage."""
    path = tmp_path / "b.golden.pdw"
    shutil.copyfile(golden_file, path)
    os.utime(path, ns=(0, 0))  # any later write gives a different modification time
    golden = read_golden(path)
    assert np.array_equal(golden[0].image, read_golden(golden_file)[0].image)
    raw = path.read_bytes()
    if change == "truncated":
        os.truncate(path, len(raw) - 4)
    elif change == "rewritten in place":
        with open(path, "r+b") as f:
            f.seek(len(raw) - 4)
            f.write(bytes(4))
    else:
        (tmp_path / "other").write_bytes(raw)
        os.utime(tmp_path / "other", ns=(0, 0))
        os.replace(tmp_path / "other", path)
    with pytest.raises(FormatError, match="changed or replaced after it was checked"):
        golden[len(golden) - 1]


def test_the_engine_never_imports_torch_or_the_exporter(model_file, tmp_path):
    code = ("import sys, pdinfer.golden as g\n"
            f"g.write_golden({str(model_file)!r}, {str(tmp_path)!r}, count=1)\n"
            f"g.read_golden({str(tmp_path / 'all_types.golden.pdw')!r})\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'exporter'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    source = (ROOT / "pdinfer" / "golden.py").read_text()
    assert not re.search(r"^\s*(from|import) (torch|exporter)", source, re.M)


def test_cli_writes_reference_only_bundles_and_says_so(model_file, tmp_path, capsys):
    assert cli_main(["golden", str(model_file), "--out", str(tmp_path), "--count", "1"]) == 0
    assert "reference outputs only" in capsys.readouterr().out
    assert len(read_golden(tmp_path / "all_types.golden.pdw")) == 1 + len(EDGE_KINDS)


# ----------------------------------------------------------------------------- the Java kit


def java(build: Path, main_class: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["java", "-cp", str(build), f"pdinfer.{main_class}", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def row(output: str, layer: str) -> str:
    """The table row of a layer in the runner's summary table."""
    summary = output.split("worst case per layer")[-1]
    return next(line for line in summary.splitlines() if line.split(" ")[0] == layer)


def test_java_is_bit_exact_on_every_layer_type(java_classes, model_file, golden_file):
    result = java(java_classes, "GoldenRunner", model_file, golden_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: 19 layers bit-exact" in result.stdout
    assert "(0 values of exp/tanh layers 1 ulp off)" in result.stdout


def test_java_fails_when_one_reference_value_is_one_ulp_off(java_classes, model_file, golden_file, tmp_path):
    def nudge(layer: str, ulps: int):
        def edit(name: str, array: np.ndarray) -> np.ndarray:
            if name == f"reference.1.{layer}":
                flat = array.reshape(-1)
                for _ in range(ulps):
                    flat[3] = np.nextafter(flat[3], np.float32(np.inf))
            return array
        return edit

    bad = rewrite(golden_file, tmp_path / "conv.golden.pdw", nudge("conv", 1))
    result = java(java_classes, "GoldenRunner", model_file, bad)
    assert result.returncode == 1, result.stdout + result.stderr
    conv, bn, leaky = (row(result.stdout, name).split("|") for name in ("conv", "bn", "leaky"))
    assert conv[1].split() == conv[2].split() == ["5.96e-08", "1"] and conv[-1].strip() == "FAIL"
    # bn, fed the nudged value per layer, differs too; end to end it matches: conv is the culprit.
    assert bn[1].split()[1] != "0" and bn[2].split() == ["0", "0"] and bn[-1].strip() == "FAIL"
    assert leaky[-1].strip() == "ok"

    # Sigmoid and Softmax may be 1 ulp off (counted), not 2.
    loose = rewrite(golden_file, tmp_path / "softmax1.golden.pdw", nudge("softmax", 1))
    result = java(java_classes, "GoldenRunner", model_file, loose)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok (2 values 1 ulp off)" in row(result.stdout, "softmax")  # per layer and end to end
    bad = rewrite(golden_file, tmp_path / "softmax2.golden.pdw", nudge("softmax", 2))
    result = java(java_classes, "GoldenRunner", model_file, bad)
    assert result.returncode == 1 and "FAIL" in row(result.stdout, "softmax")

    bad = rewrite(golden_file, tmp_path / "add.golden.pdw", nudge("add", 1))
    result = java(java_classes, "GoldenRunner", model_file, bad)
    assert result.returncode == 1 and "FAIL" in row(result.stdout, "add")


def test_java_checks_the_torch_tolerance(java_classes, model_file, golden_file, tmp_path):
    """torch outputs = reference outputs moved by a fraction of the tolerance, or by more than it."""
    golden = read_golden(golden_file)
    container = read_container(golden_file)
    manifest = dict(golden.manifest, torch_version="fake")

    def with_torch(path: Path, shift: float) -> Path:
        tensors = list(container.tensors.items())
        for i, entry in enumerate(golden):
            for layer, out in entry.reference.items():
                atol = TORCH_ATOL_FACTOR * max(1.0, float(np.abs(out).max()))
                tensors.append((f"torch.{i}.{layer}", out + np.float32(shift * atol)))
        write_container(path, {"format": GOLDEN_FORMAT, "format_version": GOLDEN_VERSION,
                               "manifest": json.dumps(manifest)}, tensors)
        return path

    result = java(java_classes, "GoldenRunner", model_file, with_torch(tmp_path / "near.golden.pdw", 0.5))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "of torch" in result.stdout
    result = java(java_classes, "GoldenRunner", model_file, with_torch(tmp_path / "far.golden.pdw", 3.0))
    assert result.returncode == 1 and "FAIL" in row(result.stdout, "conv")


def test_a_bundle_tensor_other_than_f32_is_refused(java_classes, model_file, golden_file, tmp_path):
    """Bundles hold float32 outputs only: both readers refuse a compressed tensor in one."""
    container = read_container(golden_file)
    path = tmp_path / "f16.golden.pdw"
    write_container(path, container.metadata, [(n, a.astype(np.float16) if n == "reference.0.conv" else a)
                                               for n, a in container.tensors.items()])
    with pytest.raises(FormatError, match="'reference.0.conv' is F16; a pdinfer golden bundle holds only F32"):
        read_golden(path)
    result = java(java_classes, "GoldenRunner", model_file, path)
    assert result.returncode == 2 and "'reference.0.conv' is F16; a golden bundle holds only F32" in result.stderr


def test_java_refuses_a_bundle_of_other_weights(java_classes, golden_file, tmp_path):
    other = all_layer_types_model(tmp_path / "other.pdw", seed=1)
    result = java(java_classes, "GoldenRunner", other, golden_file)
    assert result.returncode == 2 and "SHA-256" in result.stderr


# Corruptions of a valid weight file (file bytes -> file bytes) that pdinfer and the Java reader
# must both reject, and a regular expression matching the reason both give.
def _with_header_length(n: int):
    return lambda raw: struct.pack("<Q", n) + raw[8:]


def _edit_header(edit):
    def apply(raw: bytes) -> bytes:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        # FORMAT.md: the checksum entry is the exact bytes "file_sha256":"<hex>", without a space.
        text = edit(header).replace('"file_sha256": "', '"file_sha256":"').encode("utf-8")
        text += b" " * (-(8 + len(text)) % 64)
        return reseal(struct.pack("<Q", len(text)) + text + raw[8 + n:])  # to reach the check under test
    return apply


def _meta(key: str, value: str):
    def edit(header: dict) -> str:
        header["__metadata__"][key] = value
        return json.dumps(header)
    return edit


def _meta_replace(key: str, old: str, new: str):
    def edit(header: dict) -> str:
        assert old in header["__metadata__"][key]
        header["__metadata__"][key] = header["__metadata__"][key].replace(old, new)
        return json.dumps(header)
    return edit


def _tensor_entry(name: str, **changes):
    def edit(header: dict) -> str:
        header[name].update(changes)
        return json.dumps(header)
    return edit


def _layers(edit):
    def apply(header: dict) -> str:
        layers = json.loads(header["__metadata__"]["layers"])
        edit(layers)
        header["__metadata__"]["layers"] = json.dumps(layers)
        return json.dumps(header)
    return apply


def _flip_data_byte(raw: bytes) -> bytes:
    return raw[:-3] + bytes([raw[-3] ^ 1]) + raw[-2:]


CORRUPTIONS = {
    "header too long": (_with_header_length(17 << 20), "exceeds"),
    "header past the end": (_with_header_length(1 << 20), "runs past the end"),
    "misaligned data": (lambda raw: struct.pack("<Q", struct.unpack("<Q", raw[:8])[0] - 1) + raw[8:],
                        "not a multiple of 64"),
    "truncated": (lambda raw: raw[:-4], "bytes but shape|lie outside"),
    "trailing bytes": (lambda raw: raw + b"\0\0\0\0", "after the last tensor"),
    "checksum": (_flip_data_byte, "whole-file SHA-256 \\(header and data\\) mismatch"),
    "duplicate key": (_edit_header(lambda h: json.dumps(h)[:-1] + ',"__metadata__":{}}'), "duplicate key"),
    "not UTF-8": (lambda raw: raw.replace(b'"tests"', b'"\xff\xfe\xfd\xfc\xfb"'), "UTF-8"),
    "leading space": (_edit_header(lambda h: " " + json.dumps(h)), "not a JSON object"),
    "too deep": (_edit_header(_meta("layers", "[" * 65 + "1" + "]" * 65)), "nested deeper than 64"),
    "NaN literal": (_edit_header(_meta("layers", "[NaN]")), "not valid JSON"),
    "huge float": (_edit_header(_meta_replace("layers", '"negative_slope":0.1', '"negative_slope":1e999')),
                   "out of the range of a double"),
    "lone surrogate": (_edit_header(_meta("classes", '["\\ud800", "b", "c", "d"]')), "lone UTF-16 surrogate"),
    "dtype": (_edit_header(_tensor_entry("conv.bias", dtype="F64")), "supported: 'F32'"),
    "rank 5": (_edit_header(_tensor_entry("conv.bias", shape=[1, 1, 1, 1, 6])), "invalid shape"),
    "gap": (_edit_header(_tensor_entry("conv.weight", data_offsets=[4, 148])), "gap|overlaps"),
    "version": (_edit_header(_meta("format_version", "3")), "not supported"),
    "unknown layer": (_edit_header(_layers(lambda ls: ls[7].update(type="Mish"))), "not supported"),
    "unknown param": (_edit_header(_layers(lambda ls: ls[3]["params"].update(inplace=True))), "unknown"),
    "bad input": (_edit_header(_layers(lambda ls: ls[2].update(inputs=["relu"]))), "earlier layer"),
    "wrong channels": (_edit_header(_layers(lambda ls: ls[1]["params"].update(num_features=5))), "shape"),
    "classes": (_edit_header(_meta("classes", '["a"]')), "class names"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_java_reader_rejects_what_pdinfer_rejects(case, java_classes, model_file, tmp_path):
    corrupt, reason = CORRUPTIONS[case]
    path = tmp_path / "bad.pdw"
    path.write_bytes(corrupt(model_file.read_bytes()))
    with pytest.raises(FormatError, match=reason):
        load_graph(path)
    result = java(java_classes, "Info", path)
    assert result.returncode == 2, result.stdout
    assert re.search(reason, result.stderr), result.stderr


def test_java_reader_accepts_the_valid_file_and_rejects_nan_weights(java_classes, model_file, tmp_path):
    result = java(java_classes, "Info", model_file)
    assert result.returncode == 0 and "19 layers" in result.stdout, result.stderr
    bad = rewrite(model_file, tmp_path / "nan.pdw",
                  lambda name, a: np.full_like(a, np.nan) if name == "fc1.bias" else a)
    with pytest.raises(FormatError, match="NaN"):
        load_graph(bad)
    result = java(java_classes, "Info", bad)
    assert result.returncode == 2 and "NaN" in result.stderr


def test_java_checks_a_subset_bundle(java_classes, model_file, tmp_path):
    """Only the bundle's layers are compared; per layer where their inputs are in the bundle too."""
    subset = write_golden(model_file, tmp_path, count=1, layers=["bn", "conv", "softmax", "fc1"])
    result = java(java_classes, "GoldenRunner", model_file, subset)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS: 4 of 19 layers in the bundle bit-exact" in result.stdout
    assert [line.split()[0] for line in result.stdout.split("worst case per layer")[-1].splitlines()[3:7]] == \
        ["conv", "bn", "fc1", "softmax"]
    assert row(result.stdout, "conv").split("|")[1].split() == ["0", "0"]  # fed input.i: checked per layer
    assert row(result.stdout, "fc1").split("|")[1].split() == ["-", "-"]  # fc0 is not in the bundle

    def nudge(name: str, array: np.ndarray) -> np.ndarray:
        if name == "reference.0.bn":
            array.reshape(-1)[5] = np.nextafter(array.reshape(-1)[5], np.float32(np.inf))
        return array

    result = java(java_classes, "GoldenRunner", model_file, rewrite(subset, tmp_path / "bad.golden.pdw", nudge))
    assert result.returncode == 1 and "FAIL" in row(result.stdout, "bn") and "FAIL: 1 of 4" in result.stdout

    container = read_container(subset)  # a manifest whose layers are out of order, or not called a subset
    manifest = json.loads(container.metadata["manifest"])
    for change in ({"layers": ["bn", "conv", "fc1", "softmax"]}, {"subset": False}):
        bad = tmp_path / "order.golden.pdw"
        write_container(bad, container.metadata | {"manifest": json.dumps(manifest | change)},
                        list(container.tensors.items()))
        result = java(java_classes, "GoldenRunner", model_file, bad)
        assert result.returncode == 2 and "layers in execution order" in result.stderr, result.stderr


def test_seed_models_are_bit_exact_in_java_and_close_to_torch(java_classes, tmp_path):
    pytest.importorskip("torch")
    from exporter.golden import main as torch_golden

    for model, extra, layers in (("pd_light", ["--random-bn"], None), ("pd_model", [], ["conv.0", "dense.4"])):
        weights = tmp_path / f"{model}.pdw"
        subprocess.run([sys.executable, "-m", "exporter", model, str(weights), *extra], check=True,
                       capture_output=True, cwd=ROOT, timeout=600)
        assert torch_golden([str(weights), "--out", str(tmp_path), "--count", "1"]
                            + (["--layers", ",".join(layers)] if layers else [])) == 0
        golden = read_golden(tmp_path / f"{model}.golden.pdw")
        assert golden.has_torch and golden.manifest["torch_version"] and golden.subset == bool(layers)
        assert golden.layers == (layers or pdinfer.load(weights).layer_names)
        result = java(java_classes, "GoldenRunner", weights, tmp_path / f"{model}.golden.pdw")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "bit-exact with pdinfer's reference" in result.stdout and "of torch" in result.stdout
