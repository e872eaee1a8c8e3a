"""gradrun passes every correct JAX derivative rule in tests/jax_mutations.py and flags every buggy one.

Each variant is a ``custom_jvp`` or ``custom_vjp`` function checked through
the JAX adapter with default settings, in float64 and in float32.
"""

import pytest

pytest.importorskip("jax", reason="the JAX mutation suite needs jax (pip install 'gradrun[jax]')")

import gradrun  # noqa: E402
from gradrun.frameworks import jax as adapter  # noqa: E402
from jax_mutations import RULES  # noqa: E402
from rows import assert_verdict

DTYPES = ("float64", "float32")


def params():
    # one wrapper per variant serves both dtypes: its float64 compilations are made once
    return [pytest.param(rule, variant, wrapped, should_pass, dtype, id=f"{rule.name}-{variant}-{dtype}")
            for rule in RULES for variant, fn, should_pass in rule.variants()
            for wrapped in [adapter.function(fn, "f")] for dtype in DTYPES]


def check(rule, wrapped, dtype):
    """gradrun's verdict on one wrapped JAX function at the rule's point."""
    expr = f"f({', '.join(wrapped.params)})"
    return gradrun.check(expr, rule.point(), functions={"f": wrapped}, dtype=dtype, name=rule.name)


@pytest.mark.parametrize("rule, variant, fn, should_pass, dtype", params())
def test_verdict(rule, variant, fn, should_pass, dtype):
    result = check(rule, fn, dtype)
    assert result.error is None, result.error
    assert_verdict(result, should_pass, "rule")


def test_suite_size():
    assert len(RULES) >= 10
    assert sum(len(r.bugs) for r in RULES) >= 20
    assert {r.kind for r in RULES} == {"custom_jvp", "custom_vjp"}
