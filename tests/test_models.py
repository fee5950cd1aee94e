"""Whole models against PyTorch: the two seed models, two other architectures, the shipped weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
torch = pytest.importorskip("torch")  # compared with PyTorch
from safetensors import safe_open
from torch import nn

import pdinfer
from exporter import INPUT_SHAPE, PDLightModel, PDModel, export, randomize_batchnorm
from helpers import assert_close, check_against_torch, torch_outputs

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["corona", "floating", "particle", "void", "surface", "noise"]
BATCH = 64

pytestmark = pytest.mark.filterwarnings("ignore:Implicit dimension choice")  # PDLightModel's nn.Softmax()


@pytest.fixture(scope="module", params=[PDModel, PDLightModel], ids=lambda cls: cls.__name__)
def seed_model(request, tmp_path_factory):
    """A seed model with random weights and BatchNorm statistics, exported; its path and torch outputs."""
    torch.manual_seed(0)
    module = request.param(CLASSES)
    randomize_batchnorm(module, seed=1)
    module.eval()
    path = tmp_path_factory.mktemp("seed") / f"{request.param.__name__}.pdw"
    export(module, path, input_shape=INPUT_SHAPE, classes=CLASSES)
    x = np.random.default_rng(2).random((BATCH, *INPUT_SHAPE), dtype=np.float32)  # (N, 1, 60, 120) in [0, 1)
    expected, by_module = torch_outputs(module, x)
    return path, x, expected, by_module


def test_seed_model_load_and_call(seed_model):
    path, x, expected, _ = seed_model
    model = pdinfer.load(path)
    assert model.classes == CLASSES and model.input_shape == INPUT_SHAPE
    assert_close(model(x), expected, f"pdinfer.load({path.name})(x) vs torch")


def test_seed_model_run(seed_model):
    path, x, expected, _ = seed_model
    assert_close(pdinfer.run(path, x), expected, f"pdinfer.run({path.name}, x) vs torch")
    assert_close(pdinfer.run(path, x[3, 0]), expected[3], f"pdinfer.run({path.name}, one (H, W) image)")
    assert_close(pdinfer.run(path, x[3]), expected[3], f"pdinfer.run({path.name}, one (C, H, W) image)")


def test_seed_model_trace(seed_model):
    """The reference path, layer by layer, on the first 8 images (it is slow on purpose)."""
    path, x, expected, by_module = seed_model
    trace = pdinfer.load(path).trace(x[:8])
    assert_close(next(reversed(trace.values())), expected[:8], "model.trace(x) output vs torch")
    compared = [name for name in trace if name in by_module]
    assert len(compared) >= len(trace) // 2, f"few layer names match torch modules: {list(trace)}"
    for name in compared:
        assert_close(trace[name], by_module[name][:8], f"traced layer {name!r} vs torch")


class BasicBlock(nn.Module):
    """ResNet basic block with ReLU6: conv-bn-relu6-conv-bn, plus a (1x1 conv when reshaping) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class SmallResNet(nn.Module):
    """Residual adds, ReLU6, AvgPool2d, a global mean and a softmax head."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 5, 2, 2, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.blocks = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 24, 2), BasicBlock(24, 24, 1))
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.head = nn.Linear(24, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return torch.softmax(self.head(x.mean((2, 3))), dim=1)


class ColorNet(nn.Module):
    """3 input channels, max pools (one in ceil mode), a grouped conv, a flatten + linear + sigmoid head."""

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(12, 16, 3, padding="same", groups=4), nn.LeakyReLU(0.1),
            nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 9 * 13, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, classes),
            nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def test_small_resnet():
    torch.manual_seed(3)
    module = SmallResNet(5)
    randomize_batchnorm(module, seed=4)
    check_against_torch(module, INPUT_SHAPE, batch=16, seed=5)


def test_color_net(tmp_path):
    torch.manual_seed(6)
    module = ColorNet(7)
    check_against_torch(module, (3, 32, 48), batch=16, seed=7)
    export(module, tmp_path / "color.pdw", input_shape=(3, 32, 48))
    with pytest.raises(pdinfer.InputError, match="shape"):
        pdinfer.run(tmp_path / "color.pdw", np.zeros((32, 48), np.float32))  # (H, W) is for 1 channel


SHIPPED = sorted((REPO / "weights").glob("*.pdw"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_weights_open_with_safetensors_and_pdinfer(path):
    tensors = safetensors.numpy.load_file(path)
    with safe_open(path, framework="numpy") as f:
        assert f.metadata()["format"] == "pdinfer"
    model = pdinfer.load(path)
    assert sum(t.size for t in tensors.values()) > 0
    x = np.random.default_rng(0).random((2, *model.input_shape), dtype=np.float32)
    out = model(x)
    assert out.shape == (2, len(model.classes)) and np.isfinite(out).all()
    assert_close(out, next(reversed(model.trace(x).values())), f"{path.name}: fast vs reference")
