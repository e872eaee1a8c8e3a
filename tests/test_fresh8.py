"""gradrun against red-team round 8 (tests/fresh8/): correct code passes, buggy code is flagged,
with default settings, in float64 and float32."""

import pytest

import gradrun
from fresh8.numpy_cases import CASES
from rows import describe


def params():
    return [pytest.param(case, dtype, id=f"{case.name}-{dtype}") for case in CASES for dtype in ("float64", "float32")]


@pytest.mark.parametrize("case, dtype", params())
def test_numpy_verdict(case, dtype):
    result = gradrun.check(case.forward, {k: v.copy() for k, v in case.point.items()}, vjp=case.vjp,
                           dtype=dtype, name=case.name, **case.settings)
    assert result.error is None, result.error
    if case.expect == "pass":
        assert result.passed, f"correct code failed: {describe(result)}"
    else:
        assert "fail" in {r.status for r in result.records}, f"bug not flagged: {describe(result)}"
