"""Shared test setup: hypothesis profiles, the Java kit's classes, and compiled kernels first.

PDINFER_COLD_START=compile (for this process and the processes tests start): a model compiles its
kernels before its first answer, so that tests comparing answers bit for bit compare compiled
kernels. tests/test_cold_start.py tests the default (NumPy answers while the kernels compile), and
tests/helpers.py checks the NumPy kernels of every layer against PyTorch.

HYPOTHESIS_PROFILE chooses the profile of the tests that do not set their own:
- `ci` (the default): derandomized (every run draws the same examples) with bounded example
  counts, so the default suite gives the same result every time, in about its usual time;
- `dev`: a quick derandomized pass while editing;
- `slow`: random, many more examples. The fuzz tests marked `slow` (`pytest -m slow`,
  tests/test_soak.py) run under it whatever HYPOTHESIS_PROFILE says.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
os.environ["PDINFER_COLD_START"] = "compile"

# No example database: test runs leave nothing behind in the work tree.
COMMON = dict(deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("ci", max_examples=250, derandomize=True, **COMMON)
settings.register_profile("dev", max_examples=20, derandomize=True, **COMMON)
settings.register_profile("slow", max_examples=5000, derandomize=False, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def temporary_files_under_pytest(tmp_path_factory):
    """What code under test writes to the system's temporary directory (tempfile, and subprocesses
    through TMPDIR: pip, the exporter, golden bundles) goes under pytest's base temp instead, which
    pytest removes after the run (tmp_path_retention_policy)."""
    directory = tmp_path_factory.mktemp("tmp")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(directory))
    patch.setattr(tempfile, "tempdir", str(directory))
    yield directory
    patch.undo()


@pytest.fixture(scope="session")
def java_classes(tmp_path_factory) -> Path:
    """java/src compiled with javac into a temporary directory. Without javac the test fails
    in CI (CI=true) and is skipped elsewhere."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but javac/java are not installed (bash java/run.sh --install-jdk)")
        pytest.skip("javac is not installed (bash java/run.sh --install-jdk installs a JDK 17)")
    build = tmp_path_factory.mktemp("java-classes")
    sources = [str(p) for p in (ROOT / "java" / "src").rglob("*.java")]
    subprocess.run(["javac", "-Xlint:all,-serial", "-Werror", "-d", str(build), *sources],
                   check=True, capture_output=True, text=True, timeout=300)
    return build


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """pdinfer's wheel, built offline from a copy of the checkout (needs setuptools here)."""
    pytest.importorskip("setuptools", minversion="70.1",  # bdist_wheel built in
                        reason="building a wheel offline needs setuptools 70.1 or newer in this environment")
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".ci-venv*", "build", "*.egg-info", "__pycache__", "weights", "java", "benchmarks"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                             "--no-index", "-w", str(work / "dist"), str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (work / "dist").glob("pdinfer-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A directory holding pdinfer installed from its wheel (and its `pdinfer` command in bin/), to
    put on PYTHONPATH in front of this environment's packages: pdinfer as a user gets it."""
    target = tmp_path_factory.mktemp("installed")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target",
                             str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return target
