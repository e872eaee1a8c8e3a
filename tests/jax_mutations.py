"""A mutation suite of JAX derivative rules: correct ``custom_jvp`` / ``custom_vjp``
rules and buggy ones, as JAX users write them.

Each ``Rule`` is a primal function, its correct rule, mutants of the rule
(``(bug name, rule)``) and a seeded generator of inputs (away from kinks).
``Rule.variants()`` builds one JAX function per rule with ``jax.custom_jvp``
or ``jax.custom_vjp``; gradrun must pass every correct one and flag every
mutant, in float64 and float32 (tests/test_jax_mutations.py), and
benchmarks/bench_jax.py runs the same suite through ``jax.test_util.check_grads``.

A ``custom_jvp`` rule is ``(primals, tangents) -> output tangent``; a
``custom_vjp`` rule is ``(inputs, cotangent) -> one cotangent per input`` (its
residuals are the inputs). Rules use Python-float constants only, so they
compute in the dtype they are given.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr, ndtr
from jax.scipy.stats import norm


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # custom_jvp | custom_vjp
    primal: Callable  # parameter names are the input names
    rule: Callable
    inputs: dict  # input name -> generator(rng) -> array
    bugs: list = field(default_factory=list)  # of (bug name, buggy rule)

    def point(self) -> dict:
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return {k: gen(rng) for k, gen in self.inputs.items()}

    def build(self, rule) -> Callable:
        """The primal as a JAX function whose derivative is ``rule``."""
        primal = self.primal
        if self.kind == "custom_jvp":
            f = jax.custom_jvp(primal)
            f.defjvp(lambda primals, tangents: (primal(*primals), rule(primals, tangents)))
            return f
        f = jax.custom_vjp(primal)
        f.defvjp(lambda *xs: (primal(*xs), xs), rule)
        return f

    def variants(self) -> list:
        """(variant name, JAX function, should pass): the correct rule first, then every mutant."""
        return [("correct", self.build(self.rule), True)] + [(b, self.build(r), False) for b, r in self.bugs]


# ------------------------------------------------------------------ inputs and mutation operators


def normal(*shape, loc=0.0, scale=1.0):
    return lambda rng: loc + scale * rng.standard_normal(shape)


def away(*shape, low=-3.0, high=3.0, kinks=(0.0,), margin=0.2):
    """Uniform in [low, high], at least ``margin`` from every kink."""
    def gen(rng):
        x = rng.uniform(low, high, shape)
        near = lambda v: np.any([np.abs(v - k) < margin for k in kinks], axis=0)  # noqa: E731
        while near(x).any():
            x = np.where(near(x), rng.uniform(low, high, shape), x)
        return x

    return gen


def fixed(values):
    return lambda rng: np.array(values, dtype=np.float64)


def entry_off(bwd, rel, arg=0):
    """A custom_vjp rule with the middle entry of input ``arg``'s cotangent off by ``rel`` relative."""
    def bad(xs, g):
        cts = list(bwd(xs, g))
        flat = cts[arg].ravel()
        j = flat.size // 2
        cts[arg] = flat.at[j].multiply(1 + rel).reshape(cts[arg].shape)
        return tuple(cts)

    return bad


def ladder(bwd, arg=0) -> list:
    """One entry off by 1e-2, 1e-4 and 1e-6 relative."""
    return [(f"entry_off_1e-{k}", entry_off(bwd, 10.0 ** -k, arg)) for k in (2, 4, 6)]


# ------------------------------------------------------------------ custom_jvp rules


def lse(x):
    m = jnp.max(x)
    return m + jnp.log(jnp.sum(jnp.exp(x - m)))


def lse_jvp(p, t):
    e = jnp.exp(p[0] - jnp.max(p[0]))
    return jnp.sum(e * t[0]) / jnp.sum(e)


def lse_jvp_unnormalized(p, t):
    return jnp.sum(jnp.exp(p[0] - jnp.max(p[0])) * t[0])


def lse_jvp_unshifted(p, t):  # overflows once a logit passes ~709 (float64), ~88 (float32)
    return jnp.sum(jnp.exp(p[0]) * t[0]) / jnp.sum(jnp.exp(p[0]))


def softplus(x):
    return jnp.logaddexp(x, 0.0)


def softplus_jvp(p, t):
    return jax.nn.sigmoid(p[0]) * t[0]


def softplus_jvp_unstable(p, t):  # exp(x) overflows: inf / inf
    return jnp.exp(p[0]) / (1 + jnp.exp(p[0])) * t[0]


def softplus_jvp_branch_sign(p, t):  # the stable two-branch sigmoid, one sign wrong
    x = p[0]
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, 1 / (1 + e), e / (1 - e)) * t[0]


