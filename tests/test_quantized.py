"""F16, BF16 and I8 weights (issue 10): the converters, every compressible layer against a NumPy
"dequantize, then float32" model and against torch, the packed plan staying compressed, and the
Java kit bit-exact on golden bundles of compressed files.

The NumPy model dequantizes as docs/KERNELS.md specifies (written out again here, not taken from
pdinfer) and convolves in float64; pdinfer's fast path and reference path must match it within
the usual tolerance, and the fast path must equal, bit for bit, the fast path of the same layer
stored as F32 holding the dequantized weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # compared with PyTorch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

import exporter
import pdinfer
from exporter.compress import WEIGHT_STORAGE, compress, metadata, to_bf16, to_f16, to_int8
from helpers import assert_close
from pdinfer.builder import LayerList, conv2d_params, every_layer_type
from pdinfer.cli import main as cli_main
from pdinfer.format import read_weights, write_weights
from pdinfer.graph import load_graph
from test_golden import java

STORAGES = sorted(WEIGHT_STORAGE)  # bf16, f16, f32, int8


# ----------------------------------------------------------------------------- the spec, in NumPy

def dequantized(stored: np.ndarray, scale: np.ndarray | None) -> np.ndarray:
    """docs/KERNELS.md "Compressed weights": stored (O, ...) -> float32 (O, ...)."""
    if stored.dtype == np.int8:
        return stored.astype(np.float32) * scale.reshape(-1, *(1,) * (stored.ndim - 1))
    if stored.dtype == np.uint16:
        return (stored.astype(np.uint32) << 16).view(np.float32)
    return stored.astype(np.float32)


def numpy_conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: dict) -> np.ndarray:
    """Conv2d in float64 by shifted slices. x: (N, Ci, H, W); weight: (Co, Ci/G, KH, KW)."""
    top, left, bottom, right = params["padding"]
    (sh, sw), (dh, dw), groups = params["stride"], params["dilation"], params["groups"]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)))
    out_c, group_in, kh, kw = weight.shape
    out_h = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], out_c, out_h, out_w))
    group_out = out_c // groups
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh:ky * dh + sh * (out_h - 1) + 1:sh, kx * dw:kx * dw + sw * (out_w - 1) + 1:sw]
            for g in range(groups):
                taps = weight[g * group_out:(g + 1) * group_out, :, ky, kx].astype(np.float64)
                out[:, g * group_out:(g + 1) * group_out] += np.einsum(
                    "nchw,oc->nohw", patch[:, g * group_in:(g + 1) * group_in], taps)
    return (out + (0 if bias is None else bias.astype(np.float64)[None, :, None, None])).astype(np.float32)


# ----------------------------------------------------------------------------- the converters

def test_f16_and_bf16_round_to_nearest_even_as_torch_does():
    values = np.random.default_rng(0).standard_normal(4096).astype(np.float32) * 10.0 ** np.arange(-6, 2).repeat(512)
    half = to_f16(values)
    assert half.dtype == np.float16 and np.array_equal(half, torch.from_numpy(values).half().numpy())
    brain = to_bf16(values)
    expected = torch.from_numpy(values).bfloat16().view(torch.int16).numpy().view(np.uint16)
    assert brain.dtype == np.uint16 and np.array_equal(brain, expected)
    for convert in (to_f16, to_bf16):
        with pytest.raises(ValueError, match="overflows"):
            convert(np.array([3.4e38], np.float32) if convert is to_bf16 else np.array([70000.0], np.float32))


def test_int8_scales_are_max_over_127_and_values_round_half_even():
    weight = np.array([[0.5, -1.27, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0], [7.9375, 0.09375, -0.03125, 0.15625]],
                      np.float32)  # row 2: scale 7.9375 / 127 = 1/16 exactly, so 1.5, -0.5, 2.5 are exact ties
    q, scale = to_int8(weight)
    assert q.dtype == np.int8 and scale.dtype == np.float32
    np.testing.assert_array_equal(scale, np.float32([1.27 / 127, 1.0, 1 / 16]))
    np.testing.assert_array_equal(q[0], [50, -127, 0, 30])
    np.testing.assert_array_equal(q[1], 0)  # an all-zero channel: scale 1 (> 0), q 0
    np.testing.assert_array_equal(q[2], [127, 2, 0, 2])  # half even: 1.5 -> 2, -0.5 -> 0, 2.5 -> 2
    assert (np.abs(dequantized(q, scale) - weight) <= scale[:, None] / 2 * (1 + 1e-6)).all()


# ----------------------------------------------------------------------------- layers, NumPy model

@st.composite
def conv_cases(draw):
    """A Conv2d of one of the four kinds, its input (C, H, W) and a batch size."""
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped", "pointwise"]))
    groups = {"dense": 1, "pointwise": 1, "depthwise": draw(st.integers(2, 9)),
              "grouped": draw(st.integers(2, 3))}[kind]
    cin = groups * (1 if kind == "depthwise" else draw(st.integers(1, 4)))
    cout = cin if kind == "depthwise" else groups * draw(st.integers(1, 40))
    kernel = 1 if kind == "pointwise" else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = 1 if kind == "pointwise" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = [draw(st.integers(0, 2)) for _ in range(4)]
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    params = conv2d_params(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                           bias=draw(st.booleans()))
    span_h = params["dilation"][0] * (params["kernel_size"][0] - 1) + 1
    span_w = params["dilation"][1] * (params["kernel_size"][1] - 1) + 1
    shape = (cin, draw(st.integers(max(1, span_h - padding[0] - padding[2]), 12)),
             draw(st.integers(max(1, span_w - padding[1] - padding[3]), 12)))
    return params, shape, draw(st.integers(1, 3))


def _one_layer(tmp: Path, type_name: str, params: dict, shape: tuple, storage: str,
               seed: int) -> tuple[Path, Path, dict]:
    """The layer written as `storage` and, with its weight dequantized, as F32; returns both
    paths and the compressed tensors."""
    layers = LayerList(shape, seed)
    layers.add(type_name, name="layer", **params)
    entries, tensors = compress(layers.entries, layers.tensors, storage)
    classes = [str(i) for i in range(int(np.prod(layers.shapes[layers.last][1:])))]
    path, plain = tmp / f"{storage}.pdw", tmp / f"{storage}.f32.pdw"
    write_weights(path, entries, tensors, input_shape=shape, classes=classes)
    as_f32 = dict(tensors, **{"layer.weight": dequantized(tensors["layer.weight"], tensors.get("layer.weight_scale"))})
    as_f32.pop("layer.weight_scale", None)
    plain_entries = json.loads(json.dumps(entries))
    plain_entries[0]["tensors"].pop("weight_scale", None)
    write_weights(plain, plain_entries, as_f32, input_shape=shape, classes=classes)
    return path, plain, tensors


def _check_paths(path: Path, plain: Path, x: np.ndarray, expected: np.ndarray, context: str) -> None:
    model, reference = pdinfer.load(path), pdinfer.load(plain)
    fast = model(x)
    assert_close(fast, expected, "fast path vs NumPy dequantize-then-float32", context)
    assert_close(list(model.trace(x).values())[-1], expected, "model.trace vs NumPy", context)
    np.testing.assert_array_equal(fast, reference(x), err_msg=f"fast path vs F32 dequantized file\n{context}")
    np.testing.assert_array_equal(list(model.trace(x).values())[-1], list(reference.trace(x).values())[-1])


@given(case=conv_cases(), storage=st.sampled_from(STORAGES), seed=st.integers(0, 2**16))
def test_compressed_conv2d_matches_numpy_dequantize_then_float32(tmp_path_factory, case, storage, seed):
    params, shape, batch = case
    tmp = tmp_path_factory.mktemp("conv")
    path, plain, tensors = _one_layer(tmp, "Conv2d", params, shape, storage, seed)
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    weight = dequantized(tensors["layer.weight"], tensors.get("layer.weight_scale"))
    expected = numpy_conv2d(x, weight, tensors.get("layer.bias"), params)
    _check_paths(path, plain, x, expected, f"{storage} {params} input {shape}")


@given(features=st.tuples(st.integers(1, 70), st.integers(1, 70)), bias=st.booleans(),
       storage=st.sampled_from(STORAGES), seed=st.integers(0, 2**16), batch=st.integers(1, 4),
       flatten=st.booleans())
def test_compressed_linear_matches_numpy_dequantize_then_float32(tmp_path_factory, features, bias, storage,
                                                                 seed, batch, flatten):
    """Linear behind a Flatten of (I, 1, 1) or (flatten) of (1, 1, I): the plan folds the Flatten
    into the packed weight's rows (a reordering for the second)."""
    in_features, out_features = features
    tmp = tmp_path_factory.mktemp("linear")
    layers = LayerList((in_features, 1, 1) if not flatten else (1, 1, in_features), seed)
    layers.add("Flatten", name="flat")
    layers.add("Linear", name="layer", in_features=in_features, out_features=out_features, bias=bias)
    entries, tensors = compress(layers.entries, layers.tensors, storage)
    path = tmp / "m.pdw"
    write_weights(path, entries, tensors, input_shape=layers.input_shape, classes=[str(i) for i in range(out_features)])
    x = np.random.default_rng(seed).standard_normal((batch, *layers.input_shape)).astype(np.float32)
    weight = dequantized(tensors["layer.weight"], tensors.get("layer.weight_scale")).astype(np.float64)
    expected = (x.reshape(batch, -1) @ weight.T + (tensors["layer.bias"] if bias else 0)).astype(np.float32)
    model = pdinfer.load(path)
    context = f"{storage} {features} bias={bias}"
    assert_close(model(x), expected, "fast path vs NumPy", context)
    assert_close(model.trace(x)["layer"], expected, "trace vs NumPy", context)


