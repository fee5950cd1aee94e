"""pdinfer.workspace: a call's arena comes from its thread's free list and goes back to it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer import workspace

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

BIG = 1 << 18  # floats: 1 MiB, above workspace.MIN_BYTES


@pytest.fixture(autouse=True)
def empty_free_list():
    workspace._free.arrays.clear()
    workspace._free.nbytes = 0
    yield
    workspace._free.arrays.clear()
    workspace._free.nbytes = 0


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def test_a_given_array_is_taken_again_if_it_fits():
    first = workspace.take(BIG)
    assert first.shape == (BIG,) and first.dtype == np.float32
    memory = address(first)
    workspace.give(first)
    assert workspace.cached_bytes() == 4 * BIG
    again = workspace.take(BIG // 2 + 1)  # at least 1/SLACK of it: the same memory
    assert address(again) == memory and again.shape == (BIG // 2 + 1,) and workspace.cached_bytes() == 0
    workspace.give(again)  # a view gives back its whole owner
    assert workspace.cached_bytes() == 4 * BIG
    assert address(workspace.take(BIG // 4)) != memory  # SLACK times too big: a new array
    assert address(workspace.take(2 * BIG)) != memory  # too small


def test_small_arrays_are_not_kept():
    workspace.give(workspace.take(16))
    assert workspace.cached_bytes() == 0


def test_free_arrays_belong_to_their_thread_and_are_capped():
    workspace.give(workspace.take(BIG))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(workspace.cached_bytes()))
    thread.start()
    thread.join()
    assert seen == [0] and workspace.cached_bytes() > 0
    for _ in range(2 * workspace.CACHE_BYTES // (4 * BIG)):
        workspace.give(np.empty(BIG, np.float32))
    assert workspace.cached_bytes() <= workspace.CACHE_BYTES


def test_outputs_kept_by_the_caller_stay_intact():
    model = pdinfer.load(WEIGHTS / "pd_light.pdw")  # its arena is big enough to be reused
    rng = np.random.default_rng(0)
    first, second = (rng.random((16, *model.input_shape), dtype=np.float32) for _ in range(2))
    kept = model(first)
    expected = kept.copy()
    for _ in range(3):
        model(second)
    assert workspace.cached_bytes() > 0  # the calls did reuse memory
    assert np.array_equal(kept, expected)
    assert np.array_equal(model(first), expected)


def test_calls_reuse_one_arena():
    """A call takes its arena from the free list and gives it back, so repeated one-image calls
    keep the free list as it was."""
    model = pdinfer.load(WEIGHTS / "pd_light.pdw")
    image = np.random.default_rng(1).random(model.input_shape, dtype=np.float32)
    model(image)
    kept = workspace.cached_bytes()
    assert kept > 0  # the arena (about 1 MB for PDLightModel)
    for _ in range(5):
        model(image)
    assert workspace.cached_bytes() == kept
