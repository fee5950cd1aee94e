"""The engines compared: each is `load(engine, artifacts, threads)` -> a function of one NCHW batch.

Every engine's libraries are imported inside these functions, so a child process that measures
pdinfer's cold start imports neither torch nor onnxruntime. The parent process writes the
artifacts (one seeded seed model, saved once per engine) with `make_artifacts`.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Callable
from typing import Any

ENGINES = ("pdinfer", "pdinfer_f16", "pdinfer_bf16", "pdinfer_int8", "torch", "torch_jit", "ort", "ort_int8",
           "openvino", "openvino_int8")
LABELS = {"pdinfer": "pdinfer", "pdinfer_f16": "pdinfer f16", "pdinfer_bf16": "pdinfer bf16",
          "pdinfer_int8": "pdinfer int8", "torch": "torch eager", "torch_jit": "torch.jit frozen",
          "ort": "ONNX Runtime", "ort_int8": "ONNX Runtime int8", "openvino": "OpenVINO", "openvino_int8": "OpenVINO int8"}
COMPRESSED = {"pdinfer_f16": "f16", "pdinfer_bf16": "bf16", "pdinfer_int8": "int8"}  # engine -> exporter weights
ONNX_FILES = {"ort": "onnx", "ort_int8": "onnx_int8", "openvino": "onnx", "openvino_int8": "onnx_int8"}  # -> artifact
QUANTIZED = ("ort_int8", "openvino_int8")  # the peers' int8 computation: weights and activations
CALIBRATION_IMAGES = 120  # synthetic PD images (exporter.compress.calibration_images: seed 1, not the timed inputs'
#                           seed 0) that calibrate the int8 models, pdinfer's and the peers' alike
SEED_MODELS = {"pd_light": "PDLightModel", "pd_model": "PDModel"}  # name -> exporter.models class
NUM_CLASSES = 6
ORT_NO_SPINNING = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")  # set to "0"
SEED = 0

Artifacts = dict[str, str]  # "model" (a SEED_MODELS key) and engine file paths: pdw (and pdw_f16, ...), state_dict, jit, onnx
Runner = Callable[[Any], Any]  # (N, C, H, W) float32 numpy array -> the engine's output


def make_artifacts(model: str, directory: str) -> tuple[Artifacts, dict[str, str]]:
    """Build the seeded model and save it for every engine; returns (artifacts, engine -> why not)."""
    import torch

    import exporter
    from exporter.compress import calibration_images, compress_file
    torch.manual_seed(SEED)
    module = getattr(exporter, SEED_MODELS[model])(NUM_CLASSES)
    exporter.randomize_batchnorm(module, SEED)
    module.eval()
    example = torch.rand(1, *exporter.INPUT_SHAPE)
    path = os.path.join(directory, model)
    artifacts: Artifacts = {"model": model, "pdw": path + ".pdw", "state_dict": path + ".pt"}
    problems: dict[str, str] = {}
    exporter.export(module, artifacts["pdw"], input_shape=exporter.INPUT_SHAPE)
    for weights in COMPRESSED.values():  # the same model with compressed weights (BatchNorm folded)
        artifacts[f"pdw_{weights}"] = f"{path}.{weights}.pdw"
        if weights == "int8":  # int8 computation, calibrated on the peers' calibration images
            compress_file(artifacts["pdw"], artifacts["pdw_int8"], "int8", calibration_images(None))
        else:
            exporter.export(module, artifacts[f"pdw_{weights}"], input_shape=exporter.INPUT_SHAPE, weights=weights)
    torch.save(module.state_dict(), artifacts["state_dict"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit and the TorchScript ONNX exporter are deprecated
        try:
            try:
                scripted, artifacts["jit_via"] = torch.jit.script(module), "torch.jit.script"
            except Exception:  # script rejects some Python; trace records one run instead
                scripted, artifacts["jit_via"] = torch.jit.trace(module, example), "torch.jit.trace"
            artifacts["jit"] = path + ".jit.pt"
            torch.jit.save(torch.jit.freeze(scripted), artifacts["jit"])
        except Exception as e:
            problems["torch_jit"] = f"torch.jit failed: {type(e).__name__}: {e}"
        if importlib.util.find_spec("onnxruntime") is None:  # its quantization tool makes the int8 files too
            problems.update({engine: "onnxruntime is not installed (pip install onnxruntime)" for engine in ONNX_FILES})
        else:
            try:  # the dynamo exporter needs onnxscript; the TorchScript one works offline
                artifacts["onnx"] = path + ".onnx"
                torch.onnx.export(module, (example,), artifacts["onnx"], dynamo=False,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "n"}, "output": {0: "n"}})
                artifacts["onnx_via"] = "torch.onnx.export(dynamo=False)"
                artifacts["onnx_int8"] = path + ".int8.onnx"
                quantize_onnx(artifacts["onnx"], artifacts["onnx_int8"])
            except Exception as error:
                why = f"ONNX export or quantization failed: {type(error).__name__}: {error}"
                problems.update({engine: why for engine in ONNX_FILES})
        if importlib.util.find_spec("openvino") is None:
            problems.update({engine: "openvino is not installed (pip install openvino)"
                             for engine in ("openvino", "openvino_int8")})
    return artifacts, problems


def quantize_onnx(src: str, dst: str) -> None:
    """Quantize the ONNX model statically as ONNX Runtime's documentation does: QDQ nodes, int8 weights
    per output channel, 8-bit activations per tensor calibrated (MinMax) on CALIBRATION_IMAGES images.

    Activations are unsigned (U8S8): OpenVINO 2026.4 runs a QDQ model with signed activations (S8S8)
    in float32 (1.8 ms for PDModel's image against 0.6 ms U8S8), or fails to compile it under its
    default bf16 precision; ONNX Runtime's int8 times are the same either way (0.76 ms)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from exporter.compress import calibration_images
    images = calibration_images(None)

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self._images = iter(images)

        def get_next(self) -> dict | None:
            image = next(self._images, None)
            return None if image is None else {"input": image[None]}

    prepared = dst + ".prepared.onnx"  # shapes inferred, graph optimised: quantize_static's recommended input
    quant_pre_process(src, prepared)
    quantize_static(prepared, dst, Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(prepared)


def import_runtime(engine: str) -> None:
    """Import what the engine needs (the 'import' part of a cold start)."""
    import numpy  # noqa: F401  (every engine is fed numpy input)
    if engine.startswith("pdinfer"):
        import pdinfer  # noqa: F401
    elif engine in ("torch", "torch_jit"):
        import torch  # noqa: F401
        if engine == "torch":
            import exporter.models  # noqa: F401  (eager torch needs the Python model classes)
    elif engine.startswith("openvino"):
        import openvino  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def pdinfer_has_threads() -> bool:
    """Whether pdinfer has a thread setting (`pdinfer.set_num_threads`)."""
    import pdinfer
    return hasattr(pdinfer, "set_num_threads")


def torch_module(artifacts: Artifacts) -> Any:
    """The eager torch model (exporter.models class) with the saved weights, in eval mode."""
    import torch

    import exporter.models
    module = getattr(exporter.models, SEED_MODELS[artifacts["model"]])(NUM_CLASSES)
    module.load_state_dict(torch.load(artifacts["state_dict"], weights_only=True))
    return module.eval()


def load(engine: str, artifacts: Artifacts, threads: int, spinning: bool = False, compiled: bool = True) -> Runner:
    """Load the model for `engine` on `threads` threads; returns its run function.

    compiled=True has a pdinfer model compile (or load) its kernels before it returns; False leaves
    it as users get it, answering with NumPy while they compile in the background.

    spinning=False turns ONNX Runtime's spin-waiting pool threads off (allow_spinning=0), and
    pdinfer's helper thread's polling after a call (program.HELPER_SPINS = 0), so they do not burn
    the cores while another engine of the same process runs; torch's OpenMP threads are set by
    OMP_WAIT_POLICY before torch is imported (bench.py). OpenVINO keeps its defaults (it has no
    such setting); it gets the thread count and an explicit float32 precision hint.
    """
    if engine.startswith("pdinfer"):
        import pdinfer
        from pdinfer import program
        if not spinning and hasattr(program, "HELPER_SPINS"):
            program.HELPER_SPINS = 0
        if hasattr(pdinfer, "set_num_threads"):
            pdinfer.set_num_threads(threads)
        model = pdinfer.load(artifacts["pdw_" + COMPRESSED[engine] if engine in COMPRESSED else "pdw"])
        if compiled and hasattr(model, "compile"):
            model.compile()
        return model
    if engine in ("torch", "torch_jit"):
        import torch
        torch.set_num_threads(threads)  # process-wide
        # The seed models call nn.Softmax() without dim: torch warns on every call, which costs time.
        warnings.filterwarnings("ignore", message="Implicit dimension choice for softmax")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated (still measured)
            module = torch_module(artifacts) if engine == "torch" else torch.jit.load(artifacts["jit"])

        def run_torch(x: Any) -> Any:  # x: (N, C, H, W) float32 numpy
            with torch.inference_mode():
                return module(torch.from_numpy(x))
        return run_torch
    if engine.startswith("openvino"):
        import openvino
        # An explicit float32 precision: by default OpenVINO computes in bf16 on a CPU that has it.
        compiled = openvino.Core().compile_model(artifacts[ONNX_FILES[engine]], "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        return lambda x: request.infer({0: x})[0]
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        for key in ORT_NO_SPINNING:
            options.add_session_config_entry(key, "0")
    session = ort.InferenceSession(artifacts[ONNX_FILES[engine]], options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})[0]
