"""Int8 computation (issue 19): the integer reference kernels (and their NumPy forms, a model's first
calls) against the spec of docs/KERNELS.md written out again in NumPy (sums exact in float64 by
torch, requantization as specified), the quantizer's constants, the `activations` file entry, and quantized models against their float
originals.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # the exact integer sums of convolutions and pools
from hypothesis import given
from hypothesis import strategies as st

import pdinfer
from exporter.compress import calibration_images, compress_file, layer_errors, main as compress_main
from pdinfer.builder import every_layer_type
from pdinfer.errors import FormatError
from pdinfer.format import read_weights, write_weights
from pdinfer.graph import ACTIVATIONS_KEY, load_graph
from pdinfer.kernels import integer, integer_vectorized
from pdinfer.kernels.params import requant, window
from pdinfer.quantize import Int8Reference, Quantization, choose, conv_constants, encode, int8_steps
from small_model import sample_images, write_small_model


# ----------------------------------------------------------------------------- the spec, in NumPy

def spec_requantize(v: np.ndarray, zero_point: int, low: int = 0, high: int = 255, slope: float = 1.0) -> np.ndarray:
    """docs/KERNELS.md: v (float32) * slope where negative, round half to even, + zero point, clamped."""
    v = v.astype(np.float32)
    v = np.where(v < 0, v * np.float32(slope), v)
    return np.clip(np.rint(v).astype(np.float64) + zero_point, low, high).astype(np.uint8)


def spec_conv(x: np.ndarray, x_zero: int, weight: np.ndarray, bias: np.ndarray, multiplier: np.ndarray,
              win, groups: int) -> np.ndarray:
    """The exact int32 sums of an int8 convolution (float64 is exact for them), times the
    multipliers in float32: the pre-image v of every output."""
    top, left, bottom, right = win.pad_top, win.pad_left, win.pad_bottom, win.pad_right
    centred = torch.from_numpy(x.astype(np.float64) - x_zero)
    centred = torch.nn.functional.pad(centred, (left, right, top, bottom))  # zeros: the real 0 of the padding
    acc = torch.nn.functional.conv2d(centred, torch.from_numpy(weight.astype(np.float64)),
                                     torch.from_numpy(bias.astype(np.float64)), (win.stride_h, win.stride_w), 0,
                                     (win.dilation_h, win.dilation_w), groups).numpy()
    assert np.abs(acc).max(initial=0) < 2 ** 31
    return acc.astype(np.float32) * multiplier[None, :, None, None]


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = draw(st.booleans()) and groups > 1
    ci = groups * (1 if depthwise else draw(st.integers(1, 4)))
    co = ci if depthwise else groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw, dh, dw = (draw(st.integers(1, 3)) for _ in range(4))
    pads = [draw(st.integers(0, k // 2)) for k in (kh, kh, kw, kw)]  # top, bottom, left, right (PyTorch's bound)
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[1]), 12))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[2] - pads[3]), 12))
    return dict(n=draw(st.integers(1, 2)), ci=ci, co=co, groups=groups, h=h, w=w,
                win=window((kh, kw), (sh, sw), (pads[0], pads[2], pads[1], pads[3]), (dh, dw)))


ACTIVATIONS = st.sampled_from(["none", "relu", "relu6", "leaky"])
# Every form of the integer reference: Numba's loops, and NumPy's for a model's first calls.
INTEGER_KERNELS = pytest.mark.parametrize("kernels", [integer, integer_vectorized], ids=["loops", "numpy"])


def _requant_of(kind: str, zero_point: int, high6: int):
    return {"none": requant(zero_point), "relu": requant(zero_point, zero_point),
            "relu6": requant(zero_point, zero_point, high6), "leaky": requant(zero_point, negative_slope=0.2)}[kind]


@INTEGER_KERNELS
@given(case=conv_cases(), act=ACTIVATIONS, seed=st.integers(0, 2 ** 16))
def test_int8_conv2d_is_the_exact_sum_requantized(kernels, case, act, seed):
    rng = np.random.default_rng(seed)
    win, n, ci, co, groups = case["win"], case["n"], case["ci"], case["co"], case["groups"]
    x = rng.integers(0, 256, (n, ci, case["h"], case["w"]), dtype=np.uint8)
    weight = rng.integers(-127, 128, (co, ci // groups, win.kernel_h, win.kernel_w), dtype=np.int8)
    bias = rng.integers(-5000, 5000, co).astype(np.int32)
    multiplier = rng.uniform(1e-4, 3e-2, co).astype(np.float32)
    x_zero, out_zero = int(rng.integers(0, 256)), int(rng.integers(0, 256))
    rq = _requant_of(act, out_zero, min(255, out_zero + 40))
    v = spec_conv(x, x_zero, weight, bias, multiplier, win, groups)
    expected = spec_requantize(v, *rq)
    got = kernels.conv2d(x, x_zero, weight, bias, multiplier, tuple(rq), tuple(win), groups, *v.shape[2:])
    np.testing.assert_array_equal(got, expected)


@INTEGER_KERNELS
@given(case=conv_cases(), seed=st.integers(0, 2 ** 16))
def test_int8_max_pool_is_the_float_max_pool(kernels, case, seed):
    win, rng = case["win"], np.random.default_rng(seed)
    x = rng.integers(0, 256, (case["n"], case["ci"], case["h"], case["w"]), dtype=np.uint8)
    expected = torch.nn.functional.max_pool2d(
        torch.nn.functional.pad(torch.from_numpy(x.astype(np.float64)),
                                (win.pad_left, win.pad_right, win.pad_top, win.pad_bottom), value=-1.0),
        (win.kernel_h, win.kernel_w), (win.stride_h, win.stride_w), 0, (win.dilation_h, win.dilation_w)).numpy()
    got = kernels.max_pool2d(x, tuple(win), *expected.shape[2:])
    np.testing.assert_array_equal(got, np.maximum(expected, 0).astype(np.uint8))  # a window of padding only: 0


@INTEGER_KERNELS
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 9), st.integers(1, 9)),
       seed=st.integers(0, 2 ** 16))
def test_int8_mean_and_add_requantize_as_specified(kernels, shape, seed):
    rng = np.random.default_rng(seed)
    x, y = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    za, zb, zo = (int(z) for z in rng.integers(0, 256, 3))
    ma, mb, mm = (np.float32(m) for m in rng.uniform(1e-3, 2.0, 3))
    sums = (x.astype(np.int64) - za).sum(axis=(2, 3))
    np.testing.assert_array_equal(kernels.global_avg_pool(x, za, mm, tuple(requant(zo))),
                                  spec_requantize(sums.astype(np.float32) * mm, zo))
    v = (x.astype(np.int32) - za).astype(np.float32) * ma + (y.astype(np.int32) - zb).astype(np.float32) * mb
    np.testing.assert_array_equal(kernels.add(x, za, ma, y, zb, mb, tuple(requant(zo, 3, 200))),
                                  spec_requantize(v, zo, 3, 200))


@INTEGER_KERNELS
@given(values=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=40),
       scale=st.floats(0.0009765625, 16.0, width=32), zero_point=st.integers(0, 255))
def test_quantize_divides_rounds_half_even_and_clamps_and_dequantize_multiplies(kernels, values, scale, zero_point):
    x, scale = np.array(values, np.float32), np.float32(scale)
    q = kernels.quantize(x, scale, zero_point)
    np.testing.assert_array_equal(q, spec_requantize(x / scale, zero_point))
    np.testing.assert_array_equal(kernels.dequantize(q, scale, zero_point),
                                  scale * (q.astype(np.int32) - zero_point).astype(np.float32))


@INTEGER_KERNELS
def test_requantize_rounds_ties_to_even(kernels):
    v = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1e30, -1e30], np.float32)
    np.testing.assert_array_equal(kernels.quantize(v, np.float32(1.0), 10), [10, 12, 12, 10, 8, 8, 255, 0])


@given(low=st.floats(-100, 100), width=st.floats(0, 100))
def test_chosen_quantization_holds_its_range_and_zero_exactly(low, width):
    high = low + width
    q = choose(low, high)
    real = lambda level: np.float64(q.scale) * (level - q.zero_point)  # noqa: E731
    assert q.scale > 0 and 0 <= q.zero_point <= 255
    assert real(q.zero_point) == 0
    span = np.float64(q.scale)
    assert real(0) <= min(low, 0) + span and real(255) >= max(high, 0) - span


def test_conv_constants_round_the_bias_and_divide_the_scales_in_float64():
    bias, weight_scale = np.array([0.3, -1.25, 0.0], np.float32), np.array([0.01, 0.02, 0.5], np.float32)
    x, out = Quantization(np.float32(0.05), 7), Quantization(np.float32(0.1), 0)
    bias_q, multiplier = conv_constants(bias, weight_scale, x, out)
    unit = np.float64(x.scale) * weight_scale.astype(np.float64)
    np.testing.assert_array_equal(bias_q, np.rint(bias.astype(np.float64) / unit))
    np.testing.assert_array_equal(multiplier, (unit / np.float64(out.scale)).astype(np.float32))


# ----------------------------------------------------------------------------- quantized models

def _quantized(tmp: Path, src: Path, images: np.ndarray) -> Path:
    dst = tmp / f"{src.stem}.q8.pdw"
    compress_file(src, dst, "int8", images)
    return dst


def test_quantized_small_model_steps_and_answers(tmp_path):
    src = write_small_model(tmp_path / "small.pdw")
    images = sample_images(64, seed=3)
    dst = _quantized(tmp_path, src, images)
    graph = load_graph(dst)
    kinds = [(step.kind, step.layer.type) for step in int8_steps(graph)]
    # conv0 + LeakyReLU and the depthwise + ReLU6 fused; the Add, pool and mean in int8; Softmax in float
    assert kinds == [("conv", "Conv2d"), ("conv", "Conv2d"), ("add", "Add"), ("conv", "Conv2d"),
                     ("max_pool", "MaxPool2d"), ("mean", "GlobalAvgPool"), ("conv", "Linear"), ("float", "Softmax")]
    x = sample_images(16, seed=4)
    float_out, int8_out = pdinfer.load(src)(x), pdinfer.load(dst)(x)
    assert int8_out.dtype == np.float32 and int8_out.shape == float_out.shape
    assert np.abs(int8_out - float_out).max() < 0.05, "int8 answers far from float32's"
    assert not np.array_equal(int8_out, float_out)  # it did compute in int8
    trace = Int8Reference(graph).trace(x)
    assert trace["act0"].dtype == np.uint8 and trace["softmax"].dtype == np.float32
    np.testing.assert_array_equal(trace["softmax"], int8_out)


def test_the_numpy_integer_reference_gives_every_int8_value_bit_for_bit(tmp_path):
    """A model's first calls (Int8Reference(numpy=True)): every uint8 value equal to the integer
    reference's (the small model: int8 steps, depthwise and Add included, up to its Softmax), the
    float step's to float32 rounding."""
    src = write_small_model(tmp_path / "small.pdw")
    graph = load_graph(_quantized(tmp_path, src, sample_images(32, seed=5)))
    x = sample_images(4, seed=6)
    expected, got = Int8Reference(graph).trace(x), Int8Reference(graph, numpy=True).trace(x)
    assert list(got) == list(expected)
    assert sum(v.dtype == np.uint8 for v in expected.values()) == 7
    for name, value in expected.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
        if value.dtype == np.uint8:
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        else:
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(value).max()),
                                       err_msg=name)