# ----------------------------------------------------------------------------- against torch

def _twin_with_file_weights(module: nn.Module, path: Path) -> nn.Module:
    """`module` without BatchNorm2d layers, its Conv2d/Linear weights and biases replaced by the
    file's dequantized (and BatchNorm-folded) ones."""
    container, layers = read_weights(path)
    twin = nn.Sequential(*[m for m in module if not isinstance(m, nn.BatchNorm2d)])
    targets = [m for m in twin.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    entries = [layer for layer in layers if layer["type"] in ("Conv2d", "Linear")]
    with torch.no_grad():
        for target, entry in zip(targets, entries, strict=True):
            roles = entry["tensors"]
            scale = container.tensors[roles["weight_scale"]] if "weight_scale" in roles else None
            target.weight.copy_(torch.from_numpy(dequantized(container.tensors[roles["weight"]], scale)))
            if "bias" in roles:
                target.bias = nn.Parameter(torch.from_numpy(container.tensors[roles["bias"]].copy()))
    return twin.eval()


def _check_against(twin: nn.Module, path: Path, x: np.ndarray, context: str) -> None:
    """pdinfer's fast and reference paths on the file against the torch module `twin`."""
    with torch.no_grad():
        expected = twin(torch.from_numpy(x)).numpy()
    model = pdinfer.load(path)
    assert_close(model(x), expected, "fast path vs torch", context)
    assert_close(list(model.trace(x).values())[-1], expected, "trace vs torch", context)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("kind", ["dense", "depthwise", "grouped", "pointwise", "linear", "conv+bn"])
def test_exported_compressed_layers_match_torch_with_the_dequantized_weights(tmp_path, storage, kind):
    """Export a torch module as `storage`, put the file's dequantized weights (and BatchNorm-folded
    bias) back into a BatchNorm-free torch twin, and compare: tolerance relative to the
    dequantized weights, not the float ones."""
    torch.manual_seed(3)
    shape = (6, 9, 11)
    module = nn.Sequential(*{
        "dense": [nn.Conv2d(6, 10, 3, padding=1)], "depthwise": [nn.Conv2d(6, 6, 3, 2, 1, groups=6)],
        "grouped": [nn.Conv2d(6, 9, (2, 3), groups=3, bias=False)], "pointwise": [nn.Conv2d(6, 40, 1)],
        "linear": [nn.Flatten(), nn.Linear(6 * 9 * 11, 7)],
        "conv+bn": [nn.Conv2d(6, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU()]}[kind])
    exporter.randomize_batchnorm(module, 1)
    module.eval()
    path = tmp_path / "m.pdw"
    exporter.export(module, path, input_shape=shape, weights=storage)
    container, layers = read_weights(path)
    assert container.metadata.get("weights") == (None if storage == "f32" else storage)
    assert ("BatchNorm2d" in [layer["type"] for layer in layers]) == (kind == "conv+bn" and storage == "f32")
    entry = next(layer for layer in layers if layer["type"] in ("Conv2d", "Linear"))
    stored = container.tensors[entry["tensors"]["weight"]]
    assert stored.dtype == {"f32": np.float32, "f16": np.float16, "bf16": np.uint16, "int8": np.int8}[storage]
    twin = module if storage == "f32" else _twin_with_file_weights(module, path)
    _check_against(twin, path, np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32),
                   f"{kind} {storage}")


@given(data=st.data(), storage=st.sampled_from(STORAGES), seed=st.integers(0, 2**16))
def test_drawn_compressed_convolutions_match_torch(tmp_path_factory, data, storage, seed):
    """Conv2d drawn by hypothesis (dense, depthwise, grouped, pointwise; stride, padding, dilation),
    with a BatchNorm2d after it half of the time, exported as `storage`: pdinfer against torch
    running the file's dequantized weights."""
    params, shape, batch = data.draw(conv_cases())
    top, left = params["padding"][:2]
    torch.manual_seed(seed)
    conv = nn.Conv2d(params["in_channels"], params["out_channels"], params["kernel_size"], params["stride"],
                     (top, left), params["dilation"], params["groups"], params["bias"])
    assume(all((size + 2 * pad - d * (k - 1) - 1) >= 0 for size, pad, d, k in
               zip(shape[1:], (top, left), params["dilation"], params["kernel_size"])))
    module = nn.Sequential(conv, nn.BatchNorm2d(params["out_channels"])) if data.draw(st.booleans()) \
        else nn.Sequential(conv)
    exporter.randomize_batchnorm(module, seed)
    module.eval()
    path = tmp_path_factory.mktemp("drawn") / "m.pdw"
    exporter.export(module, path, input_shape=shape, weights=storage)
    twin = module if storage == "f32" else _twin_with_file_weights(module, path)
    _check_against(twin, path, np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32),
                   f"{storage} {params} input {shape}")


