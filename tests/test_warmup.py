"""`pdinfer warmup` leaves nothing to compile; the CLI says when a first run compiles.

Each test process gets its own empty Numba cache (NUMBA_CACHE_DIR under tmp_path), so what it
counts is what that process compiled, not what an earlier test left in the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pdinfer.cli import COMPILING

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(path) for path in (ROOT / "weights").glob("*.pdw"))

# Runs every shipped weight file and every_layer_type() every way a user can (one image, a batch of
# several passes, one and two threads, a helper thread, trace), each model once the background
# worker has its kernels ready, and prints what Numba compiled (on any thread).
RUN_EVERYTHING = """
import json, os, sys, tempfile, time
import numpy as np
import pdinfer
from pdinfer._jit import CompileWatch
from pdinfer.builder import every_layer_type

with CompileWatch() as watch, tempfile.TemporaryDirectory() as tmp:
    layers, classes = every_layer_type()
    paths = [*sys.argv[1:], str(layers.write(os.path.join(tmp, "every.pdw"), classes))]
    for threads in (1, 2):
        pdinfer.set_num_threads(threads)
        for path in paths:
            model = pdinfer.load(path)
            while not model.compiled:
                time.sleep(0.01)
            model(np.zeros(model.input_shape, np.float32))
            model(np.zeros((model._plan.chunk + 3, *model.input_shape), np.float32))
            model.trace(np.zeros(model.input_shape, np.float32))
print(json.dumps(watch.compiled))
"""


def _environment(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}


def _pdinfer(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pdinfer", *args], capture_output=True, text=True, timeout=900,
                          env=_environment(cache), cwd=ROOT)


def test_after_warmup_a_fresh_process_compiles_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    first = _pdinfer(cache, "run", SHIPPED[0], str(ROOT / "weights" / "samples" / "void_1.npy"))
    assert first.returncode == 0, first.stderr
    assert first.stderr.count(COMPILING) == 1  # an empty cache: the first run says it compiles, once

    warm = _pdinfer(cache, "warmup")
    assert warm.returncode == 0, warm.stderr
    assert "kernels compiled or loaded from the cache in" in warm.stdout

    after = subprocess.run([sys.executable, "-c", RUN_EVERYTHING, *SHIPPED], capture_output=True, text=True,
                           timeout=900, env={**_environment(cache), "PDINFER_COLD_START": "numpy"}, cwd=ROOT)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout.splitlines()[-1]) == []  # every function came from the cache

    again = _pdinfer(cache, "run", SHIPPED[0], str(ROOT / "weights" / "samples" / "void_1.npy"))
    assert again.returncode == 0 and COMPILING not in again.stderr and again.stdout == first.stdout


def test_warmup_checks_the_weight_files_it_is_given_before_compiling(tmp_path):
    missing = _pdinfer(tmp_path / "numba-cache", "warmup", SHIPPED[0], str(tmp_path / "missing.pdw"))
    assert missing.returncode == 2 and "missing.pdw" in missing.stderr
    assert COMPILING not in missing.stderr and missing.stdout == ""
