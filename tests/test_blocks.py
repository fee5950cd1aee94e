"""The architectures of tests/blocks.py end to end against torch, and bit-exact in the Java kit.

Every block is built after `torch.manual_seed(seed)` with random BatchNorm statistics
(`randomize_batchnorm`), exported, loaded and compared with torch by `check_against_torch`
(the fast path, the reference trace, and every layer named after a module called once).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
torch = pytest.importorskip("torch")  # compared with PyTorch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import blocks
from exporter import export, randomize_batchnorm
from exporter.golden import load_seed_model
from helpers import assert_close, check_against_torch
from pdinfer.cli import main as cli_main
from pdinfer.golden import write_golden
from test_golden import java
from test_layers import EXAMPLES, batches, seeds

sizes = st.integers(5, 12)
few = settings(max_examples=max(5, EXAMPLES // 10))  # a block costs about as much as 10 single-layer cases


def check_block(model: nn.Module, input_shape: tuple[int, int, int], seed: int, batch: int) -> None:
    randomize_batchnorm(model, seed)
    check_against_torch(model, input_shape, batch=batch, seed=seed)


@few
@given(seeds, st.integers(1, 4), st.integers(1, 6), st.integers(1, 9), st.integers(1, 9), sizes, sizes, batches)
def test_fire(seed, cin, squeeze, e1, e3, h, w, batch):
    torch.manual_seed(seed)
    check_block(nn.Sequential(blocks.Fire(cin, squeeze, e1, e3), blocks.Fire(e1 + e3, squeeze, e3, e1)),
                (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 3), st.integers(11, 24), st.integers(11, 24), batches)
def test_squeezenet(seed, cin, h, w, batch):
    torch.manual_seed(seed)
    check_block(blocks.SqueezeNetTiny(cin, 5), (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), sizes, sizes, batches)
def test_dense_block(seed, layers, cin, growth, bn_size, h, w, batch):
    """A dense block (every layer reads the concat of all before it) and a transition."""
    torch.manual_seed(seed)
    out = cin + layers * growth
    model = nn.Sequential(blocks.DenseBlock(layers, cin, bn_size, growth), blocks.Transition(out, out // 2 + 1))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 3), sizes, sizes, batches)
def test_densenet(seed, cin, h, w, batch):
    torch.manual_seed(seed)
    check_block(blocks.DenseNetTiny(cin, 4), (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 8), st.lists(st.integers(1, 7), min_size=6, max_size=6), st.sampled_from([3, 5]),
       sizes, sizes, batches)
def test_inception(seed, cin, widths, five, h, w, batch):
    """Four branches (1x1; 1x1-3x3; 1x1-5x5 or torchvision's 3x3; max pool-1x1) concatenated, twice."""
    torch.manual_seed(seed)
    first = blocks.Inception(cin, *widths, five=five)
    out = widths[0] + widths[2] + widths[4] + widths[5]
    check_block(nn.Sequential(first, blocks.Inception(out, *widths[::-1], five=five)), (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 5), st.integers(1, 6), st.sampled_from(["torchvision", "slicing"]), sizes, sizes,
       batches)
def test_shufflenet_v2_units(seed, cin, half, spelling, h, w, batch):
    """A stride-2 unit (both branches on the whole input), then two stride-1 units (split in two)."""
    torch.manual_seed(seed)
    oup = 2 * half
    model = nn.Sequential(blocks.ShuffleV2Unit(cin, oup, 2, spelling), blocks.ShuffleV2Unit(oup, oup, 1, spelling),
                          blocks.ShuffleV2Unit(oup, oup, 1, spelling))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 12), st.sampled_from([3, 5]), st.integers(1, 4), st.booleans(), st.booleans(),
       st.sampled_from([1, 2]), st.sampled_from(["torchvision", "mean"]), sizes, sizes, batches)
