"""pdinfer.ModelStore: load on first use, reload on change, keep the old model when a new file
fails, never serve a half-written file, LRU eviction, one packed copy of identical weights, and
all of it under many threads while files are replaced."""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from pdinfer import model as model_module, store as store_module
from pdinfer.plan import packed_bytes
from small_model import CLASSES, sample_images, small_layers, small_tensors, write_small_model
from test_concurrency import run_threads

X = sample_images(3)


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> dict[int, bytes]:
    """The bytes of the small model's file for seeds 0-3 (distinct weights)."""
    work = tmp_path_factory.mktemp("blobs")
    return {seed: write_small_model(work / f"{seed}.pdw", tensors=small_tensors(seed)).read_bytes()
            for seed in range(4)}


@pytest.fixture(scope="module")
def expected(blobs, tmp_path_factory) -> dict[int, np.ndarray]:
    """pdinfer.load's output on X for each seed's file."""
    work = tmp_path_factory.mktemp("expected")
    out = {}
    for seed, blob in blobs.items():
        (work / f"{seed}.pdw").write_bytes(blob)
        out[seed] = pdinfer.load(work / f"{seed}.pdw")(X)
    return out


def publish(directory: Path, name: str, blob: bytes) -> None:
    """The safe way: write under a temporary name in the same directory, then rename."""
    temporary = directory / f".{name}.pdw.tmp"
    with open(temporary, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, directory / f"{name}.pdw")


def seed_of(output: np.ndarray, expected: dict[int, np.ndarray]) -> int:
    """Which seed's model gave `output` (bit for bit); fails if none did."""
    matches = [seed for seed, out in expected.items() if np.array_equal(out, output)]
    assert matches, "an answer that no published model gives"
    return matches[0]


def test_loads_on_first_use_and_serves_the_same_model_until_the_file_changes(tmp_path, blobs, expected):
    publish(tmp_path, "a", blobs[0])
    publish(tmp_path, "b", blobs[1])
    store = pdinfer.ModelStore(tmp_path)
    assert store.loaded() == []
    first = store.get("a")
    assert store.loaded() == ["a"] and store["a"] is first
    assert np.array_equal(first(X), expected[0]) and np.array_equal(store.get("b")(X), expected[1])
    assert store.names() == ["a", "b"] and "a" in store and "c" not in store
    publish(tmp_path, "a", blobs[2])
    second = store.get("a")
    assert second is not first and np.array_equal(second(X), expected[2])
    assert np.array_equal(first(X), expected[0])  # a call holding the old model finishes on it
    assert store.get("a") is second


def test_only_pdw_names_are_models_and_an_unknown_name_is_a_key_error(tmp_path, blobs):
    publish(tmp_path, "a", blobs[0])
    for other in (".a.pdw.tmp", "a.pdw.tmp", ".hidden.pdw", "notes.txt"):
        (tmp_path / other).write_bytes(blobs[1][:100])
    (tmp_path / "folder.pdw").mkdir()
    store = pdinfer.ModelStore(tmp_path)
    assert store.names() == ["a"]
    for name in ("missing", "a.pdw", ".hidden", "folder", "", "../a", f"{tmp_path}/a", 3):
        with pytest.raises(pdinfer.ModelNotFoundError) as error:
            store.get(name)
        assert isinstance(error.value, KeyError) and isinstance(error.value, pdinfer.PdinferError)
    with pytest.raises(KeyError, match=r"no model .missing. in .* \(no file missing.pdw\)"):
        store["missing"]
    with pytest.raises(pdinfer.ConfigError):
        pdinfer.ModelStore(tmp_path / "a.pdw")


def test_a_deleted_file_unloads_its_model(tmp_path, blobs):
    publish(tmp_path, "a", blobs[0])
    store = pdinfer.ModelStore(tmp_path)
    store.get("a")
    (tmp_path / "a.pdw").unlink()
    with pytest.raises(pdinfer.ModelNotFoundError):
        store.get("a")
    assert store.loaded() == []


