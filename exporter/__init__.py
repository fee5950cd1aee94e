"""Export PyTorch models to pdinfer weight files (.pdw); the only package that imports torch.

Names are imported on first use, so `exporter.synthetic` (NumPy only) loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "export": ".convert", "to_layers": ".convert", "LayerGraph": ".convert",
    "UnsupportedModelError": ".convert",
    "PDModel": ".models", "PDLightModel": ".models", "PDLightSEModel": ".models",
    "InvertedResidualBlock": ".models",
    "randomize_batchnorm": ".models", "INPUT_SHAPE": ".models",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name], __name__), name)
