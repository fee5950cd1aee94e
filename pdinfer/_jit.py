"""The one Numba decorator every kernel uses.

fastmath stays off (no reassociation, no FMA contraction), so a kernel's summation order is the
one its loops spell out; `cache=True` keeps compiled kernels on disk between processes (Numba falls
back to a per-user cache directory when the package directory is read-only, and if that is not
writable either, kernels are compiled in memory in every process); `nogil=True` lets host threads
run kernels concurrently.
"""

import numba

_OPTIONS = dict(nogil=True, fastmath=False, error_model="numpy")


def jit(func):
    """Compile `func` with Numba on first call, cached on disk when a cache directory is writable."""
    try:
        return numba.njit(cache=True, **_OPTIONS)(func)
    except RuntimeError:  # Numba: "cannot cache function ...: no locator available"
        return numba.njit(cache=False, **_OPTIONS)(func)
