"""The fast int8 kernels (kernels/fast_int8.py) and the int8 table against the integer reference
(kernels/integer.py, quantize.Int8Reference), bit for bit: every kernel and every variant of the
convolution's matrix product on random shapes, and whole quantized models through the table.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import pdinfer
from exporter.compress import compress_file
from pdinfer.builder import every_layer_type
from pdinfer.graph import load_graph
from pdinfer.kernels import fast_int8, integer
from pdinfer.kernels.params import (AVX2, INT8_CHANNEL_ALIGN, PLAIN, VNNI, depthwise_biases, depthwise_vnni_operands, folded_bias, pack_weight,
                                    padded_channels, quads, requant, taps_across_in_channels, unpadded, window)
from pdinfer.quantize import Int8Reference
from small_model import sample_images, write_small_model

VARIANTS = [PLAIN, VNNI, AVX2]  # on a CPU without AVX512_VNNI (AVX2), VNNI (AVX2) runs its sums in portable form
WEIGHTS = Path(__file__).parents[1] / "weights"


def nhwc_bytes(x: np.ndarray) -> tuple[np.ndarray, int]:
    """NCHW uint8 images as the table holds them: NHWC, each image in whole 4-byte words."""
    n = len(x)
    size = x[0].size
    stride = -(-size // 4) * 4
    flat = np.zeros(n * stride, np.uint8)
    for i in range(n):
        flat[i * stride:i * stride + size] = x[i].transpose(1, 2, 0).reshape(-1)
    return flat, stride


def nchw(flat: np.ndarray, stride: int, n: int, h: int, w: int, c: int) -> np.ndarray:
    return np.stack([flat[i * stride:i * stride + h * w * c].reshape(h, w, c).transpose(2, 0, 1) for i in range(n)])


@st.composite
def conv_cases(draw, depthwise: bool = False):
    ci = draw(st.integers(1, 140 if depthwise else 40))  # depthwise: up to three blocks of 64 channels
    co = ci if depthwise else draw(st.integers(1, 70))
    largest = 5 if depthwise else 3  # depthwise: windows of more than four rows of taps too
    kh, kw = draw(st.integers(1, largest)), draw(st.integers(1, largest))
    sh, sw, dh, dw = (draw(st.integers(1, 2)) for _ in range(4))
    pads = [draw(st.integers(0, k // 2)) for k in (kh, kw, kh, kw)]  # top, left, bottom, right
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[2]), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[1] - pads[3]), 11))
    act = draw(st.sampled_from(["none", "relu", "leaky", "negative"]))  # negative: a slope that makes the
    # requantization not monotone in the sum (a pooled pixel then requantizes all four)
    return dict(n=draw(st.integers(1, 3)), ci=ci, co=co, h=h, w=w, win=window((kh, kw), (sh, sw), pads, (dh, dw)),
                act=act, pool=draw(st.booleans()) and not depthwise, chunks=draw(st.integers(1, 3)),
                across=draw(st.booleans()) and not depthwise)  # the PAD row puts the taps across in each pixel


def _operands(case: dict, seed: int, groups: int = 1):
    rng = np.random.default_rng(seed)
    win = case["win"]
    x = rng.integers(0, 256, (case["n"], case["ci"], case["h"], case["w"]), dtype=np.uint8)
    weight = rng.integers(-127, 128, (case["co"], case["ci"] // groups, win.kernel_h, win.kernel_w), dtype=np.int8)
    bias = rng.integers(-20000, 20000, case["co"]).astype(np.int32)
    multiplier = rng.uniform(1e-5, 3e-3, case["co"])
    multiplier[rng.random(case["co"]) < 0.2] *= 1e6  # pre-images beyond int32: the requantization's clamp
    multiplier = multiplier.astype(np.float32)
    zero_x, zero_out = (int(z) for z in rng.integers(0, 256, 2))
    rq = {"none": requant(zero_out), "relu": requant(zero_out, zero_out),
          "leaky": requant(zero_out, negative_slope=0.2), "negative": requant(zero_out, negative_slope=-0.5)}[case["act"]]
    return x, weight, bias, multiplier, zero_x, rq


def padded_input(x: np.ndarray, border: tuple, across: tuple, zero_point: int) -> np.ndarray:
    """fast_int8.pad of NCHW uint8 images x, checked against NumPy: x with `border` of the zero
    point, each pixel holding the `across` (taps, step) taps across, then the zero point up to
    whole quads of channels. Returns the table's flat bytes."""
    n, ci, in_h, in_w = x.shape
    top, left, bottom, right = border
    taps, step = across
    h, w, c4 = in_h + top + bottom, in_w + left + right - (taps - 1) * step, quads(ci * taps)
    padded_stride = -(-(h * w * c4) // 4) * 4
    flat, stride = nhwc_bytes(x)
    padded_x = np.zeros(n * padded_stride, np.uint8)
    fast_int8.pad(flat, stride, in_h, in_w, ci, border, across, zero_point, padded_x, padded_stride, c4, n)
    bordered = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=zero_point)
    source = nchw(padded_x, padded_stride, n, h, w, c4)
    for j in range(taps):
        np.testing.assert_array_equal(source[:, j * ci:(j + 1) * ci], bordered[:, :, :, j * step:j * step + w])
    assert (source[:, taps * ci:] == zero_point).all()
    return padded_x


