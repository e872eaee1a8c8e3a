"""Every primitive in the table, checked by iterating over the table.

Forward is compared with a closed form written here, independently, with
numpy; VJP and JVP rules (and, for complex-safe primitives, complex step
through the forward) with a fourth-order central difference of that closed
form, computed here, not with gradrun's numeric module. A new primitive needs
one line in ``REFERENCE`` and nothing else; a primitive without one fails.
A shape case is a tuple of argument shapes, or ``With(shapes, params)`` for a
primitive's static arguments (axis=, shape=...).
"""

import math
import zlib
from typing import NamedTuple

import mpmath
import numpy as np
import pytest

from gradrun import engine
from gradrun.primitives import PRIMITIVES
from gradrun.tree import Call, Var


class With(NamedTuple):
    shapes: tuple
    params: dict


def shapes_of(case):
    return case.shapes if isinstance(case, With) else case


def params_of(case):
    return dict(case.params) if isinstance(case, With) else {}

# Shape cases: one tuple of argument shapes per case.
UNARY = [((),), ((3,),), ((2, 3),)]
BINARY = [((), ()), ((3,), (3,)), ((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), (2, 3)),
          ((2, 1), (1, 3)), ((), (2, 3)), ((2, 3), ())]
MATMUL = [((2, 3), (3, 4)), ((3,), (3, 4)), ((2, 3), (3,)), ((3,), (3,))]
TRANSPOSE = [((),), ((3,),), ((2, 3),), ((2, 3, 4),)]


def _softmax(x):
    x1 = np.atleast_1d(x)
    e = np.exp(x1)
    return (e / e.sum(axis=-1, keepdims=True)).reshape(np.shape(x))


def _logsumexp(x, axis=-1, keepdims=False):
    return np.log(np.exp(x).sum(axis=axis, keepdims=keepdims)) if np.ndim(x) else np.asarray(x)


_mp_erf = np.vectorize(lambda v: float(mpmath.erf(v)))  # mpmath, not gradrun's math.erf


def _gelu(x):
    return x * (1 + _mp_erf(x / math.sqrt(2))) / 2


def _index(key):
    return lambda x: x[key]


# argument makers for primitives whose arguments are not plain reals
def _as_mask(args):  # where's condition: +1 or -1, far from its boundary at 0
    return [np.where(args[0] > 0, 1.0, -1.0)] + args[1:]


def _as_labels(args):
    return [np.floor(np.abs(args[0])) % 4]


AXES = [With(((2, 3),), {"axis": 0}), With(((2, 3),), {"axis": 1, "keepdims": True}),
        With(((2, 3, 2),), {"axis": (0, 2)}), With(((2, 3),), {"axis": -1})]
REDUCE = UNARY + AXES
SOFT = UNARY + [With(((2, 3),), {"axis": 0}), With(((2, 3, 2),), {"axis": 1})]


