"""Subtly buggy backward passes: each beside a correct forward from ``layers``.

The classes: a wrong sign in one branch, a missing term, a transposed weight
gradient on a square matrix, a factor 1 + 1e-5 on one entry next to large
values, an epsilon placed differently, mean vs sum, an ignored clip region,
a stale cached value, broadcasting summed over the wrong axis, a bug only for
negative inputs, a detach that drops a second path, a float32 cast inside
the backward, a softmax VJP with the mean of g in place of sum(g * s).
"""

import numpy as np
from scipy.special import erf

from . import Case, layers as L, rng

_POINTS = {c.name: c.point for c in L.CASES}


def _bug(name, cls, fwd, vjp, at, jvp=None, dtypes=("float64", "float32")):
    """A buggy VJP of ``fwd``, checked at the point of the correct case ``at``."""
    return Case(name, cls, fwd, vjp, _POINTS[at], False, jvp, {}, dtypes)


def _bump(vjp, index, factor=1 + 1e-5):
    """``vjp`` with one entry of its (first) cotangent scaled by ``factor``."""
    def wrong(g, *args):
        out = vjp(g, *args)
        many = isinstance(out, tuple)
        first = np.array(out[0] if many else out, dtype=np.float64, copy=True)
        first.flat[index] *= factor
        return (first,) + tuple(out[1:]) if many else first
    return wrong


def sigmoid_sign(g, x):
    d = L._dsigmoid(x)
    return g * np.where(x < -30, -d, d)


def tanh_negative(g, x):
    e = np.exp(-2 * np.abs(x))
    return g * 4 * e / (1 + e) ** 2 * np.where(x < 0, 1 + 1e-4, 1.0)


def softmax_mean(g, z):
    s = L._softmax(z)
    return s * (g - g.mean(axis=-1, keepdims=True))


def cross_entropy_mean(g, z):  # divides by the batch of one... and by the class count
    return L.cross_entropy_vjp(g, z) / 2


def layer_norm_eps_outside(g, x):
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / (np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True)) + L.EPS_NORM)
    xh = (x - mu) * r
    return r * (g - g.mean(axis=-1, keepdims=True) - xh * (g * xh).sum(axis=-1, keepdims=True) / n)


def layer_norm_no_mean(g, x):
    n = x.shape[-1]
    mu = x.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + L.EPS_NORM)
    xh = (x - mu) * r
    return r * (g - xh * (g * xh).sum(axis=-1, keepdims=True) / n)


def batch_norm_detached_var(g, x):
    gt, xt = g.T, x.T
    mu = xt.mean(axis=-1, keepdims=True)
    r = 1 / np.sqrt(((xt - mu) ** 2).mean(axis=-1, keepdims=True) + L.EPS_NORM)
    return (r * (gt - gt.mean(axis=-1, keepdims=True))).T


def rms_norm_detached(g, x, w):
    r = 1 / np.sqrt((x * x).mean() + L.EPS_NORM)
    return r * g * w, g * x * r


def rms_norm_eps_outside(g, x, w):
    rms = np.sqrt((x * x).mean())
    r = 1 / (rms + L.EPS_NORM)
    gx = g * w
    return r * gx - x * r**3 * (gx * x).sum() / x.size, g * x * r


def attention_mean(g, q, k, v):
    c = 1 / np.sqrt(q.shape[1])
    s = L._softmax(q @ k.T * c)
    gs = g @ v.T
    ga = s * (gs - gs.mean(axis=1, keepdims=True))
    return ga @ k * c, ga.T @ q * c, s.T @ g


def attention_no_scale_k(g, q, k, v):
    dq, dk, dv = L.attention_vjp(g, q, k, v)
    return dq, dk * np.sqrt(q.shape[1]), dv


def gelu_tanh_approx(g, x):
    c = np.sqrt(2 / np.pi)
    t = np.tanh(c * (x + 0.044715 * x**3))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))


def huber_no_clip(g, x):
    return g * x


def maxpool_rounded(g, x):  # picks the max of x rounded to 3 decimals: wrong under near ties
    pairs = np.round(x.reshape(-1, 2), 3)
    out = np.zeros_like(pairs)
    out[np.arange(len(pairs)), pairs.argmax(axis=1)] = g
    return out.reshape(x.shape)


def sqrt_eps(g, x):
    return g * 0.5 / np.sqrt(x + 1e-12)


def log_eps(g, x):
    return g / (x + 1e-10)


def product_missing(g, x):
    return g * np.array([np.prod(np.delete(x, [i, (i + 1) % x.size])) * (x[(i + 1) % x.size] if i != 7 else 1.0)
                         for i in range(x.size)])


def solve_transposed(g, a, b):
    lam = np.linalg.solve(a.T, g)
    return -np.outer(np.linalg.solve(a, b), lam), lam


