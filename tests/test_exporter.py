"""The torch exporter: seed-model layer lists, every supported spelling, error reporting, files."""

from __future__ import annotations

import json
import operator
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from exporter import (INPUT_SHAPE, PDLightModel, PDModel, UnsupportedModelError,  # noqa: E402
                      export, randomize_batchnorm, to_layers)
from exporter.__main__ import main as cli_main  # noqa: E402
from helpers import check_against_torch  # noqa: E402
from exporter.tiny_example import main as tiny_main  # noqa: E402
from pdinfer.format import FORMAT_VERSION  # noqa: E402

SHAPE = (2, 6, 6)  # input of the small spelling models
FEATURES = 2 * 6 * 6


class Net(nn.Module):
    """A model whose forward is `fn(self, x)`, with the given submodules."""

    def __init__(self, fn, **modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x):
        return self.fn(self, x)


def types(graph) -> list[str]:
    return [layer["type"] for layer in graph.layers]


def read_file(path) -> tuple[dict[str, str], list[dict], dict[str, np.ndarray]]:
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
    return metadata, json.loads(metadata["layers"]), load_file(str(path))


def exported_state(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


# ---------------------------------------------------------------------------- seed models

def test_pd_model_layers():
    graph = to_layers(PDModel(6), INPUT_SHAPE)
    assert types(graph) == ["Conv2d", "ReLU", "MaxPool2d"] * 4 + [
        "Flatten", "Linear", "ReLU", "Linear", "Dropout", "ReLU", "Linear", "Sigmoid"]
    assert [layer["name"] for layer in graph.layers[:3]] == ["conv.0", "conv.1", "conv.2"]
    assert graph.layers[12]["name"] == "view" and graph.layers[12]["inputs"] == ["conv.11"]
    assert graph.output_shape == (6,)


def _irb_types(cin: int, cout: int, stride: int, t: int) -> list[str]:
    expand = [] if t == 1 else ["Conv2d", "BatchNorm2d", "LeakyReLU"]
    block = expand + ["Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "BatchNorm2d"]
    return block + (["Add"] if stride == 1 and cin == cout else [])


def test_pd_light_layers():
    graph = to_layers(PDLightModel(6), INPUT_SHAPE)
    blocks = [(32, 16, 1, 1), (16, 24, 2, 6), (24, 24, 1, 6), (24, 32, 2, 6), (32, 32, 1, 6),
              (32, 32, 1, 6), (32, 64, 2, 6), (64, 64, 1, 6), (64, 64, 1, 6)]
    expected = ["Conv2d", "BatchNorm2d", "LeakyReLU"]
    for block in blocks:
        expected += _irb_types(*block)
    expected += ["Conv2d", "BatchNorm2d", "LeakyReLU", "GlobalAvgPool", "Linear", "Softmax"]
    assert types(graph) == expected
    by_name = {layer["name"]: layer for layer in graph.layers}
    assert by_name["add"]["inputs"] == ["extractor.2.conv.7", "extractor.3.conv.7"]
    depthwise = by_name["extractor.1.conv.0"]["params"]
    assert depthwise["groups"] == depthwise["in_channels"] == 32 and depthwise["bias"] is False
    assert by_name["mean_1"]["params"] == {"keepdim": False}
    assert by_name["classifier.1"]["params"] == {"dim": 1}


@pytest.mark.parametrize("model_class", [PDModel, PDLightModel])
def test_seed_model_file_opens_with_safetensors_and_holds_the_state_dict(model_class, tmp_path):
    model = model_class(["a", "b", "c"]).eval()
    randomize_batchnorm(model, seed=1)
    export(model, tmp_path / "m.pdw", input_shape=INPUT_SHAPE, classes=["a", "b", "c"])
    metadata, layers, tensors = read_file(tmp_path / "m.pdw")
    assert metadata["format"] == "pdinfer" and metadata["format_version"] == FORMAT_VERSION
    assert json.loads(metadata["input_shape"]) == [1, 60, 120]
    assert json.loads(metadata["classes"]) == ["a", "b", "c"]
    state = exported_state(model)
    assert set(tensors) == set(state)
    for name, array in tensors.items():
        np.testing.assert_array_equal(array, state[name])
    roles = [t for layer in layers for t in layer["tensors"].values()]
    assert sorted(roles) == sorted(tensors)


def test_randomize_batchnorm_is_seeded_and_nontrivial():
    a, b = PDLightModel(6), PDLightModel(6)
    randomize_batchnorm(a, 5)
    randomize_batchnorm(b, 5)
    bn = a.extractor[0][1]
    assert torch.equal(bn.running_var, b.extractor[0][1].running_var)
    assert 0.5 <= bn.running_var.min() and bn.running_var.max() <= 2.0
    assert bn.running_mean.abs().sum() > 0 and not torch.allclose(bn.weight, torch.ones(32))


# ---------------------------------------------------------------------------- spellings

def conv():
    return nn.Conv2d(2, 2, 3, padding=1)


# id -> (model, expected layer types, params expected of the first layer of that type)
SPELLINGS = {
    "conv-int-padding": (Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 4, 3, padding=1)), ["Conv2d"],
                         {"padding": [1, 1, 1, 1], "bias": True}),
    "conv-tuple-padding-stride-groups": (
        Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 4, (3, 5), stride=2, padding=(1, 2), groups=2, bias=False)),
        ["Conv2d"], {"kernel_size": [3, 5], "stride": [2, 2], "padding": [1, 2, 1, 2], "groups": 2,
                     "bias": False}),
    "conv-same-even-kernel": (Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 2, (2, 4), padding="same")),
                              ["Conv2d"], {"padding": [0, 1, 1, 2]}),
    "conv-same-dilated": (Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 2, 2, padding="same", dilation=3)),
                          ["Conv2d"], {"padding": [1, 1, 2, 2], "dilation": [3, 3]}),
    "conv-valid": (Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 2, 3, padding="valid")), ["Conv2d"],
                   {"padding": [0, 0, 0, 0]}),
    "batchnorm": (Net(lambda m, x: m.bn(x), bn=nn.BatchNorm2d(2, eps=1e-3)), ["BatchNorm2d"],
                  {"num_features": 2, "eps": 1e-3}),
    "batchnorm-no-affine": (Net(lambda m, x: m.bn(x), bn=nn.BatchNorm2d(2, affine=False)),
                            ["BatchNorm2d"], {}),
    "relu": (Net(lambda m, x: torch.relu_(F.relu(torch.relu(m.b(m.a(x).relu()).relu_()), inplace=True)),
                 a=nn.ReLU(), b=nn.ReLU(inplace=True)), ["ReLU"] * 7, {}),
    "relu6": (Net(lambda m, x: F.hardtanh(F.relu6(m.b(m.a(x)), inplace=True), 0.0, 6.0),
                  a=nn.ReLU6(), b=nn.Hardtanh(0, 6)), ["ReLU6"] * 4, {}),
    "leaky-relu": (Net(lambda m, x: F.leaky_relu_(F.leaky_relu(F.leaky_relu(m.a(x), 0.3), inplace=True), 0.4),
                       a=nn.LeakyReLU(0.1)), ["LeakyReLU"] * 4, {"negative_slope": 0.1}),
    "sigmoid": (Net(lambda m, x: F.sigmoid(torch.sigmoid(m.a(x).sigmoid()).sigmoid_()), a=nn.Sigmoid()),
                ["Sigmoid"] * 5, {}),
    "softmax": (Net(lambda m, x: torch.softmax(F.softmax(F.softmax(m.b(m.a(x)), 1)), -3).softmax(1),
                    a=nn.Softmax(dim=1), b=nn.Softmax()), ["Softmax"] * 6, {"dim": 1}),
    "softmax-2d": (Net(lambda m, x: m.a(x.flatten(1)), a=nn.Softmax(dim=-1)), ["Flatten", "Softmax"], {}),
    "max-pool": (Net(lambda m, x: torch.max_pool2d(F.max_pool2d(m.p(x), 2), 1),
                     p=nn.MaxPool2d(3, 2, 1, dilation=1, ceil_mode=True)), ["MaxPool2d"] * 3,
                 {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": True}),
    "max-pool-dilated": (Net(lambda m, x: F.max_pool2d(x, (2, 3), stride=1, padding=(1, 1), dilation=2)),
                         ["MaxPool2d"], {"kernel_size": [2, 3], "stride": [1, 1], "dilation": [2, 2]}),
    "avg-pool": (Net(lambda m, x: F.avg_pool2d(m.p(x), 2, divisor_override=3),
                     p=nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)), ["AvgPool2d"] * 2,
                 {"kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1, 1, 1], "ceil_mode": True,
                  "count_include_pad": False, "divisor_override": 0}),
    "adaptive-pool-module": (Net(lambda m, x: m.p(x), p=nn.AdaptiveAvgPool2d((1, 1))), ["GlobalAvgPool"],
                             {"keepdim": True}),
    "adaptive-pool-function": (Net(lambda m, x: F.adaptive_avg_pool2d(x, 1)), ["GlobalAvgPool"],
                               {"keepdim": True}),
    "mean-tuple": (Net(lambda m, x: x.mean((2, 3))), ["GlobalAvgPool"], {"keepdim": False}),
    "mean-list": (Net(lambda m, x: x.mean([2, 3])), ["GlobalAvgPool"], {"keepdim": False}),
    "mean-negative-dims": (Net(lambda m, x: x.mean(dim=(-2, -1))), ["GlobalAvgPool"], {"keepdim": False}),
    "mean-keepdim": (Net(lambda m, x: torch.mean(x, (3, 2), keepdim=True)), ["GlobalAvgPool"],
                     {"keepdim": True}),
    "mean-chain": (Net(lambda m, x: x.mean(3).mean(2)), ["GlobalAvgPool"], {"keepdim": False}),
    "mean-chain-keepdim": (Net(lambda m, x: x.mean(2, keepdim=True).mean(-1, keepdim=True)),
                           ["GlobalAvgPool"], {"keepdim": True}),
    "mean-chain-mixed": (Net(lambda m, x: x.mean(2, keepdim=True).mean(3).mean(2)), ["GlobalAvgPool"],
                         {"keepdim": False}),
    "flatten-module": (Net(lambda m, x: m.f(x), f=nn.Flatten()), ["Flatten"], {}),
    "flatten-function": (Net(lambda m, x: torch.flatten(x, 1)), ["Flatten"], {}),
    "flatten-method": (Net(lambda m, x: x.flatten(1)), ["Flatten"], {}),
    "view-size": (Net(lambda m, x: x.view(x.size(0), -1)), ["Flatten"], {}),
    "view-size-tuple": (Net(lambda m, x: x.view((x.size()[0], -1))), ["Flatten"], {}),
    "view-minus-one": (Net(lambda m, x: x.view(-1, FEATURES)), ["Flatten"], {}),
    "reshape-shape": (Net(lambda m, x: x.reshape(x.shape[0], -1)), ["Flatten"], {}),
    "torch-reshape": (Net(lambda m, x: torch.reshape(x, (-1, FEATURES))), ["Flatten"], {}),
    "dropout": (Net(lambda m, x: F.dropout(m.b(m.a(x)), 0.3, m.training), a=nn.Dropout(0.2),
                    b=nn.Dropout(inplace=True)), ["Dropout"] * 3, {"p": 0.2}),
    "identity": (Net(lambda m, x: m.i(m.c(m.i(x))), i=nn.Identity(), c=conv()), ["Conv2d"], {}),
    "linear": (Net(lambda m, x: m.fc(x.flatten(1)), fc=nn.Linear(FEATURES, 3)), ["Flatten", "Linear"],
               {"in_features": FEATURES, "out_features": 3, "bias": True}),
    "add": (Net(lambda m, x: operator.iadd(torch.add(m.c(x) + x, x).add(x), x), c=conv()),
            ["Conv2d", "Add", "Add", "Add", "Add"], {}),
}