# name -> (closed-form forward, shape cases, values to keep away from: poles and kinks, per argument)
REFERENCE = {
    "square": (lambda x: x ** 2, UNARY, ()),
    "cube": (lambda x: x ** 3, UNARY, ()),
    "sqrt": (lambda x: x ** 0.5, UNARY, ()),
    "exp": (lambda x: np.e ** x, UNARY, ()),
    "log": (lambda x: np.log(x), UNARY, ()),
    "sin": (lambda x: np.sin(x), UNARY, ()),
    "cos": (lambda x: np.cos(x), UNARY, ()),
    "tan": (lambda x: np.sin(x) / np.cos(x), UNARY, ()),
    "tanh": (lambda x: (np.exp(2 * x) - 1) / (np.exp(2 * x) + 1), UNARY, ()),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), UNARY, ()),
    "softplus": (lambda x: np.log(1 + np.exp(x)), UNARY, ()),
    "relu": (lambda x: np.maximum(x, 0), UNARY, ((0.0,),)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), UNARY, ((0.0,),)),
    "abs": (lambda x: np.abs(x), UNARY, ((0.0,),)),
    "neg": (lambda x: -x, UNARY, ()),
    "add": (lambda a, b: a + b, BINARY, ()),
    "sub": (lambda a, b: a - b, BINARY, ()),
    "mul": (lambda a, b: a * b, BINARY, ()),
    "div": (lambda a, b: a * b ** -1.0, BINARY, ((), (0.0,))),
    "pow": (lambda a, b: np.exp(b * np.log(a)), BINARY, ()),
    "matmul": (lambda a, b: np.tensordot(a, b, axes=(-1, 0)), MATMUL, ()),
    "transpose": (lambda x, axes=None: np.transpose(x, axes),
                  TRANSPOSE + [With(((2, 3, 4),), {"axes": (1, 2, 0)}), With(((2, 3),), {"axes": (-1, 0)})], ()),
    "sum": (lambda x, axis=None, keepdims=False: np.add.reduce(x, axis=axis, keepdims=keepdims), REDUCE, ()),
    "mean": (lambda x, axis=None, keepdims=False: np.add.reduce(x, axis=axis, keepdims=keepdims)
             / (np.size(x) / np.size(np.add.reduce(x, axis=axis))), REDUCE, ()),
    "softmax": (lambda x, axis=-1: np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True) if np.ndim(x) else _softmax(x),
                SOFT, ()),
    "logsumexp": (_logsumexp, UNARY + AXES, ()),
    "log_softmax": (lambda x, axis=-1: x - _logsumexp(x, axis, True) if np.ndim(x) else 0 * x, SOFT, ()),
    "var": (lambda x, axis=None, keepdims=False, ddof=0: np.var(x, axis=axis, keepdims=keepdims, ddof=ddof),
            [((3,),), ((2, 3),), With(((2, 3),), {"axis": 1, "ddof": 1}), With(((2, 3, 2),), {"axis": (0, 2)})], ()),
    "std": (lambda x, axis=None, keepdims=False, ddof=0: np.std(x, axis=axis, keepdims=keepdims, ddof=ddof),
            [((3,),), ((2, 3),), With(((2, 3),), {"axis": 0, "ddof": 1}), With(((2, 3),), {"axis": 1, "keepdims": True})], ()),
    "max": (lambda x, axis=None, keepdims=False: np.amax(x, axis=axis, keepdims=keepdims), REDUCE, ()),
    "min": (lambda x, axis=None, keepdims=False: np.amin(x, axis=axis, keepdims=keepdims), REDUCE, ()),
    "prod": (lambda x, axis=None, keepdims=False: np.multiply.reduce(x, axis=axis, keepdims=keepdims)
             if np.ndim(x) else x, REDUCE, ()),
    "norm": (lambda x, axis=None, keepdims=False: np.sqrt(np.add.reduce(x ** 2, axis=axis, keepdims=keepdims)),
             REDUCE, ()),
    "log1p": (lambda x: np.log(1 + x), UNARY, ()),
    "expm1": (lambda x: np.exp(x) - 1, UNARY, ()),
    "erf": (_mp_erf, UNARY, ()),
    "gelu": (_gelu, UNARY, ()),
    "silu": (lambda x: x / (1 + np.exp(-x)), UNARY, ()),
    "sign": (lambda x: np.sign(x), UNARY, ((0.0,),)),
    "maximum": (lambda a, b: np.maximum(a, b), BINARY, ()),
    "minimum": (lambda a, b: np.minimum(a, b), BINARY, ()),
    "clip": (lambda x, low, high: np.minimum(np.maximum(x, low), high),
             [With(((7,),), {"low": -1.0, "high": 1.5}), With(((2, 3),), {"low": 0, "high": 1})], ((-1.0, 0.0, 1.0, 1.5),)),
    "where": (lambda c, a, b: np.where(c > 0, a, b),
              [((), (), ()), ((3,), (3,), (3,)), ((2, 3), (3,), ()), ((2, 1), (2, 3), (1, 3))], (), _as_mask),
    "less": (lambda a, b: (a < b) * 1.0, BINARY, ()),
    "less_equal": (lambda a, b: (a <= b) * 1.0, BINARY, ()),
    "greater": (lambda a, b: (a > b) * 1.0, BINARY, ()),
    "greater_equal": (lambda a, b: (a >= b) * 1.0, BINARY, ()),
    "reshape": (lambda x, shape: np.reshape(x, shape),
                [With(((2, 3),), {"shape": (3, 2)}), With(((6,),), {"shape": (2, -1)}), With(((),), {"shape": (1, 1)})], ()),
    "broadcast_to": (lambda x, shape: x + np.zeros(shape),
                     [With(((3,),), {"shape": (2, 3)}), With(((2, 1),), {"shape": (2, 3)}), With(((),), {"shape": (2,)})], ()),
    "concatenate": (lambda *xs, axis=0: np.concatenate(xs, axis),
                    [((3,), (2,)), With(((2, 3), (2, 1)), {"axis": 1}), With(((1, 2), (2, 2), (1, 2)), {"axis": -2})], ()),
    "stack": (lambda *xs, axis=0: np.stack(xs, axis),
              [((), ()), ((3,), (3,)), With(((2, 3), (2, 3), (2, 3)), {"axis": -1})], ()),
    "index": (lambda x, key: x[tuple(slice(*k) if isinstance(k, tuple) else k for k in key)],
              [With(((3,),), {"key": (0,)}), With(((2, 4),), {"key": ((None, None, None), (1, 3, None))}),
               With(((3, 4),), {"key": (-1, (None, None, -2))})], ()),
    "one_hot": (lambda y, n: np.eye(n)[np.rint(y).astype(int)], [With(((4,),), {"n": 5}), With(((2, 3),), {"n": 4})], (),
                _as_labels),
}

