"""pdinfer: small-CNN inference on the CPU with NumPy and Numba (docs in README.md)."""

from .archive import score_archive
from .errors import ConfigError, FormatError, InputError, MissingExtraError, PdinferError, UnsupportedLayerError
from .explain import occlusion_map
from .image import read_image
from .model import Model, get_num_threads, load, run, set_num_threads

__version__ = "0.1.0"

__all__ = ["ConfigError", "FormatError", "InputError", "MissingExtraError", "Model", "PdinferError",
           "UnsupportedLayerError", "get_num_threads", "load", "occlusion_map", "read_image", "run",
           "score_archive", "set_num_threads", "__version__"]
