"""A fresh JAX corpus (round 7): layers with hand-written ``custom_vjp`` / ``custom_jvp``
rules and plain JAX code, correct and with the bugs people ship.

Unlike tests/jax_mutations.py (one rule per primitive, mutated by operators),
each ``Case`` here is a whole function as written in a model: its correct
version, then buggy versions written out as a person would get them wrong
(a wrong transpose, a missing term, a reduction over the wrong axis, float16
inside a backward, a window off by one, a residual saved from the wrong
place, a sign wrong in one branch, a broadcast not summed back, an epsilon in
the wrong place of a norm, a ``stop_gradient`` where none belongs). Points
are drawn unlike the older corpora: large and tiny magnitudes, logits of
hundreds, inputs of mixed scales, points near (not at) kinks.

A bug that only float32 can show (an ``exp`` that overflows at 300) carries
``only_in = ("float32",)``: in float64 that variant is correct code. A miss
gradrun cannot fix without failing correct code is declared in
``Case.known_misses`` (variant -> why) and runs as a strict xfail. An element
where the correct code's f does not change at any step although its true
derivative is not 0 (exact GELU at x = -9: 1 + erf(-6.4) rounds to 0) is
named in ``Case.unmeasurable``: there gradrun must say ``unresolved``, and
pass everything else.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable  # the correct JAX function; parameter names are the input names
    inputs: dict  # input name -> generator(rng) -> array
    bugs: list = field(default_factory=list)  # of (bug name, JAX function)
    known_misses: dict = field(default_factory=dict)  # bug name -> why gradrun misses it
    unmeasurable: tuple = ()  # elements no finite difference of the correct code can measure: unresolved

    def point(self) -> dict:
        rng = np.random.default_rng(zlib.crc32(("fresh7-" + self.name).encode()))
        return {k: gen(rng) for k, gen in self.inputs.items()}

    def variants(self) -> list:
        """(variant name, JAX function, should pass in float64, should pass in float32)."""
        out = [("correct", self.fn, True, True)]
        for bug, fn in self.bugs:
            only = getattr(fn, "only_in", ("float64", "float32"))
            out.append((bug, fn, "float64" not in only, "float32" not in only))
        return out


def normal(*shape, loc=0.0, scale=1.0):
    return lambda rng: loc + scale * rng.standard_normal(shape)


def uniform(*shape, low, high):
    return lambda rng: rng.uniform(low, high, shape)


def log_uniform(*shape, low, high, signed=False):
    """Magnitudes spread evenly over decades, from 10**low to 10**high."""
    def gen(rng):
        x = 10.0 ** rng.uniform(low, high, shape)
        return x * rng.choice([-1.0, 1.0], shape) if signed else x

    return gen


def fixed(values):
    return lambda rng: np.array(values, dtype=np.float64)


def vjp_rule(primal, fwd, bwd, only_in=None):
    """``primal`` as a ``jax.custom_vjp`` with ``fwd(*xs) -> (out, residuals)``, ``bwd(res, g)``."""
    f = jax.custom_vjp(primal)
    f.defvjp(fwd, bwd)
    if only_in:
        f.only_in = only_in
    return f


def jvp_rule(primal, rule, only_in=None):
    """``primal`` as a ``jax.custom_jvp`` whose output tangent is ``rule(primals, tangents)``."""
    f = jax.custom_jvp(primal)
    f.defjvp(lambda p, t: (primal(*p), rule(p, t)))
    if only_in:
        f.only_in = only_in
    return f


def saves_inputs(primal):
    """A ``fwd`` that saves the inputs as residuals."""
    return lambda *xs: (primal(*xs), xs)


def half(a):
    """``a`` rounded through float16, as a backward computed in half precision returns it."""
    return a.astype(jnp.float16).astype(a.dtype)


# ------------------------------------------------------------------ 1. layer norm, offset inputs


EPS_LN = 1e-5


def layer_norm(x, w, b):
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + EPS_LN) * w + b


def layer_norm_bwd(res, g, eps_outside=False, drop_mean=False, dw_from_x=False, f16=False):
    x, w, b = res
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    rstd = 1.0 / (jnp.sqrt(var) + EPS_LN) if eps_outside else 1.0 / jnp.sqrt(var + EPS_LN)
    xhat = (x - mu) * rstd
    gx = g * w
    dx = gx - jnp.mean(gx * xhat, axis=-1, keepdims=True) * xhat
    if not drop_mean:
        dx = dx - jnp.mean(gx, axis=-1, keepdims=True)
    dx = dx * rstd
    dw = jnp.sum(g * (x if dw_from_x else xhat), axis=0)
    db = jnp.sum(g, axis=0)
    if f16:
        dx = half(dx)
    return dx, dw, db


def ln_variant(**bug):
    return vjp_rule(layer_norm, saves_inputs(layer_norm), lambda r, g: layer_norm_bwd(r, g, **bug))


# ------------------------------------------------------------------ 2. cross-entropy of large logits


LABELS = np.eye(5)[[4, 0, 2]]  # the targets of three examples over five classes: not differentiated


def xent(logits):
    onehot = LABELS.astype(logits.dtype)
    z = logits - jnp.max(logits, axis=-1, keepdims=True)
    logp = z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
    return -jnp.mean(jnp.sum(onehot * logp, axis=-1))


def xent_bwd(res, g, unshifted=False, no_mean=False):
    (logits,) = res
    onehot = LABELS.astype(logits.dtype)
    if unshifted:
        e = jnp.exp(logits)
    else:
        e = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    p = e / jnp.sum(e, axis=-1, keepdims=True)
    n = 1.0 if no_mean else logits.shape[0]
    return (g * (p - onehot) / n,)


def xent_variant(only_in=None, **bug):
    return vjp_rule(xent, saves_inputs(xent), lambda r, g: xent_bwd(r, g, **bug), only_in=only_in)


# ------------------------------------------------------------------ 3. 1-d valid convolution (cross-correlation)


def conv1d(x, k):
    n = x.shape[0] - k.shape[0] + 1
    return jnp.stack([jnp.sum(x[i:i + k.shape[0]] * k) for i in range(n)])


def conv1d_bwd(res, g, shift=0, flip_dk=False):
    x, k = res
    m, n = k.shape[0], g.shape[0]
    dx = jnp.zeros_like(x)
    for i in range(n):
        j = min(max(i + shift, 0), x.shape[0] - m)
        dx = dx.at[j:j + m].add(g[i] * k)
    dk = jnp.stack([jnp.sum(g * x[j:j + n]) for j in range(m)])
    return dx, (dk[::-1] if flip_dk else dk)


def conv_variant(**bug):
    return vjp_rule(conv1d, saves_inputs(conv1d), lambda r, g: conv1d_bwd(r, g, **bug))


# ------------------------------------------------------------------ 4. dense layer, square weights


def dense(x, w, b):
    return jnp.tanh(x @ w + b)


def dense_fwd(x, w, b, stale=False):
    y = jnp.tanh(x @ w + b)
    return y, (x, w, x @ w + b if stale else y)  # stale: the pre-activation saved where tanh's output belongs


def dense_bwd(res, g, transpose_w=True, db_axis=0):
    x, w, y = res
    gz = g * (1 - y ** 2)
    return gz @ (w.T if transpose_w else w), x.T @ gz, jnp.sum(gz, axis=db_axis)


def dense_variant(stale=False, **bug):
    return vjp_rule(dense, lambda x, w, b: dense_fwd(x, w, b, stale), lambda r, g: dense_bwd(r, g, **bug))


# ------------------------------------------------------------------ 5. a per-feature scale broadcast over rows


def scaled_energy(x, s):  # s: shape (1, n), broadcast over the rows of x
    return jnp.sum((x * s) ** 2)


def scaled_energy_bwd(res, g, mean_not_sum=False):
    x, s = res
    gy = 2.0 * g * (x * s)
    ds = jnp.mean(gy * x, axis=0, keepdims=True) if mean_not_sum else jnp.sum(gy * x, axis=0, keepdims=True)
    return gy * s, ds


def energy_variant(**bug):
    return vjp_rule(scaled_energy, saves_inputs(scaled_energy), lambda r, g: scaled_energy_bwd(r, g, **bug))


# ------------------------------------------------------------------ 6. RMS norm with a half-precision backward


def rms_norm(x, w):
    return x / jnp.sqrt(jnp.mean(x ** 2, axis=-1, keepdims=True) + 1e-6) * w


def rms_norm_bwd(res, g, f16=False):
    x, w = res
    r = 1.0 / jnp.sqrt(jnp.mean(x ** 2, axis=-1, keepdims=True) + 1e-6)
    gx = g * w
    dx = r * gx - r ** 3 * x * jnp.mean(gx * x, axis=-1, keepdims=True)
    dw = jnp.sum(g * x * r, axis=0)
    return (half(dx), half(dw)) if f16 else (dx, dw)


def rms_variant(**bug):
    return vjp_rule(rms_norm, saves_inputs(rms_norm), lambda r, g: rms_norm_bwd(r, g, **bug))


# ------------------------------------------------------------------ 7. exact GELU whose rule is the tanh approximation's


SQRT_HALF = 1 / math.sqrt(2.0)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def gelu_erf(x):
    return 0.5 * x * (1.0 + erf(x * SQRT_HALF))


def gelu_erf_jvp(p, t):
    x = p[0]
    return (0.5 * (1.0 + erf(x * SQRT_HALF)) + x * INV_SQRT_2PI * jnp.exp(-0.5 * x * x)) * t[0]


def gelu_tanh_jvp(p, t):  # the tanh approximation's derivative, used for the exact GELU
    x = p[0]
    c = math.sqrt(2 / math.pi)
    th = jnp.tanh(c * (x + 0.044715 * x ** 3))
    return (0.5 * (1 + th) + 0.5 * x * (1 - th ** 2) * c * (1 + 3 * 0.044715 * x ** 2)) * t[0]


# ------------------------------------------------------------------ 8. log-sigmoid over a wide range


def log_sigmoid(x):
    return -jnp.logaddexp(0.0, -x)


def log_sigmoid_jvp(p, t):
    return jax.nn.sigmoid(-p[0]) * t[0]


def log_sigmoid_jvp_cancels(p, t):  # 1 - sigmoid(x): 0 instead of e^-x once sigmoid(x) rounds to 1
    return (1.0 - jax.nn.sigmoid(p[0])) * t[0]


def log_sigmoid_jvp_branch_sign(p, t):  # the two-branch stable form, negative branch's sign wrong
    x = p[0]
    e = jnp.exp(-jnp.abs(x))
    return jnp.where(x >= 0, e / (1.0 + e), -1.0 / (1.0 + e)) * t[0]


# ------------------------------------------------------------------ 9. softmax with a learned temperature


def tempered_softmax(x, temp):
    return jax.nn.softmax(x / temp[0])


def tempered_softmax_bwd(res, g, dtemp_sign=-1.0, drop_dtemp=False):
    x, temp = res
    t = temp[0]
    p = jax.nn.softmax(x / t)
    dz = p * (g - jnp.sum(g * p, axis=-1, keepdims=True))
    dtemp = jnp.zeros_like(temp) if drop_dtemp else jnp.reshape(dtemp_sign * jnp.sum(dz * x) / t ** 2, (1,))
    return dz / t, dtemp


def temp_variant(**bug):
    return vjp_rule(tempered_softmax, saves_inputs(tempered_softmax), lambda r, g: tempered_softmax_bwd(r, g, **bug))


# ------------------------------------------------------------------ 10. cumulative sum


def cumsum(x):
    return jnp.cumsum(x)


def cumsum_bwd(res, g, forward=False, exclusive=False):
    if forward:
        return (jnp.cumsum(g),)
    rc = jnp.cumsum(g[::-1])[::-1]
    if exclusive:
        rc = rc - g
    return (rc,)


def cumsum_variant(**bug):
    return vjp_rule(cumsum, saves_inputs(cumsum), lambda r, g: cumsum_bwd(r, g, **bug))


# ------------------------------------------------------------------ 11. a norm with epsilon, tiny inputs


EPS_NORM = 1e-12


def eps_norm(x):
    return jnp.sqrt(jnp.sum(x ** 2) + EPS_NORM)


def eps_norm_bwd(res, g, eps_outside=False):
    (x,) = res
    d = jnp.sqrt(jnp.sum(x ** 2)) + EPS_NORM if eps_outside else jnp.sqrt(jnp.sum(x ** 2) + EPS_NORM)
    return (g * x / d,)


def eps_norm_variant(**bug):
    return vjp_rule(eps_norm, saves_inputs(eps_norm), lambda r, g: eps_norm_bwd(r, g, **bug))


# ------------------------------------------------------------------ 12. single-head attention


def attention(q, k, v):
    c = 1.0 / math.sqrt(q.shape[-1])
    return jax.nn.softmax(q @ k.T * c, axis=-1) @ v


def attention_bwd(res, g, scale_dq=True, transpose_ds=True):
    q, k, v = res
    c = 1.0 / math.sqrt(q.shape[-1])
    p = jax.nn.softmax(q @ k.T * c, axis=-1)
    dp = g @ v.T
    ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
    dq = ds @ k * (c if scale_dq else 1.0)
    dk = (ds.T if transpose_ds else ds) @ q * c
    return dq, dk, p.T @ g


def attn_variant(**bug):
    return vjp_rule(attention, saves_inputs(attention), lambda r, g: attention_bwd(r, g, **bug))


# ------------------------------------------------------------------ 13. x log x near 0


def xlogx(x):
    return x * jnp.log(x)


def xlogx_jvp(p, t, eps=0.0):
    return (jnp.log(p[0] + eps) + 1.0) * t[0]


# ------------------------------------------------------------------ 14. smooth L1 near its kinks


BETA = 0.5


def smooth_l1(x):
    a = jnp.abs(x)
    return jnp.where(a < BETA, 0.5 * x * x / BETA, a - 0.5 * BETA)


def smooth_l1_jvp(p, t, neg=-1.0, inner=1.0):
    x = p[0]
    return jnp.where(jnp.abs(x) < BETA, inner * x / BETA, jnp.where(x > 0, 1.0, neg)) * t[0]


def near_kinks(*shape, kinks, gap):
    """Points a distance ``gap`` (times 1..3) on either side of the kinks."""
    def gen(rng):
        k = rng.choice(np.array(kinks), shape)
        return k + rng.choice([-1.0, 1.0], shape) * gap * rng.uniform(1, 3, shape)

    return gen


# ------------------------------------------------------------------ 15. log cosh at large magnitudes


def log_cosh(x):
    return x + jnp.logaddexp(0.0, -2.0 * x) - math.log(2.0)


def log_cosh_jvp(p, t):
    return jnp.tanh(p[0]) * t[0]


def log_cosh_jvp_overflows(p, t):  # sinh / cosh: inf / inf once |x| > 89 in float32
    return jnp.sinh(p[0]) / jnp.cosh(p[0]) * t[0]


# ------------------------------------------------------------------ 16. weighted MSE, inputs of mixed scales


def weighted_mse(pred, target, w):
    return jnp.sum(w * (pred - target) ** 2) / pred.size


def weighted_mse_bwd(res, g, two=2.0, target_sign=-1.0):
    pred, target, w = res
    r = pred - target
    n = pred.size
    return g * two * w * r / n, target_sign * g * 2.0 * w * r / n, g * r ** 2 / n


def wmse_variant(**bug):
    return vjp_rule(weighted_mse, saves_inputs(weighted_mse), lambda r, g: weighted_mse_bwd(r, g, **bug))


# ------------------------------------------------------------------ 17. average pooling, window 2 stride 2


def avg_pool(x):
    return 0.5 * (x[0::2] + x[1::2])


def avg_pool_bwd(res, g, shift=0):
    (x,) = res
    up = jnp.repeat(0.5 * g, 2)
    return (jnp.roll(up, shift),)


def pool_variant(**bug):
    return vjp_rule(avg_pool, saves_inputs(avg_pool), lambda r, g: avg_pool_bwd(r, g, **bug))


# ------------------------------------------------------------------ 18. cosine similarity


def cosine(a, b):
    na, nb = jnp.sqrt(jnp.sum(a * a)), jnp.sqrt(jnp.sum(b * b))
    return jnp.sum(a * b) / (na * nb)


def cosine_bwd(res, g, drop_projection=False):
    a, b = res
    na, nb = jnp.sqrt(jnp.sum(a * a)), jnp.sqrt(jnp.sum(b * b))
    cos = jnp.sum(a * b) / (na * nb)
    keep = 0.0 if drop_projection else 1.0
    da = b / (na * nb) - keep * cos * a / na ** 2
    db = a / (na * nb) - cos * b / nb ** 2
    return g * da, g * db


def cos_variant(**bug):
    return vjp_rule(cosine, saves_inputs(cosine), lambda r, g: cosine_bwd(r, g, **bug))


# ------------------------------------------------------------------ 19. log-determinant of a non-symmetric matrix


def logabsdet(a):
    return jnp.linalg.slogdet(a)[1]


def logabsdet_bwd(res, g, transpose=True):
    (a,) = res
    inv = jnp.linalg.inv(a)
    return (g * (inv.T if transpose else inv),)


def logdet_variant(**bug):
    return vjp_rule(logabsdet, saves_inputs(logabsdet), lambda r, g: logabsdet_bwd(r, g, **bug))


def well_conditioned(n, scale=1.0):
    return lambda rng: scale * (np.eye(n) * 3.0 + rng.standard_normal((n, n)))


# ------------------------------------------------------------------ plain JAX code (JAX's own rules)


def plain_batch_norm(x, gamma, beta):
    mu = jnp.mean(x, axis=0)
    var = jnp.var(x, axis=0)
    return jnp.sum(jnp.tanh(gamma * (x - mu) / jnp.sqrt(var + 1e-5) + beta), axis=1)


def plain_log_softmax_loss(z):
    return -jnp.sum(jax.nn.log_softmax(z, axis=-1)[:, 0])


def plain_softmax_detached(z):  # the normalizer detached: a bug in plain JAX code
    e = jnp.exp(z - jnp.max(z, axis=-1, keepdims=True))
    return -jnp.sum(jnp.log(e / jax.lax.stop_gradient(jnp.sum(e, axis=-1, keepdims=True)))[:, 0])


def plain_gru_scan(h0, xs, w):
    def step(h, x):
        z = jax.nn.sigmoid(x + h @ w)
        h = (1 - z) * h + z * jnp.tanh(x - h @ w.T)
        return h, h

    return jax.lax.scan(step, h0, xs)[1]


def plain_safe_sqrt(x):
    return jnp.sqrt(jnp.where(x > 0, x, 1.0)) * (x > 0)


def plain_unsafe_sqrt(x):  # the value is right; the gradient is 0 * nan where x <= 0
    return jnp.where(x > 0, jnp.sqrt(x), 0.0)


def plain_solve(a, b):
    return jnp.linalg.solve(a, b)


def plain_saturated(x, w):
    return jnp.sum(jax.nn.sigmoid(x @ w) + jnp.tanh(0.5 * x @ w), axis=-1)


# ------------------------------------------------------------------ the corpus


CASES = [
    Case("layer-norm-offset", ln_variant(),
         {"x": normal(4, 7, loc=50.0, scale=3.0), "w": normal(7, loc=1.0, scale=0.2), "b": normal(7, scale=0.1)},
         [("eps_outside_sqrt", ln_variant(eps_outside=True)), ("mean_term_dropped", ln_variant(drop_mean=True)),
          ("dw_from_x_not_xhat", ln_variant(dw_from_x=True)), ("dx_in_float16", ln_variant(f16=True))]),
    Case("xent-large-logits", xent_variant(),
         {"logits": normal(3, 5, loc=300.0, scale=20.0)},
         [("no_batch_mean", xent_variant(no_mean=True)),
          ("unshifted_exp", xent_variant(unshifted=True, only_in=("float32",)))]),
    Case("conv1d-valid", conv_variant(), {"x": normal(11, scale=2.0), "k": normal(4)},
         [("window_off_by_one", conv_variant(shift=1)), ("dk_flipped", conv_variant(flip_dk=True))]),
    Case("dense-tanh-square", dense_variant(),
         {"x": normal(4, 4, scale=0.7), "w": normal(4, 4, scale=0.5), "b": normal(4, scale=0.1)},
         [("dx_wrong_transpose", dense_variant(transpose_w=False)), ("db_wrong_axis", dense_variant(db_axis=1)),
          ("stale_preactivation_saved", dense_variant(stale=True))]),
    Case("broadcast-scale", energy_variant(), {"x": normal(6, 5, scale=3.0), "s": normal(1, 5, scale=0.01)},
         [("broadcast_mean_not_sum", energy_variant(mean_not_sum=True))]),
    Case("rms-norm-wide", rms_variant(), {"x": log_uniform(3, 6, low=-3, high=3, signed=True), "w": normal(6)},
         [("backward_in_float16", rms_variant(f16=True))]),
    Case("gelu-erf-saturated", jvp_rule(gelu_erf, gelu_erf_jvp),
         {"x": fixed([-30.0, -9.0, -4.5, -1e-7, 2e-9, 0.3, 6.0, 40.0])},
         [("tanh_approximation_rule", jvp_rule(gelu_erf, gelu_tanh_jvp))],
         # x[1] = -9: f rounds to 0 at every step; x[0] = -30 too (erf(-21.2) is -1 in float64),
         # and its slope of 4.4e-195 is above the floor now that the floor is in f's units
         unmeasurable=("x[0]", "x[1]")),
    Case("log-sigmoid-wide", jvp_rule(log_sigmoid, log_sigmoid_jvp),
         {"x": fixed([-600.0, -80.0, -12.0, -0.7, 0.4, 15.0, 45.0, 95.0])},
         [("one_minus_sigmoid_cancels", jvp_rule(log_sigmoid, log_sigmoid_jvp_cancels)),
          ("negative_branch_sign", jvp_rule(log_sigmoid, log_sigmoid_jvp_branch_sign))]),
    Case("tempered-softmax", temp_variant(), {"x": normal(2, 5, scale=4.0), "temp": fixed([0.35])},
         [("dtemp_sign", temp_variant(dtemp_sign=1.0)), ("dtemp_dropped", temp_variant(drop_dtemp=True))]),
    Case("cumsum-long", cumsum_variant(), {"x": normal(17, scale=100.0)},
         [("not_reversed", cumsum_variant(forward=True)), ("exclusive_off_by_one", cumsum_variant(exclusive=True))]),
    Case("eps-norm-tiny", eps_norm_variant(), {"x": normal(5, scale=1e-4)},
         [("eps_outside_sqrt", eps_norm_variant(eps_outside=True))]),
    Case("attention-square", attn_variant(),
         {"q": normal(4, 4, scale=1.5), "k": normal(4, 4, scale=1.5), "v": normal(4, 4)},
         [("dq_unscaled", attn_variant(scale_dq=False)), ("dk_wrong_transpose", attn_variant(transpose_ds=False))]),
    Case("xlogx-near-zero", jvp_rule(xlogx, xlogx_jvp), {"x": log_uniform(6, low=-8, high=-1)},
         [("log_eps_guard", jvp_rule(xlogx, lambda p, t: xlogx_jvp(p, t, eps=1e-8)))]),
    Case("smooth-l1-near-kinks", jvp_rule(smooth_l1, smooth_l1_jvp),
         {"x": near_kinks(8, kinks=[-BETA, BETA], gap=1e-3)},
         [("negative_branch_sign", jvp_rule(smooth_l1, lambda p, t: smooth_l1_jvp(p, t, neg=1.0))),
          ("inner_missing_beta", jvp_rule(smooth_l1, lambda p, t: smooth_l1_jvp(p, t, inner=BETA)))]),
    Case("log-cosh-large", jvp_rule(log_cosh, log_cosh_jvp), {"x": fixed([-400.0, -95.0, -3.0, 0.2, 7.5, 120.0])},
         [("sinh_over_cosh", jvp_rule(log_cosh, log_cosh_jvp_overflows, only_in=("float32",)))]),
    Case("weighted-mse-mixed-scales", wmse_variant(),
         {"pred": normal(3, 4, loc=1e3, scale=50.0), "target": normal(3, 4, loc=1e3, scale=50.0),
          "w": log_uniform(3, 4, low=-4, high=-2)},
         [("factor_two_dropped", wmse_variant(two=1.0)), ("target_sign", wmse_variant(target_sign=1.0))]),
    Case("avg-pool-2", pool_variant(), {"x": normal(10, scale=0.01)},
         [("window_shifted", pool_variant(shift=1))]),
    Case("cosine-similarity", cos_variant(), {"a": normal(6, scale=5.0), "b": normal(6, scale=0.2)},
         [("projection_dropped", cos_variant(drop_projection=True))]),
    Case("logabsdet", logdet_variant(), {"a": well_conditioned(4, scale=20.0)},
         [("inverse_not_transposed", logdet_variant(transpose=False))]),
    # plain JAX code: JAX's own rules
    Case("plain-batch-norm", plain_batch_norm,
         {"x": normal(5, 3, loc=-200.0, scale=4.0), "gamma": normal(3, loc=1.0, scale=0.3),
          "beta": normal(3, scale=0.2)}),
    Case("plain-log-softmax-large", plain_log_softmax_loss, {"z": normal(3, 6, loc=-500.0, scale=30.0)},
         [("normalizer_stop_gradient", plain_softmax_detached)]),
    Case("plain-gru-scan", plain_gru_scan,
         {"h0": normal(3, scale=0.5), "xs": normal(5, 3), "w": normal(3, 3, scale=0.6)}),
    Case("plain-safe-sqrt", plain_safe_sqrt, {"x": fixed([-2.0, -1e-3, 4e-6, 0.09, 25.0, 1e4])},
         [("where_without_double_where", plain_unsafe_sqrt)]),
    Case("plain-solve", plain_solve, {"a": well_conditioned(3), "b": normal(3, 2, scale=1e-3)}),
    Case("plain-saturated", plain_saturated, {"x": normal(3, 4, scale=6.0), "w": normal(4, 2, scale=3.0)}),
]
