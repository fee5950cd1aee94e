"""Per-thread reuse of the calls' float32 arenas, as ONNX Runtime keeps an arena.

A call of a model runs its table in one float32 arena (pdinfer/program.py). Without reuse a call
allocates up to tens of MB, and glibc serves such blocks with fresh pages (mmap) whenever something
else in the process has reshaped its heap, so that every call pays page faults: a batch-64 call of
PDLightModel took about 14,000 (a third of its time) with ONNX Runtime running between calls
(mallopt's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD made them go away too: glibc's thresholds are the
cause). So a call `take`s its arena from its thread's free list and `give`s it back when it is done
with it, and a thread keeps at most CACHE_BYTES of free arrays.
"""

from __future__ import annotations

import threading

import numpy as np

CACHE_BYTES = 16 << 20  # free arrays one thread keeps at most (a batch of either seed model leaves 5-8 MB)
SLACK = 2  # an array is reused for a request of at least 1/SLACK of its size
MIN_BYTES = 256 << 10  # smaller arrays come from malloc directly and are not kept: it serves them from its heap


class _FreeArrays(threading.local):
    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []  # owners of their memory, most recently given last
        self.nbytes = 0


_free = _FreeArrays()


def take(floats: int) -> np.ndarray:
    """An uninitialised (floats,) float32 array: the start of the most recently given array of this
    thread that is big enough but not SLACK times too big, else a new array."""
    if 4 * floats >= MIN_BYTES:
        arrays = _free.arrays
        for i in range(len(arrays) - 1, -1, -1):
            if floats <= arrays[i].size <= SLACK * floats:
                owner = arrays.pop(i)
                _free.nbytes -= owner.nbytes
                return owner[:floats]
    return np.empty(floats, np.float32)


def give(array: np.ndarray) -> None:
    """Give back an array from `take` that the caller no longer uses (nor any view of it)."""
    owner = array if array.base is None else array.base
    if owner.nbytes < MIN_BYTES:
        return
    _free.arrays.append(owner)
    _free.nbytes += owner.nbytes
    while _free.nbytes > CACHE_BYTES:
        _free.nbytes -= _free.arrays.pop(0).nbytes


def cached_bytes() -> int:
    """The bytes of free arrays this thread keeps."""
    return _free.nbytes