@pytest.mark.parametrize("name", SPELLINGS)
@pytest.mark.filterwarnings("ignore:Implicit dimension choice", "ignore:Using padding='same'")  # spelled so on purpose
def test_spelling_exports(name, tmp_path):
    model, expected_types, params = SPELLINGS[name]
    export(model.eval(), tmp_path / "m.pdw", input_shape=SHAPE)
    metadata, layers, tensors = read_file(tmp_path / "m.pdw")
    assert [layer["type"] for layer in layers] == expected_types
    first = next(layer for layer in layers if layer["type"] == expected_types[-1])
    assert {k: first["params"][k] for k in params} == params
    state = exported_state(model)
    for tensor_name, array in tensors.items():
        if tensor_name in state:
            np.testing.assert_array_equal(array, state[tensor_name])
    with torch.no_grad():
        size = model(torch.zeros(1, *SHAPE)).numel()
    assert json.loads(metadata["classes"]) == [str(i) for i in range(size)]
    for earlier, later in zip(layers, layers[1:]):  # a chain: each layer reads its predecessor
        assert earlier["name"] in later["inputs"]


def test_add_reads_both_operands():
    graph = to_layers(Net(lambda m, x: m.c(x) + x, c=conv()), SHAPE)
    assert graph.layers[-1] == {"name": "add", "type": "Add", "inputs": ["c", "input"], "params": {},
                                "tensors": {}}


