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


def test_a_failure_of_forward_against_reverse_mode_says_so_and_ranks_first():
    """A JVP 1.5 % off beside a right VJP (torch 2.13's own forward mode of logcumsumexp): the
    rows' numeric and analytic (reverse mode) agree, so the reason and the worst entries say
    which side disagrees, instead of listing passing rows above the failing one."""
    import numpy as np

    from gradrun.readings import entry_lines, worst_entries

    x = np.array([0.3, 1.1, -0.7])
    result = gradrun.check(np.sin, {"x": x}, vjp=lambda g, x: g * np.cos(x),
                           jvp=lambda t, x: t[0] * np.cos(x) * np.array([1, 0.985, 1]))
    failed = [r for r in result.records if r.status == "fail"]
    assert [r.element for r in failed] == ["x[1]"], describe(result)
    assert failed[0].reason.startswith("forward mode (JVP) gives 0.4467"), failed[0].reason
    worst = worst_entries(result, 1)
    assert worst[0].element == "x[1]" and "forward mode (JVP)" in entry_lines(result, worst)[0]
