"""pdinfer: small-CNN inference on the CPU with NumPy and Numba (docs in README.md)."""

import importlib.util
import sys
from pathlib import Path

from .archive import score_archive
from .errors import (ConfigError, FormatError, InputError, MissingExtraError, ModelNotFoundError, PdinferError,
                     UnsupportedLayerError)
from .explain import occlusion_map
from .image import read_image
from .model import Model, get_num_threads, load, run, set_num_threads
from .onnx_import import UnsupportedOnnxError, convert_onnx
from .store import ModelStore

__version__ = "0.1.0"


def _exporter_from_checkout() -> None:
    """Make exporter/ beside this package `pdinfer.exporter` in a checkout, as an install does
    (pyproject.toml's package-dir); an installed pdinfer holds it as pdinfer/exporter."""
    source = Path(__file__).resolve().parent.parent / "exporter"
    if (Path(__file__).parent / "exporter").is_dir() or not (source / "convert.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.exporter", source / "__init__.py",
                                                  submodule_search_locations=[str(source)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[__name__], "exporter", module)


_exporter_from_checkout()

__all__ = ["ConfigError", "FormatError", "InputError", "MissingExtraError", "Model", "ModelNotFoundError",
           "ModelStore", "PdinferError", "UnsupportedLayerError", "UnsupportedOnnxError", "convert_onnx",
           "get_num_threads", "load", "occlusion_map", "read_image", "run", "score_archive", "set_num_threads",
           "__version__"]
