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


def torch_params():
    if importlib.util.find_spec("torch") is None:
        return []
    cases = importlib.import_module("fresh10.torch_cases").CASES
    return [pytest.param(c, d, id=f"{c.name}-{d}") for c in cases for d in c.dtypes]


@pytest.mark.parametrize("case, dtype", torch_params())
def test_torch_verdict(case, dtype):
    from gradrun.frameworks import torch as adapter

    result = adapter.check(case.code, case.inputs, dtype=dtype, name=case.name, **case.keywords)
    assert_flagged(result, case.expect)


def jax_params():
    if importlib.util.find_spec("jax") is None:
        return []
    cases = importlib.import_module("fresh10.jax_cases").CASES
    return [pytest.param(case, dtype, id=f"{case[0]}-{dtype}") for case in cases for dtype in case[4]]


@pytest.mark.parametrize("case, dtype", jax_params())
def test_jax_verdict(case, dtype):
    from gradrun.frameworks import jax as adapter

    name, code, inputs, expect, _ = case
    fn = adapter.function(code, "f")
    result = gradrun.check(f"f({', '.join(fn.params)})", inputs, functions={"f": fn}, dtype=dtype, name=name)
    assert_flagged(result, expect)
