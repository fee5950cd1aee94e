"""ONNX's backend node tests over pdinfer (and ONNX Runtime on the same list).

The cases come from the installed onnx wheel's test-case generators (`onnx.backend.test.case.node`,
the code that writes the node test data; recent wheels ship the generators but not the data). A
case is selected when every node of its graph is an operator of the converter's op set
(docs/ONNX.md) or of the shape arithmetic it folds (Constant, Shape, Gather; not Cast, whose cases
test type conversions, and pdinfer computes in float32). `PdinferBackend` converts the model (the first graph input is the image; the other
test inputs become initializers) and runs it; each case either passes or is listed, with the
reason, in tests/data/onnx_conformance_excluded.txt.

    python tests/onnx_conformance.py            # pass counts of pdinfer and ONNX Runtime, same list
    python tests/onnx_conformance.py --failures # pdinfer's failures, one line each (to review the list)
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

import pdinfer
from pdinfer.onnx_import import convert_onnx

OP_SET = {"Conv", "BatchNormalization", "Gemm", "MatMul", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Elu",
          "PRelu", "HardSigmoid", "HardSwish", "Gelu", "MaxPool", "AveragePool", "GlobalAveragePool",
          "GlobalMaxPool", "ReduceMean", "ReduceMax", "Softmax", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
          "Concat", "Split", "Slice", "Mul", "Add", "Sub", "Div", "Pad", "Transpose", "Identity", "Dropout",
          "Constant", "Shape", "Gather"}
EXCLUDED_FILE = Path(__file__).resolve().parent / "data" / "onnx_conformance_excluded.txt"


def node_cases() -> list[Any]:
    """The node test cases whose graphs use only the op set, sorted by name."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return sorted((c for c in cases if c.kind == "node" and {n.op_type for n in c.model.graph.node} <= OP_SET),
                  key=lambda c: c.name)


def excluded() -> dict[str, str]:
    """Case name -> why it is excluded (the allowlist file: `name: reason` lines, # comments)."""
    reasons = {}
    for line in EXCLUDED_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, reason = line.split(":", 1)
            reasons[name.strip()] = reason.strip()
    return reasons


def with_constants(model: onnx.ModelProto, inputs: Sequence[np.ndarray]) -> onnx.ModelProto:
    """The model with every graph input after the first made an initializer holding the test's value."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    feeds = [i for i in graph.input if i.name not in initializers]
    for info, value in zip(feeds[1:], inputs[1:]):
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), info.name))
        graph.input.remove(info)
    return model


class PdinferRep(BackendRep):
    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        with tempfile.TemporaryDirectory() as directory:
            path = convert_onnx(with_constants(self.model, inputs), Path(directory) / "model.pdw")
            model = pdinfer.load(path)
        image = np.asarray(inputs[0])
        out = model(image.astype(np.float32))
        return (out.astype(image.dtype),)


class PdinferBackend(Backend):
    """onnx.backend.base.Backend over pdinfer: convert (test inputs after the first as constants), run."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> PdinferRep:
        return PdinferRep(model)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def run_case(case: Any, engine: str = "pdinfer") -> None:
    """Run every data set of a case on pdinfer or ONNX Runtime; raise on a wrong result (as onnx's runner)."""
    for inputs, outputs in case.data_sets:
        if engine == "pdinfer":
            got = PdinferBackend.prepare(case.model).run(inputs)
        else:
            import onnxruntime
            session = onnxruntime.InferenceSession(case.model.SerializeToString(), providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            got = session.run(None, dict(zip(names, inputs)))
        if len(got) != len(outputs):
            raise AssertionError(f"{len(got)} outputs, expected {len(outputs)}")
        for g, want in zip(got, outputs):
            np.testing.assert_allclose(np.asarray(g), want, rtol=case.rtol, atol=case.atol)


def outcome(case: Any, engine: str) -> str:
    """'' when the case passes, else a one-line reason."""
    try:
        run_case(case, engine)
    except Exception as e:
        return f"{type(e).__name__}: " + " | ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return ""


def main(argv: Sequence[str]) -> int:
    cases = node_cases()
    skip = excluded()
    listed = [c for c in cases if c.name not in skip]
    if "--failures" in argv:
        for case in cases:
            why = outcome(case, "pdinfer")
            if why:
                print(f"{case.name}: {why}")
        return 0
    counts = {engine: sum(not outcome(c, engine) for c in listed) for engine in ("pdinfer", "onnxruntime")}
    print(f"onnx {onnx.__version__}: {len(cases)} node test cases use only the op set; {len(skip)} excluded "
          f"({EXCLUDED_FILE.name}), {len(listed)} run")
    for engine, passed in counts.items():
        print(f"  {engine:12} {passed} / {len(listed)} pass")
    everything = sum(not outcome(c, "onnxruntime") for c in cases)
    print(f"  (onnxruntime on all {len(cases)} selected cases, excluded ones included: {everything} pass)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
