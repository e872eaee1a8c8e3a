"""Every primitive's second derivative, by forward-over-reverse, against sympy's closed forms.

For each primitive p and each shape case of ``test_primitives`` (broadcasting
included), the scalar ``f = sum(c * sin(p(args)))`` (c fixed weights, not
differentiated) has its Hessian computed by ``gradrun.second_order`` and by
sympy. The ``sin`` after p makes p's VJP rule carry a moving cotangent as well
as moving primals, so both halves of its second-order path are exercised. A
new primitive needs one line in ``SYMBOLIC`` and nothing else; a primitive
without one fails. Arguments that are not differentiated (where's condition,
one_hot's labels) enter as numbers, not symbols.
"""

import functools
import zlib

import numpy as np
import pytest
import sympy as sp

from gradrun import engine, second_order
from gradrun.primitives import LEAKY_SLOPE, PRIMITIVES
from gradrun.tree import Call, Var
from gradrun.params import normalize_axes
from test_primitives import REFERENCE, draw, params_of, shapes_of


def each(f):
    """An elementwise sympy function applied to object arrays (numbers or symbols)."""
    return np.vectorize(f, otypes=[object])


def _softmax(x):
    e = each(sp.exp)(np.atleast_1d(x))
    return (e / e.sum(axis=-1, keepdims=True)).reshape(np.shape(x))


def _logsumexp(x, axis=-1, keepdims=False):
    return each(sp.log)(_reduce(lambda a, b: a + b, each(sp.exp)(x), axis, keepdims)) if np.ndim(x) else x


def _reduce(fn, x, axis=None, keepdims=False):
    """fn folded over the given axes of an object array (any number of axes at once)."""
    x = np.asarray(x, dtype=object)
    axes = normalize_axes(axis, x.ndim)
    if not axes:
        return x
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    flat = moved.reshape(moved.shape[: x.ndim - len(axes)] + (-1,))
    out = np.empty(flat.shape[:-1], dtype=object)
    for i in np.ndindex(out.shape):
        out[i] = functools.reduce(fn, flat[i])
    return np.expand_dims(out, axes) if keepdims else out


def _add(a, b):
    return a + b


def _count(x, axis):
    return int(np.prod([np.shape(x)[a] for a in normalize_axes(axis, np.ndim(x))]))


def _var(x, axis=None, keepdims=False, ddof=0):
    d = x - _reduce(_add, x, axis, True) / _count(x, axis)
    return _reduce(_add, d * d, axis, keepdims) / (_count(x, axis) - ddof)


def _soft(x, axis=-1):
    e = each(sp.exp)(np.asarray(x, dtype=object))
    return e / _reduce(_add, e, axis, True) if np.ndim(x) else _softmax(x)


def _index(x, key):
    return x[tuple(slice(*k) if isinstance(k, tuple) else k for k in key)]


def _compare(test):
    return each(lambda a, b: sp.Piecewise((1, test(a, b)), (0, True)))


# arguments that are not differentiated: they enter as numbers
CONSTANT = {"where": (0,), "one_hot": (0,)}


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
    "transpose": lambda x, axes=None: np.transpose(x, axes),
    "sum": lambda x, axis=None, keepdims=False: _reduce(_add, x, axis, keepdims),
    "mean": lambda x, axis=None, keepdims=False: _reduce(_add, x, axis, keepdims) / _count(x, axis),
    "softmax": _soft,
    "logsumexp": _logsumexp,
    "log_softmax": lambda x, axis=-1: x - _logsumexp(x, axis, True) if np.ndim(x) else 0 * x,
    "var": _var,
    "std": lambda x, axis=None, keepdims=False, ddof=0: each(sp.sqrt)(_var(x, axis, keepdims, ddof)),
    "max": lambda x, axis=None, keepdims=False: _reduce(sp.Max, x, axis, keepdims),
    "min": lambda x, axis=None, keepdims=False: _reduce(sp.Min, x, axis, keepdims),
    "prod": lambda x, axis=None, keepdims=False: _reduce(lambda a, b: a * b, x, axis, keepdims),
    "norm": lambda x, axis=None, keepdims=False: each(sp.sqrt)(_reduce(_add, x * x, axis, keepdims)),
    "log1p": each(lambda x: sp.log(1 + x)),
    "expm1": each(lambda x: sp.exp(x) - 1),
    "erf": each(sp.erf),
    "gelu": each(lambda x: x * (1 + sp.erf(x / sp.sqrt(2))) / 2),
    "silu": each(lambda x: x / (1 + sp.exp(-x))),
    "sign": each(sp.sign),
    "maximum": each(sp.Max),
    "minimum": each(sp.Min),
    "clip": lambda x, low, high: each(lambda v: sp.Min(sp.Max(v, low), high))(x),
    "where": lambda c, a, b: np.where(c > 0, a, b),
    "less": _compare(lambda a, b: a < b),
    "less_equal": _compare(lambda a, b: a <= b),
    "greater": _compare(lambda a, b: a > b),
    "greater_equal": _compare(lambda a, b: a >= b),
    "reshape": lambda x, shape: np.reshape(x, shape),
    "broadcast_to": lambda x, shape: np.broadcast_to(x, shape),
    "concatenate": lambda *xs, axis=0: np.concatenate(xs, axis),
    "stack": lambda *xs, axis=0: np.stack(xs, axis),
    "index": _index,
    "one_hot": lambda y, n: np.eye(n, dtype=int)[np.rint(y).astype(int)].astype(object),
}


