"""A user's own layers with hand-written backward passes, checked by experiments/my-layer.yaml.

Each backward is a VJP: it takes the cotangent of the output first, then the
inputs, and returns one gradient per input. Written with plain numpy, so they
run in whatever dtype they are given (gradrun checks float32 and float64).
"""

import numpy as np


def dense(x, w, b):
    """A dense layer: x @ w + b, b broadcast over the rows."""
    return x @ w + b


def dense_vjp(g, x, w, b):
    return g @ w.T, x.T @ g, g.sum(axis=0)


def layer_norm(x):
    """Normalise each row to mean 0 and variance 1 (no scale or shift)."""
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5)


def layer_norm_vjp(g, x):
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    return (inv / n) * (n * g - g.sum(axis=-1, keepdims=True) - xhat * (g * xhat).sum(axis=-1, keepdims=True))


def layer_norm_jvp(tangents, x):
    (t,) = tangents
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    inv = 1 / np.sqrt(var + 1e-5)
    xhat = (x - mu) * inv
    tc = t - t.mean(axis=-1, keepdims=True)
    return inv * (tc - xhat * (xhat * tc).sum(axis=-1, keepdims=True) / n)