def inverse_transposed(g, a):
    ai = np.linalg.inv(a)
    return -ai @ g @ ai


def det_transposed(g, a):
    return g * np.linalg.det(a) * np.linalg.inv(a)


def logdet_float32(g, a):
    return g * np.linalg.inv(a.astype(np.float32)).T.astype(np.float64)


def cholesky_no_half(g, m):
    l = np.linalg.cholesky(m @ m.T + np.eye(len(m)))
    li = np.linalg.inv(l)
    s = li.T @ np.tril(l.T @ np.tril(g)) @ li
    return (s + s.T) @ m


def cumsum_forward(g, x):
    return np.cumsum(g)


def cumprod_drops_last(g, x):  # the last output's path is dropped from every earlier input
    c = np.cumprod(x)
    r = np.cumsum((g * c)[::-1])[::-1] - g[-1] * c[-1]
    r[-1] = g[-1] * c[-1]
    return r / x


def sort_wrong_perm(g, x):
    return g[np.argsort(x)]


def piecewise_transposed(g, x, w):
    gz = g * np.where(w @ x > 0, 1.0, 0.1)
    return w.T @ gz, np.outer(gz, x) * np.where(w @ x > 0, 1.0, 1.001)[:, None]


def tiny_missing(g, x):
    return g * 1e-12 * np.cos(x) * x


def huge_bumped(g, x):
    return g * 1e12 * np.exp(x) * np.array([1.0, 1 + 1e-6, 1.0])


def mixed_small(g, a, b):
    c = np.cos(a * b)
    return g * (c * b + b**2), g * (c * a + 2 * a * b) * (1 + 1e-5)


def entropy_missing(g, p):
    return -g * np.log(p)


def bce_eps(g, p, y):
    return g * ((1 - y) / (1 - p + 1e-5) - y / (p + 1e-5)), g * (np.log1p(-p) - np.log(p))


def softplus_negative(g, x):
    return g * np.where(x < 0, L._sigmoid(x) * (1 + 1e-5), L._sigmoid(x))


def normalize_detached(g, x):
    return g / np.linalg.norm(x)


def dense_wrong_axis(g, x, w, b):
    gz = g * (1 - np.tanh(x @ w + b) ** 2)
    return gz @ w.T, x.T @ gz, gz.sum(axis=1)


def dense_transposed_w(g, x, w, b):
    gz = g * (1 - np.tanh(x @ w + b) ** 2)
    return gz @ w, x.T @ gz, gz.sum(axis=0)


def conv_flipped(g, x, k):
    return np.correlate(g, k, mode="full"), np.convolve(x[::-1], g, mode="valid")[::-1]


def sin_float32(g, x):
    return g * np.cos(x.astype(np.float32)).astype(np.float64)


def sigmoid_float32(g, x):  # 1 - s in float32 for s near 1: far beyond float32's own noise
    s = L._sigmoid(x).astype(np.float32)
    return g * (s * (1 - s)).astype(np.float64)


def cubic_sign(g, x):
    return g * np.where(x < 0, 3 * x * x + 4 * x + 1, 3 * x * x - 4 * x + 1)


def exp_stale_factory():
    """A VJP that keeps the cotangent's scale from its first call (a stale cache)."""
    cache = {}

    def vjp(g, x):
        cache.setdefault("g0", np.array(g, copy=True))
        return cache["g0"] * 1e12 * np.exp(x)
    return vjp


def logsumexp_float32(g, z):
    lse = np.float32(L.logsumexp(z))
    return g * np.exp(z - np.float64(lse))


def gelu_jvp_wrong(t, x):
    return gelu_tanh_approx(t[0], x)


