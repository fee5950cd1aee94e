"""ONNX import (pdinfer/onnx_import.py): converted models against ONNX Runtime on the same file.

Models come from both PyTorch exporters (TorchScript `dynamo=False` and the dynamo exporter, which
needs onnxscript), from graphs built with onnx.helper (tf2onnx's NHWC layout, every opset encoding
of the attributes that became inputs), and the refusals are checked for their messages.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")  # the models come from PyTorch's exporters
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import blocks  # noqa: E402
import pdinfer  # noqa: E402
from exporter.models import PDLightModel, PDLightSEModel, PDModel, randomize_batchnorm  # noqa: E402
from helpers import assert_close  # noqa: E402
from pdinfer.cli import main as cli_main  # noqa: E402
from pdinfer.golden import write_golden  # noqa: E402
from pdinfer.graph import load_graph  # noqa: E402
from pdinfer.onnx_import import UnsupportedOnnxError, convert_onnx  # noqa: E402
from test_golden import java  # noqa: E402

try:
    import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    EXPORTERS = [False, True]
except ImportError:
    EXPORTERS = [False, pytest.param(True, marks=pytest.mark.skip(reason="the dynamo exporter needs onnxscript"))]


def onnxruntime_output(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check_converted(path: Path, x: np.ndarray, onnx_input: np.ndarray | None = None, **options) -> pdinfer.Model:
    """Convert `path`, then compare pdinfer (fast path and reference trace) with ONNX Runtime."""
    weights = convert_onnx(path, path.with_suffix(".pdw"), **options)
    model = pdinfer.load(weights)
    expected = onnxruntime_output(path, x if onnx_input is None else onnx_input)
    assert_close(model(x), expected, "pdinfer vs ONNX Runtime", str(path))
    assert_close(list(model.trace(x).values())[-1], expected, "pdinfer's reference vs ONNX Runtime", str(path))
    return model


def layer_types(weights: Path) -> list[str]:
    return [layer.type for layer in load_graph(weights).layers]


def export(module: nn.Module, input_shape: tuple[int, ...], path: Path, dynamo: bool, batch: int = 2,
           opset: int | None = None, dynamic_batch: bool = True) -> np.ndarray:
    """torch.onnx.export `module` (eval mode, random BatchNorm statistics); returns a test batch.

    The TorchScript exporter writes a dynamic batch axis unless dynamic_batch is False."""
    module.eval()
    randomize_batchnorm(module, 0)
    x = torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    options = {"opset_version": opset} if opset else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["x"], verbose=False, **options)
        else:
            torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"],
                              dynamic_axes={"x": {0: "n"}} if dynamic_batch else None, **options)
    return x.numpy()


# ------------------------------------------------------------------------- models from PyTorch

SEED_MODELS = {"pd_model": PDModel, "pd_light": PDLightModel, "pd_light_se": PDLightSEModel}


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_seed_models_match_onnxruntime(name, dynamo, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    x = export(SEED_MODELS[name](6), (1, 60, 120), path, dynamo)
    if dynamo:
        assert (tmp_path / f"{name}.onnx.data").exists() or path.stat().st_size > 100_000
    model = check_converted(path, x, classes=list("abcdef"))
    assert model.classes == list("abcdef") and model.input_shape == (1, 60, 120)


BLOCKS = {
    "squeezenet": (lambda: blocks.SqueezeNetTiny(2, 5), (2, 17, 19)),
    "densenet": (lambda: blocks.DenseNetTiny(3, 5), (3, 16, 16)),
    "shufflenet": (lambda: blocks.ShuffleNetV2Tiny(3, 5), (3, 24, 24)),
    "mobilenet_v3": (lambda: blocks.MobileNetV3Tiny(3, 5), (3, 24, 24)),
    "efficientnet": (lambda: blocks.EfficientNetTiny(3, 5), (3, 24, 24)),
    "inception": (lambda: blocks.Inception(3, 4, 3, 5, 2, 4, 3), (3, 9, 11)),
    "se_resnet": (lambda: blocks.SEBasicBlock(3, 8, 2, 4), (3, 10, 9)),
    "cbam": (lambda: blocks.CBAMBasicBlock(3, 8, 2, 4), (3, 11, 10)),
    "cbam_authors": (lambda: blocks.CBAMAuthorsBasicBlock(3, 8, 2, 4), (3, 11, 10)),
}
STATIC_BATCH = {"cbam_authors"}  # pools with kernel x.size(2): TorchScript cannot export a dynamic batch


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_match_onnxruntime(name, dynamo, tmp_path):
    make, input_shape = BLOCKS[name]
    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    check_converted(path, export(make(), input_shape, path, dynamo, dynamic_batch=name not in STATIC_BATCH))


@settings(max_examples=10)
@given(st.integers(7, 20), st.integers(7, 20), st.integers(0, 3))
def test_padding_and_pooling_shapes(tmp_path_factory, h, w, seed):
    """Asymmetric Conv pads, 'same' padding, ceil-mode and padded pools, at drawn image sizes."""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(2, 4, 3, stride=2, padding=1)
            self.b = nn.Conv2d(4, 4, (3, 2), padding="same")
            self.c = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
            self.pool = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
            self.max = nn.MaxPool2d(2, ceil_mode=True)

        def forward(self, x):
            x = self.c(self.b(nn.functional.pad(self.a(x), (0, 1, 1, 0))))
            return self.max(self.pool(x)).flatten(1)

    torch.manual_seed(seed)
    path = tmp_path_factory.mktemp("pads") / "net.onnx"
    check_converted(path, export(Net(), (2, h, w), path, dynamo=False))


@pytest.mark.parametrize("opset", [13, 17, 20])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_in_every_spelling(approximate, opset, tmp_path):
    """Before opset 20 the exporter writes GELU out (Erf or Tanh); the converter folds it back into one GELU."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(approximate=approximate), nn.Conv2d(4, 4, 1), nn.SiLU(),
                        nn.Hardswish(), nn.Flatten(), nn.Linear(4 * 5 * 6, 3))
    path = tmp_path / "gelu.onnx"
    x = export(net, (1, 7, 8), path, dynamo=False, opset=opset)
    check_converted(path, x)
    types = layer_types(path.with_suffix(".pdw"))
    assert [t for t in types if t in ("GELU", "SiLU", "Hardswish")] == ["GELU", "SiLU", "Hardswish"], types


