"""The pass rule, the kink rule and ``unresolved`` (docs/pass-rule.md), each against independent numbers."""

import numpy as np
import pytest

import gradrun
import gradrun.runner
from gradrun import numeric


def test_a_jump_is_unresolved_not_a_pass_nor_a_kink_and_the_summary_says_what_to_change():
    def f(x):
        return x + (x > 1e-300)  # a unit jump just right of 0: no derivative to measure there

    result = gradrun.check(f, {"x": np.array([0.0, 0.5])}, vjp=lambda g, x: g * 1.0)
    status = {(r.index, r.output): r for r in result.records}
    assert status[(0, 0)].status == "unresolved" and not status[(0, 0)].passed
    assert "numeric uncertainty" in status[(0, 0)].reason
    assert status[(1, 1)].status == "pass" and status[(1, 1)].reason == ""
    assert not result.passed
    assert any("1 unresolved (not a pass)" in note and "to decide" in note for note in result.notes)


@pytest.mark.parametrize("wrong", [1.0, 1.3])
def test_an_explicit_coarse_step_is_shown_but_the_verdict_rests_on_a_better_measurement(wrong):
    x = np.array([0.0, 0.5])
    result = gradrun.check(lambda x: np.sum(np.exp(x)), {"x": x}, vjp=lambda g, x: g * np.exp(x) * wrong,
                           method="forward", step=0.5)
    shown = (np.exp(x + 0.5) - np.exp(x)) / 0.5  # the book's forward difference at the user's step
    assert [r.numeric for r in result.records] == pytest.approx(shown, rel=1e-12)
    assert {r.method for r in result.records} == {"forward"} and {r.step for r in result.records} == {0.5}
    assert result.passed == (wrong == 1.0)
    assert all(r.reason.startswith("decided by richardson") for r in result.records)


@pytest.mark.parametrize("slope, status", [(3.0, "pass"), (3.0001, "fail")])
def test_a_linear_function_is_never_a_kink(slope, status):
    result = gradrun.check(lambda x: 3.0 * x + 1.0, {"x": np.array([0.0, 0.5, -2.0])},
                           vjp=lambda g, x: g * slope)
    diagonal = {r.status for r in result.records if r.index == r.output}
    assert diagonal == {status}


def test_a_kink_needs_a_gap_that_stays_and_the_analytic_value_between_the_sides():
    result = gradrun.check(lambda x: np.abs(x - 1e-3), {"x": np.array([1e-3, 0.5])},
                           vjp=lambda g, x: g * np.where(x >= 1e-3, 1.0, -1.0))  # the right slope at the kink
    rows = {r.index: r for r in result.records if r.index == r.output}
    assert rows[0].status == "kink" and (rows[0].numeric_minus, rows[0].numeric_plus) == pytest.approx((-1, 1))
    assert rows[1].status == "pass"


def test_one_large_input_does_not_loosen_the_other_elements_tolerance():
    def tolerances(big):
        x = np.array([big, 0.7, -1.2])
        result = gradrun.check(lambda x, w: x * w, {"x": x, "w": np.array([0.9, 1.1, 0.8])},
                               vjp=lambda g, x, w: (g * w, g * x))
        return {(r.input, r.index): r.tolerance for r in result.records if r.index == r.output}

    small, large = tolerances(1.0), tolerances(1e6)
    for key in [("x", 1), ("x", 2), ("w", 1), ("w", 2)]:
        assert large[key] <= 2 * small[key]


def test_auto_steps_are_relative_to_the_element_with_a_floor_from_the_input():
    eps = numeric.EPS["float64"]
    x = np.array([1e-8, -3e-7, 2.0])
    floor = numeric.step_floor(x)
    assert floor == 1.0  # the RMS, 1.15 here, but never above 1
    h = numeric.steps("central", x, "auto", eps, floor)
    assert h == pytest.approx(eps ** (1 / 3) * np.maximum(np.abs(x), floor))
    assert numeric.step_floor(np.array([1e-8, 0.0, -1e-8])) == pytest.approx(1e-8)
    assert numeric.step_floor(np.zeros(3)) == 1.0


@pytest.mark.parametrize("x", [1e-10, 1e-12])
def test_a_step_that_would_cross_a_domain_edge_shrinks_until_finite(x):
    result = gradrun.check(lambda x: np.sqrt(x) + np.sqrt(1 - x), {"x": np.array([x, 0.5])},
                           vjp=lambda g, x: g * (0.5 / np.sqrt(x) - 0.5 / np.sqrt(1 - x)))
    (first,) = [r for r in result.records if r.index == 0 and r.output == 0]
    assert first.status == "pass"
    assert first.numeric == pytest.approx(0.5 / np.sqrt(x) - 0.5 / np.sqrt(1 - x), rel=1e-6)


# ------------------------------------------------------------------ at load: no invented inputs, auto decides first

SOLVE_MODULE = '''
import numpy as np

def solve(A, b):
    if not np.any(A):
        raise AssertionError("called on an invented all-zero matrix")
    return np.linalg.solve(A, b)

def solve_vjp(g, A, b):
    x = np.linalg.solve(A, b)
    gb = np.linalg.solve(A.T, g)
    return -np.outer(gb, x), gb
'''