def test_every_layer_type_quantizes_with_float_steps_between(tmp_path):
    layers, _ = every_layer_type(seed=5)
    src = layers.write(tmp_path / "every.pdw")
    model = pdinfer.load(src)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (32, *model.input_shape)).astype(np.float32)
    dst = _quantized(tmp_path, src, images)
    graph = load_graph(dst)
    kinds = {step.kind for step in int8_steps(graph)}
    assert {"conv", "float"} <= kinds
    x = images[:4]
    expected, got = model(x), pdinfer.load(dst)(x)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() < 0.1 * scale + 1e-3


def test_activations_entry_round_trips_and_bad_entries_are_rejected(tmp_path):
    src = write_small_model(tmp_path / "small.pdw")
    dst = _quantized(tmp_path, src, sample_images(8))
    container, layers = read_weights(dst)
    entry = json.loads(container.metadata[ACTIVATIONS_KEY])
    assert set(entry) >= {"input", "act0", "add", "fc"}
    graph = load_graph(dst)
    assert encode(graph.activations) == container.metadata[ACTIVATIONS_KEY]

    def rewrite(bad: dict, name: str) -> Path:
        path = tmp_path / name
        tensors = {n: np.array(t) for n, t in container.tensors.items()}
        meta = {k: v for k, v in container.metadata.items() if k in ("weights", "batchnorm_folded")}
        write_weights(path, layers, tensors, input_shape=json.loads(container.metadata["input_shape"]),
                      classes=json.loads(container.metadata["classes"]),
                      metadata={**meta, ACTIVATIONS_KEY: json.dumps(bad)})
        return path

    cases = {"unknown": ({**entry, "nope": [0.1, 0]}, "names 'nope'"),
             "negative": ({**entry, "act0": [-0.1, 0]}, "positive finite float32"),
             "not float32": ({**entry, "act0": [0.1, 0]}, "positive finite float32"),
             "zero point": ({**entry, "act0": [entry["act0"][0], 256]}, r"zero point in \[0, 255\], got \[0\.\d+, 256\]"),
             "missing": ({k: v for k, v in entry.items() if k != "act0"}, "lacks the quantization of value 'act0'"),
             "not an object": ([1, 2], "must be a JSON object")}
    for name, (bad, message) in cases.items():
        with pytest.raises(FormatError, match=message):
            pdinfer.load(rewrite(bad, f"{name.replace(' ', '_')}.pdw"))


