"""The issue-9 single-input layers in the Java kit: a model using every one of them, a reference-only
golden bundle from the CLI, and the Java runner, which must find every layer bit-exact."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pdinfer.cli import main as cli_main
from pdinfer.errors import FormatError
from pdinfer.format import read_weights, write_weights
from pdinfer.graph import load_graph
from test_golden import _layer, java, java_build, row  # noqa: F401 (java_build is a fixture)

INPUT_SHAPE = (3, 9, 11)

# Each activation reads the padded input itself (so it sees every golden input's raw range:
# uniform, normal, zeros, ones, large, negative); a chain of Adds joins them.
ACTIVATIONS = [
    ("hswish", "Hardswish", {}), ("hsig", "Hardsigmoid", {}), ("silu", "SiLU", {}),
    ("gelu", "GELU", {"approximate": "none"}), ("gelu_tanh", "GELU", {"approximate": "tanh"}),
    ("tanh", "Tanh", {}), ("htanh", "Hardtanh", {"min_val": -0.5, "max_val": 2.25}),
    ("elu", "ELU", {"alpha": 0.7}),
]


def new_layers_model(path: Path) -> Path:
    """ZeroPad2d, every new activation, PReLU (per channel and single), adaptive pools that shrink,
    grow and go to 1x1, and the channel mean and max."""
    layers = [_layer("pad", "ZeroPad2d", ["input"], {"padding": [1, 2, 0, 1]})]
    total = None
    for name, type_name, params in ACTIVATIONS:
        layers.append(_layer(name, type_name, ["pad"], params))
        if total is not None:
            layers.append(_layer(f"sum_{name}", "Add", [total, name]))
        total = layers[-1]["name"]
    layers += [
        _layer("prelu_c", "PReLU", ["pad"], {"num_parameters": 3}, ("weight",)),
        _layer("sum_prelu", "Add", [total, "prelu_c"]),
        _layer("prelu_1", "PReLU", ["sum_prelu"], {"num_parameters": 1}, ("weight",)),
        _layer("aavg", "AdaptiveAvgPool2d", ["prelu_1"], {"output_size": [4, 5]}),   # 10x14 -> 4x5
        _layer("amax", "AdaptiveMaxPool2d", ["aavg"], {"output_size": [3, 7]}),      # 4x5 -> 3x7: overlapping bins
        _layer("cmean", "ChannelMean", ["amax"]),
        _layer("cmax", "ChannelMax", ["amax"]),
        _layer("sum_c", "Add", ["cmean", "cmax"]),
        _layer("gmax", "AdaptiveMaxPool2d", ["sum_c"], {"output_size": [1, 1]}),
        _layer("flatten", "Flatten", ["gmax"]),
    ]
    rng = np.random.default_rng(0)
    tensors = {"prelu_c.weight": rng.uniform(-1, 1, 3), "prelu_1.weight": np.array([0.3])}
    write_weights(path, layers, {k: v.astype(np.float32) for k, v in tensors.items()},
                  input_shape=INPUT_SHAPE, classes=["a"], producer="tests")
    return path


def test_java_is_bit_exact_on_the_new_layers(java_build, tmp_path):  # noqa: F811
    weights = new_layers_model(tmp_path / "new_layers.pdw")
    assert cli_main(["golden", str(weights), "--out", str(tmp_path), "--no-torch"]) == 0
    result = java(java_build, "GoldenRunner", weights, tmp_path / "new_layers.golden.pdw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"PASS: {len(load_graph(weights).layers)} layers bit-exact" in result.stdout, result.stdout
    assert "(0 values of exp/tanh layers 1 ulp off)" in result.stdout, result.stdout  # no layer needed the allowance
    for name in ("gelu", "amax", "cmean", "prelu_c"):
        assert row(result.stdout, name).split()[-1] == "ok"


def _edit_layer(name: str, **changes):
    def edit(layers: list[dict]) -> None:
        next(layer for layer in layers if layer["name"] == name)["params"].update(changes)
    return edit


# Parameter errors in the new layers that pdinfer and the Java reader must both reject, and a
# regular expression matching the reason both give.
BAD_PARAMS = {
    "gelu approximate": (_edit_layer("gelu", approximate="erf"), "'approximate' must be"),
    "hardtanh bounds": (_edit_layer("htanh", min_val=3.0), "must not exceed"),
    "elu alpha": (_edit_layer("elu", alpha="1"), "'alpha' must be a number"),
    "prelu channels": (_edit_layer("prelu_1", num_parameters=2), "shape|channels"),
    "adaptive size": (_edit_layer("aavg", output_size=[0, 5]), "'output_size'"),
    "pad amounts": (_edit_layer("pad", padding=[1, 2, 0]), "'padding'"),
    "channel param": (_edit_layer("cmax", keepdim=True), "unknown"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_java_reader_rejects_bad_params_as_pdinfer_does(case, java_build, tmp_path):  # noqa: F811
    edit, reason = BAD_PARAMS[case]
    good = new_layers_model(tmp_path / "good.pdw")
    container, layers = read_weights(good)
    edit(layers)
    bad = tmp_path / "bad.pdw"
    tensors = {name: np.array(array) for name, array in container.tensors.items()}
    write_weights(bad, layers, tensors, input_shape=INPUT_SHAPE, classes=["a"], producer="tests")
    with pytest.raises(FormatError, match=reason):
        load_graph(bad)
    result = java(java_build, "Info", bad)
    assert result.returncode == 2, result.stdout
    assert re.search(reason, result.stderr), result.stderr


@pytest.mark.slow
def test_libm_and_strictmath_agree_in_float32_on_many_values(java_build, tmp_path):  # noqa: F811
    """The 1-ulp allowance of SiLU, Tanh, GELU and ELU is never used on 3.5 million values each.

    A 1x1 convolution scales and shifts a 200x250 image into five channels (x8, x1 - 0.5, x20 - 10,
    x0.05, x3 + 1), so the 14 golden inputs (10 uniform and normal, then zeros, ones, large and
    negative) reach far into each curve: 14 x 250 000 values per layer, per layer and end to end.
    """
    conv = {"in_channels": 1, "out_channels": 5, "kernel_size": [1, 1], "stride": [1, 1],
            "padding": [0, 0, 0, 0], "dilation": [1, 1], "groups": 1, "bias": True}
    layers = [_layer("scale", "Conv2d", ["input"], conv, ("weight", "bias"))]
    total = None
    for name, type_name, params in [("silu", "SiLU", {}), ("tanh", "Tanh", {}), ("elu", "ELU", {"alpha": 1.0}),
                                    ("gelu", "GELU", {"approximate": "none"}),
                                    ("gelu_tanh", "GELU", {"approximate": "tanh"})]:
        layers.append(_layer(name, type_name, ["scale"], params))
        if total is not None:
            layers.append(_layer(f"sum_{name}", "Add", [total, name]))
        total = layers[-1]["name"]
    layers.append(_layer("pool", "AdaptiveMaxPool2d", [total], {"output_size": [1, 1]}))
    layers.append(_layer("flatten", "Flatten", ["pool"]))
    tensors = {"scale.weight": np.array([8, 1, 20, 0.05, 3], np.float32).reshape(5, 1, 1, 1),
               "scale.bias": np.array([0, -0.5, -10, 0, 1], np.float32)}
    weights = tmp_path / "many.pdw"
    write_weights(weights, layers, tensors, input_shape=(1, 200, 250), classes=list("abcde"), producer="tests")
    assert cli_main(["golden", str(weights), "--out", str(tmp_path), "--no-torch", "--count", "10"]) == 0
    result = java(java_build, "GoldenRunner", weights, tmp_path / "many.golden.pdw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(0 values of exp/tanh layers 1 ulp off)" in result.stdout, result.stdout