MARGIN = 0.1  # how far inputs stay from the values in a REFERENCE entry's third field
STEP = 1e-3  # relative step of the reference central4 difference
RTOL, ATOL = 1e-7, 1e-9  # atol scales with the largest Jacobian entry


def cases():
    for name in sorted(PRIMITIVES):
        if name not in REFERENCE:
            yield pytest.param(name, None, id=f"{name}-missing")
            continue
        for case in REFERENCE[name][1]:
            label = "-".join(map(str, shapes_of(case))) + "".join(f"-{k}={v}" for k, v in params_of(case).items())
            yield pytest.param(name, case, id=f"{name}-{label}".replace(" ", ""))


def draw(name, shapes):
    """Arguments in the primitive's domain, at least MARGIN from its kinks and poles."""
    prim = PRIMITIVES[name]
    avoid = REFERENCE[name][2] or ((),) * len(shapes)
    rng = np.random.default_rng(zlib.crc32(f"{name}{shapes}".encode()))
    lo, hi = prim.domain
    args = []
    for shape, away in zip(shapes, avoid):
        x = rng.uniform(lo, hi, shape)
        for k in tuple(away) + tuple(prim.kinks):
            near = np.abs(x - k) < MARGIN
            x = np.where(near, k + np.copysign(MARGIN + 0.1 * (hi - lo), x - k + 1e-300), x)
        assert np.all((x >= lo) & (x <= hi)), "the margin pushed an input out of the domain; widen it"
        args.append(np.asarray(x, dtype=np.float64))
    prepare = REFERENCE[name][3] if len(REFERENCE[name]) > 3 else None
    return prepare(args) if prepare else args


def numeric_jacobian(f, args, k):
    """d f(args) / d args[k] by a fourth-order central difference: (out size, args[k] size)."""
    out = np.asarray(f(*args))
    x = args[k]
    cols = np.zeros((out.size, x.size))
    for j in range(x.size):
        h = STEP * max(abs(x.flat[j]), 0.1)

        def at(s):
            moved = x.copy()
            moved.flat[j] += s * h
            return np.asarray(f(*args[:k], moved, *args[k + 1:]), dtype=np.float64).ravel()

        cols[:, j] = (8 * (at(1) - at(-1)) - (at(2) - at(-2))) / (12 * h)
    return cols


def sum_to(g, shape):
    """Sum a broadcast cotangent down to ``shape`` (the test's own, not the engine's)."""
    g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g.reshape(shape)


