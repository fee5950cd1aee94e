"""What gets installed (pdinfer only, with py.typed), and the exporter in a checkout without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run before the code under test: makes `import torch` fail as it does when torch is not installed.
NO_TORCH = '''
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, NoTorch())
'''


def python(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_exporter_without_torch_says_to_install_the_dev_extra(tmp_path):
    out = tmp_path / "light.pdw"
    result = python(NO_TORCH + "import runpy; runpy.run_module('exporter', run_name='__main__')",
                    "pd_light", str(out))
    assert result.returncode == 1 and not out.exists()
    assert result.stderr == ("error: the exporter needs PyTorch (No module named 'torch'): install the "
                             "development extra, pip install '.[dev]' in a pdinfer checkout\n")
    help_text = python(NO_TORCH + "import runpy; runpy.run_module('exporter', run_name='__main__')", "--help")
    assert help_text.returncode == 0 and "--force" in help_text.stdout  # --help needs no torch


def test_exporter_api_without_torch_raises_import_error_with_the_hint():
    result = python(NO_TORCH + "import exporter\n"
                    "try:\n    exporter.export\nexcept ImportError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    assert "pip install '.[dev]'" in result.stdout
    numpy_only = python(NO_TORCH + "from exporter import synthetic; print(len(synthetic.CLASSES))")
    assert numpy_only.stdout == "6\n", numpy_only.stderr  # the NumPy-only part still imports


def test_pdinfer_ships_py_typed():
    assert (ROOT / "pdinfer" / "py.typed").is_file()


def test_the_wheel_holds_pdinfer_only(tmp_path):
    pytest.importorskip("setuptools", reason="building a wheel offline needs setuptools in this environment")
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".ci-venv", "build", "*.egg-info", "__pycache__", "weights", "java", "benchmarks"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-w", str(tmp_path / "dist"), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = (tmp_path / "dist").glob("pdinfer-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"pdinfer", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "pdinfer/py.typed" in names and "pdinfer/kernels/reference.py" in names