def softplus_jvp_missing_term(p, t):
    return (1 - jax.nn.sigmoid(p[0])) * t[0]


GELU_C = math.sqrt(2 / math.pi)


def gelu(x):
    return 0.5 * x * (1 + jnp.tanh(GELU_C * (x + 0.044715 * x**3)))


def gelu_rule(c, cubic):
    def rule(p, t):
        x = p[0]
        th = jnp.tanh(c * (x + 0.044715 * x**3))
        return (0.5 * (1 + th) + 0.5 * x * (1 - th**2) * c * (1 + cubic * 0.044715 * x**2)) * t[0]

    return rule


def gelu_jvp_missing_term(p, t):
    x = p[0]
    return 0.5 * (1 + jnp.tanh(GELU_C * (x + 0.044715 * x**3))) * t[0]


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def selu(x):
    return SELU_SCALE * jnp.where(x > 0, x, SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))


def selu_rule(alpha, scale, sign=1.0):
    def rule(p, t):
        x = p[0]
        return scale * jnp.where(x > 0, 1.0, sign * alpha * jnp.exp(jnp.minimum(x, 0.0))) * t[0]

    return rule


def huber(x):
    return jnp.where(jnp.abs(x) <= 1, 0.5 * x**2, jnp.abs(x) - 0.5)


def huber_rule(inner=1.0, low=-1.0):
    def rule(p, t):
        x = p[0]
        return jnp.where(jnp.abs(x) <= 1, inner * x, jnp.where(x > 0, 1.0, low)) * t[0]

    return rule


def safe_norm(x):
    return jnp.sqrt(jnp.sum(x**2))


def safe_norm_jvp(p, t):
    return jnp.sum(p[0] * t[0]) / safe_norm(p[0])


def safe_norm_jvp_squared(p, t):
    return jnp.sum(p[0] * t[0]) / jnp.sum(p[0] ** 2)


def log_add_exp(a, b):
    return jnp.logaddexp(a, b)


def logaddexp_jvp(p, t):
    a, b = p
    return jax.nn.sigmoid(a - b) * t[0] + jax.nn.sigmoid(b - a) * t[1]


def logaddexp_jvp_swapped(p, t):
    a, b = p
    return jax.nn.sigmoid(b - a) * t[0] + jax.nn.sigmoid(a - b) * t[1]


def logaddexp_jvp_missing_b(p, t):
    return jax.nn.sigmoid(p[0] - p[1]) * t[0]


def probit_loglik(x):  # log Phi(x): a probit model's log-likelihood
    return log_ndtr(x)


def probit_jvp(p, t):
    return jnp.exp(norm.logpdf(p[0]) - log_ndtr(p[0])) * t[0]


def probit_jvp_unstable(p, t):  # pdf / cdf: 0 / 0 once x < -38 (float64), -13 (float32)
    return norm.pdf(p[0]) / ndtr(p[0]) * t[0]


# ------------------------------------------------------------------ custom_vjp rules


def softmax(x):
    return jax.nn.softmax(x, axis=-1)


def softmax_bwd(xs, g):
    s = softmax(xs[0])
    return (s * (g - jnp.sum(g * s, axis=-1, keepdims=True)),)


def softmax_bwd_missing_term(xs, g):
    return (softmax(xs[0]) * g,)


def softmax_bwd_wrong_axis(xs, g):
    s = softmax(xs[0])
    return (s * (g - jnp.sum(g * s, axis=0, keepdims=True)),)


MAX_NORM = 1.0


def clip_by_norm(x):
    return x * jnp.minimum(1.0, MAX_NORM / safe_norm(x))


def clip_bwd(projection=1.0):
    def bwd(xs, g):
        x = xs[0]
        n = safe_norm(x)
        u = x / n
        return (jnp.where(n > MAX_NORM, MAX_NORM / n * (g - projection * u * jnp.sum(u * g)), g),)

    return bwd


def clip_bwd_straight_through(xs, g):
    return (g,)


def rmsnorm(x, w):
    return x / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True) + 1e-5) * w


def rmsnorm_rule(mean_term=1.0, w_sign=1.0):
    def bwd(xs, g):
        x, w = xs
        r = 1 / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True) + 1e-5)
        gw = g * w
        gx = r * gw - mean_term * x * r**3 * jnp.mean(gw * x, axis=-1, keepdims=True)
        return gx, w_sign * jnp.sum(g * x * r, axis=0)

    return bwd


def bce_logits(z, y):
    return jnp.sum(jnp.maximum(z, 0.0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))


def bce_rule(sign=1.0, label_term=1.0):
    def bwd(xs, g):
        z, y = xs
        return sign * g * (jax.nn.sigmoid(z) - y), -label_term * g * z

    return bwd


def matmul(x, w):
    return x @ w