def vjps(prim, g, ans, args, params):
    """Every argument's cotangent from the primitive's per-argument rules (None: not differentiated)."""
    return tuple(None if rule is None else rule(g, ans, *args, **params) for rule in prim.vjp_rules(len(args)))


def jvp_of(prim, ts, ans, args, params):
    """The output's tangent: the sum of what each moving argument's rule gives (zero where none applies)."""
    terms = [rule(t, ans, *args, **params) for rule, t in zip(prim.jvp_rules(len(args)), ts)
             if rule is not None and t is not None]
    return sum(terms) if terms else np.zeros_like(ans)


def close(actual, expected, what):
    atol = ATOL * max(1.0, np.max(np.abs(expected), initial=0.0))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=atol, err_msg=what)


def test_every_primitive_has_reference_data():
    missing = sorted(set(PRIMITIVES) - set(REFERENCE))
    stale = sorted(set(REFERENCE) - set(PRIMITIVES))
    assert not missing, f"add a REFERENCE entry for {missing} in tests/test_primitives.py"
    assert not stale, f"REFERENCE names primitives that no longer exist: {stale}"


def test_domains_and_kinks_are_sane():
    for name, prim in PRIMITIVES.items():
        lo, hi = prim.domain
        assert lo < hi, name
        ref = REFERENCE.get(name)
        if ref is not None:
            assert len(ref[2]) in (0, prim.nargs), f"{name}: one tuple of values to avoid per argument"
        for param in prim.params:
            assert param.required or param.accepts(param.default), f"{name}: default of {param.name}"


@pytest.mark.parametrize("name,case", list(cases()))
def test_primitive(name, case):
    if case is None:
        pytest.fail(f"primitive '{name}' has no REFERENCE entry in tests/test_primitives.py")
    prim = PRIMITIVES[name]
    shapes, params = shapes_of(case), params_of(case)
    ref = REFERENCE[name][0]
    assert prim.nargs in (None, len(shapes))
    n = len(shapes)
    args = draw(name, shapes)
    f = lambda *a: ref(*a, **params)  # noqa: E731
    ans = np.asarray(prim.forward(*args, **params))
    expected = np.asarray(f(*args))

    # forward
    assert ans.shape == expected.shape, f"{name}: forward shape {ans.shape}, numpy gives {expected.shape}"
    np.testing.assert_allclose(ans, expected, rtol=1e-13, atol=1e-14, err_msg=f"{name} forward")

    jacs = [numeric_jacobian(f, args, k) for k in range(n)]

    # VJP: one cotangent per argument (None: not differentiated, so zero); row o from the seed e_o
    rows = [np.zeros_like(j) for j in jacs]
    for o in range(ans.size):
        g = np.zeros(ans.size)
        g[o] = 1
        cts = vjps(prim, g.reshape(ans.shape), ans, args, params)
        assert len(cts) == n, f"{name}: VJP gave {len(cts)} cotangents for {n} arguments"
        for k, ct in enumerate(cts):
            rows[k][o] = 0 if ct is None else sum_to(ct, args[k].shape).ravel()
    for k in range(n):
        close(rows[k], jacs[k], f"{name} VJP, argument {k}")

    # JVP: one argument moving at a time (the others None), then all together
    for k in range(n):
        cols = np.zeros_like(jacs[k])
        for j in range(args[k].size):
            t = np.zeros(args[k].size)
            t[j] = 1
            ts = tuple(t.reshape(args[k].shape) if i == k else None for i in range(n))
            cols[:, j] = np.broadcast_to(jvp_of(prim, ts, ans, args, params), ans.shape).ravel()
        close(cols, jacs[k], f"{name} JVP, argument {k}")
    rng = np.random.default_rng(1)
    ts = tuple(rng.normal(size=a.shape) for a in args)
    both = np.broadcast_to(jvp_of(prim, ts, ans, args, params), ans.shape).ravel()
    close(both, sum(j @ t.ravel() for j, t in zip(jacs, ts)), f"{name} JVP, every argument moving")

    # complex step through the forward, which `auto` relies on for complex-safe primitives
    if prim.complex_safe:
        for k in range(n):
            cols = np.zeros_like(jacs[k])
            for j in range(args[k].size):
                moved = [a.astype(np.complex128) for a in args]
                moved[k].flat[j] += 1e-20j
                cols[:, j] = np.imag(np.asarray(prim.forward(*moved, **params))).ravel() / 1e-20
            close(cols, jacs[k], f"{name} complex step, argument {k}")

    # second order: a complex perturbation through the VJP rule is its derivative (holomorphic rules)
    if prim.second_order and prim.complex_safe:
        g = rng.normal(size=ans.shape)
        plain = vjps(prim, g, ans, args, params)
        for k in range(n):
            moved = [a.astype(np.complex128) for a in args]
            moved[k] = moved[k] + 1e-20j * ts[k]
            lifted = vjps(prim, g, np.asarray(prim.forward(*moved, **params)), moved, params)
            for c, (p, q) in enumerate(zip(plain, lifted)):
                if p is None:
                    continue
                step = lambda s: sum_to(vjps(prim, g, np.asarray(f(*[a + s * t if i == k else a for i, (a, t) in enumerate(zip(args, ts))])),
                                             [a + s * t if i == k else a for i, (a, t) in enumerate(zip(args, ts))], params)[c],
                                        args[c].shape)  # noqa: E731
                h = 1e-4
                reference = (8 * (step(h) - step(-h)) - (step(2 * h) - step(-2 * h))) / (12 * h)
                got = np.imag(sum_to(q, args[c].shape)) / 1e-20
                np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-7 * max(1, np.abs(reference).max(initial=0)),
                                           err_msg=f"{name}: complex perturbation of argument {k} through the VJP, cotangent {c}")

    # through the engine: the walker's unbroadcasting, reverse against forward mode
    names = [f"a{k}" for k in range(n)]
    graph = engine.build(Call(name, tuple(Var(v) for v in names), tuple(sorted(params.items()))), {}, names)
    vals = engine.evaluate(graph, {v: a for v, a in zip(names, args)})
    reverse = engine.jacobian(graph, vals, names)
    forward = engine.jacobian_forward(graph, vals, names)
    for k, v in enumerate(names):
        close(reverse[v], jacs[k], f"{name} engine.jacobian, argument {k}")
        close(forward[v], jacs[k], f"{name} engine.jacobian_forward, argument {k}")


