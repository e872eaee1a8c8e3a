"""order: 2 end to end: closed forms, both coordinates in the report, kinks, symmetry, screens, specs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import gradrun
from gradrun import cli, engine, hessian, second_order
from gradrun.expr import parse
from gradrun.primitives import PRIMITIVES
from gradrun.tree import PythonFunction
from hvp_mutations import quad, quad_hvp, quad_vjp, quartic, quartic_hvp, quartic_vjp

ROOT = Path(__file__).resolve().parent.parent


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def frame(f, inputs, **kw):
    result = gradrun.check(f, inputs, order=2, **kw)
    assert result.error is None, result.error
    return result, result.dataframe()


@pytest.mark.parametrize("x", [-3.0, -0.5, 0.0, 1.0, 2.5])
def test_sigmoid_second_derivative_is_s_prime_times_1_minus_2s(x):
    result, df = frame("sigmoid(x)", {"x": x})
    s = sigmoid(x)
    assert result.passed and len(df) == 1
    np.testing.assert_allclose(df.analytic[0], s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(df.numeric[0], s * (1 - s) * (1 - 2 * s), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("x", [-1.5, 0.3, 2.0])
def test_chain_rule_at_second_order(x):
    # (g . f)'' = g''(f) f'**2 + g'(f) f'' with f = x**2, g = sigmoid
    s = sigmoid(x * x)
    expected = s * (1 - s) * (1 - 2 * s) * (2 * x) ** 2 + s * (1 - s) * 2
    result, df = frame(["square", "sigmoid"], {"x": x})
    assert result.passed
    np.testing.assert_allclose(df.analytic[0], expected, rtol=1e-12)


def test_mixed_entries_and_both_coordinates():
    X = np.random.default_rng(0).normal(size=(3, 2))
    W = np.random.default_rng(1).normal(size=(2, 2))
    result, df = frame("sum(sigmoid(X @ W))", {"X": X, "W": W})
    assert result.passed and len(df) == 10 * 10
    assert set(df.columns) >= {"order", "input2", "index2", "element2"}
    assert (df.order == 2).all()
    # one entry by hand: d2 / dX[i,k] dW[k2,j] of sum sigmoid(Z), Z = X @ W
    Z = X @ W
    s = sigmoid(Z)
    i, k, k2, j = 1, 0, 1, 1
    expected = s[i, j] * (1 - s[i, j]) * (1 - 2 * s[i, j]) * W[k, j] * X[i, k2] + (s[i, j] * (1 - s[i, j]) if k == k2 else 0)
    row = df[(df.element == f"X[{i},{k}]") & (df.element2 == f"W[{k2},{j}]")]
    assert len(row) == 1
    np.testing.assert_allclose(row.analytic.iloc[0], expected, rtol=1e-12)
    assert row.input.iloc[0] == "X" and row.input2.iloc[0] == "W" and row.index2.iloc[0] == k2 * 2 + j


def test_first_order_rows_say_order_1():
    df = gradrun.check("sigmoid(x)", {"x": 0.5}).dataframe()
    assert (df.order == 1).all() and (df.input2 == "").all() and (df.index2 == -1).all()


def test_kink_is_not_a_failure():
    result, df = frame("sum(relu(x))", {"x": np.array([0.0, 1.0])})
    assert result.passed
    assert set(df.status) == {"kink", "pass"}


def test_complex_safe_python_function_needs_no_hvp():
    result, df = frame(quartic, {"x": np.array([0.5, -1.0, 2.0])}, vjp=quartic_vjp, complex_safe=True)
    assert result.passed
    df = df[df.check == "full"]
    np.testing.assert_allclose(df.analytic.to_numpy().reshape(3, 3), np.diag(3 * np.array([0.5, -1.0, 2.0]) ** 2))


def test_python_function_without_hvp_is_refused():
    with pytest.raises(ValueError, match="needs an 'hvp' rule"):
        gradrun.check(quartic, {"x": np.ones(2)}, vjp=quartic_vjp, order=2)


def test_vector_output_is_refused():
    with pytest.raises(ValueError, match="scalar output"):
        gradrun.check("tanh(x)", {"x": np.ones(2)}, order=2)


def test_symmetry_rows_flag_an_asymmetric_rule():
    x, a = np.array([0.3, -1.0, 2.0]), np.random.default_rng(2).normal(size=(3, 3))

    def unsymmetrized(g, t, x, a):
        return quad_hvp(g, t, x, a, symmetrize=False)

    good = gradrun.check(quad, {"x": x, "a": a}, vjp=quad_vjp, hvp=quad_hvp, order=2).dataframe()
    bad = gradrun.check(quad, {"x": x, "a": a}, vjp=quad_vjp, hvp=unsymmetrized, order=2).dataframe()
    n = 3 + 9
    assert (good.check == "symmetry").sum() == n * (n - 1) // 2
    assert (good.status == "pass").all()
    sym = bad[bad.check == "symmetry"]
    assert (sym.status == "fail").any()
    # exactly the x-x pairs of the unsymmetrized block disagree
    failing = sym[sym.status == "fail"]
    assert set(failing.input) == {"x"} and set(failing.input2) == {"x"}
    assert np.allclose(np.abs(failing.analytic - failing.numeric), np.abs(
        [a[r, c] - a[c, r] for r, c in zip(failing["index2"], failing["index"])]))


def test_screen_localizes_one_wrong_entry():
    n = 600  # 360,000 Hessian entries: auto screens
    x = np.random.default_rng(3).normal(size=n)

    def one_bad_entry(g, t, x):
        out = quartic_hvp(g, t, x)
        out[17] = out[17] + 1e-3 * t[0][421]
        return out

    good = gradrun.check(quartic, {"x": x}, vjp=quartic_vjp, hvp=quartic_hvp, order=2)
    assert good.passed and {r.check for r in good.records} == {"screen"}
    bad = gradrun.check(quartic, {"x": x}, vjp=quartic_vjp, hvp=one_bad_entry, order=2)
    assert not bad.passed
    entries = [r for r in bad.records if r.index != -1]  # what the screen localized, entry by entry
    assert {(r.index, r.index2) for r in entries if r.status == "fail"} == {(17, 421)}
    assert len(entries) == n  # one column: the one with the wrong entry
    assert all(r.status == "fail" for r in bad.records if r.index == -1)


def test_hvp_matches_a_dense_hessian_by_jax_style_double_reverse():
    # the analytic HVP against the Hessian sympy-free: torch's double backward on the same function
    torch = pytest.importorskip("torch")
    X = np.random.default_rng(4).normal(size=(4, 3))
    W = np.random.default_rng(5).normal(size=(3, 2))
    graph = engine.build(parse("sum(sigmoid(X @ W)) + sum(log(softplus(W)))", {n: p.nargs for n, p in PRIMITIVES.items()},
                               ["X", "W"]), {}, ["X", "W"])
    ours = second_order.hessian_columns(graph, {"X": X, "W": W}, ["X", "W"], range(18))

    def f(flat):
        Xt, Wt = flat[:12].reshape(4, 3), flat[12:].reshape(3, 2)
        return torch.sigmoid(Xt @ Wt).sum() + torch.log(torch.nn.functional.softplus(Wt)).sum()

    theirs = torch.autograd.functional.hessian(f, torch.tensor(np.concatenate([X.ravel(), W.ravel()])))
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-11, atol=1e-13)


def test_walkthrough_spec_runs_and_reports_both_coordinates(tmp_path):
    out = CliRunner().invoke(cli.cli, [str(ROOT / "experiments" / "second-order.yaml"), "--out", str(tmp_path), "-q"])
    assert out.exit_code == 0, out.output
    df = pd.read_csv(tmp_path / "second-order.csv")
    sig = df[df.experiment == "sigmoid-curve"]
    s = sigmoid(sig.value.to_numpy())
    np.testing.assert_allclose(sig.analytic, s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)
    user = df[df.experiment == "user-hvp"]
    assert set(user.check) == {"full", "symmetry"}
    assert {"x", "w"} == set(user.input2)


def test_hessian_module_checks_columns_as_arrays():
    graph = engine.build(parse("sum(exp(x) * y)", {n: p.nargs for n, p in PRIMITIVES.items()}, ["x", "y"]), {},
                         ["x", "y"])
    prob = hessian.Problem(graph, {"x": np.array([0.1, 0.2]), "y": np.array([1.0, 2.0])}, ["x", "y"],
                           gradrun.Settings(order=2))
    res = hessian.check_columns(prob, np.arange(4))
    expected = np.array([[np.exp(0.1), 0, np.exp(0.1), 0], [0, 2 * np.exp(0.2), 0, np.exp(0.2)],
                         [np.exp(0.1), 0, 0, 0], [0, np.exp(0.2), 0, 0]])
    np.testing.assert_allclose(res["analytic"], expected, rtol=1e-13, atol=1e-300)
    assert (res["status"] == "pass").all()


def test_curve_of_f_f1_f2(tmp_path):
    pytest.importorskip("matplotlib")
    from gradrun import plot

    out = CliRunner().invoke(cli.cli, [str(ROOT / "experiments" / "second-order.yaml"), "--out", str(tmp_path), "-q"])
    assert out.exit_code == 0, out.output
    df = plot.read_report(tmp_path / "second-order.csv")
    sig = df[df.experiment == "sigmoid-curve"]
    s = sigmoid(sig.value.to_numpy())
    np.testing.assert_allclose(sig.gradient, s * (1 - s), rtol=1e-13)  # f' beside f''
    written = plot.plot_report(sig, tmp_path / "plots")
    assert [p.name for p in written if p.name.endswith("-curve.png")] == ["sigmoid-curve-curve.png"]


def random_expression(rng, depth):
    """A random scalar expression in x and y over the built-ins (smooth, kinked, positive-domain)."""
    if depth == 0 or rng.random() < 0.25:
        return str(rng.choice(["x", "y"]))
    r = rng.random()
    inner = random_expression(rng, depth - 1)
    if r < 0.5:
        return f"{rng.choice(['square', 'cube', 'exp', 'sin', 'cos', 'tanh', 'sigmoid', 'softplus', 'relu', 'leaky_relu', 'abs'])}({inner})"
    if r < 0.6:
        return f"{rng.choice(['sqrt', 'log'])}(1.5 + square({inner}))"
    other = random_expression(rng, depth - 1)
    if r < 0.7:
        return f"({inner}) / (2 + sigmoid({other}))"
    return f"({inner} {rng.choice(['+', '-', '*'])} {other})"


@pytest.mark.parametrize("seed", range(40))
def test_no_false_alarm_on_random_compositions(seed):
    rng = np.random.default_rng(seed)
    expr = f"sum({random_expression(rng, 3)} + 0 * x * y)"
    inputs = {"x": rng.normal(size=3) * rng.choice([0.5, 1.0, 3.0]), "y": rng.normal(size=2)[:, None]}
    for dtype in ("float64", "float32"):
        result = gradrun.check(expr, inputs, order=2, dtype=dtype)
        assert result.passed, f"{expr} ({dtype}): " + "; ".join(
            f"{r.element},{r.element2}: {r.numeric!r} vs {r.analytic!r} (tol {r.tolerance!r})" for r in result.worst(2))


def test_undefined_f_is_nan_not_pass():
    result = gradrun.check("sum(log(x))", {"x": np.array([-1.0, 2.0])}, order=2)
    assert not result.passed and set(r.status for r in result.records) == {"nan"}


def test_inputs_left_out_of_wrt_are_not_differentiated():
    df = gradrun.check("sum(x * y * y)", {"x": np.array([1.0, 3.0]), "y": np.array([1.0, 2.0])},
                       wrt=["y"], order=2).dataframe()
    assert set(df.input) == set(df.input2) == {"y"}
    np.testing.assert_allclose(df.analytic.to_numpy().reshape(2, 2), np.diag([2.0, 6.0]))