def test_a_file_that_fails_to_load_never_replaces_a_good_model(tmp_path, blobs, expected):
    publish(tmp_path, "a", blobs[0])
    store = pdinfer.ModelStore(tmp_path)
    good = store.get("a")
    corrupt = bytearray(blobs[1])
    corrupt[-1] ^= 0xFF  # the whole-file checksum no longer matches
    publish(tmp_path, "a", bytes(corrupt))
    with pytest.warns(RuntimeWarning, match="still serving"):
        assert store.get("a") is good
    assert isinstance(store.errors()["a"], pdinfer.FormatError)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same bad file is not read (nor reported) again
        assert store.get("a") is good
    publish(tmp_path, "a", blobs[1])
    assert np.array_equal(store.get("a")(X), expected[1]) and store.errors() == {}


def test_a_first_load_that_fails_raises_until_the_file_is_fixed(tmp_path, blobs, expected):
    (tmp_path / "a.pdw").write_bytes(blobs[0][:len(blobs[0]) // 2])
    store = pdinfer.ModelStore(tmp_path)
    for _ in range(2):
        with pytest.raises(pdinfer.FormatError):
            store.get("a")
    publish(tmp_path, "a", blobs[0])
    assert np.array_equal(store.get("a")(X), expected[0])


def test_a_file_written_in_place_is_never_served_half_written(tmp_path, blobs, expected):
    """Unsafe publishing (the file rewritten in place): at every length the store serves the old
    model, and the new one once the file is whole."""
    publish(tmp_path, "a", blobs[0])
    store = pdinfer.ModelStore(tmp_path)
    store.get("a")
    new = blobs[1]
    with open(tmp_path / "a.pdw", "r+b") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        f.truncate(0)
        for end in range(0, len(new), max(1, len(new) // 7)):
            f.seek(0)
            f.write(new[:end])
            f.flush()
            os.fsync(f.fileno())
            assert np.array_equal(store.get("a")(X), expected[0])
            assert "a" in store.errors()
        f.seek(0)
        f.write(new)
    time.sleep(0.01)  # a filesystem with coarse timestamps: let the last write's time differ
    os.utime(tmp_path / "a.pdw")
    assert np.array_equal(store.get("a")(X), expected[1]) and store.errors() == {}


def test_least_recently_used_models_are_evicted_beyond_the_budget(tmp_path, blobs, expected):
    for seed in range(3):
        publish(tmp_path, f"m{seed}", blobs[seed])
    size = packed_bytes(pdinfer.load(tmp_path / "m0.pdw")._plan)
    store = pdinfer.ModelStore(tmp_path, memory_budget=2 * size)
    first = store.get("m0")
    store.get("m1")
    store.get("m0")  # m1 is now the least recently used
    store.get("m2")
    assert store.loaded() == ["m0", "m2"] and store.resident_bytes() == 2 * size
    assert store.get("m0") is first
    assert np.array_equal(store.get("m1")(X), expected[1]) and store.loaded() == ["m0", "m1"]
    tiny = pdinfer.ModelStore(tmp_path, memory_budget=0)  # the model just used always stays
    for seed in range(3):
        assert np.array_equal(tiny.get(f"m{seed}")(X), expected[seed]) and tiny.loaded() == [f"m{seed}"]
    with pytest.raises(pdinfer.ConfigError):
        pdinfer.ModelStore(tmp_path, memory_budget=-1)


def test_identical_weights_share_one_packed_plan(tmp_path, blobs):
    unique = small_tensors(99)  # weights no other test loads (pdinfer.run keeps its last models)
    source = write_small_model(tmp_path / "source.pdw", tensors=unique)
    blob = source.read_bytes()
    source.unlink()
    publish(tmp_path, "a", blob)
    publish(tmp_path, "same", blob)
    publish(tmp_path, "other", blobs[1])
    # the same tensors (same data checksum) but another activation slope: another model
    layers = [dict(layer, params={"negative_slope": 0.3}) if layer["type"] == "LeakyReLU" else layer
              for layer in small_layers()]
    write_small_model(tmp_path / "slope.pdw", layers=layers, tensors=unique)
    store = pdinfer.ModelStore(tmp_path)
    a, same, other, slope = (store.get(n) for n in ("a", "same", "other", "slope"))
    assert a is not same and a._plan is same._plan
    assert other._plan is not a._plan and slope._plan is not a._plan
    assert a.data_sha256 == slope.data_sha256
    assert store.resident_bytes() == 3 * packed_bytes(a._plan)
    assert pdinfer.load(tmp_path / "a.pdw")._plan is a._plan  # plain loads share it too
    identity = a._identity
    del a, same, store
    gc.collect()
    assert identity not in model_module._plans  # released with its last model


def test_many_threads_calling_while_files_are_replaced(tmp_path, blobs, expected):
    """8 threads call 3 models while another thread publishes new versions of them (some
    corrupt, some written in place): every answer is one published version's, bit for bit, no
    call fails, and the store ends on the last version."""
    names = ["a", "b", "c"]
    for name in names:
        publish(tmp_path, name, blobs[0])
    store = pdinfer.ModelStore(tmp_path)
    for name in names:
        store.get(name)
    corrupt = blobs[2][:-10]
    stop = threading.Event()
    seen: set[int] = set()

    def publisher() -> None:
        rng = np.random.default_rng(0)
        for round_ in range(30):
            name = names[round_ % 3]
            if round_ % 5 == 4:
                publish(tmp_path, name, corrupt)
            elif round_ % 7 == 6:
                (tmp_path / f"{name}.pdw").write_bytes(blobs[int(rng.integers(4))])  # in place
            else:
                publish(tmp_path, name, blobs[int(rng.integers(4))])
            time.sleep(0.005)
        stop.set()

    def caller(index: int) -> None:
        calls = 0
        while not stop.is_set() or calls < 20:
            seen.add(seed_of(store.get(names[(index + calls) % 3])(X), expected))
            calls += 1

    thread = threading.Thread(target=publisher)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        thread.start()
        run_threads(caller)
        thread.join(60)
    assert not thread.is_alive() and len(seen) > 1
    time.sleep(0.02)  # a filesystem with coarse timestamps: the last publishes' times differ
    for seed, name in enumerate(names):
        publish(tmp_path, name, blobs[seed + 1])
        assert np.array_equal(store.get(name)(X), expected[seed + 1])
    assert store.errors() == {}


def test_a_reload_does_not_block_calls_of_the_loaded_model(tmp_path, blobs, monkeypatch):
    """While one thread reloads a changed file, other callers get the loaded model at once."""
    publish(tmp_path, "a", blobs[0])
    store = pdinfer.ModelStore(tmp_path)
    old = store.get("a")
    started, release = threading.Event(), threading.Event()
    real_load = store_module.load

    def slow_load(path):
        started.set()
        assert release.wait(30)
        return real_load(path)
    monkeypatch.setattr(store_module, "load", slow_load)
    publish(tmp_path, "a", blobs[1])
    reloading = threading.Thread(target=store.get, args=("a",))
    reloading.start()
    assert started.wait(30)
    assert store.get("a") is old  # not waiting for the reload
    release.set()
    reloading.join(30)
    assert store.get("a") is not old


def test_the_store_keeps_no_thread_per_model(tmp_path, blobs):
    for seed in range(4):
        publish(tmp_path, f"m{seed}", blobs[seed])
    before = threading.active_count()
    store = pdinfer.ModelStore(tmp_path)
    for name in store.names():
        store.get(name)(X)
    assert threading.active_count() == before and CLASSES == store.get("m0").classes