def matmul_bwd(xs, g):
    x, w = xs
    return g @ w.T, x.T @ g


def matmul_bwd_transposed(xs, g):
    x, w = xs
    return g @ w.T, g.T @ x


def matmul_bwd_missing_transpose(xs, g):
    x, w = xs
    return g @ w, x.T @ g


# ------------------------------------------------------------------ the suite

RULES = [
    Rule("logsumexp", "custom_jvp", lse, lse_jvp, {"x": normal(6, scale=3.0)},
         [("unnormalized", lse_jvp_unnormalized),
          ("sign", lambda p, t: -lse_jvp(p, t))]),
    Rule("logsumexp-large-logits", "custom_jvp", lse, lse_jvp, {"x": normal(5, loc=715.0, scale=8.0)},
         [("unshifted_overflow", lse_jvp_unshifted)]),
    Rule("softplus", "custom_jvp", softplus, softplus_jvp, {"x": away(3, 4, low=-5, high=5)},
         [("sign_in_negative_branch", softplus_jvp_branch_sign),
          ("one_minus_sigmoid", softplus_jvp_missing_term)]),
    Rule("softplus-wide", "custom_jvp", softplus, softplus_jvp, {"x": fixed([-750.0, -30.0, 0.5, 40.0, 720.0, 800.0])},
         [("exp_over_one_plus_exp", softplus_jvp_unstable)]),
    Rule("gelu-tanh", "custom_jvp", gelu, gelu_rule(GELU_C, 3.0), {"x": normal(3, 4, scale=1.5)},
         [("constant_to_6_digits", gelu_rule(0.797885, 3.0)),
          ("missing_factor_3", gelu_rule(GELU_C, 1.0)),
          ("missing_term", gelu_jvp_missing_term)]),
    Rule("selu", "custom_jvp", selu, selu_rule(SELU_ALPHA, SELU_SCALE), {"x": away(3, 4)},
         [("constants_to_6_digits", selu_rule(1.67326, 1.05070)),
          ("sign_in_negative_branch", selu_rule(SELU_ALPHA, SELU_SCALE, sign=-1.0))]),
    Rule("huber", "custom_jvp", huber, huber_rule(), {"x": away(3, 4, kinks=(-1.0, 1.0))},
         [("sign_in_negative_branch", huber_rule(low=1.0)),
          ("half_in_quadratic_branch", huber_rule(inner=0.5))]),
    Rule("safe-norm", "custom_jvp", safe_norm, safe_norm_jvp, {"x": normal(5)},
         [("norm_squared", safe_norm_jvp_squared),
          ("sign", lambda p, t: -safe_norm_jvp(p, t))]),
    Rule("logaddexp", "custom_jvp", log_add_exp, logaddexp_jvp, {"a": normal(4), "b": normal(4)},
         [("weights_swapped", logaddexp_jvp_swapped),
          ("missing_b_term", logaddexp_jvp_missing_b)]),
    Rule("probit-loglik", "custom_jvp", probit_loglik, probit_jvp, {"x": fixed([-42.0, -25.0, -3.0, 0.7, 2.5])},
         [("pdf_over_cdf_underflow", probit_jvp_unstable)]),
    Rule("softmax", "custom_vjp", softmax, softmax_bwd, {"x": normal(3, 4)},
         [("missing_term", softmax_bwd_missing_term),
          ("wrong_axis", softmax_bwd_wrong_axis)] + ladder(softmax_bwd)),
    Rule("clip-by-norm", "custom_vjp", clip_by_norm, clip_bwd(), {"x": normal(2, 3, scale=2.0)},
         [("missing_projection", clip_bwd(projection=0.0)),
          ("projection_sign", clip_bwd(projection=-1.0)),
          ("straight_through", clip_bwd_straight_through)]),
    Rule("rmsnorm", "custom_vjp", rmsnorm, rmsnorm_rule(), {"x": normal(3, 4), "w": normal(4)},
         [("missing_mean_term", rmsnorm_rule(mean_term=0.0)),
          ("weight_sign", rmsnorm_rule(w_sign=-1.0))] + ladder(rmsnorm_rule(), arg=1)),
    Rule("bce-with-logits", "custom_vjp", bce_logits, bce_rule(),
         {"z": normal(6, scale=2.0), "y": lambda rng: rng.uniform(0.1, 0.9, 6)},
         [("sign", bce_rule(sign=-1.0)),
          ("missing_label_term", bce_rule(label_term=0.0))]),
    Rule("matmul", "custom_vjp", matmul, matmul_bwd, {"x": normal(3, 3), "w": normal(3, 3)},
         [("w_cotangent_transposed", matmul_bwd_transposed),
          ("missing_transpose", matmul_bwd_missing_transpose)]),
]
