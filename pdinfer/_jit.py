"""The Numba decorators every kernel uses: `jit` for functions, `cfunc` for the row kernels.

fastmath stays off (no reassociation, no FMA contraction), so a kernel's summation order is the
one its loops spell out; `cache=True` keeps compiled kernels on disk between processes (Numba falls
back to a per-user cache directory when the package directory is read-only, and if that is not
writable either, kernels are compiled in memory in every process); `nogil=True` lets host threads
run kernels concurrently.

Numba stamps a cache entry with its function's own source file, but a compiled function contains
the functions it calls (rows.py's kernels call fast.py's, which call simd.py's intrinsics): here
every entry is stamped instead with the code of what its function reaches (`reach_digest`), so
editing a kernel makes stale exactly the compiled functions that contain it, and only they compile
again.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
import types
from pathlib import Path
from typing import Callable, Optional

import numba
from numba.core import event, sigutils
from numba.core.caching import IndexDataCacheFile
from numba.core.ccallback import CFunc
from numba.core.dispatcher import Dispatcher
from numba.core.extending import _Intrinsic

_OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")
_SIMPLE = (int, float, bool, str, bytes, type(None))  # constants Numba freezes into a function that reads them


def reach_digest(func: Callable) -> str:
    """A hash of what Numba compiles into `func`: its code and, through its globals and closure,
    the code of every jitted function and pdinfer function it reaches, the whole source of every
    module of an intrinsic it reaches (its code generation), and the values of the constants it
    reads; not line numbers, so moving a function does not change it."""
    digest = hashlib.sha256(repr(_OPTIONS).encode())
    seen: set[int] = set()
    sources: set[str] = set()
    pending = [func]
    while pending:
        function = pending.pop()
        if id(function) in seen:
            continue
        seen.add(id(function))
        digest.update(f"{function.__module__}.{function.__qualname__}".encode())
        for value in _code_references(function, digest):
            if isinstance(value, Dispatcher):
                pending.append(value.py_func)
            elif isinstance(value, _Intrinsic):
                source = inspect.getfile(value._defn)
                if source not in sources:
                    sources.add(source)
                    digest.update(Path(source).read_bytes())
            elif isinstance(value, (types.FunctionType, type)) and (value.__module__ or "").startswith("pdinfer."):
                if isinstance(value, type):  # a parameter struct or a Numba type: its methods, its fields
                    digest.update(repr(getattr(value, "_fields", ())).encode())
                    pending += [v for v in vars(value).values() if isinstance(v, types.FunctionType)]
                else:
                    pending.append(value)
            elif isinstance(value, _SIMPLE) or (isinstance(value, tuple) and all(isinstance(v, _SIMPLE) for v in value)):
                digest.update(repr(value).encode())
    return digest.hexdigest()


def _code_references(function: types.FunctionType, digest: "hashlib._Hash") -> list:
    """Hash the code of `function` (and of the functions defined in it) into `digest`; return the
    values of the global names it uses and of its closure's cells."""
    values, codes = [], [function.__code__]
    while codes:
        code = codes.pop()
        digest.update(code.co_code + repr(code.co_names).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                codes.append(const)
            else:
                digest.update(repr(const).encode())
        values += [function.__globals__[name] for name in code.co_names if name in function.__globals__]
    return values + [cell.cell_contents for cell in function.__closure__ or ()]


class _ReachStampedFile(IndexDataCacheFile):
    """Numba's cache index file, stamped with reach_digest of its function (computed on first use,
    when every function it reaches is defined) instead of its source file's time and size."""

    function: Callable

    @property
    def _source_stamp(self) -> str:
        stamp = self.__dict__.get("_reach_stamp")
        if stamp is None:
            stamp = self.__dict__["_reach_stamp"] = reach_digest(self.function)
        return stamp


def _stamp(compiled, func: Callable):
    """Key a disk-cached function's entries to reach_digest(func) (see the module docstring)."""
    cache_file = getattr(compiled._cache, "_cache_file", None)  # absent: a NullCache (no caching)
    if cache_file is not None:
        cache_file.__class__ = _ReachStampedFile
        cache_file.function = func
    return compiled


def jit(func):
    """Compile `func` with Numba on first call, cached on disk when a cache directory is writable."""
    try:
        return _stamp(numba.njit(cache=True, **_OPTIONS)(func), func)
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
    numba.cfunc(signature, cache=True) does, stamped with reach_digest(func)."""
    options = {key: value for key, value in _OPTIONS.items() if key != "nogil"}  # a C function holds no GIL
    compiled = _AnnouncedCFunc(func, sigutils.normalize_signature(signature), locals={}, options=options)
    try:
        compiled.enable_caching()
    except RuntimeError:  # no locator, as in jit
        pass
    _stamp(compiled, func).compile()
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