# ------------------------------------------------------------------------- graphs built with onnx.helper

def make_model(nodes: list, input_shape: list, output_shape: list | None, initializers: dict, opset: int,
               path: Path, metadata: dict | None = None) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        helper.set_model_props(model, {key: value})
    onnx.save(model, str(path))
    return path


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + len(shape)).uniform(-1, 1, shape).astype(np.float32)


def test_a_tf2onnx_shaped_graph_nhwc_input_same_padding_and_keras_flatten(tmp_path):
    """tf2onnx's layout: an NHWC input transposed to NCHW, SAME_UPPER convolutions, a transpose back
    to NHWC before Keras' Flatten (features in H, W, C order) and MatMul + Add. The converted model
    takes NCHW (the Linear's columns are permuted to match)."""
    h, w = 9, 10
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t", "w1", "b1"], ["c1"], auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], auto_pad="SAME_LOWER", kernel_shape=[2, 2]),
        helper.make_node("Transpose", ["c2"], ["back"], perm=[0, 2, 3, 1]),
        helper.make_node("Relu", ["back"], ["r2"]),
        helper.make_node("Shape", ["r2"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r2", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w3"], ["mm"]),
        helper.make_node("Add", ["mm", "b3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    features = 6 * 5 * 5
    init = {"w1": rand(6, 3, 3, 3), "b1": rand(6), "w2": rand(6, 6, 2, 2, seed=1), "w3": rand(features, 4),
            "b3": rand(4, seed=2), "zero": np.array(0, np.int64), "axes0": np.array([0], np.int64),
            "minus1": np.array([-1], np.int64)}
    path = make_model(nodes, ["N", h, w, 3], None, init, 13, tmp_path / "keras.onnx")
    nhwc = rand(2, h, w, 3, seed=5)
    model = check_converted(path, np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)), onnx_input=nhwc)
    assert model.input_shape == (3, h, w)
    assert layer_types(path.with_suffix(".pdw")) == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear", "Softmax"]


