"""Occlusion sensitivity: which part of an image a model's answer depends on (docs/EXPLAIN.md).

Forward passes only: copies of the image, each with one patch set to a baseline value, run
through the model in batches, so it works for any model pdinfer runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np

from .errors import ConfigError, InputError
from .image import pillow, read_image
from .model import Model, _cached_load

if TYPE_CHECKING:
    from PIL import ImageDraw
    from PIL.Image import Image

Pair = Union[int, tuple[int, int]]

SCALE = 4  # screen pixels per image pixel in map_image
LEFT, TOP, BOTTOM, RIGHT = 44, 36, 34, 76  # margins of map_image's plot: axes, title, colour scale
BAR_WIDTH = 12  # the colour scale's width
OPACITY = 0.8  # of the colour over the image where |map| is largest
DIM = 0.7  # the image's brightest gray, so that the colours stand out on it
FOR, AGAINST, BACKGROUND = (230, 30, 30), (40, 90, 255), (255, 255, 255)  # colour of a drop, of a rise


def occlusion_map(weights: Union[str, os.PathLike, Model], image: Union[str, os.PathLike, np.ndarray], *,
                  patch: Pair = (6, 6), stride: Optional[Pair] = None, baseline: float = 0.0,
                  target: Union[int, str, None] = None, batch_size: int = 64,
                  progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """The (H, W) float32 drop in the target class's value when a patch around each pixel is occluded.

    weights: a path or a Model. image: one image, as a .png/.npy path or an (H, W), (C, H, W) or
    (1, C, H, W) array. Each patch (h, w; an int: square) of every channel is set to `baseline`, at
    steps of `stride` (default: half the patch) from the top left, plus one flush with the bottom
    and right edges; a pixel's value is the mean, over the patches covering it, of the target's
    value on the image minus its value with the patch occluded. Positive: the pixel's
    neighbourhood speaks for the class. target: a class index or name (default: the top class).
    The occluded copies run `batch_size` at a time; `progress(done, total)` follows each batch.
    """
    model = weights if isinstance(weights, Model) else _cached_load(weights)
    x = one_image(model, image)
    channels, height, width = model.input_shape
    ph, pw = _pair(patch, "patch")
    sh, sw = _pair(stride, "stride") if stride is not None else (max(1, ph // 2), max(1, pw // 2))
    if ph > height or pw > width:
        raise ConfigError(f"patch {ph}x{pw} is larger than the image ({height}x{width})")
    if not np.isfinite(baseline):
        raise ConfigError(f"baseline must be a finite number, got {baseline!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    scores = model(x).reshape(-1)
    cls = _class_index(model, target, scores)
    corners = [(r, c) for r in _starts(height, ph, sh) for c in _starts(width, pw, sw)]
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for start in range(0, len(corners), batch_size):
        part = corners[start:start + batch_size]
        copies = np.repeat(x[None], len(part), axis=0)
        for copy, (r, c) in zip(copies, part):
            copy[:, r:r + ph, c:c + pw] = baseline
        drops = scores[cls] - model(copies).reshape(len(part), -1)[:, cls].astype(np.float64)
        for drop, (r, c) in zip(drops, part):
            total[r:r + ph, c:c + pw] += drop
            count[r:r + ph, c:c + pw] += 1
        if progress is not None:
            progress(start + len(part), len(corners))
    return (total / count).astype(np.float32)


def one_image(model: Model, image: Union[str, os.PathLike, np.ndarray]) -> np.ndarray:
    """`image` as one checked float32 (C, H, W) array (a path is read as `pdinfer.run` reads it)."""
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, model.input_shape[0])
    if isinstance(image, np.ndarray) and image.ndim == 2 and model.input_shape[0] == 1:
        image = image[None]
    batch, _ = model.check_input(image)
    if len(batch) != 1:
        raise InputError(f"an occlusion map is of one image, got a batch of {len(batch)}")
    return batch[0]


def _pair(value: Pair, name: str) -> tuple[int, int]:
    """An int or a pair of ints >= 1 as (rows, columns)."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ConfigError(f"{name} must be an integer >= 1 or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one axis: every `stride` from 0, and the last one flush with the edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else starts + [size - patch]


def _class_index(model: Model, target: Union[int, str, None], scores: np.ndarray) -> int:
    """The index of `target` (a class name or index) in the model's output; None: the top class."""
    if target is None:
        return int(np.argmax(scores))
    if isinstance(target, str):
        if target not in model.classes:
            raise ConfigError(f"class {target!r} is not one of the model's classes: {', '.join(model.classes)}")
        return model.classes.index(target)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < len(scores):
        raise ConfigError(f"class index must be an integer in [0, {len(scores)}), got {target!r}")
    return int(target)


