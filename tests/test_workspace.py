"""pdinfer.workspace: a released value's memory is reused only when nothing else refers to it."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer import plan, workspace

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"

BIG = (4, 64, 32, 32)  # 1 MiB of float32, above workspace.MIN_BYTES


@pytest.fixture(autouse=True)
def empty_free_list():
    workspace._free.arrays.clear()
    workspace._free.nbytes = 0
    yield
    workspace._free.arrays.clear()
    workspace._free.nbytes = 0


def test_an_unshared_array_is_reused():
    values = {"a": workspace.empty(BIG)}
    memory = values["a"].__array_interface__["data"][0]
    workspace.recycle(values.pop("a"))
    assert workspace.cached_bytes() == 4 * np.prod(BIG)
    again = workspace.empty(BIG)
    assert again.__array_interface__["data"][0] == memory and workspace.cached_bytes() == 0
    values = {"b": again}
    del again
    workspace.recycle(values.pop("b"))
    smaller = (2, 64, 32, 32)  # at least 1/SLACK of the free array: a view of it
    view = workspace.empty(smaller)
    assert view.shape == smaller and view.flags.c_contiguous and view.base is not None
    assert view.__array_interface__["data"][0] == memory
    tiny = (1, 64, 32, 32)  # below 1/SLACK: a new array
    values = {"c": view}
    del view
    workspace.recycle(values.pop("c"))
    assert workspace.empty(tiny).__array_interface__["data"][0] != memory


@pytest.mark.parametrize("case", ["named elsewhere", "a view alive", "owner named elsewhere", "float64",
                                  "small", "read-only"])
def test_a_shared_or_unfit_array_is_not_taken(case):
    keep = []
    if case == "float64":
        values = {"a": np.empty(BIG)}
    elif case == "small":
        values = {"a": np.empty((4, 4), np.float32)}
    else:
        values = {"a": np.empty(BIG, np.float32)}
    if case == "named elsewhere":
        keep.append(values["a"])
    elif case == "a view alive":
        keep.append(values["a"].reshape(-1))
    elif case == "owner named elsewhere":
        owner = np.empty(np.prod(BIG) * 2, np.float32)
        values["a"] = owner[:np.prod(BIG)].reshape(BIG)
        keep.append(owner)
        del owner
    elif case == "read-only":
        values["a"].flags.writeable = False
    workspace.recycle(values.pop("a"))
    assert workspace.cached_bytes() == 0


def test_free_arrays_belong_to_their_thread_and_are_capped():
    values = {"a": workspace.empty(BIG)}
    workspace.recycle(values.pop("a"))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(workspace.cached_bytes()))
    thread.start()
    thread.join()
    assert seen == [0] and workspace.cached_bytes() > 0
    for _ in range(2 * workspace.CACHE_BYTES // (4 * int(np.prod(BIG)))):
        values = {"a": np.empty(BIG, np.float32)}
        workspace.recycle(values.pop("a"))
    assert workspace.cached_bytes() <= workspace.CACHE_BYTES


def test_outputs_kept_by_the_caller_stay_intact():
    model = pdinfer.load(WEIGHTS / "pd_light.pdw")  # its values are big enough to be reused
    rng = np.random.default_rng(0)
    first, second = (rng.random((16, *model.input_shape), dtype=np.float32) for _ in range(2))
    kept = model(first)
    expected = kept.copy()
    for _ in range(3):
        model(second)
    assert workspace.cached_bytes() > 0  # the calls did reuse memory
    assert np.array_equal(kept, expected)
    assert np.array_equal(model(first), expected)


def test_calls_reuse_one_arena_and_step_by_step_only_batches_reuse_memory():
    """A plan run as a table takes its arena from the free list and gives it back, so repeated
    one-image calls keep the free list as it was; run step by step, one image uses fresh arrays."""
    model = pdinfer.load(WEIGHTS / "pd_light.pdw")
    image = np.random.default_rng(1).random(model.input_shape, dtype=np.float32)
    model(image)
    kept = workspace.cached_bytes()
    assert kept > 0  # the arena (about 1 MB for PDLightModel)
    for _ in range(5):
        model(image)
    assert workspace.cached_bytes() == kept
    stepwise = dataclasses.replace(model._plan, program=None)
    workspace._free.arrays.clear()
    workspace._free.nbytes = 0
    plan.run_plan(stepwise, image[None])
    assert workspace.cached_bytes() == 0  # one image, step by step: fresh arrays from malloc
    plan.run_plan(stepwise, np.stack([image, image]))
    assert workspace.cached_bytes() > 0