ENCODINGS = {  # node, initializers, the opsets it is written for: attributes that became inputs
    "clip_attrs": (lambda: helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25), {}, [6, 10]),
    "clip_inputs": (lambda: helper.make_node("Clip", ["x", "lo", "hi"], ["y"]),
                    {"lo": np.float32(0), "hi": np.float32(6)}, [11, 13, 21]),
    "clip_min_only": (lambda: helper.make_node("Clip", ["x", "lo"], ["y"]), {"lo": np.float32(0)}, [13]),
    "pad_attrs": (lambda: helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 0, 3, 0]), {}, [2, 10]),
    "pad_inputs": (lambda: helper.make_node("Pad", ["x", "pads"], ["y"]),
                   {"pads": np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)}, [11, 13, 19]),
    "pad_axes": (lambda: helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"]),
                 {"pads": np.array([1, 0, 2, 1], np.int64), "axes": np.array([2, -1], np.int64)}, [18, 21]),
    "reduce_mean_attrs": (lambda: helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3]), {}, [11, 13, 17]),
    "reduce_mean_inputs": (lambda: helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0),
                           {"axes": np.array([-1, -2], np.int64)}, [18, 21]),
    "reduce_max_channels": (lambda: helper.make_node("ReduceMax", ["x"], ["y"], axes=[1]), {}, [11, 13]),
    "reduce_max_channels_inputs": (lambda: helper.make_node("ReduceMax", ["x", "axes"], ["y"]),
                                   {"axes": np.array([1], np.int64)}, [18, 20]),
    "squeeze_attrs": (lambda: helper.make_node("GlobalMaxPool", ["x"], ["g"]), {}, [11]),
    "softmax_old": (lambda: helper.make_node("Softmax", ["x"], ["y"], axis=1), {}, [11, 13]),
    "hard_sigmoid_default": (lambda: helper.make_node("HardSigmoid", ["x"], ["y"]), {}, [6, 13, 22]),
    "hard_sigmoid_torch": (lambda: helper.make_node("HardSigmoid", ["x"], ["y"], alpha=1 / 6), {}, [13]),
    "leaky_elu": (lambda: helper.make_node("Elu", ["x"], ["y"], alpha=0.3), {}, [6, 22]),
    "prelu_channels": (lambda: helper.make_node("PRelu", ["x", "s"], ["y"]),
                       {"s": np.array([[[0.1]], [[-0.2]], [[0.3]]], np.float32)}, [9, 16]),
    "sub_div_constants": (lambda: helper.make_node("Div", ["x", "s"], ["y"]),
                          {"s": np.array([[[2.0]], [[4.0]], [[0.5]]], np.float32)}, [7, 14]),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_each_opset_encoding_matches_onnxruntime(case, tmp_path):
    make, init, opsets = ENCODINGS[case]
    for opset in opsets:
        node = make()
        nodes = [node]
        if case == "squeeze_attrs":  # GlobalMaxPool then Squeeze with axes as an attribute (as input from 13)
            nodes.append(helper.make_node("Squeeze", ["g"], ["y"], axes=[2, 3]))
        if case == "softmax_old":  # opset < 13 flattens from axis: on (N, C, 1, 1) the same as axis 1
            nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Softmax", ["g"], ["y"], axis=1)]
        path = make_model(nodes, [2, 3, 5, 6], None, init, opset, tmp_path / f"{case}_{opset}.onnx")
        check_converted(path, rand(2, 3, 5, 6, seed=opset) * 4)