# ----------------------------------------------------------------------------- the resident plan

def test_packed_weights_keep_the_compressed_type(tmp_path):
    """Every Conv2d and Linear step packs the stored type; int8 packs a quarter of the float32 bytes
    (plus its scales), 16-bit types half, and the whole file shrinks alike."""
    layers, classes = every_layer_type()
    sizes = {}
    for storage in STORAGES:
        entries, tensors = compress(layers.entries, layers.tensors, storage)
        path = tmp_path / f"{storage}.pdw"
        write_weights(path, entries, tensors, input_shape=layers.input_shape, classes=classes)
        model = pdinfer.load(path)
        packed = [step.kernel.weight for step in model._plan.steps if hasattr(step.kernel, "weight")]
        assert len(packed) == sum(layer.compressible for layer in load_graph(path).layers) >= 5  # Conv2d and Linear
        dtype = {"f32": np.float32, "f16": np.uint16, "bf16": np.uint16, "int8": np.int8}[storage]
        assert all(p.data.dtype == dtype for p in packed), [p.data.dtype for p in packed]
        sizes[storage] = sum(p.data.nbytes for p in packed)
    assert sizes["f16"] * 2 == sizes["bf16"] * 2 == sizes["f32"]
    assert sizes["int8"] * 4 == sizes["f32"]


