"""The pdinfer benchmark suite: `python -m benchmarks` (docs/BENCHMARKS.md)."""
