"""Chapter 1 of Deep Learning from Scratch, number for number.

Exact derivatives come from sympy (or the book's printed values); the book's
numeric ``deriv`` is written out here as the book writes it.
"""

import numpy as np
import pytest
import sympy as sp

import gradrun

x = sp.Symbol("x")
sigma = 1 / (1 + sp.exp(-x))

# name -> (sympy form, numpy forward, numpy derivative): the same function as an
# expression for gradrun's own graph and as a black-box callable with a VJP
FUNCTIONS = {
    "sigmoid": (sigma, lambda v: 1 / (1 + np.exp(-v)), lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
    "tanh": (sp.tanh(x), np.tanh, lambda v: 1 / np.cosh(v) ** 2),
    "exp": (sp.exp(x), np.exp, np.exp),
    "square": (x ** 2, lambda v: v * v, lambda v: 2 * v),
    "sin": (sp.sin(x), np.sin, np.cos),
}
POINTS = (0.5, 2.0, -3.0)
AUTO_RTOL = 1e-12

X = np.arange(1, 10).reshape(3, 3) / 10
W = np.arange(1, 7).reshape(3, 2) / 10 - 0.3


def deriv(f, at, delta=0.001):
    """The book's numeric derivative."""
    return (f(at + delta) - f(at - delta)) / (2 * delta)


def exact(expr, at):
    return float(sp.diff(expr, x).subs(x, sp.nsimplify(at)).evalf(40))


def rel(a, b):
    return abs(a - b) / abs(b)


def blackbox(name):
    """The function as a user's Python callable of one input x, with a hand-written VJP."""
    _, f, df = FUNCTIONS[name]

    def fn(x):
        return f(x)

    fn.__name__ = name
    return fn, (lambda g, x: g * df(x))


def loss_sympy():
    """L = sum(sigmoid(X @ W)) and its exact gradient with respect to X and W."""
    xs = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"x{i}{j}"))
    ws = sp.Matrix(3, 2, lambda i, j: sp.Symbol(f"w{i}{j}"))
    loss = sum(1 / (1 + sp.exp(-z)) for z in xs * ws)
    at = {xs[i, j]: sp.Rational(3 * i + j + 1, 10) for i in range(3) for j in range(3)}
    at.update({ws[i, j]: sp.Rational(2 * i + j + 1, 10) - sp.Rational(3, 10) for i in range(3) for j in range(2)})
    grad = {name: np.array([[float(sp.diff(loss, s).subs(at).evalf(40)) for s in row] for row in m.tolist()])
            for name, m in (("X", xs), ("W", ws))}
    return grad


@pytest.mark.parametrize("f,at,expected", [
    ("square(x)", 2.0, 4.0),
    ("sigmoid(x)", 0.0, 0.25),
    (["square", "sigmoid"], -1.0, -0.393223866482964),
])
def test_book_scalar_derivatives(f, at, expected):
    (rec,) = gradrun.check(f, {"x": at}).records
    assert rec.passed
    assert rel(rec.analytic, expected) <= 1e-12
    assert rel(rec.numeric, expected) <= 1e-12


def test_chain_value_is_exact():
    assert rel(-0.393223866482964, exact(sigma.subs(x, x ** 2), -1.0)) <= 1e-14


def test_book_matrix_loss():
    result = gradrun.check("sum(sigmoid(X @ W))", {"X": X, "W": W})
    assert result.passed
    got = {(r.input, r.index): r for r in result.records}
    assert rel(got["X", 0].analytic, -0.0749176093514139) <= 1e-12
    assert rel(got["W", 5].analytic, 0.444114156122371) <= 1e-12
    for name, grad in loss_sympy().items():
        for j, value in enumerate(grad.ravel()):
            assert rel(got[name, j].analytic, value) <= 1e-12, (name, j)
            assert rel(got[name, j].numeric, value) <= 1e-12, (name, j)


@pytest.mark.parametrize("f,numpy_f,at", [
    ("square(x)", lambda v: v ** 2, 2.0),
    ("square(x)", lambda v: v ** 2, -3.0),
    ("sigmoid(x)", FUNCTIONS["sigmoid"][1], 0.0),
    ("sigmoid(x)", FUNCTIONS["sigmoid"][1], 3.0),
    (["square", "sigmoid"], lambda v: FUNCTIONS["sigmoid"][1](v ** 2), -1.0),
])
def test_central_1e3_is_the_books_deriv(f, numpy_f, at):
    (rec,) = gradrun.check(f, {"x": at}, method="central", step=1e-3).records
    assert rec.step == 1e-3 and rec.method == "central"
    assert rel(rec.numeric, deriv(numpy_f, at)) <= 1e-12


def test_central_1e3_is_the_books_deriv_on_the_matrix_loss():
    def loss(Xm, Wm):
        return np.sum(1 / (1 + np.exp(-(Xm @ Wm))))

    result = gradrun.check("sum(sigmoid(X @ W))", {"X": X, "W": W}, method="central", step=1e-3)
    for r in result.records:
        e = np.zeros(X.size if r.input == "X" else W.size)
        e[r.index] = 1
        if r.input == "X":
            book = deriv(lambda t: loss(X + t * e.reshape(X.shape), W), 0.0)
        else:
            book = deriv(lambda t: loss(X, W + t * e.reshape(W.shape)), 0.0)
        # the book differences the whole L (about 3) over 2e-3, so its own round-off,
        # a few eps * L / 2e-3, is ~1e-12 absolute (~1e-11 relative on the smallest
        # entries); gradrun moves only the touched row of X @ W and is closer to exact
        book_round_off = 4 * np.finfo(float).eps * loss(X, W) / 2e-3
        assert abs(r.numeric - book) <= 1e-12 * abs(book) + book_round_off, r.element


@pytest.mark.parametrize("name", FUNCTIONS)
def test_auto_on_own_graph_is_exact_to_1e12(name):
    expr = FUNCTIONS[name][0]
    worst = max(rel(gradrun.check(f"{name}(x)", {"x": p}).records[0].numeric, exact(expr, p)) for p in POINTS)
    assert worst <= AUTO_RTOL


# Black-box auto spends 2 evaluations an element (a central difference at step
# eps**(1/3), ~1e-11 relative) and confirms with Richardson only what fails:
# the README promises 1e-9 there, 1e-12 on gradrun's own graphs.
BLACK_BOX_RTOL = 1e-9


@pytest.mark.parametrize("name", FUNCTIONS)
def test_auto_on_black_box_is_within_1e9(name):
    expr = FUNCTIONS[name][0]
    fn, vjp = blackbox(name)
    worst = 0.0
    for p in POINTS:
        (rec,) = gradrun.check(fn, {"x": p}, vjp=vjp).records
        assert rec.passed
        worst = max(worst, rel(rec.numeric, exact(expr, p)))
    assert worst <= BLACK_BOX_RTOL
