"""The layer interface, ncnn style: read parameters, take weights, forward.

A layer object is built from one entry of a weight file's layer list. `load_param` checks and
keeps its parameters, `load_model` checks and keeps its tensors, `output_shape` checks its input
shapes, and `forward` runs the reference kernel (unfolded, NCHW, fixed summation order), or its
NumPy form given `kernels=vectorized` (a model's calls before its fast kernels are compiled).
Fast execution is planned separately (pdinfer/fusion.py, lowering.py, plan.py) from the same objects.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar, Optional

import numpy as np

from ..errors import FormatError, UnsupportedLayerError
from ..format import dequantize, is_int

Shape = tuple[int, ...]

# The largest value accepted for any kernel size, stride, dilation or padding entry.
MAX_WINDOW = 4096
# `describe(compact=True)` leaves out parameters the shapes show and parameters at a value that does nothing.
SHOWN_BY_SHAPES = ("in_channels", "out_channels", "in_features", "out_features", "num_features")
NO_OP_PARAMS = {"dilation": 1, "groups": 1, "padding": 0, "ceil_mode": False}


class Layer:
    """One layer of the graph; subclasses set `type`, `param_names` and implement the verbs."""

    type: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]] = ()
    num_inputs: ClassVar[int] = 1
    # True for layers whose `weight` may be stored compressed (F16, BF16, or I8 with a float32
    # `weight_scale` per output channel); every other tensor is F32 (docs/FORMAT.md, section 1.2).
    compressible: ClassVar[bool] = False
    weight_scale: Optional[np.ndarray] = None  # (O,) float32, with an I8 weight only
    # True when forward maps each value on its own, so it runs on any shape and memory layout
    # (the fast path then calls it on channels-last values as they are).
    elementwise: ClassVar[bool] = False
    variadic: ClassVar[bool] = False  # True: takes num_inputs or more inputs

    def __init__(self, name: str, inputs: list[str]) -> None:
        self.name = name
        self.inputs = inputs
        self.params: dict[str, Any] = {}

    # -- read parameters -------------------------------------------------------------------
    def load_param(self, params: dict[str, Any]) -> None:
        """Check and keep the layer's parameters (all of `param_names`, no others)."""
        missing = [p for p in self.param_names if p not in params]
        extra = [p for p in params if p not in self.param_names]
        if missing or extra:
            raise self.error(f"params must be exactly {list(self.param_names)}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unknown {extra}" if extra else ""))
        self.params = dict(params)

    def tensor_shapes(self) -> dict[str, Shape]:
        """The tensors this layer takes, role -> expected shape (known once params are read)."""
        return {}

    # -- take weights ----------------------------------------------------------------------
    def load_model(self, tensors: dict[str, np.ndarray]) -> None:
        """Keep the layer's tensors (already checked against `tensor_shapes` by the loader)."""
        for role, array in tensors.items():
            setattr(self, role, array)

    def float_weight(self) -> np.ndarray:
        """The `weight` as float32, dequantized from its stored type (format.dequantize): read-only,
        as a float32 tensor of the file is, so that the reference kernels compile once for both."""
        weight = dequantize(getattr(self, "weight"), self.weight_scale)
        weight.flags.writeable = False
        return weight

    # -- forward ---------------------------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        """The output shape for these input shapes, or a FormatError if they don't fit."""
        return in_shapes[0]

    def macs(self, out_shape: Shape) -> int:
        """Multiply-adds to compute an output of this shape (0 for layers without weights)."""
        return 0

    def forward(self, *xs: np.ndarray, kernels: ModuleType) -> np.ndarray:
        """Forward pass, PyTorch semantics, NCHW float32, with `kernels`: kernels.reference (the
        specification), or kernels.vectorized (its NumPy form)."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------
    def error(self, message: str) -> FormatError:
        return FormatError(f"layer {self.name!r} ({self.type}): {message}")

    def unsupported(self, message: str) -> UnsupportedLayerError:
        return UnsupportedLayerError(f"layer {self.name!r} ({self.type}): {message}")

    def int_param(self, params: dict[str, Any], key: str, low: int = 1, high: int = 1 << 24) -> int:
        value = params[key]
        if not is_int(value) or not low <= value <= high:
            raise self.error(f"param {key!r} must be an integer in [{low}, {high}], got {value!r}")
        return value

    def pair_param(self, params: dict[str, Any], key: str, low: int = 1) -> tuple[int, int]:
        value = params[key]
        if (not isinstance(value, list) or len(value) != 2
                or not all(is_int(v) and low <= v <= MAX_WINDOW for v in value)):
            raise self.error(f"param {key!r} must be [height, width] integers in "
                             f"[{low}, {MAX_WINDOW}], got {value!r}")
        return value[0], value[1]

    def padding_param(self, params: dict[str, Any]) -> tuple[int, int, int, int]:
        value = params["padding"]
        if (not isinstance(value, list) or len(value) != 4
                or not all(is_int(v) and 0 <= v <= MAX_WINDOW for v in value)):
            raise self.error(f"param 'padding' must be [top, left, bottom, right] integers in "
                             f"[0, {MAX_WINDOW}], got {value!r}")
        return value[0], value[1], value[2], value[3]

    def bool_param(self, params: dict[str, Any], key: str) -> bool:
        value = params[key]
        if not isinstance(value, bool):
            raise self.error(f"param {key!r} must be true or false, got {value!r}")
        return value

    def float_param(self, params: dict[str, Any], key: str, low: float = -1e30, high: float = 1e30,
                    low_open: bool = False) -> float:
        value = params[key]
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high
                or (low_open and value == low)):
            bound = f"({low}" if low_open else f"[{low}"
            raise self.error(f"param {key!r} must be a number in {bound}, {high}], got {value!r}")
        return float(value)

    def expect_rank(self, shape: Shape, rank: int, what: str = "input") -> None:
        if len(shape) != rank:
            raise self.error(f"{what} must have {rank} dimensions, got shape {shape}")

    def describe(self, compact: bool = False) -> str:
        """The parameters as the file gives them, `key=value` text for `pdinfer info`.

        Compact: a list of equal values as that value, and without the channel and feature counts
        (the shapes show them) and the parameters at their no-op value (NO_OP_PARAMS).
        """
        if not compact:
            return ", ".join(f"{k}={v}" for k, v in self.params.items())
        shown = []
        for key, value in self.params.items():
            if isinstance(value, list) and value and all(v == value[0] for v in value):
                value = value[0]
            if key not in SHOWN_BY_SHAPES and not (key in NO_OP_PARAMS and NO_OP_PARAMS[key] == value):
                shown.append(f"{key}={value}")
        return " ".join(shown)


def window_output_size(size: int, begin: int, end: int, kernel: int, stride: int, dilation: int,
                       ceil_mode: bool = False) -> int:
    """PyTorch's output length of a sliding window along one axis (conv and pooling)."""
    span = size + begin + end - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1  # floor division, as PyTorch's
    if ceil_mode and (out - 1) * stride >= size + begin:
        out -= 1
    return max(out, 0)
