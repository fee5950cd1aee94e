"""`pdinfer warmup` leaves nothing to compile; the CLI says when a first run compiles.

Each test process gets its own empty Numba cache (NUMBA_CACHE_DIR under tmp_path), so what it
counts is what that process compiled, not what an earlier test left in the cache.
"""

from __future__ import annotations

import json
import os
import shutil
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


# Compiles (or loads) two row kernels and prints what Numba compiled.
COMPILE_MEAN_AND_SIGMOID = """
import json
from pdinfer._jit import CompileWatch
from pdinfer.kernels.rows import kernel_address
from pdinfer.kernels.table import OP_MEAN, OP_SIGMOID
with CompileWatch() as watch:
    kernel_address(OP_MEAN)
    kernel_address(OP_SIGMOID)
print(json.dumps(watch.compiled))
"""


def test_editing_a_kernel_recompiles_only_the_row_kernels_that_contain_it(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT / "pdinfer", source / "pdinfer", ignore=shutil.ignore_patterns("__pycache__"))
    environment = {**_environment(tmp_path / "numba-cache"), "PYTHONPATH": str(source)}

    def compiled() -> list[str]:
        run = subprocess.run([sys.executable, "-c", COMPILE_MEAN_AND_SIGMOID], capture_output=True, text=True,
                             timeout=600, env=environment, cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout.splitlines()[-1])

    def edit(name: str, old: str, new: str) -> None:
        path = source / "pdinfer" / "kernels" / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    assert {"mean_row", "sigmoid_row"} <= set(compiled())  # an empty cache
    assert compiled() == []
    edit("reference.py", '"""', '# moved down two lines\n\n"""')  # every function of the file moves
    edit("fast.py", '"""', '# moved down two lines\n\n"""')
    assert compiled() == []
    # sigmoid's code changes (the sum's operands swap: the same answers); global_avg_pool's does not
    edit("reference.py", "1.0 / (1.0 + math.exp(-np.float64(flat[i])))", "1.0 / (math.exp(-np.float64(flat[i])) + 1.0)")
    again = compiled()
    assert "sigmoid_row" in again and "sigmoid" in again
    assert "mean_row" not in again and "global_avg_pool" not in again
