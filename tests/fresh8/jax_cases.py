"""Red-team round 8 in JAX: custom_vjp and custom_jvp rules and plain JAX code (a sort),
checked with default settings: (name, function, inputs, expect)."""

import jax
import jax.numpy as jnp
import numpy as np

RNG = np.random.default_rng(888)


def _custom_vjp(forward, backward):
    f = jax.custom_vjp(forward)
    f.defvjp(lambda *xs: (f(*xs), xs), lambda xs, g: backward(g, *xs))
    return f


def safe_norm(x):
    return jnp.sqrt(jnp.sum(x * x, -1) + 1e-12)


def _safe_norm_vjp(g, x, eps=1e-12):
    return (g[:, None] * x / jnp.sqrt(jnp.sum(x * x, -1) + eps)[:, None],)


C = float(np.sqrt(2 / np.pi))


def gelu(x):
    return 0.5 * x * (1 + jnp.tanh(C * (x + 0.044715 * x ** 3)))


def _gelu_vjp(g, x, k=0.044715):
    t = jnp.tanh(C * (x + 0.044715 * x ** 3))
    return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * k * x * x)),)


def batch_mean(x):
    return jnp.tanh(x).mean(0)


def _batch_mean_vjp(g, x, first_only=False):
    d = (1 - jnp.tanh(x) ** 2) * g / x.shape[0]
    return (d.at[1:].set(d[0]) if first_only else d,)


@jax.custom_jvp
def softplus(x):
    return jnp.logaddexp(0.0, x)


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * dx


def top3_times_max(x):
    s = jnp.sort(x)
    return s[-3:].sum() * s[-1]


NEAR_ZERO_ROW = np.array([[3e-7, -4e-7, 1e-7], [1.0, 2.0, -2.0]])
GELU_AT = np.array([-6.0, -2.5, -0.3, 0.7, 2.0, 5.0])
BATCH = RNG.normal(size=(3, 4))

CASES = [
    ("safe-norm-near-0", _custom_vjp(safe_norm, _safe_norm_vjp), {"x": NEAR_ZERO_ROW}, "pass"),
    ("safe-norm-near-0@no-eps", _custom_vjp(safe_norm, lambda g, x: _safe_norm_vjp(g, x, 0.0)),
     {"x": NEAR_ZERO_ROW}, "fail"),
    ("gelu-tanh", _custom_vjp(gelu, _gelu_vjp), {"x": GELU_AT}, "pass"),
    ("gelu-tanh@constant", _custom_vjp(gelu, lambda g, x: _gelu_vjp(g, x, 0.0447)), {"x": GELU_AT}, "fail"),
    ("batch-mean", _custom_vjp(batch_mean, _batch_mean_vjp), {"x": BATCH}, "pass"),
    ("batch-mean@first-example", _custom_vjp(batch_mean, lambda g, x: _batch_mean_vjp(g, x, True)),
     {"x": BATCH}, "fail"),
    ("softplus-jvp-40", softplus, {"x": np.array([-40.0, -3.0, 0.5, 31.0, 40.0])}, "pass"),
    ("top3-times-max", top3_times_max, {"x": RNG.normal(size=7)}, "pass"),
]