CASES = [
    _bug("sigmoid@sign_branch", "wrong sign in one branch", L.sigmoid, sigmoid_sign, "sigmoid@saturated"),
    _bug("tanh@negative_only", "bug only for negative inputs", L.tanh, tanh_negative, "tanh@saturated"),
    _bug("logsumexp@bumped", "factor 1+1e-5 on one entry", L.logsumexp, _bump(L.logsumexp_vjp, int(np.argmax(_POINTS["logsumexp@large"]()["z"]))),
         "logsumexp@large"),
    _bug("logsumexp@float32_cast", "float32 cast in backward", L.logsumexp, logsumexp_float32, "logsumexp@large"),
    _bug("softmax@mean", "softmax VJP with mean(g)", L.softmax, softmax_mean, "softmax@large"),
    _bug("cross_entropy@halved", "mean vs sum", L.cross_entropy, cross_entropy_mean, "cross_entropy@one_hot"),
    _bug("layer_norm@eps_outside", "epsilon placement", L.layer_norm, layer_norm_eps_outside, "layer_norm@unit"),
    _bug("layer_norm@eps_outside_tiny", "epsilon placement", L.layer_norm, layer_norm_eps_outside, "layer_norm@tiny_var"),
    _bug("layer_norm@no_mean", "missing term", L.layer_norm, layer_norm_no_mean, "layer_norm@unit"),
    _bug("batch_norm@detached_var", "detach drops a path", L.batch_norm, batch_norm_detached_var, "batch_norm@const_col"),
    _bug("rms_norm@detached", "detach drops a path", L.rms_norm, rms_norm_detached, "rms_norm"),
    _bug("rms_norm@eps_outside", "epsilon placement", L.rms_norm, rms_norm_eps_outside, "rms_norm"),
    _bug("attention@mean", "softmax VJP with mean(g)", L.attention, attention_mean, "attention@large_scores"),
    _bug("attention@k_scale", "missing term", L.attention, attention_no_scale_k, "attention@large_scores"),
    _bug("gelu@tanh_approx", "missing term", L.gelu, gelu_tanh_approx, "gelu"),
    _bug("gelu@jvp_tanh_approx", "missing term", L.gelu, L.gelu_vjp, "gelu", gelu_jvp_wrong),
    _bug("huber@no_clip", "clip region ignored", L.huber, huber_no_clip, "huber@knot"),
    _bug("maxpool@rounded_ties", "wrong branch under near ties", L.maxpool, maxpool_rounded, "maxpool@near_ties"),
    _bug("sqrt@eps", "epsilon placement", L.sqrt, sqrt_eps, "sqrt@near_zero"),
    _bug("log@eps", "epsilon placement", L.log, log_eps, "log@near_zero"),
    _bug("poly@bumped", "factor 1+1e-5 on one entry", L.poly, _bump(L.poly_vjp, 1), "poly@1e3"),
    _bug("product@missing", "missing term", L.product, product_missing, "product@many"),
    _bug("solve@transposed", "transposed weight gradient", L.solve, solve_transposed, "solve@cond1e6"),
    _bug("solve@bumped", "factor 1+1e-5 on one entry", L.solve, _bump(L.solve_vjp, 5), "solve@cond1e6"),
    _bug("inverse@transposed", "transposed weight gradient", L.inverse, inverse_transposed, "inverse"),
    _bug("det@transposed", "transposed weight gradient", L.det, det_transposed, "det"),
    _bug("logdet@float32_cast", "float32 cast in backward", L.logdet, logdet_float32, "logdet@spd"),
    _bug("cholesky@no_half", "missing term", L.cholesky, cholesky_no_half, "cholesky"),
    _bug("cumsum@forward_order", "wrong axis/order", L.cumsum, cumsum_forward, "cumsum"),
    _bug("cumprod@drops_last", "missing term", L.cumprod, cumprod_drops_last, "cumprod"),
    _bug("sort@inverse_perm", "wrong permutation", L.sort, sort_wrong_perm, "sort"),
    _bug("piecewise@slope", "factor on one branch", L.piecewise, piecewise_transposed, "piecewise@linear"),
    _bug("tiny@missing", "missing term", L.tiny, tiny_missing, "tiny@1e-12"),
    _bug("huge@bumped", "factor 1+1e-6 on one entry", L.huge, huge_bumped, "huge@1e12"),
    _bug("huge@stale", "stale cache", L.huge, exp_stale_factory(), "huge@1e12"),
    _bug("mixed@small_input", "factor 1+1e-5 on one input", L.mixed, mixed_small, "mixed@scales"),
    _bug("entropy@missing", "missing term", L.entropy, entropy_missing, "entropy@near_zero"),
    _bug("bce@eps", "epsilon placement", L.bce, bce_eps, "bce@edges"),
    _bug("softplus@negative_only", "bug only for negative inputs", L.softplus, softplus_negative, "softplus@large"),
    _bug("normalize@detached", "detach drops a path", L.normalize, normalize_detached, "normalize"),
    _bug("dense@wrong_axis", "broadcast summed over wrong axis", L.dense, dense_wrong_axis, "dense"),
    _bug("dense@transposed_w", "transposed weight gradient", L.dense, dense_transposed_w, "dense"),
    _bug("conv@flipped", "wrong order", L.conv, conv_flipped, "conv"),
    _bug("sin@float32_cast", "float32 cast in backward", L.sin_large, sin_float32, "sin@1e3", dtypes=("float64",)),
    _bug("sigmoid@float32_cast", "float32 cast in backward", L.sigmoid, sigmoid_float32, "sigmoid@moderate"),
    _bug("sin@1e6_bumped", "factor 1+1e-5 on one entry", L.sin_large, _bump(L.sin_large_vjp, 0), "sin@1e6"),
    _bug("cubic@sign_negative", "wrong sign in one branch", L.cubic, cubic_sign, "cubic@integers"),
    _bug("sqrt@bumped_mixed", "factor 1+1e-5 on one entry", L.sqrt, _bump(L.sqrt_vjp, 2), "sqrt@mixed_scales"),
]
