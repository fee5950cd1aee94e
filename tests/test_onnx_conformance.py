"""ONNX's backend node tests for the converter's op set (tests/onnx_conformance.py) through pdinfer.

Every selected case passes, except those in tests/data/onnx_conformance_excluded.txt, each listed
with its reason; the listed ones must still be refused with a pdinfer error (so the list cannot
go stale silently).
"""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")

import pdinfer  # noqa: E402
from onnx_conformance import PdinferBackend, excluded, node_cases, run_case  # noqa: E402

CASES = node_cases()
EXCLUDED = excluded()


def test_the_excluded_cases_exist_and_most_are_about_the_input_contract():
    names = {case.name for case in CASES}
    assert set(EXCLUDED) <= names, sorted(set(EXCLUDED) - names)
    assert len(CASES) - len(EXCLUDED) >= 35
    assert PdinferBackend.supports_device("CPU") and not PdinferBackend.supports_device("CUDA")


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in EXCLUDED], ids=lambda c: c.name)
def test_node_case_passes(case):
    run_case(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in EXCLUDED], ids=lambda c: c.name)
def test_excluded_case_is_refused(case):
    with pytest.raises(pdinfer.PdinferError):
        run_case(case)
