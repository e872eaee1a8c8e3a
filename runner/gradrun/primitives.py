"""The table of primitives: one entry each, forward, VJP, JVP and what else we know.

Every rule works on numpy arrays, real or complex (complex-step needs the
complex path). Rules are written for the shapes their arguments have; where
binary arithmetic broadcasts, the graph walker, not the rule, sums cotangents
back to each argument's shape.

A VJP rule is ``vjp(g, ans, *args) -> tuple`` with one cotangent per argument.
A JVP rule is ``jvp(tangents, ans, *args) -> tangent`` where ``tangents`` has
one entry per argument, ``None`` for an argument that does not move.

``kind`` tells the fast full check how a perturbation travels through the op
(see ``gradrun.engine``): ``elementwise`` keeps it in place, ``reduce`` sums
it, ``matmul`` spreads it along a row or column, ``transpose`` moves it, and
``dense`` makes it touch everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

LEAKY_SLOPE = 0.2  # leaky_relu's slope below zero, as in Deep Learning from Scratch


@dataclass(frozen=True)
class Primitive:
    name: str
    nargs: int
    forward: Callable
    vjp: Callable
    jvp: Callable
    formula: str
    derivative: str
    kind: str = "elementwise"
    complex_safe: bool = True
    domain: tuple = (-3.0, 3.0)  # where the primitive is smooth and well-conditioned
    kinks: tuple = ()  # argument values where it is not differentiable
    additive: bool = False  # f(a + da, b + db) - f(a, b) = f(da, db): add, sub, neg
    linear_in: tuple = ()  # arguments in which f is linear when the others hold still


PRIMITIVES: dict[str, Primitive] = {}


def _register(p: Primitive) -> None:
    PRIMITIVES[p.name] = p


def unary(name, f, df, formula, derivative, **kw):
    """An elementwise one-argument primitive from f and its derivative df(x, ans)."""
    _register(
        Primitive(
            name,
            1,
            f,
            lambda g, ans, x: (g * df(x, ans),),
            lambda t, ans, x: t[0] * df(x, ans),
            formula,
            derivative,
            **kw,
        )
    )


def _positive(x):
    """The branch condition of relu-like ops, on the real part (complex-step safe)."""
    return np.real(x) > 0


def _sign(x):
    return np.sign(np.real(x))


def _sigmoid(x):
    if np.all(np.abs(np.real(x)) < 700):  # exp cannot overflow: one exp, one division
        return 1 / (1 + np.exp(-x))
    e = np.exp(-x * np.where(_positive(x), 1, -1))
    return np.where(_positive(x), 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.where(_positive(x), x, 0) + np.log1p(np.exp(-x * np.where(_positive(x), 1, -1)))


unary("square", lambda x: x * x, lambda x, a: 2 * x, "x**2", "2*x")
unary("cube", lambda x: x * x * x, lambda x, a: 3 * x * x, "x**3", "3*x**2")
unary("sqrt", np.sqrt, lambda x, a: 0.5 / a, "sqrt(x)", "1/(2*sqrt(x))", domain=(0.1, 4.0))
unary("exp", np.exp, lambda x, a: a, "exp(x)", "exp(x)")
unary("log", np.log, lambda x, a: 1 / x, "log(x)", "1/x", domain=(0.1, 4.0))
unary("sin", np.sin, lambda x, a: np.cos(x), "sin(x)", "cos(x)")
unary("cos", np.cos, lambda x, a: -np.sin(x), "cos(x)", "-sin(x)")
unary("tan", np.tan, lambda x, a: 1 + a * a, "tan(x)", "1 + tan(x)**2", domain=(-1.2, 1.2))
# not 1 - a*a nor a*(1 - a): those cancel to nothing where tanh and sigmoid saturate
unary("tanh", np.tanh, lambda x, a: 1 / np.cosh(x) ** 2, "tanh(x)", "1 - tanh(x)**2")
unary("sigmoid", _sigmoid, lambda x, a: _sigmoid(x) * _sigmoid(-x), "1/(1 + exp(-x))", "sigmoid(x)*(1 - sigmoid(x))")
unary("softplus", _softplus, lambda x, a: _sigmoid(x), "log(1 + exp(x))", "sigmoid(x)")
unary("relu", lambda x: np.where(_positive(x), x, 0), lambda x, a: np.where(_positive(x), 1.0, 0.0),
      "max(x, 0)", "1 if x > 0 else 0", kinks=(0.0,))
unary("leaky_relu", lambda x: np.where(_positive(x), x, LEAKY_SLOPE * x),
      lambda x, a: np.where(_positive(x), 1.0, LEAKY_SLOPE),
      "x if x > 0 else 0.2*x", "1 if x > 0 else 0.2", kinks=(0.0,))
unary("abs", lambda x: x * _sign(x), lambda x, a: _sign(x), "|x|", "sign(x)", kinks=(0.0,))
unary("neg", lambda x: -x, lambda x, a: -np.ones_like(x), "-x", "-1", additive=True)


def binary(name, f, vjp, jvp, formula, derivative, **kw):
    """An elementwise two-argument primitive that broadcasts like numpy."""
    _register(Primitive(name, 2, f, vjp, jvp, formula, derivative, **kw))


def _add_tangents(*terms):
    live = [t for t in terms if t is not None]
    out = live[0]
    for t in live[1:]:
        out = out + t
    return out


def _safe_log(a):
    """log(a) where a > 0; the derivative with respect to an exponent needs a positive base."""
    return np.log(np.where(_positive(a), a, 1))


binary("add", lambda a, b: a + b,
       lambda g, ans, a, b: (g, g),
       lambda t, ans, a, b: _add_tangents(t[0], t[1]),
       "a + b", "da = 1, db = 1", additive=True)
binary("sub", lambda a, b: a - b,
       lambda g, ans, a, b: (g, -g),
       lambda t, ans, a, b: _add_tangents(t[0], None if t[1] is None else -t[1]),
       "a - b", "da = 1, db = -1", additive=True)
binary("mul", lambda a, b: a * b,
       lambda g, ans, a, b: (g * b, g * a),
       lambda t, ans, a, b: _add_tangents(None if t[0] is None else t[0] * b,
                                          None if t[1] is None else a * t[1]),
       "a * b", "da = b, db = a", linear_in=(0, 1))
binary("div", lambda a, b: a / b,
       lambda g, ans, a, b: (g / b, -g * a / (b * b)),
       lambda t, ans, a, b: _add_tangents(None if t[0] is None else t[0] / b,
                                          None if t[1] is None else -t[1] * a / (b * b)),
       "a / b", "da = 1/b, db = -a/b**2", linear_in=(0,))
binary("pow", lambda a, b: a ** b,
       lambda g, ans, a, b: (g * b * a ** (b - 1), g * ans * _safe_log(a)),
       lambda t, ans, a, b: _add_tangents(None if t[0] is None else t[0] * b * a ** (b - 1),
                                          None if t[1] is None else t[1] * ans * _safe_log(a)),
       "a ** b", "da = b*a**(b-1), db = log(a)*a**b", domain=(0.2, 3.0))


def _lift(a, b, g):
    """View 1-D matmul operands as matrices, numpy-style, with g to match."""
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if b.ndim == 1:  # first, so that a vector @ vector's scalar g becomes (1, 1)
        g2 = np.expand_dims(g2, -1)
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    return a2, b2, g2


def _matmul_vjp(g, ans, a, b):
    a2, b2, g2 = _lift(a, b, g)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    if a.ndim == 1:
        ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:]) if ga.ndim > 2 else ga.reshape(-1)
    if b.ndim == 1:
        gb = gb.reshape(gb.shape[:-1]) if gb.ndim > 2 else gb.reshape(-1)
    return ga, gb


_register(Primitive(
    "matmul", 2, np.matmul, _matmul_vjp,
    lambda t, ans, a, b: _add_tangents(None if t[0] is None else t[0] @ b,
                                       None if t[1] is None else a @ t[1]),
    "a @ b", "da = g @ b.T, db = a.T @ g", kind="matmul"))

_register(Primitive(
    "transpose", 1, lambda x: np.transpose(x),
    lambda g, ans, x: (np.transpose(g),),
    lambda t, ans, x: np.transpose(t[0]),
    "x.T", "g.T", kind="transpose"))

_register(Primitive(
    "sum", 1, lambda x: np.sum(x),
    lambda g, ans, x: (np.broadcast_to(g, x.shape).copy(),),
    lambda t, ans, x: np.sum(t[0]),
    "sum of all elements", "1 for every element", kind="reduce"))

_register(Primitive(
    "mean", 1, lambda x: np.mean(x),
    lambda g, ans, x: (np.broadcast_to(g / max(x.size, 1), x.shape).copy(),),
    lambda t, ans, x: np.mean(t[0]),
    "mean of all elements", "1/n for every element", kind="reduce"))


def _softmax(x):
    x1 = np.atleast_1d(x)
    e = np.exp(x1 - np.max(np.real(x1), axis=-1, keepdims=True))
    return (e / np.sum(e, axis=-1, keepdims=True)).reshape(np.shape(x))


def _logsumexp(x):
    if np.ndim(x) == 0:
        return np.array(x, copy=True)
    m = np.max(np.real(x), axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True)))[..., 0]


def _softmax_vjp(g, ans, x):
    s = np.atleast_1d(ans)
    g1 = np.atleast_1d(g)
    return ((s * (g1 - np.sum(g1 * s, axis=-1, keepdims=True))).reshape(np.shape(x)),)


def _logsumexp_vjp(g, ans, x):
    if np.ndim(x) == 0:
        return (g,)
    return (np.expand_dims(g, -1) * _softmax(x),)


_register(Primitive(
    "softmax", 1, _softmax, _softmax_vjp,
    lambda t, ans, x: _softmax_vjp(t[0], ans, x)[0],  # its Jacobian is symmetric
    "exp(x) / sum(exp(x)) along the last axis", "s * (g - sum(g * s))", kind="dense"))

_register(Primitive(
    "logsumexp", 1, _logsumexp, _logsumexp_vjp,
    lambda t, ans, x: t[0] if np.ndim(x) == 0 else np.sum(t[0] * _softmax(x), axis=-1),
    "log(sum(exp(x))) along the last axis", "softmax(x)", kind="dense"))


def get(name: str) -> Primitive:
    return PRIMITIVES[name]


def names() -> list:
    """Built-in names usable in a spec (operators' primitive names excluded)."""
    hidden = {"add", "sub", "mul", "div", "pow", "neg"}
    return sorted(n for n in PRIMITIVES if n not in hidden)
