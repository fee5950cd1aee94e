"""README.md's examples run as written, and what their comments and sample output claim is true.

Each ```python block runs in a fresh interpreter, as a user's script outside the checkout: with
pdinfer installed from its wheel (tests/conftest.py) and the checkout nowhere on the import path, in
a scratch directory holding a link to weights/ (so files an example writes stay out of the work tree). A line whose comment starts with a Python literal
(`model.input_shape  # (1, 60, 120)`) must evaluate to it; `print(x)  # void` must print it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pdinfer.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, re.S | re.M)

RUNNER = r'''
import ast, contextlib, io, sys, tokenize

source = sys.stdin.read()
comments = {tok.start[0]: tok.string[1:].strip() for tok in tokenize.generate_tokens(io.StringIO(source).readline)
            if tok.type == tokenize.COMMENT}


def literal_prefix(text):
    """The longest prefix of text that is a Python literal, as (True, value); else (False, None)."""
    for end in range(len(text), 0, -1):
        try:
            return True, ast.literal_eval(text[:end].strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
    return False, None


namespace = {"__name__": "__main__"}
for node in ast.parse(source).body:
    comment = comments.get(node.end_lineno, "")
    is_print = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and getattr(node.value.func, "id", None) == "print")
    if is_print and comment:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
        assert out.getvalue().strip() == comment, f"line {node.lineno}: printed {out.getvalue()!r}, README says {comment!r}"
        continue
    found, expected = literal_prefix(comment) if isinstance(node, ast.Expr) else (False, None)
    if found:
        value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
        assert value == expected, f"line {node.lineno}: {value!r}, README says {expected!r}"
    else:
        exec(compile(ast.Module([node], []), "README.md", "exec"), namespace)
print("README block ran")
'''


@pytest.fixture
def scratch(tmp_path) -> Path:
    """A directory that looks like the repository root to the examples."""
    (tmp_path / "weights").symlink_to(ROOT / "weights")
    return tmp_path


def run_in(directory: Path, installed: Path, args: list[str], stdin: str = "") -> subprocess.CompletedProcess:
    """`args` in `directory`, importing pdinfer from `installed` only."""
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=directory, env=env, timeout=300)


def test_the_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 2 and any("read_image" in block for block in PYTHON_BLOCKS)


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"block{i}" for i in range(len(PYTHON_BLOCKS))])
def test_python_example_runs_as_written(block, scratch, installed):
    if re.search(r"^(import|from) (torch|pdinfer\.exporter)\b", block, re.M):
        pytest.importorskip("torch")
    result = run_in(scratch, installed, [sys.executable, "-c", RUNNER + "\nimport pdinfer; print(pdinfer.__file__)"],
                    stdin=block)
    assert result.returncode == 0, result.stderr
    ran, imported_from = result.stdout.splitlines()[-2:]
    assert ran == "README block ran" and Path(imported_from).is_relative_to(installed), result.stdout
    assert set(os.listdir(scratch)) - {"weights"} <= {"my_model.pdw", "models", "from_onnx.onnx", "from_onnx.pdw"}  # only what it says


def test_exporter_command_runs_as_written_and_keeps_what_exists(scratch, installed):
    pytest.importorskip("torch")
    [command] = re.findall(r"^    (python -m pdinfer\.exporter \S+ \S+)", README, re.M)
    args = shlex.split(command)
    assert not args[-1].startswith("weights/")  # never over a shipped model
    first = run_in(scratch, installed, [sys.executable, *args[1:]])
    assert first.returncode == 0, first.stderr
    written = (scratch / args[-1]).read_bytes()
    again = run_in(scratch, installed, [sys.executable, *args[1:]])
    assert again.returncode == 1 and "--force" in again.stderr
    assert (scratch / args[-1]).read_bytes() == written


def test_sample_output_is_what_the_first_command_prints(monkeypatch, capsys):
    command = re.search(r"&& (pdinfer run .*)$", README, re.M).group(1)
    lines = README.split(command, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    input "))
    end = lines.index("    ...", start)
    shown = [line[4:] for line in lines[start:end]]
    assert len(shown) >= 4
    monkeypatch.chdir(ROOT)
    assert main(shlex.split(command)[1:]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if ".npy" not in line]
    assert shown == printed[:len(shown)]


def test_the_two_set_up_commands_use_two_environments_and_ci_runs_the_second():
    commands = re.findall(r"^    (python3 -m venv .*)$", README, re.M)
    venvs = [re.match(r"python3 -m venv (\S+) && \. \1/bin/activate && ", command) for command in commands]
    assert len(commands) == 2 and all(venvs) and venvs[0].group(1) != venvs[1].group(1), commands
    assert commands[1][venvs[1].end():] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_one_rule_for_two_dimensional_inputs():
    """README.md and docs/ROBUSTNESS.md state the same rule (tests/test_inputs.py checks it holds)."""
    rule = "`pdinfer.run` (arrays and `.npy` files) also takes (H, W) for a one-channel model"
    for text in (README, (ROOT / "docs" / "ROBUSTNESS.md").read_text()):
        assert rule in " ".join(text.split())
    assert "wrong shapes" not in README
