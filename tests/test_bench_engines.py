"""The benchmark's engines: every one loads the same seed model and agrees with pdinfer; the
peers' int8 model is quantized as the benchmark says (QDQ, weights per channel, uint8 activations)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from benchmarks import bench, engines, report  # noqa: E402


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> tuple[dict, dict]:
    return engines.make_artifacts("pd_light", str(tmp_path_factory.mktemp("bench-artifacts")))


def test_every_engine_runs_the_seed_model_and_agrees_with_pdinfer(artifacts):
    files, problems = artifacts
    # Only a missing optional library may keep an engine out (openvino is in the dev extras, not required).
    assert all("is not installed" in why for why in problems.values()), problems
    names = [name for name in engines.ENGINES if name not in problems]
    assert {"pdinfer", "pdinfer_int8", "ort", "ort_int8"} <= set(names)
    x1, x64 = bench.inputs()
    runners = {name: engines.load(name, files, threads=2) for name in names}
    differences = bench.check_agreement(runners, [x1, x64[:7]])  # exits on a disagreement
    for name in engines.QUANTIZED:
        if name in differences:  # int8 activations: close to float32, not equal to it
            assert 0 < differences[name] <= bench.APPROXIMATE_TOLERANCE


def test_the_int8_onnx_model_is_qdq_with_per_channel_weights_and_uint8_activations(artifacts):
    onnx = pytest.importorskip("onnx")
    files, _ = artifacts
    graph = onnx.load(files["onnx_int8"]).graph
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.initializer}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions and not {"QLinearConv", "ConvInteger"} & {node.op_type for node in graph.node}
    producers = {output: node for node in graph.node for output in node.output}
    for conv in convolutions:
        data, weight = (producers[name] for name in conv.input[:2])
        assert data.op_type == weight.op_type == "DequantizeLinear"
        weight_scale = initializers[weight.input[1]]
        assert initializers[weight.input[0]].dtype.name == "int8"
        assert weight_scale.shape == (initializers[weight.input[0]].shape[0],)  # one scale per output channel
        assert initializers[data.input[2]].dtype.name == "uint8"  # the activation's zero point


def test_int8_columns_are_compared_with_pdinfer_int8():
    entry = {"engines": ["pdinfer", "pdinfer_int8", "ort", "ort_int8"], "problems": {},
             "speed": {"1": {"latency": {"pdinfer": {"median_ms": 1.0}, "pdinfer_int8": {"median_ms": 2.0},
                                         "ort": {"median_ms": 1.5}, "ort_int8": {"median_ms": 0.5}}}}}
    lines = report._model_table(entry, [1])
    header = [cell.strip() for cell in lines[0].split("|")]
    row = dict(zip(header, [cell.strip() for cell in lines[2].split("|")]))
    assert row["pdinfer vs ONNX Runtime"] == "1.50×"
    assert row["pdinfer int8 vs ONNX Runtime int8"] == "0.25×"  # 0.5 / 2.0, not 0.5 / 1.0
    assert "pdinfer vs ONNX Runtime int8" not in header
