"""Hand-written layers for tests/specs/fresh7/python.yaml: forward passes with correct VJPs
and the buggy VJPs people ship (a term dropped, a mean forgotten, a window off by one, a
sigmoid that overflows in float32). Dtype-generic: Python-float constants only."""

import numpy as np

LABELS = np.array([2, 0, 3])


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def xent(z):
    s = z - z.max(axis=-1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=-1, keepdims=True))
    return -np.mean(logp[np.arange(len(LABELS)), LABELS])


def xent_vjp(g, z):
    d = _softmax(z)
    d[np.arange(len(LABELS)), LABELS] -= 1
    return g * d / z.shape[0]


def xent_vjp_no_mean(g, z):
    return xent_vjp(g, z) * z.shape[0]


def swish(x):
    return x * _sigmoid(x)


def swish_vjp(g, x):
    s = _sigmoid(x)
    return g * (s + x * s * (1 - s))


def swish_vjp_missing_term(g, x):
    s = _sigmoid(x)
    return g * x * s * (1 - s)


def swish_vjp_naive_sigmoid(g, x):  # exp(x) / (1 + exp(x)): inf / inf at x = 100 in float32
    s = np.exp(x) / (1 + np.exp(x))
    return g * (s + x * s * (1 - s))


def mish(x):
    return x * np.tanh(np.logaddexp(0.0, x))


def mish_vjp(g, x):
    t = np.tanh(np.logaddexp(0.0, x))
    return g * (t + x * (1 - t * t) * _sigmoid(x))


def mish_vjp_sigmoid_sign(g, x):  # sigmoid(-x) where sigmoid(x) belongs
    t = np.tanh(np.logaddexp(0.0, x))
    return g * (t + x * (1 - t * t) * _sigmoid(-x))


def moving_sum(x):  # sums of windows of 3, stride 1
    return x[:-2] + x[1:-1] + x[2:]


def moving_sum_vjp(g, x):
    d = np.zeros_like(x)
    for k in range(3):
        d[k:len(x) - 2 + k] += g
    return d


def moving_sum_vjp_window_off_by_one(g, x):  # range(2): the window's last tap forgotten
    d = np.zeros_like(x)
    for k in range(2):
        d[k:len(x) - 2 + k] += g
    return d