def map_image(image: np.ndarray, occlusion: np.ndarray, title: str = "") -> "Image":
    """The map drawn over the image as an RGB Pillow image (needs Pillow: the `image` extra).

    image: (C, H, W) or (H, W) values in [0, 1], shown in gray (the mean over channels), SCALE
    screen pixels per pixel, with phase (0-360 degrees, left to right) and amplitude (row 0 the
    highest: 1 at the top, 0 at the bottom) axes. occlusion: its (H, W) map, drawn as colour
    over it, red where occluding lowers the value, blue where it raises it, more opaque the
    larger |map|, with a colour scale on the right. The result is
    (LEFT + W*SCALE + RIGHT) x (TOP + H*SCALE + BOTTOM) pixels.
    """
    pil = pillow("drawing an occlusion map")
    from PIL import ImageDraw

    gray = np.asarray(image, np.float64)
    gray = gray.mean(axis=0) if gray.ndim == 3 else gray
    if gray.ndim != 2 or gray.shape != np.shape(occlusion):
        raise InputError(f"image {np.shape(image)} and map {np.shape(occlusion)} do not match")
    height, width = gray.shape
    extent = float(np.abs(occlusion).max())
    plot = _overlay(gray, np.asarray(occlusion, np.float64), extent)
    canvas = pil.new("RGB", (LEFT + width * SCALE + RIGHT, TOP + height * SCALE + BOTTOM), BACKGROUND)
    canvas.paste(pil.fromarray(plot.repeat(SCALE, 0).repeat(SCALE, 1)), (LEFT, TOP))
    draw = ImageDraw.Draw(canvas)
    right, bottom = LEFT + width * SCALE, TOP + height * SCALE
    draw.rectangle([LEFT - 1, TOP - 1, right, bottom], outline=0)
    _text(draw, (LEFT, 4), title, "la")
    for degrees in (0, 90, 180, 270, 360):
        x = LEFT + min(degrees * width * SCALE // 360, width * SCALE - 1)
        draw.line([x, bottom, x, bottom + 3], fill=0)
        _text(draw, (x, bottom + 4), str(degrees), "ma")
    _text(draw, ((LEFT + right) // 2, bottom + 18), "phase (degrees)", "ma")
    for amplitude in (1.0, 0.5, 0.0):
        y = TOP + min(round((1 - amplitude) * height * SCALE), height * SCALE - 1)
        draw.line([LEFT - 4, y, LEFT - 1, y], fill=0)
        _text(draw, (LEFT - 6, y), f"{amplitude:.1f}", "rm")
    _text(draw, (4, TOP - 16), "amplitude", "la")
    bar = np.linspace(extent, -extent, height * SCALE)[:, None].repeat(BAR_WIDTH, 1)
    bar_left = right + 10
    canvas.paste(pil.fromarray(_overlay(np.full(bar.shape, 0.5), bar, extent)), (bar_left, TOP))
    draw.rectangle([bar_left - 1, TOP - 1, bar_left + BAR_WIDTH, bottom], outline=0)
    for value, y in ((extent, TOP), (0.0, (TOP + bottom) // 2), (-extent, bottom)):
        _text(draw, (bar_left + BAR_WIDTH + 4, y), f"{value:+.3g}", "lm")
    return canvas


def _text(draw: "ImageDraw.ImageDraw", xy: tuple[int, int], text: str, anchor: str) -> None:
    """Black text at xy; anchor: horizontal l/m/r (left, middle, right), vertical a/m (top, middle).

    Placed from the text's measured box, which works with Pillow's bitmap font too (its own
    `anchor` needs FreeType)."""
    left, top, right, bottom = draw.textbbox((0, 0), text)
    x = xy[0] - {"l": 0, "m": (right - left) // 2, "r": right - left}[anchor[0]]
    y = xy[1] - {"a": top, "m": (bottom + top) // 2}[anchor[1]]
    draw.text((x - left, y), text, fill=0)


def _overlay(gray: np.ndarray, occlusion: np.ndarray, extent: float) -> np.ndarray:
    """uint8 RGB: gray levels in [0, 1] blended with FOR (map > 0) or AGAINST (map < 0) by |map|."""
    alpha = OPACITY * np.abs(occlusion) / extent if extent > 0 else np.zeros_like(occlusion)
    colour = np.where((occlusion >= 0)[..., None], FOR, AGAINST)
    base = np.clip(gray, 0.0, 1.0)[..., None] * (DIM * 255.0)
    return np.round(base * (1 - alpha[..., None]) + colour * alpha[..., None]).astype(np.uint8)
