"""Red-team round 9 in JAX: custom_vjp rules and plain JAX code, checked with
default settings: (name, function, inputs, expect, dtypes). Few and small: XLA compiles each,
so a bug is checked in one dtype."""

import jax.numpy as jnp
import numpy as np

from fresh8.jax_cases import _custom_vjp

RNG = np.random.default_rng(999)


def _cs(x):
    T, d = x.shape
    a = jnp.arange(T)[:, None] * 10000.0 ** (-jnp.arange(0, d, 2) / d)
    return jnp.cos(a), jnp.sin(a)


def rope(x):  # interleaved pairs (x[2i], x[2i+1])
    c, s = _cs(x)
    e, o = x[:, 0::2], x[:, 1::2]
    return jnp.stack([e * c - o * s, e * s + o * c], -1).reshape(x.shape)


def _rope_vjp(g, x, transposed=True):
    c, s = _cs(x)
    s = s if transposed else -s
    ge, go = g[:, 0::2], g[:, 1::2]
    return (jnp.stack([ge * c + go * s, -ge * s + go * c], -1).reshape(x.shape),)


def relu_squared(x):
    return jnp.maximum(x, 0.0) ** 2


def where_sqrt(x):  # the jnp.where trap: the untaken branch's NaN slope times 0 is NaN
    return jnp.where(x > 0, jnp.sqrt(x), 0.0)


ROPE_AT = {"x": RNG.normal(size=(3, 4))}
KINK_AT = {"x": np.array([-1e-9, 0.0, 1e-9, 0.5, -0.7])}

F64, F32 = ("float64",), ("float32",)

CASES = [
    ("rope", _custom_vjp(rope, _rope_vjp), ROPE_AT, "pass", F32),
    ("rope@not-transposed", _custom_vjp(rope, lambda g, x: _rope_vjp(g, x, False)), ROPE_AT, "fail", F64),
    # f' is exactly 0 on one side of a kink at or 1e-9 from x: no Richardson level resolves a
    # zero entry of a zero row there (x relu(x)'s differences are h/2); the flat side does
    ("relu-squared-at-0", relu_squared, KINK_AT, "pass", F64),
    # f is 0 and flat at x = -1, its derivative measured as exactly 0: a NaN there is a fail, not "nan"
    ("where-sqrt@nan", where_sqrt, {"x": np.array([-1.0, 0.5, 2.0])}, "fail", F64),
]
