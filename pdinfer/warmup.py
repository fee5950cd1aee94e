"""Compile every kernel ahead of time by running a tiny model that uses every layer type."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from .builder import every_layer_type
from .model import load


def warmup() -> float:
    """Compile (or load from Numba's cache) every fast and reference kernel; returns seconds taken."""
    start = time.perf_counter()
    layers, classes = every_layer_type()
    with tempfile.TemporaryDirectory() as tmp:
        model = load(layers.write(os.path.join(tmp, "warmup.pdw"), classes))
        x = np.zeros((1, *model.input_shape), np.float32)
        model(x)
        model.trace(x)
    return time.perf_counter() - start
