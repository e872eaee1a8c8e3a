"""Every primitive's second derivative, by forward-over-reverse, against sympy's closed forms.

For each primitive p and each shape case of ``test_primitives`` (broadcasting
included), the scalar ``f = sum(c * sin(p(args)))`` (c fixed weights, not
differentiated) has its Hessian computed by ``gradrun.second_order`` and by
sympy. The ``sin`` after p makes p's VJP rule carry a moving cotangent as well
as moving primals, so both halves of its second-order path are exercised. A
new primitive needs one line in ``SYMBOLIC`` and nothing else; a primitive
without one fails.
"""

import zlib

import numpy as np
import pytest
import sympy as sp

from gradrun import engine, second_order
from gradrun.primitives import LEAKY_SLOPE, PRIMITIVES
from gradrun.tree import Call, Var
from test_primitives import REFERENCE, draw


def each(f):
    """An elementwise sympy function applied to object arrays (numbers or symbols)."""
    return np.vectorize(f, otypes=[object])


def _softmax(x):
    e = each(sp.exp)(np.atleast_1d(x))
    return (e / e.sum(axis=-1, keepdims=True)).reshape(np.shape(x))


def _logsumexp(x):
    return each(sp.log)(each(sp.exp)(x).sum(axis=-1)) if np.ndim(x) else x


# name -> the primitive as sympy, on object arrays of symbols
SYMBOLIC = {
    "square": each(lambda x: x ** 2),
    "cube": each(lambda x: x ** 3),
    "sqrt": each(sp.sqrt),
    "exp": each(sp.exp),
    "log": each(sp.log),
    "sin": each(sp.sin),
    "cos": each(sp.cos),
    "tan": each(sp.tan),
    "tanh": each(sp.tanh),
    "sigmoid": each(lambda x: 1 / (1 + sp.exp(-x))),
    "softplus": each(lambda x: sp.log(1 + sp.exp(x))),
    "relu": each(lambda x: sp.Max(x, 0)),
    "leaky_relu": each(lambda x: sp.Piecewise((x, x > 0), (sp.Float(LEAKY_SLOPE) * x, True))),
    "abs": each(sp.Abs),
    "neg": lambda x: -x,
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": each(lambda a, b: a ** b),
    "matmul": lambda a, b: np.asarray(np.dot(a, b), dtype=object),
    "transpose": lambda x: np.transpose(x),
    "sum": lambda x: np.sum(x),
    "mean": lambda x: np.sum(x) / np.size(x),
    "softmax": _softmax,
    "logsumexp": _logsumexp,
}


def cases():
    for name in sorted(PRIMITIVES):
        if name not in SYMBOLIC or name not in REFERENCE:
            yield pytest.param(name, None, id=f"{name}-missing")
            continue
        for shapes in REFERENCE[name][1]:
            yield pytest.param(name, shapes, id=f"{name}-{'-'.join(map(str, shapes))}".replace(" ", ""))


def test_every_primitive_has_a_symbolic_form():
    assert not sorted(set(PRIMITIVES) - set(SYMBOLIC)), "add a SYMBOLIC entry in tests/test_second_order_primitives.py"


@pytest.mark.parametrize("name,shapes", list(cases()))
def test_second_derivative(name, shapes):
    if shapes is None:
        pytest.fail(f"primitive '{name}' has no SYMBOLIC entry")
    args = draw(name, shapes)
    names = [f"a{k}" for k in range(len(args))]
    symbols = [np.array(sp.symbols(f"{n}_0:{max(a.size, 1)}", real=True), dtype=object)[:a.size].reshape(a.shape)
               for n, a in zip(names, args)]
    out = np.asarray(SYMBOLIC[name](*symbols), dtype=object)
    c = np.random.default_rng(zlib.crc32(name.encode())).normal(size=out.shape)
    f = np.sum(c * each(sp.sin)(out)) if out.shape else c * sp.sin(out[()])
    flat = [s for sym in symbols for s in np.ravel(sym)]
    point = {s: float(v) for sym, a in zip(symbols, args) for s, v in zip(np.ravel(sym), np.ravel(a))}
    expected = np.array(sp.hessian(sp.sympify(f), flat).subs(point).evalf(30), dtype=np.float64)

    expr = Call("sum", (Call("mul", (Var("c"), Call("sin", (Call(name, tuple(Var(n) for n in names)),)))),))
    graph = engine.build(expr, {}, names + ["c"])
    values = dict(zip(names, args)) | {"c": c}
    analytic = second_order.hessian_columns(graph, values, names, range(len(flat)))
    atol = 1e-10 * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(analytic, expected, rtol=1e-9, atol=atol, err_msg=f"{name} Hessian")

    if args[0].dtype == np.float64:  # and in complex64: the float32 path of the same rules
        analytic32 = second_order.hessian_columns(graph, values, names, range(len(flat)), np.float32)
        np.testing.assert_allclose(analytic32, expected, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(expected).max()),
                                   err_msg=f"{name} Hessian in float32")
