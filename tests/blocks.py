"""The building blocks of the architectures engineers tune, written as their reference code writes them.

torchvision is not importable beside the dev torch, so the blocks are transcribed here: SqueezeNet's
Fire, DenseNet's dense layer/block and transition, GoogLeNet's Inception, ShuffleNetV2's unit (both
strides), MobileNetV3's inverted residual with SE, EfficientNet's MBConv, SENet's SE-ResNet block
(the SE of Hu et al.'s code: Linear layers on the pooled (N, C) vector) and a CBAM ResNet block
(Woo et al.'s channel and spatial attention), in its common form and as the authors' code writes it. Where a block is commonly written in more than one
way, `spelling` picks one; the spellings are the ones found in torchvision or the papers' code.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (MobileNet, EfficientNet)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvNormActivation(nn.Sequential):
    """torchvision.ops.Conv2dNormActivation: conv (no bias), BatchNorm2d, activation."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 activation_layer: Callable[..., nn.Module] | None = nn.ReLU) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2,
                                             groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


# ------------------------------------------------------------------------------ SqueezeNet

class Fire(nn.Module):
    """SqueezeNet's Fire module (torchvision): squeeze 1x1, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNetTiny(nn.Module):
    """A small SqueezeNet 1.1: stem conv, ceil-mode max pools, Fire modules, conv classifier, global mean."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, 16, kernel_size=3, stride=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 4, 8, 8), Fire(16, 4, 8, 8),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(16, 6, 12, 12))
        self.classifier = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(24, classes, kernel_size=1),
                                        nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.classifier(x)
        return torch.flatten(x, 1)


# ------------------------------------------------------------------------------ DenseNet

