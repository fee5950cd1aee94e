"""The public Model: load once, call many times from any thread."""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
import weakref
from collections import OrderedDict
from types import ModuleType
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Union

import numpy as np

from . import background
from .errors import ConfigError, FormatError, InputError
from .graph import INPUT, Graph, load_graph
from .image import image_files, read_image
from .kernels import vectorized
from .layers.base import Layer
from .plan import Plan, build_plan, run_plan
from .quantize import Int8Reference
from .kernels.table import HAS_FUTEX
from .program import Helper

_threads = 1
_pool: "ThreadPoolExecutor | None" = None
_helper: Optional[Helper] = None
_pool_lock = threading.Lock()


def set_num_threads(n: int) -> None:
    """Use up to n threads per call, each taking a slice of the batch (default 1).

    Kernels release the GIL, so the slices run in parallel. A single image shares its big
    convolutions with a helper thread (program.Helper: Linux; it sleeps between calls); answers
    never depend on the setting.
    More threads than usable cores (the CPU affinity, where the OS has one) are capped to that
    number with a RuntimeWarning; anything but an integer >= 1 raises ConfigError.
    """
    global _threads, _pool, _helper
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ConfigError(f"number of threads must be an integer >= 1, got {n!r}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n > cores:
        warnings.warn(f"set_num_threads({n}): only {cores} cores are usable, using {cores} threads",
                      RuntimeWarning, stacklevel=2)
        n = cores
    # The old pool is dropped, not shut down: a call running now may still submit work to it.
    # Its threads exit once the last such call returns and the pool is garbage.
    with _pool_lock:
        if _helper is not None:
            _helper.close()
        _threads, _pool = n, (ThreadPoolExecutor(n, thread_name_prefix="pdinfer") if n > 1 else None)
        _helper = Helper() if n > 1 and HAS_FUTEX else None


def get_num_threads() -> int:
    """The number of threads one call may use (see set_num_threads)."""
    return _threads


class Model:
    """A loaded weight file. `model(x)` returns class probabilities (whatever the last layer gives)."""

    def __init__(self, graph: Graph) -> None:
        self.path = graph.path
        self.input_shape: tuple[int, ...] = graph.input_shape  # (C, H, W)
        self.classes: list[str] = list(graph.classes)
        self.output_shape: tuple[int, ...] = graph.output_shape[1:]  # per image
        self.data_sha256 = graph.data_sha256
        self.layer_names = [layer.name for layer in graph.layers]
        self.output_kind = {"Softmax": "probability", "Sigmoid": "score"}.get(graph.layers[-1].type, "logit")
        self._identity = _model_identity(graph)
        self._plan = _shared_plan(graph, self._identity)
        # Until the plan's kernels are compiled or loaded (by the background worker), calls run the
        # graph's layers with NumPy (an int8 model's: its integer reference's NumPy form); the
        # worker's callback then lets go of them.
        self._numpy_forward: Optional[Callable[[np.ndarray], np.ndarray]] = None
        if _cold_start() == "numpy" and self._plan.program is not None:
            preparation = background.prepare(self._plan, self.input_shape)
            if not preparation.done():
                self._numpy_forward = (Int8Reference(graph, numpy=True) if graph.activations is not None
                                       else functools.partial(_run_layers, graph.layers, kernels=vectorized))
                model = weakref.ref(self)
                preparation.on_done(lambda: _compiled(model()))
        # The checked graph, unfolded, is what `trace` runs. A resident model does not keep it
        # (it would double the model's memory); the first trace reads it again and keeps it.
        self._graph: Optional[Graph] = None
        self._graph_lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Model({self.path!r}, input_shape={self.input_shape}, "
                f"classes={self.classes}, layers={len(self.layer_names)})")

    def check_input(self, x: Any) -> tuple[np.ndarray, bool]:
        """Return x as a C-contiguous float32 (N, C, H, W) array and whether it was one image."""
        if not isinstance(x, np.ndarray):
            raise InputError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            hint = " (scale 8-bit images to [0, 1] first)" if x.dtype.kind in "ui" else ""
            raise InputError(f"input dtype must be floating point (float16/32/64), got {x.dtype}{hint}")
        single = x.ndim == 3
        expected = (*self.input_shape,)
        if x.ndim not in (3, 4) or x.shape[-3:] != expected or (x.ndim == 4 and x.shape[0] == 0):
            raise InputError(f"input shape must be {expected} or (N, {', '.join(map(str, expected))}) "
                             f"with N >= 1, got {x.shape}")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, rejected below
            x = np.ascontiguousarray(x, dtype=np.float32)  # also makes big-endian input native
        if not x.flags.writeable:  # kernels are compiled for writable arrays only
            x = x.copy()
        if not np.isfinite(x).all():
            raise InputError("input holds NaN or infinite values (or values beyond float32's range)")
        return (x[None] if single else x), single

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run on (C, H, W) or (N, C, H, W) float input; returns (*output,) or (N, *output) float32."""
        batch, single = self.check_input(x)
        numpy_forward, pool, helper = self._numpy_forward, _pool, _helper
        if numpy_forward is not None:  # the kernels are not ready yet (see `compiled`)
            out = numpy_forward(batch)
        elif pool is None or len(batch) == 1:  # one thread, or one image (big convolutions shared with the helper)
            out = run_plan(self._plan, batch, helper)
        else:  # a slice of the batch per thread; run_plan bounds each slice's memory: a few images a pass
            step = -(-len(batch) // max(1, min(len(batch), _threads)))
            chunks = [batch[i:i + step] for i in range(0, len(batch), step)]
            out = np.concatenate(list(pool.map(lambda chunk: run_plan(self._plan, chunk), chunks)))
        return out[0] if single else out

    @property
    def compiled(self) -> bool:
        """Whether calls run the compiled kernels. A model loaded while they are not yet compiled
        (or loaded from Numba's cache) in this process runs its layers with NumPy meanwhile
        (kernels/vectorized.py: the reference kernels' NumPy forms, the same answers to float32
        rounding; an int8 model's integer steps give the same answers bit for bit), as a
        background thread prepares them; see PDINFER_COLD_START in the README."""
        return self._numpy_forward is None

    def compile(self) -> None:
        """Compile (or load from Numba's disk cache) the kernels this model runs, now, in this thread;
        every later call runs them."""
        if self._plan.program is not None:
            background.prepare_now(self._plan, self.input_shape)
        self._numpy_forward = None

    def trace(self, x: np.ndarray) -> "OrderedDict[str, np.ndarray]":
        """Every layer's output (NCHW, the file's layer names and order) from the reference kernels.

        BatchNorm is not folded and nothing is fused: this is the specification the fast path and
        the Java port are checked against. The first trace reads the weight file again, which must
        still hold the model that was loaded, and keeps its unfolded weights for later traces.

        A file that computes in int8 (FORMAT.md 1.3) gives its integer reference's values instead
        (`quantize.Int8Reference.trace`), in the order of its steps: uint8 outputs of the int8
        steps, float32 of the others, the last one dequantized. A Conv2d or Linear fused with its
        activation gives the activation's value only, and a Dropout none.
        """
        batch, _ = self.check_input(x)
        graph = self.reference_graph()
        if graph.activations is not None:
            values = OrderedDict(Int8Reference(graph).trace(batch))
        else:
            from .kernels import reference  # Numba's (imported on first use: `import pdinfer` does not need it)
            values = OrderedDict([(INPUT, batch)])
            for layer in graph.layers:
                values[layer.name] = layer.forward(*(values[i] for i in layer.inputs), kernels=reference)
        del values[INPUT]
        return values

    def reference_graph(self) -> Graph:
        """The checked, unfolded graph of the loaded file (read again on first use, then kept)."""
        with self._graph_lock:
            if self._graph is None:
                graph = load_graph(self.path)
                if _model_identity(graph) != self._identity:
                    raise FormatError(f"{self.path}: the file no longer holds the model that was loaded "
                                      "(its weights, layers, input shape or classes changed)")
                self._graph = graph
            return self._graph


COLD_START = "PDINFER_COLD_START"  # "numpy" (the default) or "compile": how a model answers before its kernels are ready


def _cold_start() -> str:
    value = os.environ.get(COLD_START, "numpy")
    if value not in ("numpy", "compile"):
        raise ConfigError(f"{COLD_START} must be 'numpy' (answer with NumPy while the kernels compile) or "
                          f"'compile' (compile them first), got {value!r}")
    return value


def _compiled(model: Optional[Model]) -> None:
    """The worker's callback: the model's kernels are ready (unless the model is gone)."""
    if model is not None:
        model._numpy_forward = None


def _run_layers(layers: list[Layer], batch: np.ndarray, kernels: ModuleType) -> np.ndarray:
    """The graph's output on an NCHW float32 batch, its layers run in order with `kernels`, each
    value dropped after its last use."""
    last_use = {name: i for i, layer in enumerate(layers) for name in layer.inputs}
    values = {INPUT: batch}
    for i, layer in enumerate(layers):
        values[layer.name] = layer.forward(*(values[name] for name in layer.inputs), kernels=kernels)
        for name in layer.inputs:
            if last_use[name] == i:
                values.pop(name, None)
    return np.ascontiguousarray(values[layers[-1].name], dtype=np.float32)


def _model_identity(graph: Graph) -> bytes:
    """What makes two loads of a file the same model, as a SHA-256 digest (32 bytes, whatever the
    model's size): its data section's checksum, its layers with the type and shape of each tensor
    role in stored order (which bytes of the data each role reads), input shape and classes."""
    layers = [(layer.name, layer.type, layer.inputs, repr(layer.params),
               [(role, a.dtype.str, a.shape) for role, a in vars(layer).items() if isinstance(a, np.ndarray)])
              for layer in graph.layers]
    activations = sorted((name, float(q.scale), q.zero_point) for name, q in (graph.activations or {}).items())
    return hashlib.sha256(repr((graph.data_sha256, layers, graph.input_shape, graph.classes,
                                activations)).encode()).digest()


_plans_lock = threading.Lock()
_plans: "weakref.WeakValueDictionary[bytes, Plan]" = weakref.WeakValueDictionary()


def _shared_plan(graph: Graph, identity: bytes) -> Plan:
    """The packed plan of the model `identity`: one per process while any Model holds it, so models
    loaded from identical files (another name, another directory, or a reload) share its weights."""
    with _plans_lock:
        plan = _plans.get(identity)
    if plan is None:
        built = build_plan(graph)  # outside the lock: other models load meanwhile
        with _plans_lock:
            plan = _plans.setdefault(identity, built)
    return plan


def load(path: Union[str, os.PathLike]) -> Model:
    """Load and check a .pdw weight file (docs/FORMAT.md)."""
    return Model(load_graph(path))


_cache_lock = threading.Lock()
_cache: "OrderedDict[tuple, Model]" = OrderedDict()
CACHE_SIZE = 16


def _cached_load(path: Union[str, os.PathLike]) -> Model:
    """load(), remembered by (real path, size, mtime) for the last CACHE_SIZE files."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError as e:
        raise FormatError(f"{path}: cannot read weight file: {e.strerror}") from None
    key = (real, stat.st_size, stat.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    model = load(real)
    with _cache_lock:
        _cache[key] = model
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def run(weights: Union[str, os.PathLike, Model], image: Union[str, os.PathLike, np.ndarray], *,
        recursive: bool = False) -> Union[np.ndarray, dict[str, np.ndarray]]:
    """Diagnose `image` with `weights` (a path, cached after the first load, or a Model).

    image: a .npy/.png path, an (H, W) array for a one-channel model, (C, H, W), (N, C, H, W), or a
    directory: then every .png/.npy file in it (and, with `recursive`, in its subdirectories; else a
    warning names the subdirectories left out), in sorted order.
    Returns the model's output (model.output_kind): (classes,) for one image, (N, classes) for a
    batch; for a directory a dict {file path as str: that output}.
    """
    model = weights if isinstance(weights, Model) else _cached_load(weights)
    if isinstance(image, (str, os.PathLike)) and os.path.isdir(image):
        files, skipped = image_files(image, recursive)
        if skipped:
            warnings.warn(f"{image}: subdirectories not walked (pass recursive=True): "
                          + ", ".join(map(str, skipped)), UserWarning, stacklevel=2)
        if not files:
            raise InputError(f"{image}: no .png or .npy files in the directory")
        return {str(path): run(model, path) for path in files}
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image, model.input_shape[0])
    if isinstance(image, np.ndarray) and image.ndim == 2 and model.input_shape[0] == 1:
        image = image[None]
    return model(image)
