"""Compressed weight files: BatchNorm folding and F16 / BF16 / I8 weights (docs/FORMAT.md, 1.2).

NumPy only (no torch), so tests and tools can compress hand-made layer lists and float32 files:

    layers, tensors = compress(layers, tensors, "int8")   # FORMAT.md layer dicts, float32 tensors

    pdinfer compress weights/pd_light.pdw --weights int8 --activations int8 --out weights/pd_light.int8.pdw
    python -m exporter.compress weights/pd_light.pdw --weights int8 --activations int8 --out weights/pd_light.int8.pdw
    python -m exporter.compress weights/pd_light.pdw --accuracy   # held-out accuracy, every type
    python -m exporter.compress weights/pd_light.pdw --layer-errors   # int8 computation's error, layer by layer

Every compressed file has its BatchNorm2d layers folded into the Conv2d before them (as the fast
path of pdinfer/lowering.py folds them, in float64), so that the engine keeps only compressed weights;
then the `weight` of every Conv2d and Linear is stored compressed, everything else stays F32.
With `--activations int8` an int8 file also gets the quantization of every value (FORMAT.md 1.3),
calibrated on images (`--calibrate DIR` of .png/.npy, or by default 120 synthetic
ones): it then computes in int8 (docs/KERNELS.md, "Int8 computation").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pdinfer.errors import InputError, PdinferError
from pdinfer.format import check_overwrite, read_weights, storage, write_weights
from pdinfer.graph import ACTIVATIONS_KEY, INPUT
from pdinfer.image import image_files, read_image
from pdinfer.layers.batchnorm2d import BatchNorm2d
from pdinfer import quantize

# exporter option -> safetensors dtype of the compressed weights
WEIGHT_STORAGE = {"f32": "F32", "f16": "F16", "bf16": "BF16", "int8": "I8"}
COMPRESSIBLE = ("Conv2d", "Linear")  # the layer types whose weight is compressed
INT8_LEVELS = 127  # symmetric: q in [-127, 127], zero point 0
CALIBRATION_PER_CLASS, CALIBRATION_SEED = 20, 1  # the default calibration images: exporter.synthetic.generate(20, 1), 120 images
CALIBRATION_BATCH = 8  # images traced at a time


def to_f16(weight: np.ndarray) -> np.ndarray:
    """float32 -> float16, round to nearest even (IEEE). weight: any shape; returns float16."""
    with np.errstate(over="ignore"):
        half = weight.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError(f"a weight of magnitude {float(np.abs(weight).max()):.4g} overflows float16")
    return half


def to_bf16(weight: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even. weight: any shape."""
    bits = np.ascontiguousarray(weight, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    if ((rounded & 0x7F80) == 0x7F80).any():
        raise ValueError(f"a weight of magnitude {float(np.abs(weight).max()):.4g} overflows bfloat16")
    return rounded


def to_int8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8: scale = max|w| / 127 (float32; 1 for an all-zero
    channel), q = clamp(round_half_even(w / scale), -127, 127).

    weight: (O, ...) float32; returns q (O, ...) int8 and scale (O,) float32
    """
    flat = weight.reshape(weight.shape[0], -1).astype(np.float64)
    largest = np.abs(flat).max(axis=1)
    scale = np.where(largest > 0, largest / INT8_LEVELS, 1.0).astype(np.float32)
    q = np.clip(np.rint(flat / scale.astype(np.float64)[:, None]), -INT8_LEVELS, INT8_LEVELS)
    return q.astype(np.int8).reshape(weight.shape), scale


def fold_batchnorm(layers: Sequence[Mapping[str, Any]],
                   tensors: Mapping[str, np.ndarray]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Fold every BatchNorm2d whose input is a Conv2d read by nothing else into that Conv2d (which
    gets a bias); later layers read the Conv2d instead. Other BatchNorm2d layers are kept."""
    readers: dict[str, int] = {}
    for layer in layers:
        for name in layer["inputs"]:
            readers[name] = readers.get(name, 0) + 1
    by_name = {layer["name"]: dict(layer) for layer in layers}
    out_tensors = dict(tensors)
    renamed: dict[str, str] = {}
    kept: list[dict[str, Any]] = []
    for layer in layers:
        conv = by_name.get(layer["inputs"][0]) if layer["inputs"] else None
        if (layer["type"] != "BatchNorm2d" or conv is None or conv["type"] != "Conv2d"
                or readers[conv["name"]] != 1):
            kept.append(by_name[layer["name"]])
            continue
        bn = BatchNorm2d(layer["name"], layer["inputs"])
        bn.load_param(layer["params"])
        bn.load_model({role: np.asarray(tensors[t], np.float32) for role, t in layer["tensors"].items()})
        scale, shift = bn.scale_shift()
        weight_name = conv["tensors"]["weight"]
        bias = tensors[conv["tensors"]["bias"]].astype(np.float64) if conv["params"]["bias"] else 0.0
        out_tensors[weight_name] = (tensors[weight_name].astype(np.float64)
                                    * scale[:, None, None, None]).astype(np.float32)
        bias_name = conv["tensors"].get("bias", f"{conv['name']}.bias")
        out_tensors[bias_name] = (bias * scale + shift).astype(np.float32)
        conv["params"] = {**conv["params"], "bias": True}
        conv["tensors"] = {"weight": weight_name, "bias": bias_name}
        for tensor in layer["tensors"].values():
            del out_tensors[tensor]
        renamed[layer["name"]] = conv["name"]
    for layer in kept:
        layer["inputs"] = [renamed.get(name, name) for name in layer["inputs"]]
    return kept, out_tensors


def compress(layers: Sequence[Mapping[str, Any]], tensors: Mapping[str, np.ndarray],
             weights: str) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The layers and tensors of a `weights` file ("f32", "f16", "bf16" or "int8"): for a compressed
    type, BatchNorm folded, then each Conv2d and Linear weight converted (int8: its weight_scale
    added as the role after `weight`)."""
    if weights not in WEIGHT_STORAGE:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_STORAGE)}, got {weights!r}")
    if weights == "f32":
        return [dict(layer) for layer in layers], dict(tensors)
    layers, tensors = fold_batchnorm(layers, tensors)
    for layer in layers:
        if layer["type"] not in COMPRESSIBLE:
            continue
        name = layer["tensors"]["weight"]
        weight = np.asarray(tensors[name], np.float32)
        if weights == "int8":
            tensors[name], tensors[f"{name}_scale"] = to_int8(weight)
            roles = {"weight": name, "weight_scale": f"{name}_scale"}
            layer["tensors"] = {**roles, **{r: t for r, t in layer["tensors"].items() if r != "weight"}}
        else:
            tensors[name] = to_f16(weight) if weights == "f16" else to_bf16(weight)
    return layers, tensors


def metadata(weights: str) -> dict[str, str]:
    """The metadata keys a compressed file adds (none for f32): the storage of its Conv2d and
    Linear weights, and that its BatchNorm2d layers were folded into their convolutions."""
    return {} if weights == "f32" else {"weights": weights, "batchnorm_folded": "true"}


def compress_file(src: str | os.PathLike, dst: str | os.PathLike, weights: str,
                  calibration: np.ndarray | None = None) -> None:
    """Write the float32 weight file `src` again as a `weights` file `dst` (no torch needed); with
    `calibration` images (N, C, H, W) float32, an int8 file that computes in int8."""
    container, layers = read_weights(src)
    if any(storage(t) != "F32" for t in container.tensors.values()):
        raise ValueError(f"{src} is already compressed (compress its float32 original)")
    if calibration is not None and weights != "int8":
        raise ValueError("int8 activations need int8 weights (--weights int8)")
    layers, tensors = compress(layers, {name: np.array(t) for name, t in container.tensors.items()}, weights)
    meta = container.metadata
    producer = f"{meta.get('producer', 'unknown')}; exporter.compress --weights {weights}"
    extra = metadata(weights)
    if calibration is not None:
        with tempfile.TemporaryDirectory() as tmp:  # the int8-weight model, traced on the images
            weights_only = Path(tmp) / "weights.pdw"
            write_weights(weights_only, layers, tensors, input_shape=json.loads(meta["input_shape"]),
                          classes=json.loads(meta["classes"]))
            extra[ACTIVATIONS_KEY] = quantize.encode(calibrate(weights_only, calibration))
        producer += " --activations int8"
    write_weights(dst, layers, tensors, input_shape=json.loads(meta["input_shape"]),
                  classes=json.loads(meta["classes"]), producer=producer, metadata=extra)


def calibrate(path: str | os.PathLike, images: np.ndarray) -> dict[str, quantize.Quantization]:
    """The quantization of every value of the model in `path` (its input and every layer's output)
    from its range on `images` (N, C, H, W), traced by the reference kernels."""
    import pdinfer
    model = pdinfer.load(path)

    def traces():
        for i in range(0, len(images), CALIBRATION_BATCH):
            batch = images[i:i + CALIBRATION_BATCH]
            yield {INPUT: batch, **model.trace(batch)}
    return quantize.calibrate(traces())


def calibration_images(directory: str | os.PathLike | None) -> np.ndarray:
    """The .png/.npy images of `directory` (each (C, H, W), or (N, C, H, W) for an .npy batch) as
    one float32 batch; without a directory, the default synthetic calibration set."""
    if directory is None:
        from .synthetic import generate
        return generate(CALIBRATION_PER_CLASS, CALIBRATION_SEED)[0]
    files, _ = image_files(directory)
    if not files:
        raise InputError(f"{directory}: no .png or .npy calibration images in it")
    arrays = [read_image(f) for f in files]
    try:
        return np.concatenate([a[None] if a.ndim == 3 else a for a in arrays]).astype(np.float32)
    except ValueError:
        raise InputError(f"{directory}: the calibration images do not all have one (C, H, W) shape") from None


def heldout_accuracy(src: str | os.PathLike) -> list[dict[str, Any]]:
    """Top-1 accuracy on the held-out set of exporter.train (600 images) of the float32 file `src`
    and of its f16, bf16 and int8 versions and its int8-computing one (default calibration), their
    top-1 agreement with it and their largest output difference from it; one row per version."""
    import pdinfer

    from .synthetic import generate
    from .train import HELDOUT_SEED, N_HELDOUT

    x, labels = generate(N_HELDOUT, HELDOUT_SEED)
    reference = pdinfer.load(src)(x)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for weights, computed in [*((w, "f32") for w in WEIGHT_STORAGE), ("int8", "int8")]:
            path = Path(src) if weights == "f32" else Path(tmp) / f"{weights}.{computed}.pdw"
            if weights != "f32":
                compress_file(src, path, weights, calibration_images(None) if computed == "int8" else None)
            out = pdinfer.load(path)(x)
            rows.append({"weights": weights, "computed": computed, "bytes": path.stat().st_size,
                         "accuracy": float((out.argmax(1) == labels).mean()),
                         "agreement": float((out.argmax(1) == reference.argmax(1)).mean()),
                         "max_abs_diff": float(np.abs(out - reference).max())})
    return rows


def layer_errors(src: str | os.PathLike, images: int = 60) -> list[dict[str, Any]]:
    """How far int8 computation (the int8-computing version of the float32 file `src`, default
    calibration) is from float32, value by value, on the first `images` held-out images: each int8
    step's output dequantized against the same value of the float32 model with its BatchNorm folded
    (both traced by the reference kernels): SQNR in dB (10 log10 of the float value's energy over
    the error's) and cosine similarity."""
    import pdinfer
    from pdinfer.graph import load_graph
    from pdinfer.quantize import Int8Reference

    from .synthetic import generate
    from .train import HELDOUT_SEED, N_HELDOUT

    x = generate(N_HELDOUT, HELDOUT_SEED)[0][:images]
    container, layers = read_weights(src)
    meta = container.metadata
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.pdw"
        quantized = Path(tmp) / "int8.pdw"
        layers, tensors = fold_batchnorm(layers, {name: np.array(t) for name, t in container.tensors.items()})
        write_weights(folded, layers, tensors, input_shape=json.loads(meta["input_shape"]),
                      classes=json.loads(meta["classes"]))
        compress_file(src, quantized, "int8", calibration_images(None))
        reference = pdinfer.load(folded).trace(x)
        graph = load_graph(quantized)
        traced = Int8Reference(graph).trace(x)
    rows = []
    for step in Int8Reference(graph).steps:
        value = traced[step.output]
        if step.output not in reference or step.out is None:
            continue
        expected = reference[step.output].astype(np.float64).reshape(len(x), -1)
        got = (np.float64(step.out.scale) * (value.astype(np.float64) - step.out.zero_point)).reshape(len(x), -1)
        error = np.sum((expected - got) ** 2)
        cosine = np.sum(expected * got) / np.sqrt(np.sum(expected ** 2) * np.sum(got ** 2))
        rows.append({"value": step.output, "kind": step.kind,
                     "sqnr_db": float(10 * np.log10(np.sum(expected ** 2) / error)) if error > 0 else float("inf"),
                     "cosine": float(cosine)})
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m exporter.compress SRC.pdw --weights int8 [--activations int8] --out DST.pdw`, or
    `--accuracy`, or `--layer-errors`."""
    parser = argparse.ArgumentParser(prog=f"python -m {__package__}.compress",
                                     description="rewrite a float32 weight file with compressed weights")
    parser.add_argument("src", metavar="SRC.pdw", help="a float32 weight file")
    parser.add_argument("--weights", choices=[w for w in WEIGHT_STORAGE if w != "f32"])
    parser.add_argument("--activations", choices=["int8"],
                        help="compute in int8 too: calibrate the quantization of every value (needs --weights int8)")
    parser.add_argument("--calibrate", metavar="DIR",
                        help="the .png/.npy calibration images (default: 120 synthetic images, exporter.synthetic)")
    parser.add_argument("--out", metavar="DST.pdw", help="where to write the compressed file")
    parser.add_argument("--force", action="store_true", help="overwrite DST.pdw if it exists")
    parser.add_argument("--accuracy", action="store_true",
                        help="print the held-out accuracy of every storage type (a Markdown table)")
    parser.add_argument("--layer-errors", action="store_true",
                        help="print int8 computation's error against float32, value by value (a Markdown table)")
    args = parser.parse_args(argv)
    if args.accuracy:
        print("| weights | computed in | file size (bytes) | held-out top-1 accuracy | top-1 agreement with f32 "
              "| max abs output difference |")
        print("| --- | --- | --- | --- | --- | --- |")
        for r in heldout_accuracy(args.src):
            print(f"| {r['weights']} | {r['computed']} | {r['bytes']} | {r['accuracy'] * 100:.1f} % "
                  f"| {r['agreement'] * 100:.2f} % | {r['max_abs_diff']:.2e} |")
        return 0
    if args.layer_errors:
        print("| value | int8 step | SQNR (dB) | cosine |")
        print("| --- | --- | --- | --- |")
        for r in layer_errors(args.src):
            print(f"| `{r['value']}` | {r['kind']} | {r['sqnr_db']:.1f} | {r['cosine']:.5f} |")
        return 0
    if not (args.weights and args.out):
        parser.error("give --weights and --out (or --accuracy, or --layer-errors)")
    try:
        check_overwrite(args.out, args.force)
        calibration = calibration_images(args.calibrate) if args.activations else None
        compress_file(args.src, args.out, args.weights, calibration)
    except (ValueError, PdinferError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({args.weights} weights{', int8 activations' if args.activations else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
