"""Correct code where finite differences are hard, and bugs that hide there (issue 13).

Elementwise functions at inputs of 1e-7 (a step not relative to |x| would
be larger than the input), beside a domain edge (log, sqrt, entropy and
binary cross-entropy within 1e-6 of 0 or 1: a step that crosses the edge
gives NaN), linear functions (no curvature: one-sided differences agree to
round-off, which must not pass for a kink), and one entry wrong by 1e-5
next to an entry a million times larger (one large value must not loosen
every element's tolerance). Every function comes with its derivative; every
case is one function at one regime, with its VJP and mutants.
"""

import numpy as np

from . import Case, entry_off

SHAPE = (2, 3)


def elementwise(f, df):
    """(forward, vjp) of an elementwise function and its derivative."""
    return (lambda x: f(x)), (lambda g, x: g * df(x))


def at(low, high, shape=SHAPE):
    """Uniform in [low, high] (a tiny regime, or a band beside a domain edge)."""
    return lambda rng: rng.uniform(low, high, shape)


def tiny(sign_mixed=True):
    """Entries of magnitude 1e-8..1e-6, of both signs unless told otherwise."""
    def gen(rng):
        x = 10.0 ** rng.uniform(-8, -6, SHAPE)
        return x * rng.choice([-1.0, 1.0], SHAPE) if sign_mixed else x

    return gen


def off_by(df, rel):
    """The derivative off by ``rel`` relative everywhere."""
    return lambda g, x: g * df(x) * (1 + rel)


def eval_elsewhere(df, shift):
    """The derivative taken at x * (1 + shift): a point bug that only precise steps see."""
    return lambda g, x: g * df(x * (1 + shift))


# name: (f, f', input generator, extra bugs {name: vjp})
SMOOTH = {
    "square": (lambda x: x * x, lambda x: 2 * x),
    "cube": (lambda x: x ** 3, lambda x: 3 * x * x),
    "sin": (np.sin, np.cos),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "x_exp_x": (lambda x: x * np.exp(x), lambda x: (1 + x) * np.exp(x)),
    "atan": (np.arctan, lambda x: 1 / (1 + x * x)),
    "sinh": (np.sinh, np.cosh),
    "x_over_1_plus_x2": (lambda x: x / (1 + x * x), lambda x: (1 - x * x) / (1 + x * x) ** 2),
}

TINY_SCALE = {  # functions whose own scale is that of the tiny inputs (|x| <= 2e-7, where float32
    # can still compute 1 - tanh**2): a step of 1e-6 spans all of it
    "tanh_of_x_over_1e-7": (lambda x: np.tanh(x * 1e7), lambda x: 1e7 * (1 - np.tanh(x * 1e7) ** 2)),
    "x2_over_x2_plus_1e-14": (lambda x: x * x / (x * x + 1e-14), lambda x: 2e-14 * x / (x * x + 1e-14) ** 2),
}

EDGES = {  # a function with a domain edge, its derivative, and a band of inputs beside the edge
    "log_near_0": (np.log, lambda x: 1 / x, at(1e-8, 1e-6)),
    "sqrt_near_0": (np.sqrt, lambda x: 0.5 / np.sqrt(x), at(1e-10, 1e-8)),
    "entropy_near_0": (lambda p: -p * np.log(p), lambda p: -np.log(p) - 1, at(1e-7, 1e-5)),
    "log1m_near_1": (lambda p: np.log(1 - p), lambda p: -1 / (1 - p), at(1 - 1e-5, 1 - 1e-6)),
    "bce_label1_near_0": (lambda p: -np.log(p), lambda p: -1 / p, at(1e-7, 1e-6)),
    "bce_label0_near_1": (lambda p: -np.log(1 - p), lambda p: 1 / (1 - p), at(1 - 1e-5, 1 - 2e-6)),
    "log1p_near_minus_1": (np.log1p, lambda x: 1 / (1 + x), at(-1 + 1e-6, -1 + 1e-5)),
    "arcsin_near_1": (np.arcsin, lambda x: 1 / np.sqrt(1 - x * x), at(1 - 1e-5, 1 - 1e-6)),
    "x_log_x_near_0": (lambda x: x * np.log(x), lambda x: np.log(x) + 1, at(1e-9, 1e-7)),
    "rsqrt_near_0": (lambda x: 1 / np.sqrt(x), lambda x: -0.5 * x ** -1.5, at(1e-8, 1e-6)),
}

