"""Long runs (marked slow; run with `pytest -m slow tests/test_soak.py -s` to see the figures):
100 000 inferences and 1000 loads in one process with flat memory (resident set size from
/proc/self/statm), 8 threads x 1000 calls, and the loader fuzz of test_hardening.py (its test
bodies) under the random `slow` hypothesis profile with many more examples (tests/conftest.py).
"""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import pdinfer
from small_model import sample_images, small_layers, small_tensors, write_small_model
from test_concurrency import check_one_model, write_pd_model
from test_hardening import (LAYER_PATHS, check_layer_value, fuzz_data_flip, fuzz_header_byte, fuzz_overwrites,
                            json_values)

pytestmark = pytest.mark.slow

FUZZ = settings(settings.get_profile("slow"))
RSS_GROWTH_LIMIT = 16 << 20  # bytes


def rss() -> int:
    """This process's resident set size in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def report(what: str, samples: list[int]) -> int:
    growth = samples[-1] - samples[0]
    print(f"\nSOAK {what}: RSS {samples[0] / 2**20:.1f} MiB -> {samples[-1] / 2**20:.1f} MiB "
          f"(growth {growth / 2**20:+.2f} MiB, peak {max(samples) / 2**20:.1f} MiB); samples MiB: "
          + " ".join(f"{s / 2**20:.1f}" for s in samples))
    return growth


def write_wide_model(path, seed: int):
    """The small model with 512 channels before the classifier and a 512 x 512 hidden Linear:
    1 MiB of weights, so a load that leaked its weights would show at once."""
    layers, tensors = small_layers(), small_tensors(seed)
    rng = np.random.default_rng(seed)
    layers[7]["params"]["out_channels"] = 512
    layers[10]["params"]["in_features"] = 512
    layers[10]["inputs"] = ["hidden.act"]
    layers[10:10] = [
        {"name": "hidden", "type": "Linear", "inputs": ["gap"],
         "params": {"in_features": 512, "out_features": 512, "bias": True},
         "tensors": {"weight": "hidden.weight", "bias": "hidden.bias"}},
        {"name": "hidden.act", "type": "ReLU", "inputs": ["hidden"], "params": {}, "tensors": {}}]
    tensors |= {"pw.weight": rng.normal(0, 0.5, (512, 4, 1, 1)), "pw.bias": rng.normal(0, 0.5, 512),
                "hidden.weight": rng.normal(0, 0.05, (512, 512)), "hidden.bias": rng.normal(0, 0.5, 512),
                "fc.weight": rng.normal(0, 0.05, (3, 512))}
    return write_small_model(path, layers, {k: np.asarray(v, np.float32) for k, v in tensors.items()})


def test_100k_inferences_keep_memory_flat(tmp_path):
    model = pdinfer.load(write_wide_model(tmp_path / "wide.pdw", seed=0))
    images = sample_images(64)
    expected = model(images)
    for i in range(2000):  # warm up allocator pools
        model(images[i % 64])
    samples = [rss()]
    for i in range(100_000):
        out = model(images[i % 64])
        if i % 10_000 == 9_999:
            assert np.array_equal(out, expected[i % 64])
            samples.append(rss())
    assert report("100 000 single-image inferences", samples) < RSS_GROWTH_LIMIT


def test_1000_loads_keep_memory_flat(tmp_path):
    path = write_wide_model(tmp_path / "wide.pdw", seed=1)
    image = sample_images(1)[0]
    expected = pdinfer.load(path)(image)
    for _ in range(50):
        pdinfer.load(path)(image)
    gc.collect()
    samples = [rss()]
    for i in range(1000):
        model = pdinfer.load(path)
        assert np.array_equal(model(image), expected)
        del model
        if i % 100 == 99:
            gc.collect()
            samples.append(rss())
    assert report("1000 loads of a 1 MiB model", samples) < RSS_GROWTH_LIMIT


def test_1000_files_through_the_path_cache_keep_memory_flat(tmp_path):
    image = sample_images(1)[0]
    paths = [write_wide_model(tmp_path / f"wide{i}.pdw", seed=2) for i in range(50)]
    for p in paths:  # fill the cache (CACHE_SIZE models) and warm up
        pdinfer.run(p, image)
    gc.collect()
    samples = [rss()]
    for i in range(1000):
        p = tmp_path / f"more{i}.pdw"
        os.link(paths[i % 50], p)  # a new path each time: the cache evicts one model per call
        pdinfer.run(p, image)
        p.unlink()
        if i % 100 == 99:
            gc.collect()
            samples.append(rss())
    assert report("1000 new paths through pdinfer.run's cache", samples) < RSS_GROWTH_LIMIT


def test_threads_1000_calls_each(tmp_path):
    check_one_model(pdinfer.load(write_pd_model(tmp_path / "pd.pdw", seed=0)), calls=1000)


# -- the loader fuzz, longer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("soak-fuzz")


@pytest.fixture(scope="module")
def original(work):
    return write_small_model(work / "original.pdw").read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_header_bytes(work, original, data):
    fuzz_header_byte(work, original, data)


@FUZZ
@given(data=st.data())
def test_fuzz_overwrites(work, original, data):
    fuzz_overwrites(work, original, data, max_writes=32)


@FUZZ
@given(data=st.data())
def test_fuzz_data_flips_unverified(work, original, data):
    fuzz_data_flip(work, original, data)


@FUZZ
@given(path=st.sampled_from(LAYER_PATHS), value=json_values)
def test_fuzz_layer_values(work, path, value):
    check_layer_value(work, path, value)
