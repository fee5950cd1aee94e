"""pdinfer's exception types: every error pdinfer raises on purpose is a PdinferError."""


class PdinferError(Exception):
    """Base class of every error pdinfer raises on purpose."""


class FormatError(PdinferError):
    """A weight or golden file is malformed, truncated, corrupted or inconsistent."""


class UnsupportedLayerError(FormatError):
    """A weight file names a layer type or parameter value pdinfer does not implement."""


class InputError(PdinferError, ValueError):
    """An input image has the wrong type, dtype, shape, or holds NaN or infinity."""


class MissingExtraError(PdinferError, ImportError):
    """An optional dependency (an extra such as `pdinfer[image]`) is not installed."""


class ConfigError(PdinferError, ValueError):
    """A setting, such as the number of threads, has a bad value."""


class ModelNotFoundError(PdinferError, KeyError):
    """A ModelStore has no weight file of that name."""

    def __str__(self) -> str:  # the message, not KeyError's repr of it
        return str(self.args[0]) if self.args else ""
