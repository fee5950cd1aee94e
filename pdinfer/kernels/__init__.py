"""Numba kernels: `reference` (plain loops, the numerical specification) and `fast` (NHWC)."""