def test_int8_activations_need_int8_weights_and_calibration_images(tmp_path, capsys):
    src = write_small_model(tmp_path / "small.pdw")
    with pytest.raises(ValueError, match="int8 activations need int8 weights"):
        compress_file(src, tmp_path / "x.pdw", "f16", sample_images(4))
    assert compress_main([str(src), "--weights", "int8", "--activations", "int8", "--calibrate", str(tmp_path / "none"),
                          "--out", str(tmp_path / "y.pdw")]) == 1
    assert "cannot read directory" in capsys.readouterr().err
    images = tmp_path / "images"
    images.mkdir()
    for i, image in enumerate(sample_images(6)):
        np.save(images / f"{i}.npy", image)
    np.testing.assert_array_equal(calibration_images(images), sample_images(6))
    assert compress_main([str(src), "--weights", "int8", "--activations", "int8", "--calibrate", str(images),
                          "--out", str(tmp_path / "z.pdw")]) == 0
    assert load_graph(tmp_path / "z.pdw").activations is not None


def test_layer_errors_compare_every_int8_value_with_the_folded_float_model():
    rows = layer_errors(Path(__file__).parents[1] / "weights" / "pd_light.pdw", images=2)
    kinds = {row["kind"] for row in rows}
    assert kinds == {"conv", "add", "mean"}
    assert all(row["sqnr_db"] > 10 and 0.9 < row["cosine"] <= 1 + 1e-9 for row in rows), rows


def test_pdinfer_compress_computes_in_int8_only_when_asked(tmp_path, capsys):
    from pdinfer.cli import main as cli_main
    src = write_small_model(tmp_path / "small.pdw")
    assert cli_main(["compress", str(src), "--weights", "int8", "--calibrate", str(tmp_path),
                     "--out", str(tmp_path / "a.pdw")]) == 2
    assert "--calibrate goes with --activations int8" in capsys.readouterr().err
    assert cli_main(["compress", str(src), "--weights", "f16", "--activations", "int8",
                     "--out", str(tmp_path / "b.pdw")]) == 2
    assert "int8 activations need int8 weights" in capsys.readouterr().err
    assert cli_main(["compress", str(src), "--weights", "int8", "--out", str(tmp_path / "c.pdw")]) == 0
    assert load_graph(tmp_path / "c.pdw").activations is None
