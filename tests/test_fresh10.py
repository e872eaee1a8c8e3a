"""gradrun against red-team round 10 (tests/fresh10/): correct code passes, buggy code is flagged,
with default settings, in float64 and float32 (a case's own dtypes where a bug shows in one)."""

import importlib
import importlib.util

import pytest

import gradrun
from fresh10.numpy_cases import CASES
from rows import assert_flagged


@pytest.mark.parametrize("case, dtype", [pytest.param(c, d, id=f"{c.name}-{d}") for c in CASES for d in c.dtypes])
def test_numpy_verdict(case, dtype):
    result = gradrun.check(case.forward, {k: v.copy() for k, v in case.point.items()}, vjp=case.vjp,
                           dtype=dtype, name=case.name, **case.settings)
    assert_flagged(result, case.expect)
