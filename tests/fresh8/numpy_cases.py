"""Red-team round 8: numpy layers with hand-written VJPs, at wide dynamic ranges.

Each case is a forward, a VJP, a point and what gradrun must say with default
settings, in float64 and float32: ``pass`` (correct code) or ``fail`` (a bug:
some entry fails). Run by ``tests/test_fresh8.py``.

Logsumexp of logits near 1000 and -500, softplus at +-40, a layer norm whose
spread (1e-5) is a step's width at x = 1, an RNN over four steps, x**3 at 1e-8,
x log x at 1e6, sin at 1e6, parameters that are exactly 0, causal attention
masked with -inf, cumprod over six decades, a softmax whose outputs underflow to
exactly 0, Huber's two branches, tanh of inputs of 1e-8 times weights of 1e6,
and outputs that are exactly 0; the bugs: one entry 1e-4 (or 1e-5, 1e-6) off,
a sign flip in a rarely-hit branch, a dropped eps, a stale hidden state, an
off-by-eps term, a shifted argument, a missing factor, a transposed weight.
"""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    forward: Callable
    vjp: Callable
    point: dict
    expect: str  # pass | fail, in every dtype of `dtypes`
    dtypes: tuple = ("float64", "float32")
    settings: dict = field(default_factory=dict)


RNG = np.random.default_rng(8)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def _scaled_entry(grad, index, rel):
    out = np.array(grad, copy=True)
    out[index] *= 1 + rel
    return out


def lse(x):
    m = x.max(-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(-1, keepdims=True)))[..., 0]


def lse_vjp(g, x):
    return g[..., None] * _softmax(x)


def softplus(x):
    return np.logaddexp(0, x)


def softplus_vjp(g, x):
    return g / (1 + np.exp(-x))


def softplus_flip_vjp(g, x):  # the far-left branch, written as -e^x
    return g * np.where(x < -30, -np.exp(x), 1 / (1 + np.exp(-x)))