SPEC = '''version: 1
functions:
  solve: {python: "linsolve:solve", vjp: "linsolve:solve_vjp"}
experiments:
  - name: solve
    function: solve
    inputs:
      A: [[2.0, 0.5], [0.1, 1.0]]
      b: [1.0, -1.0]
  - name: large-elementwise
    expr: "sigmoid(x)"
    inputs: {x: {shape: [3000], init: normal}}
'''


def test_a_spec_loads_without_calling_user_code_on_zeros_and_auto_screens_before_the_row_limit(tmp_path):
    from gradrun import spec

    (tmp_path / "linsolve.py").write_text(SOLVE_MODULE)
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    loaded = spec.load_spec(path)  # the 3000 x 3000 Jacobian would be 9e6 rows in full: auto screens it
    results = [gradrun.runner.run_experiment(e) for e in loaded.experiments]
    assert [r.passed for r in results] == [True, True]
    assert results[1].check == "screen"
    path.write_text(SPEC.replace("name: large-elementwise", "name: large-elementwise\n    check: full"))
    with pytest.raises(gradrun.SpecError, match="more than 2000000"):
        spec.load_spec(path)


def test_a_side_on_which_f_never_moves_decides_an_analytic_zero_but_not_a_jump_nor_a_slope():
    """Where f' is 0 on one side of a kink at x or 1e-9 from it, no Richardson level resolves the
    zero entry of a zero row (x·relu(x)'s differences are h/2 at every step; sum(relu(x)) at
    -1e-9 needs steps below 1e-9, whose round-off is 1e-7): they were unresolved. f exactly
    unmoved on one side at every step decides an analytic 0 (``judge._flat_side``); never a
    jump there, nor a nonzero analytic slope."""
    x = np.array([-1e-9, 0.0, 0.5, -0.7])
    relu_sum = gradrun.check(lambda x: np.maximum(x, 0).sum(), {"x": x}, vjp=lambda g, x: g * (x > 0))
    assert relu_sum.passed, [(r.element, r.status, r.reason) for r in relu_sum.records]
    squared = gradrun.check(lambda x: x * np.maximum(x, 0), {"x": x}, vjp=lambda g, x: 2 * g * np.maximum(x, 0))
    assert squared.passed, [(r.element, r.output, r.status, r.reason) for r in squared.records]
    unmasked = gradrun.check(lambda x: x * np.maximum(x, 0), {"x": x}, vjp=lambda g, x: 2 * g * x)
    assert {r.status for r in unmasked.records if r.index == 0 and r.output == 0} == {"fail"}
    jump = gradrun.check(lambda x: (x > 1e-300) * 1.0 + x * 0.0, {"x": np.array([0.0, 0.5])},
                         vjp=lambda g, x: g * 0.0)
    assert [r.status for r in jump.records if r.index == 0 and r.output == 0] == ["unresolved"]


@pytest.mark.parametrize("size", [1e-200, 1.0, 1e200])
def test_the_noise_of_f_is_measured_at_any_size(size):
    """ECnoise squares differences of f: below 1e-154 they squared to 0 (attention probabilities
    of 1e-200 read as noiseless, and their round-off failed a right gradient), above 1e154 to inf."""
    values = np.random.default_rng(0).normal(size=(numeric.NOISE_POINTS, 1, 1)) * 1e-14
    sigma, unit = numeric._noise_at(size * values)[0, 0], numeric._noise_at(values)[0, 0]
    assert np.isfinite(unit) and unit > 1e-15
    assert sigma / size == pytest.approx(unit, rel=1e-12, abs=0)


def test_a_nan_analytic_where_f_is_smooth_and_measured_fails_but_not_at_a_cusp():
    """A VJP masking by multiplication, (x > 0) * 0.5 / sqrt(x), is NaN where f = sqrt(max(x, 0))
    is 0 and flat (x = -1): f and its differences are finite there, so the NaN is wrong, a fail
    (it was "nan", which a reader could take for f's own trouble). At a cusp, sqrt(|x|) at 0,
    whose one-sided differences diverge, no derivative exists, and a NaN stays "nan"."""
    with np.errstate(invalid="ignore", divide="ignore"):
        masked = gradrun.check(lambda x: np.sqrt(np.maximum(x, 0)), {"x": np.array([-1.0, 0.25])},
                               vjp=lambda g, x: g * (x > 0) * 0.5 / np.sqrt(x))
        cusp = gradrun.check(lambda x: np.abs(x) ** 0.5, {"x": np.array([0.0, 0.25])},
                             vjp=lambda g, x: g * 0.5 * np.sign(x) / np.abs(x) ** 0.5)
    status = {(r.index, r.output): r.status for r in masked.records}
    assert status[(0, 0)] == "fail" and status[(1, 1)] == "pass"
    assert {r.status for r in cusp.records if r.index == 0 and r.output == 0} == {"nan"}
