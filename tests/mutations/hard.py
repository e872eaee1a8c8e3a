"""Solves near singular, steps the user chose too coarse, scales far from |x|, float16 inside float32 code.

- An ill-conditioned linear solve: x = A^-1 b with a singular value of A
  at 1e-3, so that a step larger than it measures another function.
- A user's explicit coarse ``step`` (0.5 with a forward difference, 0.1
  central): the report shows that measurement, but a correct VJP must still
  pass and one 1e-3 wrong must still fail (the verdict re-measures).
- A smooth function whose own scale is far below |x| (sin(300 x)):
  the auto step is too coarse and must be refined, not called a kink.
- Rules "for float32" that compute in float16: wrong by float16's round-off
  (1e-3), which a float32 check must see.
- ``NONDETERMINISTIC``: functions that return different values on repeated
  calls (hidden state, a dropout mask redrawn each call): an error naming
  the function, never a pass (checked in tests/test_mutations.py).
"""

import numpy as np

from . import Case, all_off, entry_off

# ---------------------------------------------------------------- ill-conditioned solves


def conditioned(n, smallest):
    """A seeded n x n matrix with singular values from 1 down to ``smallest``."""
    def gen(rng):
        u, _ = np.linalg.qr(rng.standard_normal((n, n)))
        v, _ = np.linalg.qr(rng.standard_normal((n, n)))
        return u @ np.diag(np.geomspace(1.0, smallest, n)) @ v.T

    return gen


def f_solve(A, b):
    return np.linalg.solve(A, b)


def vjp_solve(g, A, b):
    x = np.linalg.solve(A, b)
    gb = np.linalg.solve(A.T, g)
    return -np.outer(gb, x), gb


def f_solve_quadratic(A, b):
    x = np.linalg.solve(A, b)
    return 0.5 * np.sum(x * x)


def vjp_solve_quadratic(g, A, b):
    x = np.linalg.solve(A, b)
    gb = np.linalg.solve(A.T, g * x)
    return -np.outer(gb, x), gb


def vec(n):
    return lambda rng: rng.standard_normal(n)


SOLVES = [
    Case(f"solve_cond_{name}", f_solve, vjp_solve, {"A": conditioned(3, smallest), "b": vec(3)}, [
        ("solve_with_A_not_transposed", lambda g, A, b: (-np.outer(np.linalg.solve(A, g), np.linalg.solve(A, b)),
                                                         np.linalg.solve(A, g))),
        ("entry_off_1e-3", entry_off(vjp_solve, 1e-3, arg=1)),
    ]) for name, smallest in (("1e-2", 1e-2), ("1e-3", 1e-3))
] + [
    Case("solve_quadratic_cond_1e-3", f_solve_quadratic, vjp_solve_quadratic,
         {"A": conditioned(3, 1e-3), "b": vec(3)}, [
             ("sign_of_A_gradient", lambda g, A, b: tuple(
                 s * c for s, c in zip((-1.0, 1.0), vjp_solve_quadratic(g, A, b)))),
             ("all_off_1e-3", all_off(vjp_solve_quadratic, 1e-3)),
         ]),
]

# ---------------------------------------------------------------- a user's coarse steps


def f_exp_sum(x):
    return np.sum(np.exp(x))


def vjp_exp_sum(g, x):
    return g * np.exp(x)


def f_softplus(x):
    return np.logaddexp(0.0, x)


def vjp_softplus(g, x):
    return g / (1 + np.exp(-x))


def normal3(rng):
    return rng.standard_normal((3,))


COARSE = [
    Case(f"coarse_{name}", f, vjp, {"x": normal3}, [
        ("all_off_1e-3", all_off(vjp, 1e-3)), ("entry_off_30pc", entry_off(vjp, 0.3))], settings)
    for name, f, vjp, settings in (
        ("forward_0.5_exp", f_exp_sum, vjp_exp_sum, {"method": "forward", "step": 0.5}),
        ("central_0.1_softplus", f_softplus, vjp_softplus, {"method": "central", "step": 0.1}),
        ("backward_0.2_softplus", f_softplus, vjp_softplus, {"method": "backward", "step": 0.2}),
        ("central4_0.5_exp", f_exp_sum, vjp_exp_sum, {"method": "central4", "step": 0.5}),
        ("forward_1e-2_softplus", f_softplus, vjp_softplus, {"method": "forward", "step": 1e-2}),
        ("central_1.0_exp", f_exp_sum, vjp_exp_sum, {"method": "central", "step": 1.0}),
    )
]

# ---------------------------------------------------------------- scales far below |x|


def f_fast_sin(x):
    return np.sin(300.0 * x)


def vjp_fast_sin(g, x):
    return g * 300.0 * np.cos(300.0 * x)


def f_gauss_bump(x):
    return np.exp(-((x - 5.0) / 1e-3) ** 2)


def vjp_gauss_bump(g, x):
    return g * np.exp(-((x - 5.0) / 1e-3) ** 2) * -2 * (x - 5.0) / 1e-6


