"""The one Numba decorator every kernel uses.

fastmath stays off (no reassociation, no FMA contraction), so a kernel's summation order is the
one its loops spell out; `cache=True` keeps compiled kernels on disk between processes (Numba falls
back to a per-user cache directory when the package directory is read-only); `nogil=True` lets
host threads run kernels concurrently.
"""

import numba

jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