def cases():
    for name in sorted(PRIMITIVES):
        if name not in SYMBOLIC or name not in REFERENCE:
            yield pytest.param(name, None, id=f"{name}-missing")
            continue
        for case in REFERENCE[name][1]:
            label = "-".join(map(str, shapes_of(case))) + "".join(f"-{k}={v}" for k, v in params_of(case).items())
            yield pytest.param(name, case, id=f"{name}-{label}".replace(" ", ""))


def test_every_primitive_has_a_symbolic_form():
    assert not sorted(set(PRIMITIVES) - set(SYMBOLIC)), "add a SYMBOLIC entry in tests/test_second_order_primitives.py"


@pytest.mark.parametrize("name,case", list(cases()))
def test_second_derivative(name, case):
    if case is None:
        pytest.fail(f"primitive '{name}' has no SYMBOLIC entry")
    shapes, params = shapes_of(case), params_of(case)
    args = draw(name, shapes)
    names = [f"a{k}" for k in range(len(args))]
    wrt = [n for k, n in enumerate(names) if k not in CONSTANT.get(name, ())]
    if not wrt:
        pytest.skip(f"{name} differentiates none of its arguments")
    symbols = [np.array(sp.symbols(f"{n}_0:{max(a.size, 1)}", real=True), dtype=object)[:a.size].reshape(a.shape)
               if n in wrt else a for n, a in zip(names, args)]
    out = np.asarray(SYMBOLIC[name](*symbols, **params), dtype=object)
    c = np.random.default_rng(zlib.crc32(name.encode())).normal(size=out.shape)
    f = np.sum(c * each(sp.sin)(out)) if out.shape else c * sp.sin(out[()])
    flat = [s for sym, n in zip(symbols, names) if n in wrt for s in np.ravel(sym)]
    point = {s: float(v) for sym, a, n in zip(symbols, args, names) if n in wrt
             for s, v in zip(np.ravel(sym), np.ravel(a))}
    expected = np.array(sp.hessian(sp.sympify(f), flat).subs(point).evalf(30), dtype=np.float64)

    call = Call(name, tuple(Var(n) for n in names), tuple(sorted(params.items())))
    expr = Call("sum", (Call("mul", (Var("c"), Call("sin", (call,)))),))
    graph = engine.build(expr, {}, names + ["c"])
    values = dict(zip(names, args)) | {"c": c}
    analytic = second_order.hessian_columns(graph, values, wrt, range(len(flat)))
    atol = 1e-10 * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(analytic, expected, rtol=1e-9, atol=atol, err_msg=f"{name} Hessian")

    if args[0].dtype == np.float64:  # and in complex64: the float32 path of the same rules
        analytic32 = second_order.hessian_columns(graph, values, wrt, range(len(flat)), np.float32)
        np.testing.assert_allclose(analytic32, expected, rtol=2e-4, atol=2e-4 * max(1.0, np.abs(expected).max()),
                                   err_msg=f"{name} Hessian in float32")
