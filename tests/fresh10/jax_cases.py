"""Red-team round 10 in JAX: custom_vjp rules and plain JAX code, checked with default
settings: (name, function, inputs, expect, dtypes). Few and small: XLA compiles each.

Plain JAX: a linear scan by lax.scan with decays of 0.999, erf-GELU (jax.nn.gelu with
approximate=False). custom_vjp: entmax-1.5 weighted by p where sqrt(p) belongs (its correct
rule is numpy's case) and softplus with beta = 100 linearised above beta x = 8."""

import jax
import jax.numpy as jnp
import numpy as np

from fresh8.jax_cases import _custom_vjp

RNG = np.random.default_rng(10010)


def scan(u, b):
    a = jax.nn.sigmoid(u)
    return jax.lax.scan(lambda h, ab: (ab[0] * h + ab[1],) * 2, jnp.zeros((), b.dtype), (a, b))[1]


def gelu_erf(x):
    return jax.nn.gelu(x, approximate=False)


def entmax15(z):
    x = (z - z.max(-1, keepdims=True)) / 2
    xs = -jnp.sort(-x, -1)
    k = jnp.arange(1, x.shape[-1] + 1)
    mean = jnp.cumsum(xs, -1) / k
    delta = (1 - k * (jnp.cumsum(xs * xs, -1) / k - mean * mean)) / k
    tau = mean - jnp.sqrt(jnp.maximum(delta, 0))
    n = (tau <= xs).sum(-1, keepdims=True)
    return jnp.maximum(x - jnp.take_along_axis(tau, n - 1, -1), 0) ** 2


def _entmax15_vjp(g, z, weight_p=False):
    p = entmax15(z)
    w = p if weight_p else jnp.sqrt(p)
    gw = g * w
    return (gw - w * gw.sum(-1, keepdims=True) / w.sum(-1, keepdims=True),)


def softplus_b(x):
    return jnp.logaddexp(0.0, 100.0 * x) / 100.0


def _softplus_b_vjp(g, x, threshold=None):
    s = jax.nn.sigmoid(100.0 * x)
    return (g * (s if threshold is None else jnp.where(100.0 * x > threshold, 1.0, s)),)


SCAN_AT = {"u": 7 + 0.5 * RNG.normal(size=8), "b": RNG.normal(size=8)}
GELU_AT = {"x": np.array([-6.0, -3.0, -1.2, -0.3, 0.0, 0.4, 1.5, 2.5, 5.0])}
ENTMAX_AT = {"z": np.array([[1.2, 0.9, -0.4, 0.3, 1.0], [0.1, 0.3, -0.2, 0.25, 0.05]])}
SOFTPLUS_AT = {"x": np.array([-0.1, -0.005, 0.0, 0.02, 0.081, 0.09, 0.3])}

F64, F32, BOTH = ("float64",), ("float32",), ("float64", "float32")

CASES = [
    ("scan-0.999", scan, SCAN_AT, "pass", F32),
    ("gelu-erf", gelu_erf, GELU_AT, "pass", BOTH),
    ("entmax15@weight-p", _custom_vjp(entmax15, lambda g, z: _entmax15_vjp(g, z, True)), ENTMAX_AT, "fail", F32),
    ("softplus-beta-100@linear-above-8", _custom_vjp(softplus_b, lambda g, x: _softplus_b_vjp(g, x, 8.0)),
     SOFTPLUS_AT, "fail", F32),
]