LINEAR = {  # linear and affine maps: no curvature, every step measures them exactly
    "scale_by_3": (lambda x: 3.0 * x, lambda x: 3.0 + 0 * x),
    "affine": (lambda x: 2.5 * x - 7.0, lambda x: 2.5 + 0 * x),
    "negate_plus_large": (lambda x: 1e4 - x, lambda x: -1.0 + 0 * x),
    "tiny_slope": (lambda x: 1e-6 * x, lambda x: 1e-6 + 0 * x),
}


def _cases():
    cases = []
    for name, (f, df) in SMOOTH.items():
        forward, vjp = elementwise(f, df)
        cases.append(Case(f"tiny_{name}", forward, vjp, {"x": tiny()}, [
            ("all_off_1e-3", off_by(df, 1e-3)), ("entry_off_1e-2", entry_off(vjp, 1e-2))]))
    for name, (f, df) in TINY_SCALE.items():
        forward, vjp = elementwise(f, df)
        cases.append(Case(f"tiny_{name}", forward, vjp, {"x": at(-2e-7, 2e-7)}, [
            ("all_off_1e-3", off_by(df, 1e-3)), ("entry_off_1e-2", entry_off(vjp, 1e-2))]))
    for name, (f, df, gen) in EDGES.items():
        forward, vjp = elementwise(f, df)
        cases.append(Case(f"edge_{name}", forward, vjp, {"x": gen}, [
            ("all_off_1e-3", off_by(df, 1e-3)), ("entry_off_1e-2", entry_off(vjp, 1e-2))]))
    for name, (f, df) in LINEAR.items():
        forward, vjp = elementwise(f, df)
        cases.append(Case(f"linear_{name}", forward, vjp, {"x": at(-2.0, 2.0)}, [
            ("all_off_1e-4", off_by(df, 1e-4)), ("entry_off_1e-2", entry_off(vjp, 1e-2))]))
    return cases


# ------------------------------------------------------------ one large value beside small ones


def beside_large(vjp, rel, arg, index):
    """``entry_off`` on an entry far below its row's largest: the point of these cases, so
    not subject to the suite's check that planted entries are typical."""
    bad = entry_off(vjp, rel, arg, index)
    del bad.planted
    return bad


def f_weighted(x, w):
    return x * w


def vjp_weighted(g, x, w):
    return g * w, g * x


def one_large(rng):
    x = rng.uniform(0.5, 1.5, SHAPE)
    x.flat[0] = 1e6
    return x


def f_linear_map(x, A):
    return A @ x


def vjp_linear_map(g, x, A):
    return A.T @ g, np.outer(g, x)


def f_sum_sq_large(x):
    return np.sum(x * x)


def vjp_sum_sq_large(g, x):
    return g * 2 * x


LARGE = [
    Case("large_beside_small_weighted", f_weighted, vjp_weighted, {"x": one_large, "w": at(0.5, 1.5)}, [
        ("entry_off_1e-5_small", entry_off(vjp_weighted, 1e-5, arg=0, index=4)),
        ("entry_off_1e-5_small_w", entry_off(vjp_weighted, 1e-5, arg=1, index=4)),
    ]),
    Case("large_beside_small_sum_sq", f_sum_sq_large, vjp_sum_sq_large,
         {"x": lambda rng: np.array([3e3, 0.7, -1.2, 0.4])}, [
        ("entry_off_1e-5_small", beside_large(vjp_sum_sq_large, 1e-5, 0, 2)),
    ]),
    Case("linear_map", f_linear_map, vjp_linear_map, {"x": at(-1.0, 1.0, (4,)), "A": at(-1.0, 1.0, (3, 4))}, [
        ("transposed_outer", lambda g, x, A: (A.T @ g, np.outer(g, x) * (1 + 1e-4))),
        ("entry_off_1e-3", entry_off(vjp_linear_map, 1e-3, arg=0, index=1)),
    ]),
]

CASES = _cases() + LARGE
