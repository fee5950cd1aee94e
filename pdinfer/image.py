"""Image files: .npy arrays and PNGs as model input, and the image files of a directory."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Union

import numpy as np

from .errors import InputError, MissingExtraError, PdinferError

IMAGE_SUFFIXES = (".png", ".npy")
_GRAY_16 = ("I;16", "I;16B", "I;16L", "I")  # Pillow's modes of a 16-bit grayscale PNG


def read_image(path: Union[str, os.PathLike], channels: int = 0) -> np.ndarray:
    """Read a .npy array as stored, or a PNG as float32 (C, H, W) in [0, 1] (needs Pillow).

    PNG: 8-bit values / 255, 16-bit grayscale / 65535; with `channels` 1 a colour PNG becomes
    grayscale (Pillow's "L" conversion), with 3 a grayscale one is repeated; alpha is dropped.
    A 16-bit colour PNG is refused: Pillow keeps only the top 8 bits of each of its channels.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.exists() and not path.is_file():  # a directory, or a pipe that would block
        raise InputError(f"{path}: cannot read image: not a regular file")
    try:
        if suffix == ".npy":  # mapped, then copied: a header claiming more data than the file holds fails
            return np.array(np.load(path, mmap_mode="r", allow_pickle=False))
        if suffix == ".png":
            return _read_png(path, channels)
    except PdinferError:
        raise
    except Exception as e:  # numpy and Pillow raise many types for a bad file
        reason = e.strerror if isinstance(e, OSError) and e.strerror else e  # not "[Errno 2] ...: 'path'"
        raise InputError(f"{path}: cannot read image: {reason}") from None
    raise InputError(f"{path}: unsupported image file type {suffix!r} (use .npy or .png)")


def _read_png(path: Path, channels: int) -> np.ndarray:
    """A PNG as float32 (C, H, W); see read_image."""
    with pillow("reading PNG files").open(path) as image:
        raw_mode = image.tile[0][3] if image.tile else ""  # the file's pixel layout, e.g. "RGB;16B"
        if image.mode not in _GRAY_16 and ";16" in str(raw_mode):
            raise InputError(f"{path}: 16-bit colour PNGs are not supported (Pillow reads only their "
                             "top 8 bits); save it as a 16-bit grayscale PNG or as .npy")
        image.load()
        if image.mode in _GRAY_16:
            pixels = np.asarray(image, dtype=np.float32) / np.float32(65535)
        else:
            mode = {1: "L", 3: "RGB"}.get(channels, "L" if image.mode in ("L", "LA", "1") else "RGB")
            if image.mode != mode:
                image = image.convert(mode)
            pixels = np.asarray(image, dtype=np.float32) / np.float32(255)
    if pixels.ndim == 2:  # (H, W) grayscale
        return np.repeat(pixels[None], 3, axis=0) if channels == 3 else pixels[None]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def pillow(purpose: str) -> ModuleType:
    """Pillow's PIL.Image module; MissingExtraError naming `purpose` (e.g. "reading PNG files") without it."""
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtraError(f"{purpose} needs Pillow: pip install 'pdinfer[image]'") from None
    return Image


def image_files(directory: Union[str, os.PathLike], recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """The .png/.npy files in `directory`, sorted by path, and the subdirectories not walked.

    Not walked: every subdirectory without `recursive`; with it, symbolic links to directories.
    """
    root = Path(directory)
    files: list[Path] = []
    skipped: list[Path] = []
    for parent, dirs, names in os.walk(root, onerror=_raise):
        here = Path(parent)
        files += (here / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES)
        skipped += (here / d for d in dirs if not recursive or (here / d).is_symlink())
        if not recursive:
            dirs.clear()
    return sorted(files), sorted(skipped)


def _raise(error: OSError) -> None:
    raise InputError(f"{error.filename}: cannot read directory: {error.strerror}")
