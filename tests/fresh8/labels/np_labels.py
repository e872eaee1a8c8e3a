"""Losses over integer labels in numpy, as users write them (``z[np.arange(n), y]``).
Labels used to reach this code as float64, and indexing with them raised before
anything was checked. ``bug_`` rules are flagged."""

import numpy as np


def _probs_minus_onehot(z, y):
    e = np.exp(z - z.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p


def ce(z, y):
    m = z.max(-1, keepdims=True)
    return m[:, 0] + np.log(np.exp(z - m).sum(-1)) - z[np.arange(len(y)), y]


def ce_vjp(g, z, y):
    return g[:, None] * _probs_minus_onehot(z, y), None


def ce_jvp(t, z, y):
    return (_probs_minus_onehot(z, y) * t[0]).sum(-1)


def bug_ce_vjp(g, z, y):  # the first example's gradient alone
    out = g[:, None] * _probs_minus_onehot(z, y)
    out[1:] = 0
    return out, None


def masked_sin(x, mask):
    return np.sin(x) * mask


def masked_sin_vjp(g, x, mask):
    return g * np.cos(x) * mask, None


def bug_masked_sin_vjp(g, x, mask):  # the mask forgotten
    return g * np.cos(x), None
