"""Compile every kernel ahead of time by running a tiny model that uses every layer type."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Optional

import numpy as np

from .builder import every_layer_type
from .kernels import fast
from .model import load


def warmup(progress: Optional[Callable[[int, int], None]] = None) -> float:
    """Compile (or load from Numba's cache) every fast and reference kernel; returns seconds taken.

    progress(done, total) is called after each step (loading, the fast kernels, the reference kernels).
    """
    start = time.perf_counter()
    layers, classes = every_layer_type()
    report = progress or (lambda done, total: None)
    with tempfile.TemporaryDirectory() as tmp:
        model = load(layers.write(os.path.join(tmp, "warmup.pdw"), classes))
        report(1, 3)
        x = np.zeros((1, *model.input_shape), np.float32)
        model(x)
        fast.int8_to_float32(np.zeros((1, 1, 1), np.int8), np.ones((1, 1), np.float32))  # compressed weights
        fast.half_to_float32(np.zeros(1, np.uint16), False)
        report(2, 3)
        model.trace(x)
        report(3, 3)
    return time.perf_counter() - start
