"""Verdicts element by element: kinks, NaN, forward against reverse mode, screens, float32."""

import warnings

import numpy as np
import pytest

import gradrun
from gradrun import screen


def statuses(result):
    return [r.status for r in result.records]


# ------------------------------------------------------------------ kinks


def test_relu_at_zero_is_a_kink_with_both_one_sided_values():
    (rec,) = gradrun.check("relu(x)", {"x": 0.0}).records
    assert rec.status == "kink" and rec.passed
    assert (rec.numeric_minus, rec.numeric_plus) == pytest.approx((0.0, 1.0), abs=1e-9)


def test_a_kink_the_composition_smooths_away_is_no_kink():
    (rec,) = gradrun.check(["leaky_relu", "square"], {"x": 0.0}).records
    assert rec.status == "pass" and rec.analytic == 0.0


def test_a_subgradient_outside_the_one_sided_values_fails():
    def f(x):
        return np.abs(x)

    def f_vjp(g, x):
        return (g * np.where(x == 0, 3.0, np.sign(x)),)  # 3 is no subgradient of |x| at 0

    (rec,) = gradrun.check(f, {"x": 0.0}, vjp=f_vjp).records
    assert rec.status == "fail" and not rec.passed
    assert (rec.numeric_minus, rec.numeric_plus) == pytest.approx((-1.0, 1.0), abs=1e-6)


def test_a_black_box_kink_is_found_from_one_sided_differences():
    def f(x):
        return np.maximum(x, 0.5 * x)

    def f_vjp(g, x):
        return (g * np.where(x > 0, 1.0, 0.5),)

    result = gradrun.check(f, {"x": np.array([-1.0, 0.0, 2.0])}, vjp=f_vjp)
    diagonal = [r.status for r in result.records if r.index == r.output]
    assert diagonal == ["pass", "kink", "pass"] and result.passed


# -------------------------------------------------------------------- nan


@pytest.mark.parametrize("expr, x", [("sqrt(x)", 0.0), ("log(x)", -1.0)])
def test_non_finite_gradients_are_reported_per_element(expr, x):
    result = gradrun.check(expr, {"x": np.array([x, 1.0])})
    diagonal = {r.index: r.status for r in result.records if r.index == r.output}
    assert diagonal == {0: "nan", 1: "pass"} and not result.passed


# ----------------------------------------------------- forward vs reverse mode


def cube(x):
    return x ** 3


def cube_vjp(g, x):
    return (g * 3 * x ** 2,)


def cube_jvp(t, x):
    return t[0] * 3 * x ** 2


def cube_jvp_wrong(t, x):
    return t[0] * 3 * x ** 2 * (1 + 1e-6)


X = {"x": np.array([0.5, -1.5, 2.0])}


def test_forward_and_reverse_mode_that_agree_pass():
    result = gradrun.check(cube, X, vjp=cube_vjp, jvp=cube_jvp)
    assert result.passed
    assert all(r.analytic_forward == pytest.approx(r.analytic, rel=1e-15) for r in result.records)


def test_a_jvp_that_disagrees_with_the_vjp_fails_even_when_the_vjp_is_right():
    result = gradrun.check(cube, X, vjp=cube_vjp, jvp=cube_jvp_wrong)
    assert not result.passed
    assert {r.element for r in result.failures} == {"x[0]", "x[1]", "x[2]"}


def test_forward_mode_alone_is_checked_against_differences():
    assert gradrun.check(cube, X, jvp=cube_jvp).passed
    assert not gradrun.check(cube, X, jvp=cube_jvp_wrong).passed


# ------------------------------------------------------------------- screen


def planted(index, rel):
    """An identity whose VJP is off by ``rel`` at one flat index: a backward bug to find."""
    def plant(X):
        return X

    def plant_vjp(g, X):
        g = np.array(g, dtype=np.float64)
        g.flat[index] *= 1 + rel
        return (g,)

    return gradrun.tree.PythonFunction("plant", ("X",), plant, plant_vjp, None, complex_safe=True)


def loss_inputs(n=40, k=30, m=20, seed=3):
    rng = np.random.default_rng(seed)
    return {"X": rng.normal(size=(n, k)), "W": rng.normal(size=(k, m)) / np.sqrt(k)}


def test_a_screen_passes_correct_code_with_one_row_per_direction():
    result = gradrun.check("sum(sigmoid(X @ W))", loss_inputs(), check="screen")
    assert result.passed
    assert {r.check for r in result.records} == {"screen"}
    assert len(result.records) == 2 * screen.SCREEN_DIRECTIONS
    assert all(r.index == -1 and r.element.startswith("u") for r in result.records)
    worst = {name: max(r.tolerance for r in result.records if r.input == name) for name in ("X", "W")}
    assert result.notes == [f"{name}: screened along 4 random sign directions; flags any single-entry "
                            f"error above {worst[name]:.2g}" for name in ("X", "W")]


