"""pdinfer: small-CNN inference on the CPU with NumPy and Numba (docs in README.md)."""

from .errors import FormatError, InputError, MissingExtraError, PdinferError, UnsupportedLayerError
from .model import Model, get_num_threads, load, read_image, run, set_num_threads

__version__ = "0.1.0"

__all__ = ["FormatError", "InputError", "MissingExtraError", "Model", "PdinferError",
           "UnsupportedLayerError", "get_num_threads", "load", "read_image", "run",
           "set_num_threads", "__version__"]