def test_batchnorm_without_affine_is_written_with_unit_weight():
    graph = to_layers(Net(lambda m, x: m.bn(x), bn=nn.BatchNorm2d(2, affine=False)), SHAPE)
    np.testing.assert_array_equal(graph.tensors["bn.weight"], np.ones(2, np.float32))
    np.testing.assert_array_equal(graph.tensors["bn.bias"], np.zeros(2, np.float32))


@pytest.mark.parametrize("options", [{}, {"bias": False}, {"affine": False}], ids=["affine", "no-bias", "no-affine"])
def test_batchnorm_with_any_parameters_matches_torch(options):
    bn = nn.BatchNorm2d(3, eps=1e-3, **options)  # bias=False: an affine weight and no bias
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        bn.running_mean.normal_(0, 1, generator=generator)
        bn.running_var.uniform_(0.5, 2, generator=generator)
        if bn.weight is not None:
            bn.weight.normal_(1, 0.5, generator=generator)
        if bn.bias is not None:
            bn.bias.normal_(0, 0.5, generator=generator)
    model = Net(lambda m, x: m.bn(m.c(x)), c=nn.Conv2d(2, 3, 3, padding=1), bn=bn)
    graph = to_layers(model, SHAPE)
    if bn.bias is None:
        np.testing.assert_array_equal(graph.tensors["bn.bias"], np.zeros(3, np.float32))
    check_against_torch(model, SHAPE)