def test_mobilenet_v3_block(seed, cin, kernel, expand, use_se, use_hs, stride, spelling, h, w, batch):
    """Expand, depthwise, SE with a Hardsigmoid gate, project; Hardswish or ReLU; residual at stride 1."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        blocks.MobileNetV3Block(cin, kernel, cin * expand, cin, use_se, use_hs, stride, spelling),
        blocks.MobileNetV3Block(cin, kernel, cin * expand + 1, cin + 2, True, True, 1, spelling))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 12), st.sampled_from([1, 4, 6]), st.sampled_from([3, 5]), st.sampled_from([1, 2]),
       st.sampled_from(["torchvision", "mean"]), sizes, sizes, batches)
def test_efficientnet_mbconv(seed, cin, expand, kernel, stride, spelling, h, w, batch):
    """MBConv with SiLU and an SE sigmoid gate; a second one with the residual and stochastic depth."""
    torch.manual_seed(seed)
    model = nn.Sequential(blocks.MBConv(cin, expand, kernel, stride, cin + 3, spelling=spelling),
                          blocks.MBConv(cin + 3, expand, kernel, 1, cin + 3, spelling=spelling))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 6), st.integers(1, 12), st.sampled_from([1, 2]), st.sampled_from([1, 4]), sizes,
       sizes, batches)
def test_se_resnet_block(seed, cin, planes, stride, reduction, h, w, batch):
    """SENet's SEBasicBlock: the SE on Linear layers, (N, C) viewed back as (N, C, 1, 1), expand_as."""
    torch.manual_seed(seed)
    model = nn.Sequential(blocks.SEBasicBlock(cin, planes * reduction, stride, reduction),
                          blocks.SEBasicBlock(planes * reduction, planes * reduction, 1, reduction))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 6), st.integers(1, 12), st.sampled_from([1, 2]), st.sampled_from([1, 4, 16]),
       st.sampled_from(["mean-max", "max-mean"]), sizes, sizes, batches)
def test_cbam_resnet_block(seed, cin, planes, stride, ratio, spelling, h, w, batch):
    """BasicBlock + CBAM: channel attention (shared MLP on avg and max pools), spatial attention (7x7)."""
    torch.manual_seed(seed)
    model = nn.Sequential(blocks.CBAMBasicBlock(cin, planes, stride, ratio, spelling),
                          blocks.CBAMBasicBlock(planes, planes, 1, ratio, spelling))
    check_block(model, (cin, h, w), seed, batch)


@few
@given(seeds, st.sampled_from(["shufflenet_v2", "mobilenet_v3", "efficientnet"]), st.integers(1, 3),
       st.integers(13, 40), st.integers(13, 40), batches)
def test_whole_networks(seed, network, cin, h, w, batch):
    """The torchvision layouts with their heads (x.mean([2, 3]), Hardswish/Dropout(inplace) classifiers)."""
    torch.manual_seed(seed)
    make = {"shufflenet_v2": blocks.ShuffleNetV2Tiny, "mobilenet_v3": blocks.MobileNetV3Tiny,
            "efficientnet": blocks.EfficientNetTiny}[network]
    check_block(make(cin, 6), (cin, h, w), seed, batch)


@few
@given(seeds, st.integers(1, 6), st.integers(1, 6), st.sampled_from([1, 2]), st.sampled_from([1, 4, 16]), sizes,
       sizes, batches)
def test_cbam_authors_code(seed, cin, planes, stride, ratio, h, w, batch):
    """CBAM as the authors wrote it: F.avg_pool2d/F.max_pool2d over (x.size(2), x.size(3)), a Linear MLP,
    unsqueeze(2).unsqueeze(3).expand_as(x), ChannelPool's torch.max(x, 1)[0].unsqueeze(1)."""
    torch.manual_seed(seed)
    width = planes * ratio
    model = nn.Sequential(blocks.CBAMAuthorsBasicBlock(cin, width, stride, ratio),
                          blocks.CBAMAuthorsBasicBlock(width, width, 1, ratio))
    check_block(model, (cin, h, w), seed, batch)


