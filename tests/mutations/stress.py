"""Correct code at points far from the unit scale: what a verdict must still pass.

These carry no mutants: they probe "never fail correct code" where the
finite differences themselves are hard: an output much larger than its
changes (round-off of the difference), derivatives below the output's
round-off, and inputs far from 0 (steps that scale with |x|).
"""

import numpy as np

from . import Case, normal, uniform
from .layers import f_layer_norm, f_softmax, vjp_layer_norm, vjp_softmax


def f_l2_plus_constant(x):
    return np.sum(x**2) + 1e6


def vjp_l2_plus_constant(g, x):
    return g * 2 * x


def f_sin(x):
    return np.sin(x)


def vjp_sin(g, x):
    return g * np.cos(x)


def shifted(gen, offset):
    return lambda rng: offset + gen(rng)


SATURATED_LOGITS = [[40.0, 0.0, 1.0, -2.0], [0.5, -0.3, 2.0, 1.0], [-1.0, 35.0, 3.0, 0.0]]

CASES = [
    Case("l2_plus_large_constant", f_l2_plus_constant, vjp_l2_plus_constant, {"x": normal(3, 4)}),
    Case("sin_far_from_origin", f_sin, vjp_sin, {"x": shifted(uniform(3, 4, low=-3.0, high=3.0), 1000.0)}),
    Case("layer_norm_offset_100", f_layer_norm, vjp_layer_norm, {"x": shifted(normal(3, 5), 100.0)}),
    Case("softmax_saturated", f_softmax, vjp_softmax, {"x": lambda rng: np.array(SATURATED_LOGITS)}),
]
