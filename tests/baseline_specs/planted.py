"""A layer whose hand-written backward pass can be made wrong from outside, for baseline tests.

``GRADRUN_PLANTED_SCALE`` (default 1) multiplies the VJP: 1 is correct code, a
scale a little off 1 plants an error that grows against a baseline while the
check itself still passes, a scale far off 1 makes the check fail.
"""

import os

import numpy as np


def layer(x, w):
    return np.tanh(x @ w)


def layer_vjp(g, x, w):
    scale = float(os.environ.get("GRADRUN_PLANTED_SCALE", "1"))
    d = g * (1 - np.tanh(x @ w) ** 2)
    return scale * (d @ w.T), x.T @ d