def test_split_slice_concat_and_the_channel_shuffle_at_every_encoding(tmp_path):
    for opset, split in ((11, "attr"), (13, "input"), (18, "num_outputs")):
        nodes = [helper.make_node("Split", ["x", "sizes"] if split == "input" else ["x"], ["a", "b"], axis=1,
                                  **({"split": [2, 4]} if split == "attr" else {"num_outputs": 2} if split == "num_outputs" else {})),
                 helper.make_node("Slice", ["b", "starts", "ends", "axes"], ["b1"]),
                 helper.make_node("Concat", ["b1", "a"], ["c"], axis=1),
                 helper.make_node("Reshape", ["c", "grouped"], ["g"]),
                 helper.make_node("Transpose", ["g"], ["t"], perm=[0, 2, 1, 3, 4]),
                 helper.make_node("Reshape", ["t", "flat"], ["y"])]
        channels = 5 if split == "attr" or split == "input" else 4
        init = {"starts": np.array([1], np.int64), "ends": np.array([10], np.int64), "axes": np.array([1], np.int64),
                "grouped": np.array([0, 1, channels, 5, 6], np.int64), "flat": np.array([-1, channels, 5, 6], np.int64)}
        if split == "input":
            init["sizes"] = np.array([2, 4], np.int64)
        path = make_model(nodes, [2, 6, 5, 6], None, init, opset, tmp_path / f"split_{opset}.onnx")
        if channels == 4:  # num_outputs=2 splits 6 channels 3 + 3; slicing 1: leaves 2; concat: 5
            init["grouped"][2], init["flat"][1] = 5, 5
            path = make_model(nodes, [2, 6, 5, 6], None, init, opset, path)
        check_converted(path, rand(2, 6, 5, 6, seed=opset))
        assert "ChannelShuffle" in layer_types(path.with_suffix(".pdw"))


# ------------------------------------------------------------------------- refusals and errors

def test_every_unsupported_node_is_named_in_one_error(tmp_path):
    nodes = [helper.make_node("LRN", ["x"], ["a"], size=3, name="norm"),
             helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["bn", "mean", "var"],
                              training_mode=1, name="bn_train"),
             helper.make_node("Resize", ["bn", "", "scales"], ["r"], name="upsample"),
             helper.make_node("Relu", ["x"], ["ok"]),
             helper.make_node("Transpose", ["ok"], ["y"], perm=[0, 1, 3, 2], name="swap_hw")]
    init = {k: np.ones(3, np.float32) for k in "sbmv"} | {"scales": np.array([1, 1, 2, 2], np.float32)}
    path = make_model(nodes, [1, 3, 4, 4], None, init, 15, tmp_path / "bad.onnx")
    with pytest.raises(UnsupportedOnnxError) as error:
        convert_onnx(path, tmp_path / "bad.pdw")
    message = str(error.value)
    assert len(error.value.problems) == 4, message
    for expected in ("LRN 'norm': operator LRN has no pdinfer layer", "BatchNormalization 'bn_train'",
                     "training mode", "eval mode", "Resize 'upsample'", "Transpose 'swap_hw'", "perm [0, 1, 3, 2]", "no upsampling"):
        assert expected in message
    assert isinstance(error.value, pdinfer.UnsupportedLayerError) and not (tmp_path / "bad.pdw").exists()


@pytest.mark.parametrize("content", [b"", b"not a model", b"\x08\x07\x12\x04ab", None])
def test_a_malformed_file_is_a_format_error(content, tmp_path):
    path = tmp_path / "bad.onnx"
    if content is None:  # a valid model cut short
        torch.manual_seed(0)
        export(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 5, 5), path, dynamo=False)
        path.write_bytes(path.read_bytes()[:150])
    else:
        path.write_bytes(content)
    with pytest.raises(pdinfer.FormatError, match="bad.onnx"):
        convert_onnx(path, tmp_path / "out.pdw")
    with pytest.raises(pdinfer.FormatError, match="no such file"):
        convert_onnx(tmp_path / "missing.onnx", tmp_path / "out.pdw")


