"""The Numba decorators every kernel uses: `jit` for functions, `cfunc` for the row kernels.

fastmath stays off (no reassociation, no FMA contraction), so a kernel's summation order is the
one its loops spell out; `cache=True` keeps compiled kernels on disk between processes (Numba falls
back to a per-user cache directory when the package directory is read-only, and if that is not
writable either, kernels are compiled in memory in every process); `nogil=True` lets host threads
run kernels concurrently.

Numba stamps a cache entry with its function's own source file, but a compiled function contains
the functions it calls (fast.py's kernels call simd.py's intrinsics; rows.py's kernels call
fast.py's): here every entry is stamped with all of pdinfer/kernels/ instead, so editing any kernel
source makes the cached kernels stale and they compile again.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Callable, Optional

import numba
from numba.core import event, sigutils
from numba.core.ccallback import CFunc

_OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")


def _kernel_sources_stamp() -> str:
    """A hash of every source file of pdinfer/kernels/ that Numba compiles (not vectorized.py's NumPy)."""
    digest = hashlib.sha256()
    for path in sorted((Path(__file__).parent / "kernels").glob("*.py")):
        if path.name == "vectorized.py":
            continue
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


_STAMP = _kernel_sources_stamp()


def _stamp(compiled):
    """Key a disk-cached function's entries to the kernel sources (see the module docstring)."""
    cache_file = getattr(compiled._cache, "_cache_file", None)  # absent: a NullCache (no caching)
    if cache_file is not None:
        cache_file._source_stamp = _STAMP
    return compiled


def jit(func):
    """Compile `func` with Numba on first call, cached on disk when a cache directory is writable."""
    try:
        return _stamp(numba.njit(cache=True, **_OPTIONS)(func))
    except RuntimeError:  # Numba: "cannot cache function ...: no locator available"
        return numba.njit(cache=False, **_OPTIONS)(func)


class _AnnouncedCFunc(CFunc):
    """A numba CFunc that announces a compilation (not a load from the cache) as Numba announces a
    function it compiles, so that CompileWatch sees row kernels too."""

    def _compile_uncached(self):
        data = dict(dispatcher=self, args=self._sig.args, return_type=self._sig.return_type)
        with event.trigger_event("numba:compile", data=data):
            return super()._compile_uncached()


def cfunc(signature, func) -> CFunc:
    """Compile (or load from the disk cache) `func` now as a C function of `signature`, as
    numba.cfunc(signature, cache=True) does, with the kernel sources' stamp."""
    options = {key: value for key, value in _OPTIONS.items() if key != "nogil"}  # a C function holds no GIL
    compiled = _AnnouncedCFunc(func, sigutils.normalize_signature(signature), locals={}, options=options)
    try:
        compiled.enable_caching()
    except RuntimeError:  # no locator, as in jit
        pass
    _stamp(compiled).compile()
    return compiled


class CompileWatch(event.Listener):
    """While entered, records the functions Numba compiles in this process (not those it loads
    from its disk cache), or only on `thread` if given, and calls `on_first()` as the first
    compilation starts.

        with CompileWatch() as watch:
            model(x)
        watch.compiled   # ['conv_row', ...]
    """

    def __init__(self, on_first: Optional[Callable[[], None]] = None,
                 thread: Optional[threading.Thread] = None) -> None:
        self.compiled: list[str] = []
        self._on_first = on_first
        self._thread = thread  # only compilations on this thread, if given

    def on_start(self, event: event.Event) -> None:
        if self._thread is not None and threading.current_thread() is not self._thread:
            return
        if not self.compiled and self._on_first is not None:
            self._on_first()
        function = getattr(event.data["dispatcher"], "py_func", None) or event.data["dispatcher"].__wrapped__
        self.compiled.append(function.__qualname__)

    def on_end(self, event: event.Event) -> None:
        pass

    def __enter__(self) -> "CompileWatch":
        event.register("numba:compile", self)
        return self

    def __exit__(self, *exc: object) -> None:
        event.unregister("numba:compile", self)
