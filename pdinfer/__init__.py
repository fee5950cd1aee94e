"""pdinfer: small-CNN inference on the CPU with NumPy and Numba (docs in README.md)."""

from .errors import ConfigError, FormatError, InputError, MissingExtraError, PdinferError, UnsupportedLayerError
from .image import read_image
from .model import Model, get_num_threads, load, run, set_num_threads
from .onnx_import import UnsupportedOnnxError, convert_onnx

__version__ = "0.1.0"

__all__ = ["ConfigError", "FormatError", "InputError", "MissingExtraError", "Model", "PdinferError",
           "UnsupportedLayerError", "UnsupportedOnnxError", "convert_onnx", "get_num_threads", "load", "read_image", "run",
           "set_num_threads", "__version__"]