# ----------------------------------------------------------------------------------------- Java kit

JAVA_BLOCKS = {
    "fire": (lambda: blocks.SqueezeNetTiny(2, 5), (2, 17, 19)),
    "densenet": (lambda: blocks.DenseNetTiny(2, 4), (2, 13, 11)),
    "inception": (lambda: blocks.Inception(3, 4, 3, 5, 2, 3, 3), (3, 9, 8)),
    "shufflenet": (lambda: nn.Sequential(blocks.ShuffleV2Unit(3, 10, 2), blocks.ShuffleV2Unit(10, 10, 1, "slicing"),
                                         blocks.ShuffleV2Unit(10, 10, 1)), (3, 11, 9)),
    "mobilenet_v3": (lambda: blocks.MobileNetV3Block(5, 3, 16, 5, True, True, 1), (5, 9, 7)),
    "mbconv": (lambda: blocks.MBConv(5, 4, 5, 2, 7), (5, 9, 10)),
    "cbam": (lambda: blocks.CBAMBasicBlock(3, 8, 2, 4), (3, 12, 9)),
    "se_resnet": (lambda: blocks.SEBasicBlock(3, 8, 2, 4), (3, 10, 9)),
    "cbam_authors": (lambda: blocks.CBAMAuthorsBasicBlock(3, 8, 2, 4), (3, 11, 10)),
}


@pytest.mark.parametrize("name", sorted(JAVA_BLOCKS))
def test_blocks_are_bit_exact_in_java(name, java_classes, tmp_path):
    make, input_shape = JAVA_BLOCKS[name]
    torch.manual_seed(0)
    model = make().eval()
    randomize_batchnorm(model, 0)
    weights = tmp_path / f"{name}.pdw"
    export(model, weights, input_shape=input_shape)
    bundle = write_golden(weights, tmp_path, count=2, seed=3)
    result = java(java_classes, "GoldenRunner", weights, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers bit-exact with pdinfer's reference" in result.stdout


# ------------------------------------------------------------------------- the PDLightSEModel seed model

ROOT = Path(__file__).resolve().parents[1]


def test_pd_light_se_runs_through_the_cli_the_golden_bundle_and_java(java_classes, tmp_path, capsys):
    """`python -m exporter pd_light_se --random-bn`, then `pdinfer run` on a shipped sample against
    torch, then `python -m exporter.golden` (torch and reference columns) checked by the Java kit."""
    from PIL import Image

    weights = tmp_path / "pd_light_se.pdw"
    subprocess.run([sys.executable, "-m", "exporter", "pd_light_se", str(weights), "--random-bn"], check=True,
                   capture_output=True, cwd=ROOT, timeout=600)
    sample = ROOT / "weights" / "samples" / "void_1.png"
    assert cli_main(["run", "--json", str(weights), str(sample)]) == 0
    record = json.loads(capsys.readouterr().out)
    name, model = load_seed_model(weights)
    image = np.asarray(Image.open(sample), dtype=np.float32)[None, None] / np.float32(255)
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()[0]
    assert name == "pd_light_se" and len(record["probabilities"]) == 6
    assert_close(np.array(list(record["probabilities"].values()), np.float32), expected, "pdinfer run vs torch")
    assert len({round(p, 3) for p in record["probabilities"].values()}) > 1  # random BN: not uniform

    subprocess.run([sys.executable, "-m", "exporter.golden", str(weights), "--out", str(tmp_path), "--count", "1"],
                   check=True, capture_output=True, cwd=ROOT, timeout=600)
    result = java(java_classes, "GoldenRunner", weights, tmp_path / "pd_light_se.golden.pdw")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "layers bit-exact with pdinfer's reference" in result.stdout and "of torch" in result.stdout
    assert "Hardsigmoid" in result.stdout and "Mul" in result.stdout