def test_a_compressed_conv_with_its_batchnorm_still_runs_folded(tmp_path):
    """A hand-written F16 file may keep a BatchNorm2d after the conv: the plan folds it (into a
    float32 packed weight) and still agrees with the reference path."""
    layers = LayerList((2, 7, 8), 4)
    layers.add("Conv2d", name="conv", **conv2d_params(2, 5, 3, padding=1, bias=False))
    layers.add("BatchNorm2d", name="bn", num_features=5, eps=1e-5)
    layers.add("Flatten", name="flat")
    tensors = dict(layers.tensors, **{"conv.weight": to_f16(layers.tensors["conv.weight"])})
    write_weights(tmp_path / "m.pdw", layers.entries, tensors, input_shape=(2, 7, 8),
                  classes=[str(i) for i in range(5 * 7 * 8)])
    model = pdinfer.load(tmp_path / "m.pdw")
    x = np.random.default_rng(0).standard_normal((2, 2, 7, 8)).astype(np.float32)
    assert model._plan.steps[0].kernel.weight.data.dtype == np.float32
    assert_close(model(x), model.trace(x)["flat"], "fast vs trace")


# ----------------------------------------------------------------------------- Java, bit for bit

@pytest.mark.parametrize("storage", STORAGES)
def test_java_is_bit_exact_on_compressed_files(java_classes, tmp_path, storage):
    """Dense, depthwise, pointwise and grouped convolutions and a Linear, every storage type: the
    Java kit reads the file, dequantizes as specified and matches every layer bit for bit."""
    layers, classes = every_layer_type(seed=5)
    entries, tensors = compress(layers.entries, layers.tensors, storage)
    weights = tmp_path / f"every_{storage}.pdw"
    write_weights(weights, entries, tensors, input_shape=layers.input_shape, classes=classes)
    assert cli_main(["golden", str(weights), "--out", str(tmp_path)]) == 0
    result = java(java_classes, "GoldenRunner", weights, tmp_path / f"every_{storage}.golden.pdw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PASS: {len(load_graph(weights).layers)} layers bit-exact" in result.stdout, result.stdout


@pytest.mark.parametrize("storage", STORAGES)
def test_exporter_to_pdinfer_to_java_round_trip(java_classes, tmp_path, storage):
    """A torch model with a dense Conv2d + BatchNorm2d, a depthwise, a grouped and a pointwise
    convolution and a Linear, exported by exporter.export with `storage`: the Java kit matches
    pdinfer's reference bit for bit on every layer."""
    torch.manual_seed(8)
    module = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=6), nn.ReLU6(),
        nn.Conv2d(6, 9, (1, 3), groups=3), nn.LeakyReLU(0.1),
        nn.Conv2d(9, 12, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4), nn.Softmax(dim=1))
    exporter.randomize_batchnorm(module, 8)
    weights = tmp_path / f"round_{storage}.pdw"
    exporter.export(module.eval(), weights, input_shape=(2, 10, 13), weights=storage)
    assert cli_main(["golden", str(weights), "--out", str(tmp_path)]) == 0
    result = java(java_classes, "GoldenRunner", weights, tmp_path / f"round_{storage}.golden.pdw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PASS: {len(load_graph(weights).layers)} layers bit-exact" in result.stdout, result.stdout


# ----------------------------------------------------------------------------- files and tools

@pytest.mark.parametrize("storage", STORAGES)
def test_any_safetensors_reader_opens_compressed_files(tmp_path, storage):
    """safetensors (torch framework: it has bfloat16) reads every tensor with the values pdinfer
    reads; the metadata says the storage and that BatchNorm was folded."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    layers, classes = every_layer_type(seed=2)
    path = tmp_path / "m.pdw"
    write_weights(path, *compress(layers.entries, layers.tensors, storage), input_shape=layers.input_shape,
                  classes=classes, metadata=metadata(storage))
    container, _ = read_weights(path)
    loaded = load_file(path)
    assert set(loaded) == set(container.tensors)
    for name, array in container.tensors.items():
        expected = array.view(np.uint16).astype(np.int32) if storage == "bf16" and array.dtype == np.uint16 else array
        got = loaded[name].view(torch.int16).numpy().view(np.uint16).astype(np.int32) \
            if loaded[name].dtype == torch.bfloat16 else loaded[name].numpy()
        np.testing.assert_array_equal(got, expected, err_msg=name)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta.get("weights") == (None if storage == "f32" else storage)
    assert meta.get("batchnorm_folded") == (None if storage == "f32" else "true")


def test_exporter_cli_and_compress_file_write_the_same_tensors(tmp_path):
    """`python -m exporter pd_light --weights int8` and rewriting its f32 export with
    `python -m exporter.compress` give the same layers and tensors, and the same outputs."""
    from exporter.__main__ import main as export_main
    from exporter.compress import main as compress_main

    assert export_main(["pd_light", str(tmp_path / "f32.pdw"), "--random-bn"]) == 0
    assert export_main(["pd_light", str(tmp_path / "int8.pdw"), "--random-bn", "--weights", "int8"]) == 0
    assert compress_main([str(tmp_path / "f32.pdw"), "--weights", "int8", "--out", str(tmp_path / "c.pdw")]) == 0
    assert compress_main([str(tmp_path / "c.pdw"), "--weights", "f16", "--out", str(tmp_path / "cc.pdw")]) == 1
    (direct, direct_layers), (rewritten, rewritten_layers) = read_weights(tmp_path / "int8.pdw"), read_weights(tmp_path / "c.pdw")
    assert direct_layers == rewritten_layers and "BatchNorm2d" not in {layer["type"] for layer in direct_layers}
    assert direct.tensors.keys() == rewritten.tensors.keys()
    assert all(np.array_equal(direct.tensors[n], rewritten.tensors[n]) for n in direct.tensors)
    assert direct.metadata["weights"] == "int8" and direct.metadata["batchnorm_folded"] == "true"
    x = np.random.default_rng(0).random((2, 1, 60, 120), dtype=np.float32)
    f32, int8 = pdinfer.load(tmp_path / "f32.pdw")(x), pdinfer.load(tmp_path / "int8.pdw")(x)
    assert np.abs(f32 - int8).max() < 0.05 and (f32.argmax(1) == int8.argmax(1)).all()
