"""A model's first answers before its kernels are compiled (PDINFER_COLD_START, pdinfer/background.py).

By default a model answers with NumPy (kernels/vectorized.py; an int8 model with
kernels/integer_vectorized.py) until the background worker has its
compiled kernels ready, then switches to them. The tests hold the worker back where they need the
NumPy path for certain (it waits for `rows._compiling`, the lock every row kernel compiles under).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pdinfer
from exporter.compress import compress_file
from helpers import assert_close
from pdinfer import background
from pdinfer.builder import LayerList, conv2d_params, every_layer_type, max_pool2d_params
from pdinfer.cli import ANSWERED_WITH_NUMPY, COMPILING
from pdinfer.kernels import rows, vectorized
from pdinfer.model import _run_layers
from small_model import sample_images, write_small_model

ROOT = Path(__file__).resolve().parents[1]


def _model_file(directory: Path, seed: int) -> Path:
    """A small model of its own weights (so no earlier test has prepared its plan): convolutions, a
    host step (PReLU), a max pool, a Linear and a Softmax."""
    layers = LayerList((2, 12, 10), seed=seed)
    layers.add("Conv2d", **conv2d_params(2, 8, 3, padding=1))
    layers.add("PReLU", num_parameters=8)
    layers.add("Conv2d", **conv2d_params(8, 8, 3, stride=2, groups=2))
    layers.add("MaxPool2d", **max_pool2d_params(2))
    layers.add("Flatten")
    layers.add("Linear", in_features=8 * 2 * 2, out_features=3, bias=True)
    layers.add("Softmax", dim=1)
    return layers.write(directory / f"model{seed}.pdw")


def _wait_compiled(model: pdinfer.Model) -> None:
    deadline = time.monotonic() + 600
    while not model.compiled:
        assert time.monotonic() < deadline, "the background worker never finished"
        time.sleep(0.01)


def _batch(model: pdinfer.Model, n: int = 3) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, *model.input_shape)).astype(np.float32)


def test_a_model_answers_with_numpy_until_its_kernels_are_ready(tmp_path, monkeypatch):
    path = _model_file(tmp_path, seed=7001)
    monkeypatch.setenv("PDINFER_COLD_START", "numpy")
    with rows._compiling:  # the worker cannot compile a row kernel meanwhile
        model = pdinfer.load(path)
        assert not model.compiled
        x = _batch(model)
        early = model(x)
        single = model(x[0])
        assert not model.compiled
    assert_close(early, list(model.trace(x).values())[-1], "NumPy answer vs the reference kernels")
    assert_close(single, early[0], "one image vs the same image in a batch, on NumPy")
    _wait_compiled(model)
    later = model(x)
    monkeypatch.setenv("PDINFER_COLD_START", "compile")
    compiled = pdinfer.load(path)
    assert compiled.compiled
    np.testing.assert_array_equal(later, compiled(x))  # after the switch: the compiled kernels' answer
    assert_close(early, later, "NumPy answer vs the compiled kernels")


def test_an_int8_model_answers_with_its_integer_reference_in_numpy_until_its_kernels_are_ready(tmp_path, monkeypatch):
    path = tmp_path / "small.int8.pdw"
    compress_file(write_small_model(tmp_path / "small.pdw"), path, "int8", sample_images(16, seed=7005))
    monkeypatch.setenv("PDINFER_COLD_START", "numpy")
    x = sample_images(3, seed=7006)
    with rows._compiling:
        model = pdinfer.load(path)
        assert not model.compiled
        early = model(x)
        assert not model.compiled
    _wait_compiled(model)
    later = model(x)
    # int8 steps up to the Softmax: the same uint8 values (tests/test_int8.py), the Softmax in NumPy
    assert_close(early, later, "int8 model on NumPy vs the compiled kernels")
    assert (early.argmax(axis=1) == later.argmax(axis=1)).all()


def test_compile_makes_a_model_switch_at_once(tmp_path, monkeypatch):
    path = _model_file(tmp_path, seed=7002)
    monkeypatch.setenv("PDINFER_COLD_START", "numpy")
    with rows._compiling:
        model = pdinfer.load(path)
    model.compile()  # beside the worker: each kernel still compiles once
    assert model.compiled
    monkeypatch.setenv("PDINFER_COLD_START", "compile")
    x = _batch(model)
    np.testing.assert_array_equal(model(x), pdinfer.load(path)(x))


def test_a_failed_preparation_leaves_the_model_to_run_its_kernels_itself(tmp_path, monkeypatch):
    def broken(plan, input_shape):
        def fail() -> None:
            raise MemoryError("out of memory while compiling")
        return [fail]

    monkeypatch.setattr(background, "_steps", broken)
    monkeypatch.setenv("PDINFER_COLD_START", "numpy")
    path = _model_file(tmp_path, seed=7003)
    model = pdinfer.load(path)
    _wait_compiled(model)
    assert isinstance(background._preparations[model._plan].error, MemoryError)
    monkeypatch.undo()
    monkeypatch.setenv("PDINFER_COLD_START", "compile")
    x = _batch(model)
    np.testing.assert_array_equal(model(x), pdinfer.load(path)(x))


def test_the_cold_start_setting_is_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("PDINFER_COLD_START", "fast")
    with pytest.raises(pdinfer.ConfigError, match="PDINFER_COLD_START must be 'numpy'.*got 'fast'"):
        pdinfer.load(_model_file(tmp_path, seed=7004))


def test_numpy_kernels_run_every_layer_type(tmp_path):
    layers, classes = every_layer_type()
    model = pdinfer.load(layers.write(tmp_path / "every.pdw", classes))
    x = _batch(model, 5)
    assert_close(_run_layers(model.reference_graph().layers, x, vectorized), model(x),
                 "every_layer_type() on the NumPy kernels vs the compiled ones")


def _fresh_process(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """A process with an empty Numba cache, at the default PDINFER_COLD_START."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "PYTHONPATH": str(ROOT)}
    del env["PDINFER_COLD_START"]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=900, env=env, cwd=ROOT)


def test_a_first_cli_run_answers_with_numpy_and_says_so(tmp_path):
    image = str(ROOT / "weights" / "samples" / "void_1.npy")
    weights = str(ROOT / "weights" / "pd_light.pdw")
    first = _fresh_process(tmp_path, "-m", "pdinfer", "run", "--json", weights, image)
    assert first.returncode == 0, first.stderr
    assert ANSWERED_WITH_NUMPY in first.stderr and COMPILING not in first.stderr
    answer = json.loads(first.stdout)
    expected = pdinfer.run(weights, image)  # compiled kernels (tests/conftest.py)
    assert answer["class"] == pdinfer.load(weights).classes[int(expected.argmax())]
    assert_close(np.array(list(answer["probabilities"].values()), np.float32), expected, "first CLI run")


def test_a_script_ending_while_kernels_compile_exits_cleanly(tmp_path):
    weights, image = ROOT / "weights" / "pd_model.pdw", ROOT / "weights" / "samples" / "void_1.npy"
    script = ("import sys, numpy as np, pdinfer\n"
              "model = pdinfer.load(sys.argv[1])\n"
              "print(model(np.load(sys.argv[2])).argmax())\n")
    done = _fresh_process(tmp_path, "-c", script, str(weights), str(image))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(pdinfer.run(weights, image).argmax())]
