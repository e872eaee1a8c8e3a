"""gradrun passes every correct hand-written HVP rule in the second-order suite and flags every buggy one.

The suite is data (``tests/hvp_mutations.py``). Each variant is checked with
``order=2`` and default settings, in float64 and in float32: a correct rule
must pass every Hessian entry (and, its analytic side being a black box, the
symmetry rows), a buggy one must fail at least one Hessian entry itself. The
same holds with ``check: screen``: its HVP directions flag the bug and
localize it to entries that fail.
"""

import pytest

import gradrun
from gradrun.tree import PythonFunction, python_params
from hvp_mutations import cases
from rows import describe

CASES = cases()
DTYPES = ("float64", "float32")
CHECKS = ("full", "screen")


def params():
    return [pytest.param(case, hvp, should_pass, dtype, check, id=f"{case.name}-{variant}-{dtype}-{check}")
            for case in CASES for variant, hvp, should_pass in case.variants() for dtype in DTYPES
            for check in CHECKS]


def run(case, hvp, dtype, check="full"):
    point = case.point()
    if not case.expr:
        return gradrun.check(case.forward, point, vjp=case.vjp, hvp=hvp, order=2, dtype=dtype, check=check)
    fn = PythonFunction(case.forward.__name__, python_params(case.forward), case.forward, case.vjp, hvp=hvp)
    return gradrun.check(case.expr, point, functions={fn.name: fn}, order=2, dtype=dtype, check=check)


def test_suite_size():
    assert len(CASES) >= 10
    assert sum(len(c.bugs) for c in CASES) >= 20


@pytest.mark.parametrize("case,hvp,should_pass,dtype,check", params())
def test_second_order_mutation(case, hvp, should_pass, dtype, check):
    result = run(case, hvp, dtype, check)
    assert result.error is None, result.error
    assert all(r.order == 2 for r in result.records)
    if should_pass:
        assert result.passed, f"false alarm: {describe(result)}"
    else:
        entries = [r for r in result.records if r.check == check and r.index != -1]  # not projections
        assert any(r.status == "fail" for r in entries), f"missed bug: {describe(result)}"