SCALES = [
    Case("fast_sin_at_3", f_fast_sin, vjp_fast_sin, {"x": lambda rng: 3.0 + rng.uniform(-0.5, 0.5, (4,))}, [
        ("inner_factor_missing", lambda g, x: g * np.cos(300.0 * x)),
        ("all_off_1e-3", all_off(vjp_fast_sin, 1e-3)),
    ]),
    Case("narrow_bump_at_5", f_gauss_bump, vjp_gauss_bump,
         {"x": lambda rng: 5.0 + rng.uniform(-1.5e-3, 1.5e-3, (4,))}, [
             ("all_off_1e-3", all_off(vjp_gauss_bump, 1e-3)),
         ]),
]

# ---------------------------------------------------------------- float16 inside float32 code


def f_tanh(x):
    return np.tanh(x)


def vjp_tanh(g, x):
    return g * (1 - np.tanh(x) ** 2)


def vjp_tanh_half(g, x):
    t = np.tanh(x.astype(np.float16))
    return (g * (1 - t * t)).astype(x.dtype)


def f_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def vjp_sigmoid(g, x):
    s = 1 / (1 + np.exp(-x))
    return g * s * (1 - s)


def vjp_sigmoid_half_product(g, x):
    s = 1 / (1 + np.exp(-x))
    return g * (s.astype(np.float16) * (1 - s).astype(np.float16)).astype(x.dtype)


def f_matvec(W, x):
    return W @ x


def vjp_matvec(g, W, x):
    return np.outer(g, x), W.T @ g


def vjp_matvec_half(g, W, x):
    half = np.float16
    return np.outer(g, x), (W.astype(half).T @ g.astype(half)).astype(x.dtype)


HALF = [
    Case("half_tanh", f_tanh, vjp_tanh, {"x": lambda rng: rng.uniform(0.3, 2.0, (6,))},
         [("tanh_in_float16", vjp_tanh_half)]),
    Case("half_sigmoid", f_sigmoid, vjp_sigmoid, {"x": lambda rng: rng.uniform(-3.0, 3.0, (6,))},
         [("product_in_float16", vjp_sigmoid_half_product)]),
    Case("half_matvec", f_matvec, vjp_matvec, {"W": lambda rng: rng.uniform(-1, 1, (3, 4)) + 1.1,
                                               "x": lambda rng: rng.uniform(0.5, 1.5, (4,))},
         [("matvec_in_float16", vjp_matvec_half)]),
]

# ---------------------------------------------------------------- probabilities near 0 inside a layer


def f_cross_entropy(z):
    """Cross-entropy of a softmax against label 0, with logits that make p[0] tiny."""
    e = np.exp(z - z.max())
    return -np.log(e[0] / e.sum())


def vjp_cross_entropy(g, z):
    e = np.exp(z - z.max())
    p = e / e.sum()
    onehot = np.zeros_like(z)
    onehot[0] = 1.0
    return g * (p - onehot)


def f_kl_tiny(p, q):
    return np.sum(p * np.log(p / q))


def vjp_kl_tiny(g, p, q):
    return g * (np.log(p / q) + 1), -g * p / q


def probs(low, high, n=4):
    return lambda rng: rng.uniform(low, high, (n,))


PROBABILITIES = [
    Case("cross_entropy_p_tiny", f_cross_entropy, vjp_cross_entropy,
         {"z": lambda rng: np.array([-15.0, 2.0, 1.0, 0.5]) + rng.uniform(-0.1, 0.1, (4,))}, [
             ("onehot_missing", lambda g, z: vjp_cross_entropy(g, z) + g * np.eye(4)[0]),
             ("all_off_1e-3", all_off(vjp_cross_entropy, 1e-3)),
         ]),
    Case("kl_near_0", f_kl_tiny, vjp_kl_tiny, {"p": probs(1e-7, 1e-6), "q": probs(1e-7, 1e-6)}, [
        ("dropped_plus_1", lambda g, p, q: (g * np.log(p / q), -g * p / q)),
        ("entry_off_1e-3", entry_off(vjp_kl_tiny, 1e-3, arg=1)),
    ]),
    Case("product_of_tiny", lambda x, y: x * y, lambda g, x, y: (g * y, g * x),
         {"x": probs(1e-8, 1e-7), "y": probs(1e-8, 1e-7)}, [
             ("swapped", lambda g, x, y: (g * x, g * y)),
         ]),
]

CASES = SOLVES + COARSE + SCALES + HALF + PROBABILITIES

# ---------------------------------------------------------------- nondeterministic functions


class Counter:
    """A function with hidden state: every call adds a little more."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return np.tanh(x) + 1e-9 * self.calls


def dropout_redrawn(x):
    """A dropout mask drawn fresh on every call."""
    mask = np.random.default_rng().random(x.shape) > 0.5
    return np.where(mask, 2 * x, 0 * x)


def jitter(x):
    return np.sin(x) * (1 + 1e-12 * np.random.default_rng().standard_normal())


NONDETERMINISTIC = [
    ("hidden_counter", lambda: Counter(), lambda g, x: g * (1 - np.tanh(x) ** 2)),
    ("dropout_redrawn", lambda: dropout_redrawn, lambda g, x: g * 1.0),
    ("jitter_1e-12", lambda: jitter, lambda g, x: g * np.cos(x)),
]
