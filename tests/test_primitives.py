"""Every primitive in the table, checked by iterating over the table.

Forward is compared with a closed form written here, independently, with
numpy; VJP and JVP rules (and, for complex-safe primitives, complex step
through the forward) with a fourth-order central difference of that closed
form, computed here, not with gradrun's numeric module. A new primitive needs
one line in ``REFERENCE`` and nothing else; a primitive without one fails.
"""

import zlib

import numpy as np
import pytest

from gradrun import engine
from gradrun.primitives import PRIMITIVES
from gradrun.tree import Call, Var

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


def _logsumexp(x):
    return np.log(np.exp(x).sum(axis=-1)) if np.ndim(x) else np.asarray(x)


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
    "transpose": (lambda x: np.transpose(x), TRANSPOSE, ()),
    "sum": (lambda x: np.add.reduce(np.ravel(x)), UNARY, ()),
    "mean": (lambda x: np.add.reduce(np.ravel(x)) / np.size(x), UNARY, ()),
    "softmax": (_softmax, UNARY, ()),
    "logsumexp": (_logsumexp, UNARY, ()),
}

MARGIN = 0.1  # how far inputs stay from the values in a REFERENCE entry's third field
STEP = 1e-3  # relative step of the reference central4 difference
RTOL, ATOL = 1e-7, 1e-9  # atol scales with the largest Jacobian entry


def cases():
    for name in sorted(PRIMITIVES):
        if name not in REFERENCE:
            yield pytest.param(name, None, id=f"{name}-missing")
            continue
        for shapes in REFERENCE[name][1]:
            yield pytest.param(name, shapes, id=f"{name}-{'-'.join(map(str, shapes))}".replace(" ", ""))


def draw(name, shapes):
    """Arguments in the primitive's domain, at least MARGIN from its kinks and poles."""
    prim = PRIMITIVES[name]
    avoid = REFERENCE[name][2] or ((),) * prim.nargs
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
    return args


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


@pytest.mark.parametrize("name,shapes", list(cases()))
def test_primitive(name, shapes):
    if shapes is None:
        pytest.fail(f"primitive '{name}' has no REFERENCE entry in tests/test_primitives.py")
    prim = PRIMITIVES[name]
    ref = REFERENCE[name][0]
    assert len(shapes) == prim.nargs
    args = draw(name, shapes)
    ans = np.asarray(prim.forward(*args))
    expected = np.asarray(ref(*args))

    # forward
    assert ans.shape == expected.shape, f"{name}: forward shape {ans.shape}, numpy gives {expected.shape}"
    np.testing.assert_allclose(ans, expected, rtol=1e-13, atol=1e-14, err_msg=f"{name} forward")

    jacs = [numeric_jacobian(ref, args, k) for k in range(prim.nargs)]

    # VJP: one cotangent per argument; row o of the Jacobian from the seed e_o
    rows = [np.zeros_like(j) for j in jacs]
    for o in range(ans.size):
        g = np.zeros(ans.size)
        g[o] = 1
        cts = prim.vjp(g.reshape(ans.shape), ans, *args)
        assert len(cts) == prim.nargs, f"{name}: VJP gave {len(cts)} cotangents for {prim.nargs} arguments"
        for k, ct in enumerate(cts):
            rows[k][o] = sum_to(ct, args[k].shape).ravel()
    for k in range(prim.nargs):
        close(rows[k], jacs[k], f"{name} VJP, argument {k}")

    # JVP: one argument moving at a time (the others None), then all together
    for k in range(prim.nargs):
        cols = np.zeros_like(jacs[k])
        for j in range(args[k].size):
            t = np.zeros(args[k].size)
            t[j] = 1
            ts = tuple(t.reshape(args[k].shape) if i == k else None for i in range(prim.nargs))
            cols[:, j] = np.broadcast_to(prim.jvp(ts, ans, *args), ans.shape).ravel()
        close(cols, jacs[k], f"{name} JVP, argument {k}")
    rng = np.random.default_rng(1)
    ts = tuple(rng.normal(size=a.shape) for a in args)
    both = np.broadcast_to(prim.jvp(ts, ans, *args), ans.shape).ravel()
    close(both, sum(j @ t.ravel() for j, t in zip(jacs, ts)), f"{name} JVP, every argument moving")

    # complex step through the forward, which `auto` relies on for complex-safe primitives
    if prim.complex_safe:
        for k in range(prim.nargs):
            cols = np.zeros_like(jacs[k])
            for j in range(args[k].size):
                moved = [a.astype(np.complex128) for a in args]
                moved[k].flat[j] += 1e-20j
                cols[:, j] = np.imag(np.asarray(prim.forward(*moved))).ravel() / 1e-20
            close(cols, jacs[k], f"{name} complex step, argument {k}")

    # through the engine: the walker's unbroadcasting, reverse against forward mode
    graph = engine.build(Call(name, tuple(Var(f"a{k}") for k in range(prim.nargs))), {},
                         [f"a{k}" for k in range(prim.nargs)])
    vals = engine.evaluate(graph, {f"a{k}": a for k, a in enumerate(args)})
    wrt = [f"a{k}" for k in range(prim.nargs)]
    reverse = engine.jacobian(graph, vals, wrt)
    forward = engine.jacobian_forward(graph, vals, wrt)
    for k, n in enumerate(wrt):
        close(reverse[n], jacs[k], f"{name} engine.jacobian, argument {k}")
        close(forward[n], jacs[k], f"{name} engine.jacobian_forward, argument {k}")