@given(shape=st.tuples(st.integers(1, 2), st.one_of(st.just(1), st.integers(1, 9)), st.integers(1, 9),
                      st.integers(1, 70)),  # rows of up to 70: a grayscale image's 16 pixel words, and their ends
       border=st.tuples(*[st.integers(0, 2)] * 4), taps=st.integers(1, 3), step=st.integers(1, 2),
       seed=st.integers(0, 2 ** 16))
@example(shape=(1, 1, 6, 1), border=(0, 2, 0, 1), taps=3, step=1, seed=7)  # a row narrower than its left border
def test_fast_int8_pad_equals_numpy(shape, border, taps, step, seed):
    assume(border[1] + shape[3] + border[3] - (taps - 1) * step >= 1)  # an output column
    x = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    padded_input(x, border, (taps, step), int(seed % 256))


@given(case=conv_cases(), seed=st.integers(0, 2 ** 16), variant=st.sampled_from(VARIANTS))
def test_fast_int8_conv2d_equals_the_integer_reference(case, seed, variant):
    x, weight, bias, multiplier, zero_x, rq = _operands(case, seed)
    win, n, ci, co = case["win"], case["n"], case["ci"], case["co"]
    conv_h = (case["h"] + win.pad_top + win.pad_bottom - win.dilation_h * (win.kernel_h - 1) - 1) // win.stride_h + 1
    conv_w = (case["w"] + win.pad_left + win.pad_right - win.dilation_w * (win.kernel_w - 1) - 1) // win.stride_w + 1
    expected = integer.conv2d(x, zero_x, weight, bias, multiplier, tuple(rq), tuple(win), 1, conv_h, conv_w)
    pool = case["pool"] and conv_h >= 2 and conv_w >= 2
    if pool:
        expected = integer.max_pool2d(expected, tuple(window((2, 2), (2, 2), (0, 0, 0, 0))), conv_h // 2, conv_w // 2)
    out_h, out_w = expected.shape[2:]
    padded = padded_channels(co, INT8_CHANNEL_ALIGN)
    multipliers = np.zeros(padded, np.float32)
    multipliers[:co] = multiplier
    # the table gives the input its padding and whole quads of channels [its taps across side by side] with a PAD row
    flat, stride = nhwc_bytes(x)
    top, left, bottom, right = win.pad_top, win.pad_left, win.pad_bottom, win.pad_right
    taps, step = (win.kernel_w, win.dilation_w) if case["across"] else (1, 1)
    h, w, c4 = case["h"] + top + bottom, case["w"] + left + right - (taps - 1) * step, quads(ci * taps)
    padded_stride = -(-(h * w * c4) // 4) * 4
    padded_x = padded_input(x, (top, left, bottom, right), (taps, step), zero_x)
    if case["across"]:
        weight_read, window_read = taps_across_in_channels(weight), unpadded(win)._replace(kernel_w=1, dilation_w=1)
    else:
        weight_read, window_read = weight, unpadded(win)
    out_stride = -(-(out_h * out_w * co) // 4) * 4
    out = np.zeros(n * out_stride, np.uint8)
    for chunk in range(case["chunks"]):  # the parts two threads would run
        fast_int8.conv2d(padded_x, padded_stride, h, w, c4, zero_x, pack_weight(weight_read, padded),
                         folded_bias(bias, weight, zero_x, padded), multipliers, tuple(rq), tuple(window_read), out,
                         out_stride, out_h, out_w, co, n, (chunk, chunk + 1, case["chunks"]), variant, pool)
    np.testing.assert_array_equal(nchw(out, out_stride, n, out_h, out_w, co), expected)


@given(case=conv_cases(depthwise=True), seed=st.integers(0, 2 ** 16), variant=st.sampled_from([PLAIN, VNNI]))
def test_fast_int8_depthwise_equals_the_integer_reference(case, seed, variant):
    x, weight, bias, multiplier, zero_x, rq = _operands(case, seed, groups=case["ci"])
    win, n, c = case["win"], case["n"], case["ci"]
    out_h = (case["h"] + win.pad_top + win.pad_bottom - win.dilation_h * (win.kernel_h - 1) - 1) // win.stride_h + 1
    out_w = (case["w"] + win.pad_left + win.pad_right - win.dilation_w * (win.kernel_w - 1) - 1) // win.stride_w + 1
    expected = integer.conv2d(x, zero_x, weight, bias, multiplier, tuple(rq), tuple(win), c, out_h, out_w)
    if variant == VNNI:
        kernel, operands = fast_int8.depthwise_conv2d_vnni, depthwise_vnni_operands(weight, bias, multiplier, zero_x)
    else:
        padded = padded_channels(c, INT8_CHANNEL_ALIGN)
        taps = np.zeros((win.kernel_h * win.kernel_w, padded), np.int8)
        taps[:, :c] = weight.reshape(c, -1).T
        multipliers = np.zeros(padded, np.float32)
        multipliers[:c] = multiplier
        kernel, operands = fast_int8.depthwise_conv2d, (taps, depthwise_biases(bias, weight, zero_x, padded), multipliers)
    flat, stride = nhwc_bytes(x)
    out_stride = -(-(out_h * out_w * c) // 4) * 4
    out = np.zeros(n * out_stride, np.uint8)
    for chunk in range(case["chunks"]):
        kernel(flat, stride, case["h"], case["w"], c, zero_x, *operands, tuple(rq), tuple(win), out, out_stride, out_h,
               out_w, n, (chunk, chunk + 1, case["chunks"]))
    np.testing.assert_array_equal(nchw(out, out_stride, n, out_h, out_w, c), expected)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 7), st.integers(1, 7)),
       kernel=st.integers(1, 3), seed=st.integers(0, 2 ** 16))
def test_fast_int8_pools_add_flatten_and_conversions_equal_the_reference(shape, kernel, seed):
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    a, b = (rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2))
    za, zb, zo = (int(z) for z in rng.integers(0, 256, 3))
    ma, mb = (np.float32(m) for m in rng.uniform(0.01, 3.0, 2))
    rq = tuple(requant(zo, 2, 250))
    flat_a, stride = nhwc_bytes(a)
    flat_b, _ = nhwc_bytes(b)
    out = np.zeros_like(flat_a)
    fast_int8.add(flat_a, za, ma, flat_b, zb, mb, rq, out, c * h * w, stride, n)
    np.testing.assert_array_equal(nchw(out, stride, n, h, w, c), integer.add(a, za, ma, b, zb, mb, rq))
    win = window((min(kernel, h), min(kernel, w)), (kernel, kernel), (0, 0, 0, 0))
    out_h, out_w = (h - win.kernel_h) // win.stride_h + 1, (w - win.kernel_w) // win.stride_w + 1
    pooled_stride = -(-(out_h * out_w * c) // 4) * 4
    pooled = np.zeros(n * pooled_stride, np.uint8)
    fast_int8.max_pool2d(flat_a, stride, h, w, c, tuple(win), pooled, pooled_stride, out_h, out_w, n)
    np.testing.assert_array_equal(nchw(pooled, pooled_stride, n, out_h, out_w, c),
                                  integer.max_pool2d(a, tuple(win), out_h, out_w))
    mean_stride = -(-c // 4) * 4
    means = np.zeros(n * mean_stride, np.uint8)
    fast_int8.global_avg_pool(flat_a, stride, h * w, c, za, ma / (h * w), rq, means, mean_stride, n)
    np.testing.assert_array_equal(means.reshape(n, mean_stride)[:, :c], integer.global_avg_pool(a, za, ma / (h * w), rq))
    flat = np.zeros_like(flat_a)
    fast_int8.flatten(flat_a, stride, h, w, c, flat, stride, n)
    np.testing.assert_array_equal(flat.reshape(n, stride)[:, :c * h * w], a.reshape(n, -1))
    real = rng.normal(0, 3, c * h * w).astype(np.float32)
    levels = np.zeros(real.size, np.uint8)
    fast_int8.quantize(real, ma, za, levels)
    np.testing.assert_array_equal(levels, integer.quantize(real, ma, za))
    back = np.zeros(real.size, np.float32)
    fast_int8.dequantize(levels, ma, za, back)
    np.testing.assert_array_equal(back, integer.dequantize(levels, ma, za))


# ----------------------------------------------------------------------------- whole models through the table

def _quantized(tmp_path, src, images):
    dst = tmp_path / f"{src.stem}.q8.pdw"
    compress_file(src, dst, "int8", images)
    return dst


def _table_equals_reference(path, x: np.ndarray) -> None:
    model = pdinfer.load(path)
    model.compile()
    expected = Int8Reference(load_graph(path))(x)
    np.testing.assert_array_equal(model(x), expected)
    for image in range(len(x)):  # batch invariance: one image at a time gives the same answers
        np.testing.assert_array_equal(model(x[image]), expected[image])


def test_the_int8_table_equals_the_reference_on_the_small_model(tmp_path):
    path = _quantized(tmp_path, write_small_model(tmp_path / "small.pdw"), sample_images(32, seed=3))
    _table_equals_reference(path, sample_images(11, seed=4))


def test_the_int8_table_equals_the_reference_with_every_layer_type(tmp_path):
    layers, _ = every_layer_type(seed=2)
    src = layers.write(tmp_path / "every.pdw")
    shape = pdinfer.load(src).input_shape
    rng = np.random.default_rng(1)
    path = _quantized(tmp_path, src, rng.uniform(0, 1, (16, *shape)).astype(np.float32))
    _table_equals_reference(path, rng.uniform(0, 1, (5, *shape)).astype(np.float32))


@pytest.mark.parametrize("name", ["pd_light", "pd_model"])
def test_the_int8_table_equals_the_reference_on_the_seed_models(tmp_path, name):
    from exporter.synthetic import generate
    images, _ = generate(4, seed=5)
    path = _quantized(tmp_path, WEIGHTS / f"{name}.pdw", images)
    _table_equals_reference(path, generate(2, seed=6)[0])


@pytest.mark.parametrize("features, expected", [("", False), ("+avx2,+fma", False), ("+avx2,+avx512vnni", True),
                                                ("+avx512vnni,-avx2", True)])
def test_int8_kernels_take_the_features_numba_compiles_for(monkeypatch, features, expected):
    """NUMBA_CPU_FEATURES (or NUMBA_CPU_NAME=generic, which empties it) decides which x86
    intrinsics the kernels may emit: an intrinsic the target lacks would abort LLVM."""
    from numba.core import config

    from pdinfer.kernels.simd_int8 import compiles_for
    monkeypatch.setattr(config, "CPU_FEATURES", features)
    assert compiles_for("avx512vnni") is expected
    assert compiles_for("avx2") is ("+avx2" in features.split(","))


def test_an_int8_model_compiled_for_a_cpu_without_avx512_gives_the_same_answers(tmp_path):
    """The shipped int8 model compiled for Haswell (AVX2: dot_u8s8_avx2, the portable depthwise) in
    a fresh process and compile cache answers as this process does, bit for bit."""
    x = np.random.default_rng(3).random((3, 1, 60, 120), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    script = ("import sys, numpy as np, pdinfer\n"
              "from pdinfer.kernels.simd_int8 import HAS_AVX2, HAS_VNNI\n"
              "assert HAS_AVX2 and not HAS_VNNI\n"
              f"np.save(sys.argv[2], pdinfer.load(sys.argv[1])(np.load({str(tmp_path / 'x.npy')!r})))\n")
    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "NUMBA_CPU_FEATURES": "+avx,+avx2,+fma,+sse4.2,+popcnt,+f16c,+bmi,+bmi2"}
    path = WEIGHTS / "pd_light.int8.pdw"
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "y.npy")], env=env, check=True, timeout=1200)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), pdinfer.load(path)(x))