class DenseLayer(nn.Module):
    """torchvision's _DenseLayer: BN-ReLU-conv1x1 bottleneck, BN-ReLU-conv3x3, on the concat of all
    previous features."""

    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def bn_function(self, inputs: list[Tensor]) -> Tensor:
        concated_features = torch.cat(inputs, 1)
        return self.conv1(self.relu1(self.norm1(concated_features)))

    def forward(self, input: list[Tensor]) -> Tensor:
        prev_features = [input] if isinstance(input, Tensor) else input
        bottleneck_output = self.bn_function(prev_features)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck_output)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseBlock(nn.ModuleDict):
    """torchvision's _DenseBlock: every layer reads the concat of the block input and all earlier outputs."""

    def __init__(self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module("denselayer%d" % (i + 1), layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for name, layer in self.items():
            new_features = layer(features)
            features.append(new_features)
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """torchvision's _Transition: BN, ReLU, 1x1 conv, 2x2 average pool."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNetTiny(nn.Module):
    """Stem, two dense blocks with a transition, final BN-ReLU, global mean, classifier (torchvision's head)."""

    def __init__(self, cin: int, classes: int, growth_rate: int = 5, bn_size: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(cin, 8, kernel_size=3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8),
            nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            DenseBlock(3, 8, bn_size, growth_rate, drop_rate=0.2), Transition(8 + 3 * growth_rate, 11),
            DenseBlock(2, 11, bn_size, growth_rate), nn.BatchNorm2d(11 + 2 * growth_rate))
        self.classifier = nn.Linear(11 + 2 * growth_rate, classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        return self.classifier(out)


# ------------------------------------------------------------------------------ GoogLeNet

class BasicConv2d(nn.Module):
    """GoogLeNet's conv (no bias), BatchNorm2d(eps=0.001), F.relu(inplace=True)."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """GoogLeNet's Inception block: 1x1; 1x1 -> 3x3; 1x1 -> 5x5 (torchvision: 3x3); pool -> 1x1."""

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, five: int = 5) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                     BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                     BasicConv2d(ch5x5red, ch5x5, kernel_size=five, padding=five // 2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(in_channels, pool_proj, kernel_size=1))

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch1 = self.branch1(x)
        branch2 = self.branch2(x)
        branch3 = self.branch3(x)
        branch4 = self.branch4(x)
        outputs = [branch1, branch2, branch3, branch4]
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        outputs = self._forward(x)
        return torch.cat(outputs, 1)


# ------------------------------------------------------------------------------ ShuffleNetV2

def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """torchvision's shufflenetv2.channel_shuffle."""
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    # reshape
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    # flatten
    x = x.view(batchsize, -1, height, width)
    return x


class ShuffleV2Unit(nn.Module):
    """torchvision's ShuffleNetV2 InvertedResidual; stride 1 splits the channels in two, stride 2
    runs both branches on the whole input. `spelling` picks how the split and shuffle are written."""

    def __init__(self, inp: int, oup: int, stride: int, spelling: str = "torchvision") -> None:
        super().__init__()
        self.stride, self.spelling = stride, spelling
        branch_features = oup // 2
        if self.stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=self.stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if (self.stride > 1) else branch_features, branch_features, kernel_size=1, stride=1,
                      padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(branch_features, branch_features, kernel_size=3, stride=self.stride, padding=1),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True))
        self.shuffle = nn.ChannelShuffle(2)

    @staticmethod
    def depthwise_conv(i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0,
                       bias: bool = False) -> nn.Conv2d:
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            if self.spelling == "torchvision":
                x1, x2 = x.chunk(2, dim=1)
            else:  # the slicing other ShuffleNetV2 ports use
                c = x.shape[1] // 2
                x1, x2 = x[:, :c, :, :], x[:, c:, :, :]
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2) if self.spelling == "torchvision" else self.shuffle(out)


class ShuffleNetV2Tiny(nn.Module):
    """torchvision's ShuffleNetV2 layout, narrowed: conv1, max pool, stages of units, conv5,
    `x.mean([2, 3])`, fc."""

    def __init__(self, cin: int, classes: int, stages_out_channels: tuple[int, ...] = (8, 12, 16, 24)) -> None:
        super().__init__()
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(nn.Conv2d(cin, output_channels, 3, 2, 1, bias=False),
                                   nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stage_names = [f"stage{i}" for i in [2, 3]]
        for name, repeats, output_channels in zip(stage_names, [2, 3], stages_out_channels[1:]):
            seq = [ShuffleV2Unit(input_channels, output_channels, 2)]
            for i in range(repeats - 1):
                seq.append(ShuffleV2Unit(output_channels, output_channels, 1))
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
                                   nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True))
        self.fc = nn.Linear(output_channels, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # globalpool
        x = self.fc(x)
        return x


# ------------------------------------------------------------------------------ SE, MobileNetV3, EfficientNet

class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: global mean, 1x1 conv, activation, 1x1 conv, gate, `scale * input`.

    `spelling` "mean" writes the squeeze as `x.mean((2, 3), keepdim=True)` and the excitation as
    `x * self._scale(x)` (the operands the other way round), as many ports do.
    """

    def __init__(self, input_channels: int, squeeze_channels: int,
                 activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid, spelling: str = "torchvision") -> None:
        super().__init__()
        self.spelling = spelling
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, input: Tensor) -> Tensor:
        scale = self.avgpool(input) if self.spelling == "torchvision" else input.mean((2, 3), keepdim=True)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input: Tensor) -> Tensor:
        if self.spelling == "torchvision":
            scale = self._scale(input)
            return scale * input
        return input * self._scale(input)


class MobileNetV3Block(nn.Module):
    """torchvision's MobileNetV3 InvertedResidual: expand 1x1, depthwise, SE (Hardsigmoid gate), project
    1x1; Hardswish (or ReLU) activations; `result += input` when the shapes allow."""

    def __init__(self, input_channels: int, kernel: int, expanded_channels: int, out_channels: int,
                 use_se: bool, use_hs: bool, stride: int, spelling: str = "torchvision") -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        activation_layer = nn.Hardswish if use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded_channels != input_channels:
            layers.append(ConvNormActivation(input_channels, expanded_channels, kernel_size=1,
                                             activation_layer=activation_layer))
        layers.append(ConvNormActivation(expanded_channels, expanded_channels, kernel_size=kernel, stride=stride,
                                         groups=expanded_channels, activation_layer=activation_layer))
        if use_se:
            squeeze_channels = _make_divisible(expanded_channels // 4, 8)
            layers.append(SqueezeExcitation(expanded_channels, squeeze_channels, scale_activation=nn.Hardsigmoid,
                                            spelling=spelling))
        layers.append(ConvNormActivation(expanded_channels, out_channels, kernel_size=1, activation_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


class MobileNetV3Tiny(nn.Module):
    """torchvision's MobileNetV3 layout, narrowed: Hardswish stem, inverted residuals, last conv,
    avgpool, flatten, Linear-Hardswish-Dropout-Linear classifier."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvNormActivation(cin, 16, kernel_size=3, stride=2, activation_layer=nn.Hardswish),
            MobileNetV3Block(16, 3, 16, 16, True, False, 2),
            MobileNetV3Block(16, 3, 72, 24, False, False, 2),
            MobileNetV3Block(24, 5, 96, 24, True, True, 1),
            ConvNormActivation(24, 144, kernel_size=1, activation_layer=nn.Hardswish))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(144, 64), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=0.2, inplace=True), nn.Linear(64, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def stochastic_depth(input: Tensor, p: float, mode: str, training: bool = True) -> Tensor:
    """torchvision.ops.stochastic_depth: the identity at inference."""
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    return input * noise.div_(survival_rate)


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str) -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, input: Tensor) -> Tensor:
        return stochastic_depth(input, self.p, self.mode, self.training)