def test_a_reused_module_gets_a_layer_per_call():
    graph = to_layers(Net(lambda m, x: m.c(m.r(m.c(x))), c=conv(), r=nn.ReLU()), SHAPE)
    assert [layer["name"] for layer in graph.layers] == ["c", "r", "c_1"]
    np.testing.assert_array_equal(graph.tensors["c_1.weight"], graph.tensors["c.weight"])


def test_in_place_statement_is_seen_by_later_readers():
    def forward(m, x):
        y = m.c(x)
        y.relu_()
        return y + x

    graph = to_layers(Net(forward, c=conv()), SHAPE)
    assert types(graph) == ["Conv2d", "ReLU", "Add"]
    assert graph.layers[-1]["inputs"] == ["relu_", "input"]


def test_dead_code_is_ignored():
    def forward(m, x):
        F.gelu(x)
        return m.c(x)

    assert types(to_layers(Net(forward, c=conv()), SHAPE)) == ["Conv2d"]


# ---------------------------------------------------------------------------- unsupported models

def test_every_offender_is_reported_at_once():
    def forward(m, x):
        x = F.mish(m.act(m.reflect(x)))
        x = m.stats(x) * 2
        x, _ = m.pool(x)
        x = x.softmax(0)
        return x.mean(3)

    model = Net(forward, act=nn.Mish(), reflect=nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                stats=nn.BatchNorm2d(2, track_running_stats=False),
                pool=nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(UnsupportedModelError) as info:
        to_layers(model, SHAPE)
    message = str(info.value)
    for where in ["module 'act' (torch.nn.modules.activation.Mish)", "node 'mish'",
                  "module 'reflect'", "padding_mode='reflect'", "module 'stats'", "track_running_stats",
                  "node 'mul' (operator.mul)", "module 'pool'", "return_indices", "node 'getitem'", "node 'softmax'",
                  "dim 0", "the output uses 'mean'"]:
        assert where in message
    assert len(info.value.offenders) == 9
    assert "'act' (torch.nn.modules.activation.Mish): not supported (instead: SiLU or Hardswish)" in message
    assert "\nsupported modules: AdaptiveAvgPool2d, " in message and "README.md" in message


def test_an_unsupported_layer_names_an_alternative_where_there_is_one():
    model = Net(lambda m, x: F.log_softmax(m.norm(m.up(x)).flatten(1), 1), norm=nn.GroupNorm(1, 2),
                up=nn.Upsample(scale_factor=2))
    with pytest.raises(UnsupportedModelError) as info:
        to_layers(model, SHAPE)
    up, norm, log_softmax = info.value.offenders
    assert norm.endswith("GroupNorm): not supported (instead: BatchNorm2d)")
    assert up.endswith("Upsample): not supported")  # no layer does what it does
    assert log_softmax.endswith("not supported (instead: Softmax (and the log of its output, outside the model))")


@pytest.mark.parametrize("forward, reason", [
    (lambda m, x: x.view(1, -1), "view/reshape to (1, -1)"),
    (lambda m, x: x.flatten(2), "only a flatten"),
    (lambda m, x: x + 1, "not a tensor"),
    (lambda m, x: x + x.mean((2, 3), keepdim=True), "same-shape"),
    (lambda m, x: torch.add(x, x, alpha=2), "alpha=2"),
    (lambda m, x: x.mean(1), "channel"),
    (lambda m, x: F.dropout(x, 0.5), "training=True"),
    (lambda m, x: x.max(1)[0], "without keepdim"),
    (lambda m, x: F.pad(x, (1, 1, 1, 1), mode="reflect"), "only zeros"),
    (lambda m, x: (x, x), "returns a tuple"),
    (lambda m, x: x, "no layers"),
    (lambda m, x: x[:, 0], "indexing"),
])
def test_unsupported_call_says_why(forward, reason):
    with pytest.raises(UnsupportedModelError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        to_layers(Net(forward), SHAPE)


def test_in_place_change_through_a_shared_view_is_refused():
    def forward(m, x):
        y = m.c(x)
        flat = y.flatten(1)
        y.relu_()
        return flat

    with pytest.raises(UnsupportedModelError, match="node 'relu_'.*'flatten', which shares its storage"):
        to_layers(Net(forward, c=conv()), SHAPE)


def test_untraceable_model_is_unsupported():
    def forward(m, x):
        return x.relu() if x.sum() > 0 else x

    with pytest.raises(UnsupportedModelError, match="torch.fx cannot trace"):
        to_layers(Net(forward), SHAPE)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_shape"):
        to_layers(Net(lambda m, x: x.relu()), (6, 6))
    with pytest.raises(ValueError, match="does not run on input shape"):
        to_layers(Net(lambda m, x: m.c(x), c=conv()), (3, 6, 6))
    with pytest.raises(ValueError, match="float32"):
        to_layers(Net(lambda m, x: m.c(x), c=conv().double()), SHAPE)
    with pytest.raises(ValueError, match="3 class names for 72 output values"):
        export(Net(lambda m, x: x.relu()).eval(), "unused.pdw", input_shape=SHAPE, classes=["a", "b", "c"])


def test_a_model_that_does_not_run_on_the_input_shape_gives_one_message(capfd):
    model = Net(lambda m, x: m.head(m.c(x).flatten(1)), c=conv(), head=nn.Linear(FEATURES, 3))
    with pytest.raises(ValueError) as info:
        to_layers(model, (2, 6, 7))
    message = str(info.value)
    assert message.startswith("the model does not run on input shape (2, 6, 7) at module 'head': RuntimeError: ")
    assert "mat1 and mat2 shapes cannot be multiplied" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained torch traceback
    out, err = capfd.readouterr()  # ShapeProp printed the torch traceback to stderr before
    assert out == "" and err == ""


def test_what_the_model_writes_to_stderr_is_still_shown(capfd):
    def forward(m, x):
        print("from the model", file=sys.stderr)
        return m.c(x)

    to_layers(Net(forward, c=conv()), SHAPE)
    assert "from the model" in capfd.readouterr().err


# ---------------------------------------------------------------------------- command line, tiny example

def test_export_keeps_an_existing_file_unless_forced(tmp_path):
    out = tmp_path / "m.pdw"
    out.write_bytes(b"a trained model")
    model = Net(lambda m, x: m.c(x), c=nn.Conv2d(2, 2, 1)).eval()
    with pytest.raises(FileExistsError, match=f"^{out} exists \\(pass force=True to overwrite it\\)$"):
        export(model, out, input_shape=SHAPE)
    assert out.read_bytes() == b"a trained model"
    with pytest.raises(FileExistsError, match="is not a regular file"):
        export(model, tmp_path, input_shape=SHAPE, force=True)
    export(model, out, input_shape=SHAPE, force=True)
    assert read_file(out)[1][0]["type"] == "Conv2d"


def test_export_warns_about_a_module_in_training_mode(tmp_path):
    model = Net(lambda m, x: m.bn(m.c(x)), c=nn.Conv2d(2, 2, 1), bn=nn.BatchNorm2d(2))
    with pytest.warns(UserWarning, match="^Net is in training mode: it is switched to eval mode"):
        export(model, tmp_path / "m.pdw", input_shape=SHAPE)
    assert not model.training and not model.bn.training
    export(model, tmp_path / "again.pdw", input_shape=SHAPE)  # in eval mode: no warning (warnings are errors)


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "light.pdw"
    out.write_bytes(b"a trained model")
    assert cli_main(["pd_light", str(out)]) == 1
    assert capsys.readouterr().err == f"error: {out} exists (give --force to overwrite it)\n"
    assert out.read_bytes() == b"a trained model"
    assert cli_main(["pd_light", str(tmp_path)]) == 1
    assert f"{tmp_path} exists and is not a regular file" in capsys.readouterr().err
    assert cli_main(["pd_light", str(out), "--force"]) == 0
    assert json.loads(read_file(out)[0]["classes"])[0] == "corona"


def test_cli_random_batchnorm(tmp_path, capsys):
    out = tmp_path / "light.pdw"
    assert cli_main(["pd_light", str(out), "--random-bn", "--seed", "3"]) == 0
    metadata, _, tensors = read_file(out)
    assert json.loads(metadata["classes"]) == ["corona", "floating", "particle", "void", "surface", "noise"]
    var = tensors["extractor.0.1.running_var"]
    assert 0.5 <= var.min() and var.max() <= 2.0 and var.std() > 0
    assert "wrote" in capsys.readouterr().out


def test_cli_state_dict_and_classes(tmp_path):
    model = PDModel(3)
    randomize_batchnorm(model, 0)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    out = tmp_path / "m.pdw"
    assert cli_main(["pd_model", str(out), "--classes", "x,y,z", "--state-dict", str(tmp_path / "w.pt")]) == 0
    metadata, _, tensors = read_file(out)
    assert json.loads(metadata["classes"]) == ["x", "y", "z"]
    np.testing.assert_array_equal(tensors["dense.5.weight"], model.dense[5].weight.detach().numpy())
    assert cli_main(["pd_model", str(out), "--state-dict", str(tmp_path / "missing.pt")]) == 1


def test_tiny_example(tmp_path, capsys):
    assert tiny_main([str(tmp_path / "tiny.pdw")]) == 0
    dump = capsys.readouterr().out
    assert "conv.weight [2, 1, 1, 1] = [1.0, -2.0]" in dump
    _, layers, _ = read_file(tmp_path / "tiny.pdw")
    assert [layer["type"] for layer in layers] == [
        "Conv2d", "ReLU", "GlobalAvgPool", "Flatten", "Linear", "Softmax"]


# torchvision's stochastic_depth, as torchvision defines it (torchvision is not importable beside the
# dev torch): a function wrapped with torch.fx.wrap, so it reaches the fx graph as a call.
def stochastic_depth(input, p, mode, training=True):
    if not training or p == 0.0:
        return input
    keep = torch.empty([input.shape[0], 1, 1, 1] if mode == "row" else [1] * input.ndim).bernoulli_(1 - p)
    return input * keep / (1 - p)


stochastic_depth.__module__ = "torchvision.ops.stochastic_depth"
torch.fx.wrap("stochastic_depth")


class _ResidualWithStochasticDepth(nn.Module):
    def __init__(self, training_flag: bool | None = None) -> None:
        super().__init__()
        self.conv, self.training_flag = nn.Conv2d(3, 3, 3, padding=1), training_flag

    def forward(self, x):
        training = self.training if self.training_flag is None else self.training_flag
        return x + stochastic_depth(self.conv(x), 0.2, "row", training)


def test_torchvision_stochastic_depth_is_the_identity_at_inference():
    check_against_torch(_ResidualWithStochasticDepth(), (3, 7, 9))


def test_stochastic_depth_in_training_mode_is_refused():
    with pytest.raises(UnsupportedModelError, match="stochastic_depth with training=True"):
        to_layers(_ResidualWithStochasticDepth(training_flag=True), (3, 7, 9))
