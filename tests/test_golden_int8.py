"""Golden bundles of files that compute in int8 (FORMAT.md 1.3, docs/KERNELS.md "Int8
computation"), and the Java kit reproducing that computation bit for bit (java/src/pdinfer/int8).

The bundles hold the integer reference's values (`Model.trace` = `Int8Reference.trace`): uint8
values as float32 levels (manifest `uint8_layers`), no value for a Conv2d or Linear fused with its
activation or for a Dropout. The Java tests use conftest.py's `java_classes`, as tests/test_golden.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from exporter.compress import compress_file, main as compress_main
from pdinfer.builder import every_layer_type
from pdinfer.errors import FormatError, InputError
from pdinfer.format import read_container, read_weights, write_container, write_weights
from pdinfer.golden import EDGE_KINDS, INT8_COMPUTATION, read_golden, write_golden
from pdinfer.graph import ACTIVATIONS_KEY, load_graph
from pdinfer.quantize import Int8Reference, int8_steps
from small_model import sample_images, write_small_model
from test_golden import java, rewrite, row

ROOT = Path(__file__).resolve().parent.parent
SEED_MODELS = ("pd_light", "pd_model")


def quantize_file(src: Path, images: np.ndarray) -> Path:
    """`src` with int8 weights and activations calibrated on `images` (exporter.compress)."""
    dst = src.with_name(f"{src.stem}.q8.pdw")
    compress_file(src, dst, "int8", images)
    return dst


@pytest.fixture(scope="module")
def small_q8(tmp_path_factory) -> Path:
    """tests/small_model.py's model computing in int8: a conv with LeakyReLU, a depthwise conv with
    ReLU6, an Add, a pointwise conv, a max pool, a global mean and a Linear in int8, a Softmax in float."""
    return quantize_file(write_small_model(tmp_path_factory.mktemp("small") / "small.pdw"), sample_images(64, seed=3))


@pytest.fixture(scope="module")
def small_golden(small_q8, tmp_path_factory) -> Path:
    return write_golden(small_q8, tmp_path_factory.mktemp("golden"), seed=5)


@pytest.fixture(scope="module")
def every_q8(tmp_path_factory) -> Path:
    """builder.every_layer_type computing in int8: int8 steps with float steps of every layer type
    between them, a grouped convolution (float32 on its dequantized I8 weight) and a Dropout."""
    layers, _ = every_layer_type(seed=5)
    src = layers.write(tmp_path_factory.mktemp("every") / "every.pdw")
    images = np.random.default_rng(0).uniform(0, 1, (32, *layers.input_shape)).astype(np.float32)
    return quantize_file(src, images)


def steps_of(path: Path):
    graph = load_graph(path)
    return int8_steps(graph)


# ----------------------------------------------------------------------------- the Python side


def test_trace_of_an_int8_file_is_the_integer_reference(small_q8):
    x = sample_images(3, seed=9)
    trace = pdinfer.load(small_q8).trace(x)
    expected = Int8Reference(load_graph(small_q8)).trace(x)
    del expected["input"]
    assert list(trace) == list(expected) == [step.output for step in steps_of(small_q8)]
    for name, value in expected.items():
        assert trace[name].dtype == value.dtype and trace[name].tobytes() == value.tobytes(), name
    assert trace["act0"].dtype == np.uint8 and trace["softmax"].dtype == np.float32
    assert "conv0" not in trace and "dw" not in trace  # fused into act0, act1


def test_int8_bundle_holds_the_values_of_the_integer_reference(small_q8, small_golden):
    golden = read_golden(small_golden)
    steps = steps_of(small_q8)
    model = pdinfer.load(small_q8)
    assert golden.int8 and golden.manifest["computation"] == INT8_COMPUTATION and not golden.subset
    assert golden.layers == [step.output for step in steps]
    assert golden.manifest["uint8_layers"] == [step.output for step in steps[:-1] if step.out is not None]
    assert {a.dtype for a in read_container(small_golden).tensors.values()} == {np.dtype(np.float32)}  # levels in F32
    for entry in golden:
        trace = model.trace(entry.image)
        assert list(entry.reference) == golden.layers
        for name, value in trace.items():
            stored = entry.reference[name]
            assert stored.dtype == value.dtype and np.array_equal(stored, value), name


def test_a_float32_files_bundle_has_no_int8_keys(tmp_path):
    golden = read_golden(write_golden(write_small_model(tmp_path / "small.pdw"), tmp_path, count=0))
    assert not golden.int8 and not golden.uint8_layers
    assert "computation" not in golden.manifest and "uint8_layers" not in golden.manifest


def test_layers_without_an_int8_value_cannot_be_asked_for(small_q8, every_q8, tmp_path):
    for weights, layer in ((small_q8, "conv0"), (every_q8, "drop")):
        with pytest.raises(InputError, match=rf"no layer named '{layer}' with a value of its own in its int8 "
                                             rf"computation \(its layers: "):
            write_golden(weights, tmp_path, layers=[layer])
    subset = read_golden(write_golden(small_q8, tmp_path, count=0, layers=["softmax", "act0"]))
    assert subset.subset and subset.layers == ["act0", "softmax"] and subset.manifest["uint8_layers"] == ["act0"]
    with pytest.raises(InputError, match="computes in int8: its bundle holds the integer reference's values only"):
        write_golden(small_q8, tmp_path / "torch", torch_tracer=lambda image: {}, torch_version="fake")
    assert not (tmp_path / "torch").exists()


def edit_manifest(src: Path, dst: Path, **changes) -> Path:
    """A copy of a bundle with manifest keys changed (None removes one)."""
    container = read_container(src)
    manifest = json.loads(container.metadata["manifest"]) | changes
    manifest = {key: value for key, value in manifest.items() if value is not None}
    write_container(dst, container.metadata | {"manifest": json.dumps(manifest)}, list(container.tensors.items()))
    return dst


def test_bundles_with_bad_levels_or_int8_keys_are_rejected(java_classes, small_q8, small_golden, tmp_path):
    def half_level(name: str, array: np.ndarray) -> np.ndarray:
        if name == "reference.2.add":
            array.reshape(-1)[4] += np.float32(0.5)
        return array

    bad = rewrite(small_golden, tmp_path / "half.golden.pdw", half_level)
    golden = read_golden(bad)
    golden[1]  # the other inputs read
    with pytest.raises(FormatError, match="'reference.2.add' must hold uint8 levels"):
        golden[2]
    result = java(java_classes, "GoldenRunner", small_q8, bad)
    assert result.returncode == 2 and "'reference.2.add' must hold uint8 levels" in result.stderr, result.stderr

    cases = {"int4": ({"computation": "int4"}, "'computation' must be 'int8'"),
             "unknown": ({"uint8_layers": ["act0", "conv0"]}, "'uint8_layers' must list layers of the bundle"),
             "twice": ({"uint8_layers": ["act0", "act0"]}, "'uint8_layers' must list layers of the bundle")}
    for name, (changes, message) in cases.items():
        path = edit_manifest(small_golden, tmp_path / f"{name}.golden.pdw", **changes)
        with pytest.raises(FormatError, match=message):
            read_golden(path)
        result = java(java_classes, "GoldenRunner", small_q8, path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    # A manifest that does not say int8, or lists other uint8 layers: not this file's computation.
    for name, changes in (("float", {"computation": None, "uint8_layers": None}),
                          ("fewer", {"uint8_layers": ["act0"]})):
        result = java(java_classes, "GoldenRunner", small_q8,
                      edit_manifest(small_golden, tmp_path / f"{name}.golden.pdw", **changes))
        assert result.returncode == 2 and "computes in int8 with uint8 layers" in result.stderr, result.stderr


# ----------------------------------------------------------------------------- the Java kit, bit for bit


def check_passes(java_classes, weights: Path, bundle: Path) -> str:
    """Run the Java golden runner; it must pass every value, per layer and end to end. Its output."""
    result = java(java_classes, "GoldenRunner", weights, bundle)
    assert result.returncode == 0, result.stdout + result.stderr
    golden = read_golden(bundle)
    assert f"PASS: {len(golden.layers)} layers bit-exact with pdinfer's reference" in result.stdout, result.stdout
    for value in golden.layers:  # every row checked per layer (its inputs are in the bundle) and end to end
        per_layer, end_to_end = (column.split() for column in row(result.stdout, value).split("|")[1:3])
        assert per_layer[0] != "-" and per_layer[1] in ("0", "1") and end_to_end[1] in ("0", "1"), value
    return result.stdout


def test_java_is_bit_exact_on_every_int8_step_kind(java_classes, small_q8, small_golden):
    output = check_passes(java_classes, small_q8, small_golden)
    assert f"computation: int8 (8 steps for {len(load_graph(small_q8).layers)} layers" in output
    types = {value: row(output, value).split()[1] for value in read_golden(small_golden).layers}
    assert types == {"act0": "Conv2d+LeakyReLU", "act1": "Conv2d+ReLU6", "add": "Add", "pw": "Conv2d",
                     "pool": "MaxPool2d", "gap": "GlobalAvgPool", "fc": "Linear", "softmax": "Softmax"}
    assert " u8 " in row(output, "pool") and " u8 " not in row(output, "softmax")


def test_java_is_bit_exact_with_float_steps_between_int8_steps(java_classes, every_q8, tmp_path):
    steps = {step.layer.name: step for step in steps_of(every_q8)}
    assert {step.kind for step in steps.values()} == {"conv", "add", "float"}
    assert steps["grouped"].kind == "float"  # an I8 grouped convolution: float32 on its dequantized weight
    assert steps["fc"].inputs == ("flat",) and steps["fc"].output == "fc_act"  # a float value quantized; through Dropout
    output = check_passes(java_classes, every_q8, write_golden(every_q8, tmp_path))
    assert "values of exp/tanh layers 1 ulp off" in output


@pytest.mark.parametrize("model", SEED_MODELS)
def test_java_is_bit_exact_on_the_quantized_seed_models(java_classes, model, tmp_path):
    """The shipped seed models, quantized as `python -m exporter.compress SRC --weights int8
    --activations int8` does (synthetic calibration images): every value, 6 inputs."""
    src = ROOT / "weights" / f"{model}.pdw"
    dst = tmp_path / f"{model}.q8.pdw"
    assert compress_main([str(src), "--weights", "int8", "--activations", "int8", "--out", str(dst)]) == 0
    bundle = write_golden(dst, tmp_path)
    assert len(read_golden(bundle)) == 2 + len(EDGE_KINDS)
    check_passes(java_classes, dst, bundle)


@pytest.mark.parametrize("value", ["act0", "add", "pool", "gap", "fc"])
def test_java_fails_when_one_uint8_reference_value_is_one_level_off(java_classes, small_q8, small_golden, tmp_path,
                                                                     value):
    def nudge(name: str, array: np.ndarray) -> np.ndarray:
        if name == f"reference.0.{value}":
            flat = array.reshape(-1)
            flat[1] += np.float32(1 if flat[1] < 255 else -1)
        return array

    result = java(java_classes, "GoldenRunner", small_q8, rewrite(small_golden, tmp_path / "bad.golden.pdw", nudge))
    assert result.returncode == 1, result.stdout + result.stderr
    culprit = row(result.stdout, value).split("|")
    assert culprit[1].split()[0] == culprit[2].split()[0] == "1.00e+00" and culprit[-1].strip() == "FAIL"
    # Only the culprit and, per layer, the steps fed its value can fail; end to end Java matches.
    readers = {step.output for step in steps_of(small_q8) if value in step.inputs}
    for step in steps_of(small_q8):
        columns = row(result.stdout, step.output).split("|")
        if step.output != value:
            assert columns[2].split() == ["0", "0"], step.output
            assert step.output in readers or columns[-1].strip() == "ok", step.output
    assert "FAIL: " in result.stdout


def with_activations(src: Path, dst: Path, entry) -> Path:
    """A copy of a weight file with its `activations` entry replaced by `entry` (JSON text or a value)."""
    container, layers = read_weights(src)
    meta = {k: v for k, v in container.metadata.items() if k in ("weights", "batchnorm_folded")}
    write_weights(dst, layers, {n: np.array(t) for n, t in container.tensors.items()},
                  input_shape=json.loads(container.metadata["input_shape"]),
                  classes=json.loads(container.metadata["classes"]),
                  metadata={**meta, ACTIVATIONS_KEY: entry if isinstance(entry, str) else json.dumps(entry)})
    return dst


def test_java_reads_the_activations_entry_as_pdinfer_does(java_classes, small_q8, tmp_path):
    """The same verdict (and reason) from pdinfer.load and the Java reader (pdinfer.Check), one JVM."""
    entry = json.loads(read_container(small_q8).metadata[ACTIVATIONS_KEY])
    bad_pair = "must be \\[scale, zero_point\\] with a positive finite float32 scale"
    cases = {  # name: (entry, reason a reader rejects it for, or None: accepted)
        "valid": (entry, None),
        "integer scale": ({**entry, "input": [1, 0]}, None),
        "integer scale 2**64": ({**entry, "input": [2 ** 64, 3]}, None),  # exactly a float32
        "integer scale 2**63-1": ({**entry, "input": [2 ** 63 - 1, 3]}, bad_pair),  # not one
        "not float32": ({**entry, "act0": [0.1, 0]}, bad_pair),
        "beyond float32": ({**entry, "act0": [1e39, 0]}, bad_pair),
        "negative": ({**entry, "act0": [-0.5, 0]}, bad_pair),
        "boolean": ({**entry, "act0": [True, 0]}, bad_pair),
        "zero point": ({**entry, "act0": [0.5, 256]}, bad_pair),
        "float zero point": ({**entry, "act0": [0.5, 1.0]}, bad_pair),
        "short": ({**entry, "act0": [0.5]}, bad_pair),
        "unknown": ({**entry, "nope": [0.5, 0]}, "names 'nope', not the input or a layer"),
        "missing": ({k: v for k, v in entry.items() if k != "act1"}, "lacks the quantization of value 'act1'"),
        "missing input": ({k: v for k, v in entry.items() if k != "input"}, "lacks the quantization of value 'input'"),
        "not an object": ([1, 2], "must be a JSON object"),
        "not JSON": ("{", "metadata 'activations' is not valid JSON"),
        "int32 overflow": ({**entry, "add": [2.0 ** -120, 0]}, "layer 'pw': its int8 sum could overflow int32"),
        "multiplier beyond float32": ({**entry, "gap": [2.0 ** -149, 0]},
                                      "layer 'gap': a multiplier of its int8 requantization is beyond float32"),
    }
    paths = {name: with_activations(small_q8, tmp_path / f"{i}.pdw", value) for i, (name, (value, _)) in
             enumerate(cases.items())}
    result = subprocess.run(["java", "-cp", str(java_classes), "pdinfer.Check"], input="\n".join(map(str, paths.values())),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    verdicts = dict(zip(cases, result.stdout.splitlines(), strict=True))
    for name, (_, reason) in cases.items():
        if reason is None:
            pdinfer.load(paths[name])
            assert verdicts[name] == "OK", (name, verdicts[name])
        else:
            # (quantize.decode's np.float32(1e39) warns of the overflow before rejecting the scale)
            with pytest.raises(pdinfer.PdinferError, match=reason), np.errstate(over="ignore"):
                pdinfer.load(paths[name])
            assert verdicts[name].startswith("REJECTED ") and re.search(reason, verdicts[name]), \
                (name, verdicts[name])


def test_java_info_says_a_file_computes_in_int8(java_classes, small_q8):
    result = java(java_classes, "Info", small_q8)
    assert result.returncode == 0 and "computes in int8: 8 steps, 7 of them in int8" in result.stdout, result.stderr