def test_dynamic_sizes_need_input_shape_and_classes_come_from_metadata(tmp_path):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    path = make_model(nodes, ["N", 3, "H", "W"], None, {}, 13, tmp_path / "dyn.onnx", {"classes": '["r", "g", "b"]'})
    with pytest.raises(pdinfer.PdinferError, match=r"dynamic dimensions.*input_shape"):
        convert_onnx(path, tmp_path / "dyn.pdw")
    with pytest.raises(pdinfer.PdinferError, match="contradicts"):
        convert_onnx(path, tmp_path / "dyn.pdw", input_shape=(4, 8, 8))
    model = pdinfer.load(convert_onnx(path, tmp_path / "dyn.pdw", input_shape=(3, 8, 9)))
    assert model.input_shape == (3, 8, 9) and model.classes == ["r", "g", "b"]
    with pytest.raises(FileExistsError, match="exists"):
        convert_onnx(path, tmp_path / "dyn.pdw", input_shape=(3, 8, 9))
    with pytest.raises(pdinfer.PdinferError, match="2 class names for 3"):
        convert_onnx(path, tmp_path / "dyn.pdw", input_shape=(3, 8, 9), classes=["a", "b"], force=True)


def test_without_onnx_the_converter_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(pdinfer.MissingExtraError, match=r"pip install 'pdinfer\[onnx\]'"):
        convert_onnx(tmp_path / "m.onnx", tmp_path / "m.pdw")


def test_cli_convert(tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    export(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 3)), (1, 5, 5), path, dynamo=False)
    out = tmp_path / "m.pdw"
    assert cli_main(["convert", str(path), str(out), "--classes", "a,b,c"]) == 0
    assert "wrote" in capsys.readouterr().out and pdinfer.load(out).classes == ["a", "b", "c"]
    assert cli_main(["convert", str(path), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["convert", str(path), str(out), "--force", "--input-shape", "1,5,x"]) == 2
    assert "C,H,W" in capsys.readouterr().err
    assert cli_main(["convert", str(path), str(out), "--force", "--input-shape", "1,5,5"]) == 0


# ------------------------------------------------------------------------- the Java kit

def test_a_converted_model_is_bit_exact_in_java(java_classes, tmp_path):
    """A dynamo-exported PDLightSEModel (BatchNorm folded into Conv by the exporter, Hardswish, SE)
    converted, then its golden bundle checked by the Java kit."""
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    path = tmp_path / "pd_light_se.onnx"
    export(PDLightSEModel(6), (1, 60, 120), path, dynamo=True)
    weights = convert_onnx(path, tmp_path / "pd_light_se.pdw")
    bundle = write_golden(weights, tmp_path, count=1, seed=3)
    result = java(java_classes, "GoldenRunner", weights, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers bit-exact with pdinfer's reference" in result.stdout


def test_a_keras_cnn_through_tf2onnx(tmp_path):
    """Keras (NHWC, SAME padding, Flatten, Dense) through tf2onnx; skipped where they are not installed."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    keras = tf.keras
    tf.random.set_seed(0)
    model = keras.Sequential([keras.Input((12, 10, 2)), keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
                              keras.layers.MaxPooling2D(2), keras.layers.Conv2D(6, 3, strides=2, padding="same"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    path = tmp_path / "keras.onnx"
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, 12, 10, 2), tf.float32, name="x"),),
                               opset=13, output_path=str(path))
    nhwc = rand(2, 12, 10, 2)
    check_converted(path, np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)), onnx_input=nhwc)


@settings(max_examples=60)
@given(st.data())
def test_a_corrupted_model_raises_only_pdinfer_errors(tmp_path_factory, data):
    """Bytes of a small valid model changed at random: converted, or a PdinferError, never another exception."""
    directory = tmp_path_factory.mktemp("fuzz")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 0, 1, 2]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "m", "mb"], ["y"], transB=1)]
    init = {"w": rand(4, 2, 3, 3), "b": rand(4), "m": rand(3, 4), "mb": rand(3)}
    source = make_model(nodes, [1, 2, 6, 7], None, init, 13, directory / "m.onnx").read_bytes()
    raw = bytearray(source)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = directory / "bad.onnx"
    path.write_bytes(bytes(raw))
    try:
        convert_onnx(path, directory / "bad.pdw", force=True)
    except pdinfer.PdinferError:
        return
    pdinfer.load(directory / "bad.pdw")
