"""The arena plan of pdinfer/program.py: values alive at the same time never share memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pdinfer.program import ALIGN, _first_fit

lifetimes = st.lists(st.tuples(st.integers(1, 5000), st.integers(-1, 40), st.integers(0, 20)), min_size=1, max_size=60)


@given(lifetimes)
def test_first_fit_never_overlaps_values_alive_together(drawn):
    """Every allocation gets an aligned offset; two whose lifetimes meet get disjoint ranges, all
    inside the arena."""
    allocations = {("value", i): [floats, first, first + length] for i, (floats, first, length) in enumerate(drawn)}
    offsets, arena = _first_fit(allocations)
    placed = [(offsets[key], offsets[key] + floats, first, last) for key, (floats, first, last) in allocations.items()]
    for i, (start, end, first, last) in enumerate(placed):
        assert start % ALIGN == 0 and end <= arena, (start, end, arena)
        for other_start, other_end, other_first, other_last in placed[:i]:
            if first <= other_last and other_first <= last:
                assert end <= other_start or other_end <= start, (placed[i], (other_start, other_end))


def test_first_fit_reuses_memory_of_values_no_longer_alive():
    """A value made after another's last use takes its place: the arena is not the sum of all."""
    offsets, arena = _first_fit({("a",): [100, 0, 1], ("b",): [100, 1, 2], ("c",): [100, 2, 3]})
    assert offsets[("c",)] == offsets[("a",)] == 0 and arena == 100 + 12 + 100  # b after a, aligned
