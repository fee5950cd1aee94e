"""`import pdinfer` pulls in nothing but the standard library, NumPy and Numba (and their own imports)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ALLOWED_PACKAGES = {"pdinfer", "numpy", "numba", "llvmlite"}


def modules_after(statement: str) -> set[str]:
    """The names in sys.modules after running `statement` in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_loads_only_stdlib_numpy_and_numba():
    loaded = modules_after("import pdinfer")
    assert not [m for m in loaded if m.split(".")[0] == "torch"]
    numba_own = modules_after("import numba")  # what numba itself imports is allowed, and only that
    allowed_tops = set(sys.stdlib_module_names) | ALLOWED_PACKAGES
    foreign = sorted(m for m in loaded - numba_own if m.split(".")[0] not in allowed_tops)
    assert not foreign, f"import pdinfer loads modules outside stdlib, numpy and numba: {foreign}"


def test_import_and_load_leave_numba_to_the_first_compiled_call():
    """Numba and the compiled kernels are imported when a model's kernels are first prepared (by
    the background worker, or a first call with PDINFER_COLD_START=compile), not before: `import
    pdinfer` and `load` cost NumPy's import only."""
    statement = ("import os\nos.environ['PDINFER_COLD_START'] = 'compile'\nimport pdinfer\n"
                 "pdinfer.load('weights/pd_light.pdw')")
    loaded = modules_after(statement)
    assert "numba" not in loaded and "llvmlite" not in loaded
    assert "pdinfer.kernels.reference" not in loaded and "pdinfer.kernels.fast" not in loaded
    assert "numba" in modules_after(statement + "\nimport numpy as np\nm = pdinfer.load('weights/pd_light.pdw')\n"
                                                "m(np.zeros(m.input_shape, np.float32))")
    # an int8 file too (llvmlite only, for the CPU features its depthwise weights are packed for)
    loaded = modules_after(statement.replace("pd_light.pdw", "pd_light.int8.pdw"))
    assert "numba" not in loaded and "pdinfer.kernels.integer" not in loaded
