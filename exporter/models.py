"""The seed models: the two of docs (shared seed-models.md), PyTorch reference implementations, and
PDLightSEModel, the light model with squeeze-and-excitation and Hardswish."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

INPUT_SHAPE = (1, 60, 120)  # one phase-resolved PD image: (C, H, W)


def _num_classes(classes: int | list[str]) -> int:
    return classes if isinstance(classes, int) else len(classes)


class PDModel(nn.Module):
    """The original LeNet-style model: four conv/ReLU/max-pool stages and a dense head."""

    def __init__(self, classes: int | list[str]) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        for cin, cout in ((1, 32), (32, 64), (64, 128), (128, 256)):
            stages += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.conv = nn.Sequential(*stages)
        self.dense = nn.Sequential(
            nn.Linear(256 * 3 * 7, 64), nn.ReLU(), nn.Linear(64, 32), nn.Dropout(), nn.ReLU(),
            nn.Linear(32, _num_classes(classes)), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = x.view(-1, 256 * 3 * 7)
        return self.dense(x)


Activation = Callable[[], nn.Module]


def leaky_relu() -> nn.Module:
    """The seed models' activation, LeakyReLU(0.2)."""
    return nn.LeakyReLU(0.2)


def conv_bn(cin: int, cout: int, stride: int, act: Activation = leaky_relu) -> nn.Sequential:
    """3x3 convolution, batch norm, activation (LeakyReLU(0.2))."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), act())


def conv1x1_bn(cin: int, cout: int, act: Activation = leaky_relu) -> nn.Sequential:
    """Pointwise convolution, batch norm, activation (LeakyReLU(0.2))."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout), act())


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation as MobileNetV3 writes it: global mean, 1x1 conv, ReLU, 1x1 conv,
    Hardsigmoid, and the input scaled per channel."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = F.hardsigmoid(self.fc2(F.relu(self.fc1(scale))))
        return x * scale


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 block: (expand,) depthwise, (SE,) linear pointwise; `x + conv(x)` when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, t: float, act: Activation = leaky_relu,
                 se: bool = False) -> None:
        super().__init__()
        hidden = int(cin * t)
        self.residual = stride == 1 and cin == cout
        expand: list[nn.Module] = [] if t == 1 else [
            nn.Conv2d(cin, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), act()]
        excite: list[nn.Module] = [SqueezeExcitation(hidden, max(8, hidden // 4))] if se else []
        self.conv = nn.Sequential(
            *expand,
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), act(),
            *excite,
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class PDLightModel(nn.Module):
    """The light MobileNetV2-style model: inverted residual blocks, global mean, softmax.

    `act` is the activation after every convolution but the linear pointwise ones; `se` puts a
    squeeze-and-excitation block in every inverted residual that expands (t != 1).
    """

    def __init__(self, classes: int | list[str], act: Activation = leaky_relu, se: bool = False) -> None:
        super().__init__()

        def IRB(cin: int, cout: int, stride: int, t: float) -> InvertedResidualBlock:
            return InvertedResidualBlock(cin, cout, stride, t, act, se and t != 1)

        self.extractor = nn.Sequential(
            conv_bn(1, 32, 2, act),
            IRB(32, 16, 1, 1),
            IRB(16, 24, 2, 6), IRB(24, 24, 1, 6),
            IRB(24, 32, 2, 6), IRB(32, 32, 1, 6), IRB(32, 32, 1, 6),
            IRB(32, 64, 2, 6), IRB(64, 64, 1, 6), IRB(64, 64, 1, 6),
            conv1x1_bn(64, 256, act))
        self.classifier = nn.Sequential(nn.Linear(256, _num_classes(classes)), nn.Softmax(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.extractor(x)
        x = x.mean(3).mean(2)
        return self.classifier(x)


class PDLightSEModel(PDLightModel):
    """PDLightModel with squeeze-and-excitation (Hardsigmoid gate) in every expanding inverted
    residual and Hardswish instead of LeakyReLU, as MobileNetV3 tunes MobileNetV2."""

    def __init__(self, classes: int | list[str]) -> None:
        super().__init__(classes, act=nn.Hardswish, se=True)


def randomize_batchnorm(module: nn.Module, seed: int) -> None:
    """Give every BatchNorm2d random non-trivial statistics and affine values (var in [0.5, 2])."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(n: int, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(uniform(n, -0.5, 0.5))
                    m.running_var.copy_(uniform(n, 0.5, 2.0))
                if m.affine:
                    m.weight.copy_(uniform(n, 0.5, 1.5))
                    m.bias.copy_(uniform(n, -0.3, 0.3))