@pytest.mark.parametrize("name,case", [c for c in cases() if c.values[1] is not None])
def test_batched_perturbations_move_the_output_as_the_forward_does(name, case):
    """engine.perturb (sparse paths, batch rules, row by row) against the forward at moved points."""
    shapes, params = shapes_of(case), params_of(case)
    prim = PRIMITIVES[name]
    args = draw(name, shapes)
    names = [f"a{k}" for k in range(len(shapes))]
    graph = engine.build(Call(name, tuple(Var(v) for v in names), tuple(sorted(params.items()))), {}, names)
    vals = engine.evaluate(graph, dict(zip(names, args)))
    base = np.asarray(prim.forward(*args, **params)).ravel()
    for k, v in enumerate(names):
        size = args[k].size
        index = np.arange(size)
        h = 1e-3 * np.where(index % 2, 1.0, -1.0)
        moved, _, _ = engine.perturb(graph, vals, v, index, h)
        for j in range(size):
            x = args[k].copy()
            x.flat[j] += h[j]
            expected = np.asarray(prim.forward(*args[:k], x, *args[k + 1:], **params)).ravel() - base
            np.testing.assert_allclose(moved[j], expected, rtol=1e-9, atol=1e-12, err_msg=f"{name} {v}[{j}]")
        tiny = 1e-20j * np.ones(size)  # an imaginary step: the complex-step path
        moved, _, _ = engine.perturb(graph, vals, v, index, tiny)
        if prim.complex_safe:
            jac = numeric_jacobian(lambda *a: REFERENCE[name][0](*a, **params), args, k)
            np.testing.assert_allclose(np.imag(moved).T / 1e-20, jac, rtol=1e-7,
                                       atol=1e-9 * max(1.0, np.abs(jac).max(initial=0)), err_msg=f"{name} {v}")
