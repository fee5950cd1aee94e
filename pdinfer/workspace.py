"""Per-thread reuse of the float32 arrays a batch's steps write, as ONNX Runtime keeps an arena.

Every step of a pass writes a new value, and a batch runs many passes: without reuse a call
allocates tens of MB. glibc serves such blocks with fresh pages (mmap) whenever something else in
the process has reshaped its heap, and then every call pays page faults: a batch-64 call of
PDLightModel took about 14,000 (a third of its time) with ONNX Runtime running between calls
(mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD made them go away too: glibc's thresholds are the
cause). A plan run as one table (pdinfer/program.py) takes its call's whole arena from here, one
image or many. Run step by step, calls of one image do not use this (plan._call.reuse): their few
big arrays measured about 3% faster fresh from malloc than reused.
So a value released after its last reader goes back to its thread's free list, and the next pass
or call on that thread takes it again. Only an array that nothing else refers to is taken back
(its reference count says so, so a view keeps its base out), and a thread keeps at most
CACHE_BYTES of free arrays.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np

CACHE_BYTES = 16 << 20  # free arrays one thread keeps at most (a batch of either seed model leaves 5-8 MB)
SLACK = 2  # an array is reused for a value of at least 1/SLACK of its size
MIN_BYTES = 256 << 10  # smaller arrays come from malloc directly: it serves them from its heap


class _FreeArrays(threading.local):
    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []  # owners of their memory, most recently freed last
        self.nbytes = 0


_free = _FreeArrays()


def empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised C-contiguous float32 array of `shape`: a view of the most recently freed
    array of this thread that is big enough but not SLACK times too big, else a new array."""
    size = 1
    for n in shape:
        size *= n
    if 4 * size < MIN_BYTES:
        return np.empty(shape, np.float32)
    arrays = _free.arrays
    for i in range(len(arrays) - 1, -1, -1):
        if size <= arrays[i].size <= SLACK * size:
            owner = arrays.pop(i)
            _free.nbytes -= owner.nbytes
            return owner.reshape(-1)[:size].reshape(shape)
    return np.empty(shape, np.float32)


def _counts(value: np.ndarray) -> tuple[int, int]:
    """Reference counts of a value and of the array owning its memory (the value itself if it owns it)."""
    owner = value if value.base is None else value.base
    return sys.getrefcount(value), sys.getrefcount(owner)


def _as_recycle_sees(value: np.ndarray) -> tuple[int, int]:
    owner = value if value.base is None else value.base  # noqa: F841  (recycle holds it too)
    return _counts(value)


# The counts recycle sees when nothing but the call refers to a value, and nothing but the value to
# its owner: for a value owning its memory, and for a view.
_UNSHARED = {False: _as_recycle_sees(np.empty(4, np.float32)), True: _as_recycle_sees(np.empty(4, np.float32)[:2])}


def recycle(value: Any) -> None:
    """Give a value's memory back for reuse if nothing else refers to it (nor to the array owning
    its memory); call as recycle(values.pop(name))."""
    if not isinstance(value, np.ndarray) or value.nbytes < MIN_BYTES or value.dtype != np.float32 \
            or not value.flags.writeable:
        return
    owner = value if value.base is None else value.base
    if (not isinstance(owner, np.ndarray) or owner.base is not None or not owner.flags.c_contiguous
            or _counts(value) != _UNSHARED[owner is not value]):
        return
    _free.arrays.append(owner)
    _free.nbytes += owner.nbytes
    while _free.nbytes > CACHE_BYTES:
        _free.nbytes -= _free.arrays.pop(0).nbytes

def cached_bytes() -> int:
    """The bytes of free arrays this thread keeps."""
    return _free.nbytes
