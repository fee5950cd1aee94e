"""Many threads: one model, several models and pdinfer.run's path cache, called at once from
8 threads, give exactly (bit for bit) the answers of serial calls.

The models take 1 x 60 x 120 images (the seed models' input size), so kernel calls last long
enough, with the GIL released, for threads to overlap inside them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import numpy as np
import pytest

import pdinfer
from pdinfer.builder import LayerList, conv2d_params
from pdinfer.model import _cache
from small_model import CLASSES, small_layers, small_tensors, write_small_model

THREADS = 8
CALLS = 200  # per thread; tests/test_soak.py repeats this with 1000
PD_SHAPE = (1, 60, 120)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# set_num_threads caps a count above CORES with a RuntimeWarning: the tests ask for what they get.


def run_threads(worker: Callable[[int], None], threads: int = THREADS, timeout: float = 300) -> None:
    """Run worker(0..threads-1) in threads started together; re-raise the first failure."""
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait()
            worker(index)
        except BaseException as e:  # reported in the main thread
            failures.append(e)

    pool = [threading.Thread(target=body, args=(i,), name=f"worker-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    deadline = time.monotonic() + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in pool), f"threads still running after {timeout} s (deadlock?)"
    if failures:
        raise failures[0]


def batches(count: int, seed: int) -> list[np.ndarray]:
    """`count` batches of 1 to 4 random PD-sized images, and a single image every fourth."""
    rng = np.random.default_rng(seed)
    out = [rng.random((1 + i % 4, *PD_SHAPE), dtype=np.float32) for i in range(count)]
    return [b[0] if i % 4 == 3 else b for i, b in enumerate(out)]


def write_pd_model(path, seed: int):
    return write_small_model(path, tensors=small_tensors(seed), input_shape=PD_SHAPE)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("concurrency")


@pytest.fixture(scope="module")
def model(work):
    return pdinfer.load(write_pd_model(work / "pd.pdw", seed=0))


@pytest.fixture
def restore_threads():
    yield
    pdinfer.set_num_threads(1)


def check_one_model(model: pdinfer.Model, calls: int) -> None:
    """THREADS threads x `calls` calls on one model equal the serial answers."""
    inputs = batches(16, seed=1)
    expected = [model(x) for x in inputs]

    def worker(index: int) -> None:
        for call in range(calls):
            k = (index * 7 + call) % len(inputs)
            out = model(inputs[k])
            assert np.array_equal(out, expected[k]), f"thread {index}, call {call}, batch {k}"

    run_threads(worker)


def test_one_model_many_threads(model):
    check_one_model(model, CALLS)


def test_one_model_many_threads_with_a_pool_per_call(model, restore_threads):
    pdinfer.set_num_threads(min(3, CORES))
    check_one_model(model, CALLS // 4)


def test_single_images_sharing_their_convolutions_with_the_helper(restore_threads, work):
    """A big direct convolution (5x5: not Winograd) shares a one-image call with the helper thread
    (program.SHARE_MACS); the answers are those of one thread, under 8 host threads."""
    layers = LayerList(PD_SHAPE, seed=4)
    layers.add("Conv2d", **conv2d_params(1, 16, 3, padding=1))
    layers.add("ReLU")
    layers.add("Conv2d", **conv2d_params(16, 32, 5, padding=2))
    layers.add("GlobalAvgPool", keepdim=False)
    pd_model = pdinfer.load(layers.write(work / "split.pdw"))
    assert pd_model._plan.program.table(1).shares
    inputs = batches(8, seed=3)
    expected = [pd_model(x) for x in inputs]  # one thread: nothing shared
    pdinfer.set_num_threads(2)

    def worker(index: int) -> None:
        for call in range(CALLS // 8):
            k = (index * 5 + call) % len(inputs)
            assert np.array_equal(pd_model(inputs[k]), expected[k]), f"thread {index}, call {call}, batch {k}"

    run_threads(worker)


def test_changing_the_thread_count_while_calls_run(model, restore_threads):
    rng = np.random.default_rng(2)
    inputs = [rng.random((n, *PD_SHAPE), dtype=np.float32) for n in (3, 6, 9, 12)]
    expected = [model(x) for x in inputs]
    stop = threading.Event()

    def worker(index: int) -> None:
        if index == 0:  # the switcher
            for i in range(100):
                pdinfer.set_num_threads(1 + i % min(4, CORES))
                time.sleep(0.002)
            stop.set()
            return
        call = 0
        while not stop.is_set():
            k = (index + call) % len(inputs)
            assert np.array_equal(model(inputs[k]), expected[k])
            call += 1

    run_threads(worker, threads=4)


def test_several_models_at_once(work):
    """Four files (two input sizes, two weight sets each), each thread calling all of them."""
    models, inputs = [], []
    for seed in range(4):
        if seed % 2:
            path = write_pd_model(work / f"multi{seed}.pdw", seed)
            inputs.append(batches(4, seed))
        else:
            path = write_small_model(work / f"multi{seed}.pdw", tensors=small_tensors(seed))
            inputs.append([np.random.default_rng(seed).random((n, 1, 10, 12), dtype=np.float32)
                           for n in (1, 2, 5, 9)])
        models.append(pdinfer.load(path))
    expected = [[m(x) for x in xs] for m, xs in zip(models, inputs)]
    assert not np.array_equal(expected[1][0], expected[3][0])

    def worker(index: int) -> None:
        for call in range(CALLS // 2):
            m = (index + call) % len(models)
            k = call % len(inputs[m])
            assert np.array_equal(models[m](inputs[m][k]), expected[m][k]), f"model {m}, batch {k}"

    run_threads(worker)


def test_loading_in_threads(work):
    paths = [write_pd_model(work / f"load{seed}.pdw", seed) for seed in range(2)]
    x = batches(1, seed=5)[0]
    expected = [pdinfer.load(p)(x) for p in paths]

    def worker(index: int) -> None:
        for i in range(10):
            k = (index + i) % len(paths)
            assert np.array_equal(pdinfer.load(paths[k])(x), expected[k])

    run_threads(worker)


def test_run_from_threads_with_the_path_cache(work):
    paths = [write_pd_model(work / f"cached{seed}.pdw", seed) for seed in range(3)]
    inputs = batches(6, seed=6)
    expected = [[pdinfer.load(p)(x) for x in inputs] for p in paths]

    def worker(index: int) -> None:
        for call in range(CALLS // 2):
            p, k = (index + call) % len(paths), call % len(inputs)
            assert np.array_equal(pdinfer.run(paths[p], inputs[k]), expected[p][k])

    run_threads(worker)
    cached = [key for key in list(_cache) if key[0] in {str(p) for p in paths}]
    assert len(cached) == len(paths)  # one entry per file, however many threads loaded it
    for p in paths:  # and later calls reuse it
        assert pdinfer.model._cached_load(p) is pdinfer.model._cached_load(str(p))


def test_run_while_the_file_is_replaced(work):
    """A writer replaces the file (atomically) with one of two weight sets while readers call
    pdinfer.run: every answer is one of the two, and after the last write, the last one."""
    path = work / "replaced.pdw"
    x = batches(1, seed=7)[0]
    versions = [small_tensors(seed) for seed in (10, 11)]
    answers = [pdinfer.load(write_small_model(work / f"v{i}.pdw", tensors=t, input_shape=PD_SHAPE))(x)
               for i, t in enumerate(versions)]
    write_small_model(path, tensors=versions[0], input_shape=PD_SHAPE)
    stop = threading.Event()
    seen = [0, 0]

    def worker(index: int) -> None:
        if index == 0:
            for i in range(40):
                write_small_model(path, tensors=versions[(i + 1) % 2], input_shape=PD_SHAPE)
                time.sleep(0.01)
            stop.set()
            return
        while not stop.is_set():
            out = pdinfer.run(path, x)
            matches = [np.array_equal(out, a) for a in answers]
            assert any(matches), "an answer from neither version of the file"
            seen[matches.index(True)] += 1

    run_threads(worker, threads=4)
    assert np.array_equal(pdinfer.run(path, x), answers[0])  # the 40th write is version 0
    assert all(seen), f"readers saw only one version: {seen}"


def test_trace_from_threads(model):
    x = batches(2, seed=8)[1]
    expected = model.trace(x)

    def worker(index: int) -> None:
        for _ in range(3):
            trace = model.trace(x)
            assert list(trace) == list(expected)
            assert all(np.array_equal(trace[k], expected[k]) for k in expected)

    run_threads(worker, threads=4)


def test_the_small_model_is_what_the_tests_think(model):
    assert model.classes == CLASSES and model.input_shape == PD_SHAPE
    assert model.layer_names == [layer["name"] for layer in small_layers()]
