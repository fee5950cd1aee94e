"""This CPU's float32 FMA peak, measured: a Numba loop of independent vector FMAs, no memory traffic.

Twelve 16-lane accumulators each take one `vfma` per iteration (pdinfer.kernels.simd, the
intrinsics the fast kernels use): enough independent chains to cover the FMA latency on two FMA
ports, so the loop runs at the core's FMA throughput. One FMA is 2 FLOPs per lane. The loop runs
on one thread, and on `threads` Python threads at once (the kernel releases the GIL); the
multi-thread figure is the sum of the threads' rates. Each figure is the best of a few repeats,
as the machine may be shared.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from pdinfer._jit import jit
from pdinfer.kernels.simd import vfma, vload, vstore_part

LANES, CHAINS = 16, 12
FLOPS_PER_ITERATION = 2 * LANES * CHAINS


@jit
def _fma_loop(iterations: int, state: np.ndarray) -> None:
    """`iterations` rounds of CHAINS independent 16-lane FMAs; state (48,) float32: a, b, c in, sum out."""
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = vload(state, 0, 16)
    b = vload(state, 16, 16)
    c = vload(state, 32, 16)
    for _ in range(iterations):
        a0 = vfma(a0, b, c)
        a1 = vfma(a1, b, c)
        a2 = vfma(a2, b, c)
        a3 = vfma(a3, b, c)
        a4 = vfma(a4, b, c)
        a5 = vfma(a5, b, c)
        a6 = vfma(a6, b, c)
        a7 = vfma(a7, b, c)
        a8 = vfma(a8, b, c)
        a9 = vfma(a9, b, c)
        a10 = vfma(a10, b, c)
        a11 = vfma(a11, b, c)
    total = a0
    for a in (a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):  # every chain feeds the stored result
        total = vfma(total, b, a)
    vstore_part(state, 0, total, 16)


def _state() -> np.ndarray:
    """(48,) float32 with a = b = c = 0.999999: a -> a * b + c converges to 1e6, no overflow or denormals."""
    return np.full(3 * LANES, 0.999999, np.float32)


def _rate(iterations: int) -> float:
    """GFLOP/s of one _fma_loop call of `iterations` on this thread."""
    state = _state()
    start = time.perf_counter()
    _fma_loop(iterations, state)
    return iterations * FLOPS_PER_ITERATION / (time.perf_counter() - start) / 1e9


def _parallel_rate(iterations: int, threads: int) -> float:
    """Sum of the GFLOP/s of `threads` threads running _fma_loop at the same time."""
    rates = [0.0] * threads
    barrier = threading.Barrier(threads)

    def worker(index: int) -> None:
        barrier.wait()
        rates[index] = _rate(iterations)
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(rates)


def fma_peak(threads: tuple[int, ...] = (1, 2), seconds: float = 0.3, repeats: int = 3) -> dict[str, float]:
    """Best GFLOP/s over `repeats` runs of about `seconds` each, per thread count (keys "1", "2", ...)."""
    _fma_loop(1, _state())  # compile (or load from the cache)
    probe = 1_000_000  # a few milliseconds
    iterations = max(probe, int(seconds * 1e9 * _rate(probe) / FLOPS_PER_ITERATION))
    return {str(n): max(_parallel_rate(iterations, n) if n > 1 else _rate(iterations) for _ in range(repeats))
            for n in threads}
