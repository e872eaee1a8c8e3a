"""gradrun passes every correct second-order case of the fresh corpus (tests/hvp_fresh.py) and flags every buggy one.

``order=2``, default settings, float64 and float32, in full and through a
screen: a correct rule passes every Hessian entry, a buggy one fails at least
one Hessian entry itself (not only a projection).
"""

import pytest

import gradrun
from hvp_fresh import EXPR_CASES, EXPR_KNOWN, JAX_CASES, NUMPY_CASES
from rows import describe
from test_second_order_mutations import run

DTYPES = ("float64", "float32")
CHECKS = ("full", "screen")


def assert_second_order_verdict(result, should_pass, check):
    assert result.error is None, result.error
    assert all(r.order == 2 for r in result.records)
    if should_pass:
        assert result.passed, f"false alarm: {describe(result)}"
    else:
        entries = [r for r in result.records if r.check == check and r.index != -1]
        assert any(r.status == "fail" for r in entries), f"missed bug: {describe(result)}"


def xfail(case, variant):
    why = getattr(case, "known_misses", {}).get(variant)
    return [pytest.mark.xfail(reason=why, strict=True)] if why else []


@pytest.mark.parametrize("case, hvp, should_pass, dtype, check", [
    pytest.param(case, hvp, should_pass, dtype, check, id=f"{case.name}-{variant}-{dtype}-{check}",
                 marks=xfail(case, variant))
    for case in NUMPY_CASES for variant, hvp, should_pass in case.variants() for dtype in DTYPES for check in CHECKS])
def test_numpy_hvp(case, hvp, should_pass, dtype, check):
    assert_second_order_verdict(run(case, hvp, dtype, check), should_pass, check)


@pytest.mark.parametrize("case, bug, should_pass, dtype", [
    pytest.param(case, bug, should_pass, dtype, id=f"{case.name}-{variant}-{dtype}", marks=xfail(case, variant))
    for case in JAX_CASES for variant, bug, should_pass in case.variants() for dtype in DTYPES])
def test_jax_double_backward(case, bug, should_pass, dtype):
    pytest.importorskip("jax")
    from gradrun.frameworks import jax as adapter

    fn = adapter.function(case.build(bug), "f")
    result = gradrun.check(f"f({', '.join(fn.params)})", case.point(), functions={"f": fn}, order=2, dtype=dtype,
                           name=case.name)
    assert_second_order_verdict(result, should_pass, "full")


def test_corpus_size():
    correct = len(NUMPY_CASES) + len(JAX_CASES)
    bugs = sum(len(c.bugs) for c in NUMPY_CASES + JAX_CASES)
    assert correct >= 8 and bugs >= 10


@pytest.mark.parametrize("name, dtype, check", [
    pytest.param(name, dtype, check, id=f"{name}-{dtype}-{check}",
                 marks=[pytest.mark.xfail(reason=EXPR_KNOWN[name, dtype], strict=True)] if (name, dtype) in EXPR_KNOWN
                 else [])
    for name in EXPR_CASES for dtype in DTYPES for check in CHECKS])
def test_builtin_expression_hessian(name, dtype, check):
    """Correct built-in expressions at hard points: every Hessian entry and projection passes."""
    expr, inputs = EXPR_CASES[name]
    result = gradrun.check(expr, inputs, order=2, dtype=dtype, check=check, name=name)
    assert_second_order_verdict(result, True, check)
