"""The fusion pass, pinned: which file layers each fast step covers, and which steps write or read
zero borders, for the small test model and both seed models.

A change that silently turns a fusion off (BatchNorm folding, an activation or residual fused, a
border instead of a padded copy, a Flatten folded into Linear) changes these lines. A change that
means to alter the plan updates the pins and says why.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer.builder import LayerList, conv2d_params, every_layer_type
from pdinfer.graph import load_graph
from pdinfer.layers import LAYER_TYPES
from pdinfer.fusion import describe, fuse
from pdinfer.plan import build_plan
from small_model import sample_images, write_small_model

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

SMALL = """\
ConvGroup(conv0 + bn0 + act0 <- input)
ConvGroup(dw + bn1 + act1 <- act0)
LayerGroup(add <- act0, act1)
ConvGroup(pw + pool <- add)
PoolGroup(gap <- pool)
LinearGroup(fc <- gap)
LayerGroup(softmax <- fc)
"""

PD_MODEL = """\
ConvGroup(conv.0 + conv.1 + conv.2 <- input) border=[1, 1, 1, 1]
ConvGroup(conv.3 + conv.4 + conv.5 <- conv.2) border=[1, 1, 1, 1] input_padded
ConvGroup(conv.6 + conv.7 + conv.8 <- conv.5) border=[1, 1, 1, 1] input_padded
ConvGroup(conv.9 + conv.10 + conv.11 <- conv.8) input_padded
Alias(view <- conv.11)
LinearGroup(dense.0 + dense.1 <- conv.11)
LinearGroup(dense.2 + dense.4 <- dense.1)
Alias(dense.3 <- dense.4)
LinearGroup(dense.5 <- dense.4)
LayerGroup(dense.6 <- dense.5)
"""

PD_LIGHT = """\
ConvGroup(extractor.0.0 + extractor.0.1 + extractor.0.2 <- input) border=[1, 1, 1, 1]
ConvGroup(extractor.1.conv.0 + extractor.1.conv.1 + extractor.1.conv.2 <- extractor.0.2) input_padded
ConvGroup(extractor.1.conv.3 + extractor.1.conv.4 <- extractor.1.conv.2)
ConvGroup(extractor.2.conv.0 + extractor.2.conv.1 + extractor.2.conv.2 <- extractor.1.conv.4) border=[1, 1, 1, 1]
ConvGroup(extractor.2.conv.3 + extractor.2.conv.4 + extractor.2.conv.5 <- extractor.2.conv.2) input_padded
ConvGroup(extractor.2.conv.6 + extractor.2.conv.7 <- extractor.2.conv.5)
ConvGroup(extractor.3.conv.0 + extractor.3.conv.1 + extractor.3.conv.2 <- extractor.2.conv.7) border=[1, 1, 1, 1]
ConvGroup(extractor.3.conv.3 + extractor.3.conv.4 + extractor.3.conv.5 <- extractor.3.conv.2) input_padded
ConvGroup(extractor.3.conv.6 + extractor.3.conv.7 + add <- extractor.3.conv.5, extractor.2.conv.7)
ConvGroup(extractor.4.conv.0 + extractor.4.conv.1 + extractor.4.conv.2 <- add) border=[1, 1, 1, 1]
ConvGroup(extractor.4.conv.3 + extractor.4.conv.4 + extractor.4.conv.5 <- extractor.4.conv.2) input_padded
ConvGroup(extractor.4.conv.6 + extractor.4.conv.7 <- extractor.4.conv.5)
ConvGroup(extractor.5.conv.0 + extractor.5.conv.1 + extractor.5.conv.2 <- extractor.4.conv.7) border=[1, 1, 1, 1]
ConvGroup(extractor.5.conv.3 + extractor.5.conv.4 + extractor.5.conv.5 <- extractor.5.conv.2) input_padded
ConvGroup(extractor.5.conv.6 + extractor.5.conv.7 + add_1 <- extractor.5.conv.5, extractor.4.conv.7)
ConvGroup(extractor.6.conv.0 + extractor.6.conv.1 + extractor.6.conv.2 <- add_1) border=[1, 1, 1, 1]
ConvGroup(extractor.6.conv.3 + extractor.6.conv.4 + extractor.6.conv.5 <- extractor.6.conv.2) input_padded
ConvGroup(extractor.6.conv.6 + extractor.6.conv.7 + add_2 <- extractor.6.conv.5, add_1)
ConvGroup(extractor.7.conv.0 + extractor.7.conv.1 + extractor.7.conv.2 <- add_2) border=[1, 1, 1, 1]
ConvGroup(extractor.7.conv.3 + extractor.7.conv.4 + extractor.7.conv.5 <- extractor.7.conv.2) input_padded
ConvGroup(extractor.7.conv.6 + extractor.7.conv.7 <- extractor.7.conv.5)
ConvGroup(extractor.8.conv.0 + extractor.8.conv.1 + extractor.8.conv.2 <- extractor.7.conv.7) border=[1, 1, 1, 1]
ConvGroup(extractor.8.conv.3 + extractor.8.conv.4 + extractor.8.conv.5 <- extractor.8.conv.2) input_padded
ConvGroup(extractor.8.conv.6 + extractor.8.conv.7 + add_3 <- extractor.8.conv.5, extractor.7.conv.7)
ConvGroup(extractor.9.conv.0 + extractor.9.conv.1 + extractor.9.conv.2 <- add_3) border=[1, 1, 1, 1]
ConvGroup(extractor.9.conv.3 + extractor.9.conv.4 + extractor.9.conv.5 <- extractor.9.conv.2) input_padded
ConvGroup(extractor.9.conv.6 + extractor.9.conv.7 + add_4 <- extractor.9.conv.5, add_3)
ConvGroup(extractor.10.0 + extractor.10.1 + extractor.10.2 <- add_4)
PoolGroup(mean_1 <- extractor.10.2)
LinearGroup(classifier.0 <- mean_1)
LayerGroup(classifier.1 <- classifier.0)
"""


@pytest.fixture(scope="module")
def small_path(tmp_path_factory) -> Path:
    return write_small_model(tmp_path_factory.mktemp("plan") / "small.pdw")


@pytest.mark.parametrize("which, expected", [("small", SMALL), ("pd_model", PD_MODEL), ("pd_light", PD_LIGHT)])
def test_fusion_is_pinned(small_path, which, expected):
    path = small_path if which == "small" else WEIGHTS / f"{which}.pdw"
    lines = [describe(group) for group in fuse(load_graph(path))]
    assert lines == expected.splitlines(), "\n".join(lines)


def test_fusion_is_pure_and_the_steps_follow_it(small_path):
    graph = load_graph(small_path)
    assert fuse(graph) == fuse(graph)
    groups = [g for g in fuse(graph) if type(g).__name__ != "Alias"]
    plan = build_plan(graph)
    assert [step.layers for step in plan.steps] == [tuple(layer.name for layer in g.layers) for g in groups]


def test_a_value_with_two_readers_gets_no_border(small_path):
    """act0 feeds the padded depthwise conv and the residual add: the conv pads a copy."""
    lines = {describe(group).split("(")[1].split(" ")[0]: describe(group) for group in fuse(load_graph(small_path))}
    assert "border" not in lines["conv0"] and "input_padded" not in lines["dw"]
    model = pdinfer.load(small_path)
    x = sample_images(4)
    assert np.allclose(model(x), next(reversed(model.trace(x).values())), atol=1e-6)


def test_the_every_layer_type_model_has_every_type_and_its_fast_path_matches_the_reference(tmp_path):
    layers, classes = every_layer_type()
    assert {entry["type"] for entry in layers.entries} == set(LAYER_TYPES)
    model = pdinfer.load(layers.write(tmp_path / "every.pdw", classes))
    x = np.random.default_rng(3).standard_normal((5, *model.input_shape)).astype(np.float32)
    trace = model.trace(x)
    assert np.allclose(model(x), next(reversed(trace.values())), rtol=0, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 6])
def test_a_chain_of_padded_convolutions_reads_and_writes_borders(tmp_path, groups):
    """The middle convolutions read their padding from the one before and write the next one's
    (Inception's 3x3 -> 3x3, a depthwise stack): both at once, with uneven paddings."""
    layers = LayerList((6, 9, 8), seed=1)
    for i, padding in enumerate([(1, 1, 1, 1), (2, 1, 0, 1), (1, 2, 1, 0), (1, 1, 1, 1)]):
        layers.add("Conv2d", name=f"conv{i}", **conv2d_params(6, 6, 3, padding=padding, groups=groups))
        layers.add("ReLU", name=f"relu{i}")
    path = layers.write(tmp_path / "chain.pdw")
    lines = [describe(group) for group in fuse(load_graph(path))]
    assert [("border" in line, "input_padded" in line) for line in lines] == \
        [(True, False), (True, True), (True, True), (False, True)], "\n".join(lines)
    model = pdinfer.load(path)
    x = np.random.default_rng(0).standard_normal((3, *model.input_shape)).astype(np.float32)
    assert np.allclose(model(x), next(reversed(model.trace(x).values())), rtol=0, atol=1e-5)
