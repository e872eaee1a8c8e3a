"""A user's loss with a hand-written backward pass and its second-order rule, checked by
experiments/second-order.yaml.

``softplus_loss(x, w) = sum(softplus(x @ w))``. Its VJP takes the cotangent g
first; its HVP takes g and one tangent per input, and returns the derivative
of the VJP along those tangents (g held still): one block per input.
"""

import numpy as np


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softplus_loss(x, w):
    return np.sum(np.logaddexp(0, x @ w))


def softplus_loss_vjp(g, x, w):
    s = g * _sigmoid(x @ w)
    return s @ w.T, x.T @ s


def softplus_loss_hvp(g, tangents, x, w):
    tx, tw = tangents
    z = x @ w
    s = _sigmoid(z)
    dz = tx @ w + x @ tw  # the tangent of z
    ds = g * s * (1 - s) * dz  # the tangent of g * sigmoid(z)
    return ds @ w.T + (g * s) @ tw.T, tx.T @ (g * s) + x.T @ ds
