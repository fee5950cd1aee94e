"""pdinfer: small-CNN inference on the CPU with NumPy and Numba (docs in README.md)."""

from .errors import FormatError, InputError, MissingExtraError, PdinferError, UnsupportedLayerError
from .model import Model, load, read_image, run

__version__ = "0.1.0"

__all__ = ["FormatError", "InputError", "MissingExtraError", "Model", "PdinferError",
           "UnsupportedLayerError", "load", "read_image", "run", "__version__"]