def layer_norm(x, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    v = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(v + eps)


def layer_norm_vjp(g, x, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    s = np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
    y = (x - mu) / s
    return (g - g.mean(-1, keepdims=True) - y * (g * y).mean(-1, keepdims=True)) / s


def rnn(x, h0, W, U):
    h = h0
    for t in range(x.shape[0]):
        h = np.tanh(x[t] @ W + h @ U)
    return h


def rnn_vjp(g, x, h0, W, U, stale=False):
    hs = [h0]
    for t in range(x.shape[0]):
        hs.append(np.tanh(x[t] @ W + hs[-1] @ U))
    gx, gW, gU, gh = np.zeros_like(x), np.zeros_like(W), np.zeros_like(U), g
    for t in reversed(range(x.shape[0])):
        a = gh * (1 - hs[t + 1] ** 2)
        gx[t] = a @ W.T
        gW += np.outer(x[t], a)
        gU += np.outer(hs[t + 1 if stale and t == 1 else t], a)  # stale: the state after step t
        gh = a @ U.T
    return gx, gh, gW, gU


def _cube_vjp(g, x):
    return 3 * g * x * x


def _xlogx_vjp(g, x):
    return g * (np.log(x) + 1)


def scale_sq(x, w):
    return w * x ** 2


def scale_sq_vjp(g, x, w):
    return 2 * g * w * x, g * x ** 2


def causal_attn(q, k):
    s = q @ k.T / np.sqrt(q.shape[1])
    s = np.where(np.tril(np.ones(s.shape, dtype=bool)), s, -np.inf)
    return _softmax(s)


def causal_attn_vjp(g, q, k, transposed=False):
    p = causal_attn(q, k)
    ds = p * (g - (g * p).sum(-1, keepdims=True)) / np.sqrt(q.shape[1])
    return ds @ k, ds @ q if transposed else ds.T @ q


def cumprod_vjp(g, x):
    y = np.cumprod(x)
    return np.array([(g[i:] * y[i:]).sum() / x[i] for i in range(len(x))])


def softmax_vjp(g, x):
    p = _softmax(x)
    return p * (g - (g * p).sum())


def huber(r):
    a = np.abs(r)
    return np.where(a <= 1, 0.5 * r * r, a - 0.5)


def tanh_dense(x, w):
    return np.tanh(x @ w)


def tanh_dense_vjp(g, x, w):
    a = g * (1 - np.tanh(x @ w) ** 2)
    return a @ w.T, x.T @ a


def relu_times(x, y):
    return np.maximum(x, 0) * y


def relu_times_vjp(g, x, y):
    return g * (x > 0) * y, g * np.maximum(x, 0)


LOGITS = RNG.normal(size=(3, 5)) * 3 + np.array([[1000.0], [-500.0], [0.0]])
SOFTPLUS_AT = np.array([-40.0, -35, -20, 0, 20, 40])
NEAR_ONE = 1 + 1e-5 * RNG.normal(size=(2, 6))
NEAR_ONE_TIGHTER = 1 + 3e-6 * RNG.normal(size=(2, 5))
NEAR_1000 = 1e3 + 1e-2 * RNG.normal(size=(2, 5))
RNN_AT = {"x": RNG.normal(size=(4, 3)), "h0": RNG.normal(size=3) * 0.5,
          "W": RNG.normal(size=(3, 3)) * 0.5, "U": RNG.normal(size=(3, 3)) * 0.5}
TINY = np.array([1e-8, -2e-8, 3e-8])
HUGE = np.array([1e6, 2e6, 3.5e6])
FAR = np.array([1e4 + 0.3, 3e5 + 0.1, 1e6 + 0.7])
ZERO_W = {"x": np.array([0.5, -1.2, 2.0]), "w": np.zeros(3)}
QK = {"q": RNG.normal(size=(4, 4)), "k": RNG.normal(size=(4, 4))}
DECADES = np.array([1e3, 2e-3, 5e2, 3e-4, 7e3, 1.5])
UNDERFLOW = np.array([0.0, -800.0, 5.0, -750.0, 3.0])
RESIDUALS = np.array([-3.0, -0.4, 0.2, 0.9, 2.5])
SCALES = {"x": RNG.normal(size=(3, 4)) * 1e-8, "w": RNG.normal(size=(4, 2)) * 1e6}
ZERO_OUT = {"x": np.array([-1.0, -0.5, 2.0]), "y": np.array([3.0, 0.0, -1.0])}

CASES = [
    Case("lse-1000", lse, lse_vjp, {"x": LOGITS}, "pass"),
    Case("lse-1000@1e-4", lse, lambda g, x: _scaled_entry(lse_vjp(g, x), (1, 2), 1e-4), {"x": LOGITS}, "fail"),
    Case("softplus-40", softplus, softplus_vjp, {"x": SOFTPLUS_AT}, "pass"),
    Case("softplus-40@flip", softplus, softplus_flip_vjp, {"x": SOFTPLUS_AT}, "fail"),
    # the spread 1e-5 is the auto step's width at x = 1: the witness difference there was off
    # by more than its own slack and turned away every finer, converging level (unresolved)
    Case("layer-norm-spread-1e-5", layer_norm, layer_norm_vjp, {"x": NEAR_ONE}, "pass"),
    Case("layer-norm-spread-1e-5@no-eps", layer_norm, lambda g, x: layer_norm_vjp(g, x, eps=0.0),
         {"x": NEAR_ONE}, "fail"),
    Case("layer-norm-spread-3e-6", layer_norm, layer_norm_vjp, {"x": NEAR_ONE_TIGHTER}, "pass"),
    Case("layer-norm-1e3-spread-1e-2", layer_norm, layer_norm_vjp, {"x": NEAR_1000}, "pass"),
    Case("rnn-4-steps", rnn, rnn_vjp, RNN_AT, "pass"),
    Case("rnn-4-steps@stale", rnn, lambda g, *a: rnn_vjp(g, *a, stale=True), RNN_AT, "fail"),
    Case("cube-1e-8", lambda x: x ** 3, _cube_vjp, {"x": TINY}, "pass"),
    Case("cube-1e-8@plus-1e-22", lambda x: x ** 3, lambda g, x: _cube_vjp(g, x) + 1e-22 * g, {"x": TINY}, "fail"),
    Case("xlogx-1e6", lambda x: x * np.log(x), _xlogx_vjp, {"x": HUGE}, "pass"),
    Case("xlogx-1e6@1e-6", lambda x: x * np.log(x), lambda g, x: _scaled_entry(_xlogx_vjp(g, x), 1, 1e-6),
         {"x": HUGE}, "fail"),
    Case("sin-1e6", np.sin, lambda g, x: g * np.cos(x), {"x": FAR}, "pass"),
    # the auto step (6e3) aliases, and so did Richardson levels at 1e5 (agreeing on 8e-7): the
    # witness, lost there, is looked for at finer steps (unresolved 1e12 and 1e15: docs/pass-rule.md)
    Case("sin-1e9", np.sin, lambda g, x: g * np.cos(x), {"x": np.array([1e9 + 0.3])}, "pass"),
    Case("sin-1e9@1e-3", np.sin, lambda g, x: g * np.cos(x) * (1 + 1e-3), {"x": np.array([1e9 + 0.3])}, "fail"),
    Case("sin-1e6@shift-1e-3", np.sin, lambda g, x: g * np.cos(x + 1e-3), {"x": FAR}, "fail"),
    Case("zero-weights", scale_sq, scale_sq_vjp, ZERO_W, "pass"),
    Case("zero-weights@no-w", scale_sq, lambda g, x, w: (2 * g * x, g * x ** 2), ZERO_W, "fail"),
    Case("causal-attn-inf", causal_attn, causal_attn_vjp, QK, "pass"),
    Case("causal-attn-inf@transposed", causal_attn, lambda g, q, k: causal_attn_vjp(g, q, k, True), QK, "fail"),
    Case("cumprod-decades", lambda x: np.cumprod(x), cumprod_vjp, {"x": DECADES}, "pass"),
    Case("cumprod-decades@last-1e-5", lambda x: np.cumprod(x), lambda g, x: _scaled_entry(cumprod_vjp(g, x), 5, 1e-5),
         {"x": DECADES}, "fail"),
    Case("softmax-underflow", lambda x: _softmax(x), softmax_vjp, {"x": UNDERFLOW}, "pass"),
    Case("softmax-underflow@sign", lambda x: _softmax(x), lambda g, x: _scaled_entry(softmax_vjp(g, x), 4, -2.0),
         {"x": UNDERFLOW}, "fail"),
    Case("huber", huber, lambda g, r: g * np.clip(r, -1, 1), {"r": RESIDUALS}, "pass"),
    Case("huber@half", huber, lambda g, r: g * np.where(np.abs(r) <= 1, 0.5 * r, np.sign(r)), {"r": RESIDUALS}, "fail"),
    Case("tanh-1e-8-by-1e6", tanh_dense, tanh_dense_vjp, SCALES, "pass"),
    Case("tanh-1e-8-by-1e6@w-1e-5", tanh_dense, lambda g, x, w: (tanh_dense_vjp(g, x, w)[0],
                                                                  tanh_dense_vjp(g, x, w)[1] * (1 + 1e-5)), SCALES, "fail"),
    Case("relu-times-zero-out", relu_times, relu_times_vjp, ZERO_OUT, "pass"),
    Case("relu-times-zero-out@no-mask", relu_times, lambda g, x, y: (g * y, g * np.maximum(x, 0)), ZERO_OUT, "fail"),
]
