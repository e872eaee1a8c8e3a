"""gradrun against red-team round 10 (tests/fresh10/): correct code passes, buggy code is flagged,
with default settings, in float64 and float32 (a case's own dtypes where a bug shows in one)."""

import numpy as np
import pytest

import gradrun
from fresh10.numpy_cases import CASES
from corpus import case_params, check_jax_case, check_torch_case, jax_params
from rows import assert_flagged


@pytest.mark.parametrize("case, dtype", [pytest.param(c, d, id=f"{c.name}-{d}") for c in CASES for d in c.dtypes])
def test_numpy_verdict(case, dtype):
    result = gradrun.check(case.forward, {k: v.copy() for k, v in case.point.items()}, vjp=case.vjp,
                           dtype=dtype, name=case.name, **case.settings)
    assert_flagged(result, case.expect)


@pytest.mark.parametrize("case, dtype", case_params("torch", "fresh10.torch_cases"))
def test_torch_verdict(case, dtype):
    check_torch_case(case, dtype)


@pytest.mark.parametrize("case, dtype", jax_params("fresh10.jax_cases"))
def test_jax_verdict(case, dtype):
    check_jax_case(case, dtype)


def _float32_dense(X, W):  # a layer that computes in float32 alone, whatever it is given
    return np.tanh(X.astype(np.float32) @ W.astype(np.float32))


def _float32_dense_vjp(g, X, W, wrong=0.0):
    X, W, g = X.astype(np.float32), W.astype(np.float32), g.astype(np.float32)
    a = g * (1 - np.tanh(X @ W) ** 2)
    gW = X.T @ a
    gW[3, 5] *= 1 + wrong  # one weight's gradient off
    return a @ W.T, gW


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_coarse_screen_of_float32_code_vouches_for_nothing(dtype):
    """float32-only code over 4096 outputs: its screen's round-off bound (2 beside entries of J^T u
    of 8) passed a weight's gradient 100 % off. Its Jacobian (8.4e6 entries) is too large to
    check in full: the projections that agree are unresolved, not pass (docs/pass-rule.md, Screens)."""
    rng = np.random.default_rng(3)
    point = {"X": rng.normal(size=(64, 32)), "W": rng.normal(size=(32, 64)) * 0.3}
    result = gradrun.check(_float32_dense, point, vjp=lambda g, X, W: _float32_dense_vjp(g, X, W, 1.0), dtype=dtype,
                           wrt=["W"], name="float32-dense-4096")
    assert result.error is None, result.error
    assert not result.passed
    assert {r.status for r in result.records} == {"unresolved"}


def test_a_screen_is_coarse_where_float32_code_alone_computes_it():
    """screen.coarse: a sensitivity of 2.3 beside J^T u of 3.4 vouches for nothing in float32 code
    (the input is then checked in full within 10^6 entries: 3840 outputs of a float32 layer took
    11 s, and its weight's gradient 1 % off failed), and is float64 code's business alone."""
    from gradrun import numeric, screen

    found = screen.Screen(*(np.zeros(1),) * 3, np.array([2.3]), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool),
                          "richardson", 1e-2, np.ones((1, 2)), np.ones((1, 2)), np.array([[3.4, -1.0]]), None)
    assert screen.coarse(found, numeric.EPS["float32"])
    assert not screen.coarse(found, numeric.EPS["float64"])
    found.tolerance = np.array([2e-3])
    assert not screen.coarse(found, numeric.EPS["float32"])