def test_a_screen_localizes_one_wrong_entry_and_reports_it_as_a_full_check_would():
    fn = planted(517, 1e-3)
    result = gradrun.check("sum(sigmoid(plant(X) @ W))", loss_inputs(), functions={"plant": fn},
                           check="screen", wrt=["X"])
    failing = {r.element for r in result.failures if r.index >= 0}
    assert failing == {"X[17,7]"}  # 517 = 17 * 30 + 7
    assert len([r for r in result.records if r.index >= 0]) < 10  # localized, not a full check


def test_auto_screens_above_the_full_limit(monkeypatch):
    monkeypatch.setattr(screen, "FULL_LIMIT", 100)
    result = gradrun.check("sum(sigmoid(X @ W))", loss_inputs(), check="auto")
    assert {r.check for r in result.records} == {"screen"}
    monkeypatch.setattr(screen, "FULL_LIMIT", 10 ** 6)
    result = gradrun.check("sum(sigmoid(X @ W))", loss_inputs(), check="auto")
    assert {r.check for r in result.records} == {"full"} and len(result.records) == 40 * 30 + 30 * 20


# ------------------------------------------------------------------ float32


def test_user_code_that_ignores_float64_is_held_to_float32_alone():
    def f(x):
        return np.tanh(np.asarray(x, dtype=np.float32))

    def f_vjp(g, x):
        y = np.tanh(np.asarray(x, dtype=np.float32))
        return (np.asarray(g, dtype=np.float32) * (1 - y * y),)

    x = {"x": np.linspace(-2, 2, 7)}
    assert gradrun.check(f, x, vjp=f_vjp, dtype="float32").passed


def test_complex_step_is_refused_through_code_that_is_not_complex_safe():
    with pytest.raises(ValueError, match="complex-safe"):
        gradrun.check(cube, X, vjp=cube_vjp, method="complex")


# ----------------------------------------------------------------- progress


def test_a_long_check_reports_its_progress_element_by_element(monkeypatch):
    from gradrun import engine, runner
    from gradrun.model import Experiment, Point, Settings
    from gradrun.tree import Call, Var

    monkeypatch.setattr(engine, "MEMORY_CAP", 256)  # many small chunks
    inputs = loss_inputs()
    expr = Call("sum", (Call("sigmoid", (Call("matmul", (Var("X"), Var("W"))),)),))
    exp = Experiment("big", expr, {}, [Point(0, inputs)], ["X", "W"], Settings(check="full"))
    heard = []
    result = runner.run_experiment(exp, tick=heard.append)
    assert result.passed
    assert heard[-1] == "W: 600/600" and "X: 1200/1200" in heard
    counts = [int(t.split(": ")[1].split("/")[0]) for t in heard if t.startswith("X")]
    assert counts == sorted(counts) and len(counts) > 5


def test_a_vjp_of_the_wrong_shape_is_reported_not_a_traceback():
    def f(x):
        return 2 * x

    def f_vjp(g, x):
        return (np.ones(7),)

    with pytest.raises(ValueError, match=r"cotangent of shape \(7,\) for its input x of shape \(2, 3\)"):
        gradrun.check(f, {"x": np.ones((2, 3))}, vjp=f_vjp)


def test_a_screen_never_passes_a_non_finite_gradient():
    result = gradrun.check("log(x)", {"x": np.array([-1.0, 0.0, 1.0])}, check="screen")
    assert not result.passed
    assert all(r.status == "nan" for r in result.records if r.index == -1)
    diagonal = {r.index: r.status for r in result.records if r.index >= 0 and r.index == r.output}
    assert diagonal == {0: "nan", 1: "nan", 2: "pass"}


def test_overflow_is_reported_per_element_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradrun.check("exp(cube(square(square(square(x)))))", {"x": np.array([1.35, 0.3])})
    statuses = {(r.index, r.output): r.status for r in result.records}
    assert statuses[(0, 0)] == "nan" and statuses[(1, 1)] == "pass"


def test_an_empty_input_is_an_error_not_a_pass():
    """An empty Jacobian checks nothing, and nothing checked must not pass (issue 13)."""
    with pytest.raises(ValueError, match="input 'x' has no elements"):
        gradrun.check("sum(x) + y", {"x": np.zeros((0,)), "y": 1.0})


def test_a_jvp_of_the_wrong_shape_is_reported_not_broadcast():
    """A hand-written JVP's tangent has the output's shape: broadcast, a row-vector tangent of
    a square output repeats one row, which could hide a wrong value."""
    def f(x):
        return np.outer(x, np.ones(3))

    def f_vjp(g, x):
        return (g.sum(axis=1),)

    def f_jvp(t, x):
        return (t[0][:, None] * np.ones(3))[:1]  # (1, 3): the first row alone

    with pytest.raises(ValueError, match=r"tangent of shape \(1, 3\) for its output of shape \(3, 3\)"):
        gradrun.check(f, {"x": np.array([1.0, 1.0, 1.0])}, vjp=f_vjp, jvp=f_jvp)
