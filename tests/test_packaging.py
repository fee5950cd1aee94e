"""What gets installed (pdinfer with its exporter as pdinfer.exporter, and py.typed), what an install
does outside the checkout, and the exporter without torch."""

from __future__ import annotations

import os
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
    assert result.stderr == ("error: the exporter needs PyTorch (No module named 'torch'): pip install "
                             "'pdinfer[torch]' (README.md: the CPU-only build)\n")
    help_text = python(NO_TORCH + "import runpy; runpy.run_module('exporter', run_name='__main__')", "--help")
    assert help_text.returncode == 0 and "--force" in help_text.stdout  # --help needs no torch


def test_exporter_api_without_torch_raises_import_error_with_the_hint():
    result = python(NO_TORCH + "import exporter\n"
                    "try:\n    exporter.export\nexcept ImportError as e:\n    print(e)\n")
    assert result.returncode == 0, result.stderr
    assert "pip install 'pdinfer[torch]'" in result.stdout
    numpy_only = python(NO_TORCH + "from exporter import synthetic; print(len(synthetic.CLASSES))")
    assert numpy_only.stdout == "6\n", numpy_only.stderr  # the NumPy-only part still imports


def test_pdinfer_ships_py_typed():
    assert (ROOT / "pdinfer" / "py.typed").is_file()


def test_the_wheel_holds_pdinfer_and_its_exporter_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"pdinfer", next(t for t in tops if t.endswith(".dist-info"))}, tops  # no top-level "exporter"
    assert "pdinfer/py.typed" in names and "pdinfer/kernels/reference.py" in names
    sources = {path.relative_to(ROOT).as_posix() for path in ROOT.glob("pdinfer/**/*.py")}
    sources |= {"pdinfer/" + path.relative_to(ROOT).as_posix() for path in ROOT.glob("exporter/*.py")}
    assert sources <= set(names), sorted(sources - set(names))  # every module, every subpackage
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "Provides-Extra: torch" in metadata and "torch>=2.13; extra == \"torch\"" in metadata


def run_installed(installed: Path, cwd: Path, args: list[str], code: str = "") -> subprocess.CompletedProcess:
    """`args` (or `python -c PRELUDE+code` if args is empty) in `cwd` with the installed pdinfer
    in front of this environment's packages and the checkout nowhere on the path."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    command = args or [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_an_install_compresses_and_exports_outside_the_checkout(installed, tmp_path):
    where = run_installed(installed, tmp_path, [], "import pdinfer, pdinfer.exporter.compress as c\n"
                                                   "print(pdinfer.__file__); print(c.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(Path(line).is_relative_to(installed) for line in where.stdout.splitlines()), where.stdout
    light = ROOT / "weights" / "pd_light.pdw"
    compressed = run_installed(installed, tmp_path, [str(installed / "bin" / "pdinfer"), "compress", str(light),
                                                     "--weights", "int8", "--activations", "int8", "--out",
                                                     "light.int8.pdw"])
    assert compressed.returncode == 0, compressed.stderr
    assert (tmp_path / "light.int8.pdw").read_bytes() == (ROOT / "weights" / "pd_light.int8.pdw").read_bytes()
    no_torch = run_installed(installed, tmp_path, [], NO_TORCH + "from pdinfer.exporter.__main__ import main\n"
                                                      "raise SystemExit(main(['pd_light', 'x.pdw']))")
    assert no_torch.returncode == 1 and "pip install 'pdinfer[torch]'" in no_torch.stderr
    pytest.importorskip("torch")
    exported = run_installed(installed, tmp_path, [sys.executable, "-m", "pdinfer.exporter", "pd_light", "light.pdw"])
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == "wrote light.pdw (pd_light, 6 classes, f32 weights)\n"