class MBConv(nn.Module):
    """torchvision's EfficientNet MBConv: expand 1x1 (SiLU), depthwise (SiLU), SE (SiLU inside, sigmoid
    gate), project 1x1, stochastic depth and `result += input` when the shapes allow."""

    def __init__(self, input_channels: int, expand_ratio: float, kernel: int, stride: int, out_channels: int,
                 stochastic_depth_prob: float = 0.2, spelling: str = "torchvision") -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and input_channels == out_channels
        layers: list[nn.Module] = []
        activation_layer = nn.SiLU
        expanded_channels = _make_divisible(input_channels * expand_ratio, 8)
        if expanded_channels != input_channels:
            layers.append(ConvNormActivation(input_channels, expanded_channels, kernel_size=1,
                                             activation_layer=activation_layer))
        layers.append(ConvNormActivation(expanded_channels, expanded_channels, kernel_size=kernel, stride=stride,
                                         groups=expanded_channels, activation_layer=activation_layer))
        squeeze_channels = max(1, input_channels // 4)
        layers.append(SqueezeExcitation(expanded_channels, squeeze_channels, activation=partial(nn.SiLU, inplace=True),
                                        spelling=spelling))
        layers.append(ConvNormActivation(expanded_channels, out_channels, kernel_size=1, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class EfficientNetTiny(nn.Module):
    """torchvision's EfficientNet layout, narrowed: SiLU stem, MBConv stages, SiLU head conv,
    avgpool, flatten, Dropout(inplace)-Linear classifier."""

    def __init__(self, cin: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvNormActivation(cin, 16, kernel_size=3, stride=2, activation_layer=nn.SiLU),
            MBConv(16, 1, 3, 1, 8, 0.0), MBConv(8, 6, 3, 2, 12, 0.05), MBConv(12, 6, 5, 1, 12, 0.1),
            ConvNormActivation(12, 48, kernel_size=1, activation_layer=nn.SiLU))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True), nn.Linear(48, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


# ------------------------------------------------------------------------------ SENet

class SELayer(nn.Module):
    """SENet's SE layer (moskomule/senet.pytorch, after Hu et al.): pooled (N, C), Linear-ReLU-Linear-
    Sigmoid, viewed back as (N, C, 1, 1) and expanded over x."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super(SELayer, self).__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SEBasicBlock(nn.Module):
    """SENet's SE-ResNet BasicBlock: conv-bn-relu, conv-bn, SE, `out += residual`, relu."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, reduction: int = 16) -> None:
        super(SEBasicBlock, self).__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SELayer(planes, reduction)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)
        out = self.se(out)

        if self.downsample is not None:
            residual = self.downsample(x)

        out += residual
        out = self.relu(out)

        return out


# ------------------------------------------------------------------------------ CBAM

class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP (1x1 convs) on the avg- and max-pooled features, added, sigmoid."""

    def __init__(self, in_planes: int, ratio: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Sequential(nn.Conv2d(in_planes, max(1, in_planes // ratio), 1, bias=False), nn.ReLU(),
                                nn.Conv2d(max(1, in_planes // ratio), in_planes, 1, bias=False))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        avg_out = self.fc(self.avg_pool(x))
        max_out = self.fc(self.max_pool(x))
        out = avg_out + max_out
        return self.sigmoid(out)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: channel mean and max concatenated, 7x7 conv, sigmoid."""

    def __init__(self, kernel_size: int = 7, spelling: str = "mean-max") -> None:
        super().__init__()
        self.spelling = spelling
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        if self.spelling == "mean-max":
            avg_out = torch.mean(x, dim=1, keepdim=True)
            max_out, _ = torch.max(x, dim=1, keepdim=True)
            x = torch.cat([avg_out, max_out], dim=1)
        else:  # the official code's ChannelPool: max first, `torch.max(x, 1)[0].unsqueeze(1)` written keepdim
            x = torch.cat((torch.max(x, 1, keepdim=True)[0], torch.mean(x, 1, keepdim=True)), dim=1)
        x = self.conv1(x)
        return self.sigmoid(x)


class CBAMBasicBlock(nn.Module):
    """A ResNet BasicBlock with CBAM (Woo et al.): `out = ca(out) * out; out = sa(out) * out` before the
    residual add; a 1x1 projection shortcut when the shape changes."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, ratio: int = 4, spelling: str = "mean-max") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.ca = ChannelAttention(planes, ratio)
        self.sa = SpatialAttention(spelling=spelling)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: Tensor) -> Tensor:
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.ca(out) * out
        out = self.sa(out) * out
        if self.downsample is not None:
            residual = self.downsample(x)
        out += residual
        out = self.relu(out)
        return out


# ------------------------------------------------------------------------------ CBAM, the authors' code

class BasicConv(nn.Module):
    """Jongchan/attention-module cbam.py: conv, optional BatchNorm (eps 1e-5, momentum 0.01), optional ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, relu: bool = True, bn: bool = True, bias: bool = False) -> None:
        super(BasicConv, self).__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Flatten(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    """The authors' channel gate: avg and max pools written as F.*_pool2d over (H, W), an MLP of Linear
    layers on (N, C), summed, sigmoid, unsqueezed and expanded over x."""

    def __init__(self, gate_channels: int, reduction_ratio: int = 16, pool_types: tuple[str, ...] = ('avg', 'max')) -> None:
        super(ChannelGate, self).__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels)
        )
        self.pool_types = pool_types

    def forward(self, x: Tensor) -> Tensor:
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == 'avg':
                avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(avg_pool)
            elif pool_type == 'max':
                max_pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(max_pool)

            if channel_att_sum is None:
                channel_att_sum = channel_att_raw
            else:
                channel_att_sum = channel_att_sum + channel_att_raw

        scale = torch.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    def __init__(self) -> None:
        super(SpatialGate, self).__init__()
        kernel_size = 7
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        x_compress = self.compress(x)
        x_out = self.spatial(x_compress)
        scale = torch.sigmoid(x_out)  # broadcasting
        return x * scale


class CBAM(nn.Module):
    def __init__(self, gate_channels: int, reduction_ratio: int = 16, pool_types: tuple[str, ...] = ('avg', 'max'),
                 no_spatial: bool = False) -> None:
        super(CBAM, self).__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio, pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGate()

    def forward(self, x: Tensor) -> Tensor:
        x_out = self.ChannelGate(x)
        if not self.no_spatial:
            x_out = self.SpatialGate(x_out)
        return x_out


class CBAMAuthorsBasicBlock(nn.Module):
    """The authors' ResNet BasicBlock with `use_cbam=True` (model_resnet.py), a projection shortcut."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        self.cbam = CBAM(planes, reduction)

    def forward(self, x: Tensor) -> Tensor:
        residual = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)
        out = self.bn2(out)

        if self.downsample is not None:
            residual = self.downsample(x)

        if self.cbam is not None:
            out = self.cbam(out)

        out += residual
        out = self.relu(out)

        return out
