"""A second-order mutation suite: correct hand-written HVP rules and buggy ones.

Each ``HvpCase`` is a function in plain numpy with its (correct) VJP, its
correct ``hvp(cotangent, tangents, *inputs)`` (one block per input: the
derivative of the VJP along the tangents, the cotangent held still) and a
list of ``(bug name, buggy hvp)`` mutants, the slips people make when they
differentiate a backward pass by hand: a dropped cross term (Gauss-Newton
where the full Hessian was meant), a factor or sign, the cotangent ignored,
a reduction over the wrong axis. ``expr`` places a function with a
non-scalar output inside a scalar expression, so that its rule meets a
cotangent other than 1. Code is dtype-generic (Python-float constants only).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class HvpCase:
    name: str
    forward: Callable
    vjp: Callable
    hvp: Callable
    inputs: dict  # name -> generator(rng)
    bugs: list = field(default_factory=list)  # of (bug name, buggy hvp)
    expr: str = ""  # a scalar expression calling the function by its name; "" calls it directly

    def point(self) -> dict:
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        return {k: gen(rng) for k, gen in self.inputs.items()}

    def variants(self) -> list:
        return [("correct", self.hvp, True)] + [(b, h, False) for b, h in self.bugs]


def normal(*shape, scale=1.0, shift=0.0):
    return lambda rng: shift + scale * rng.standard_normal(shape)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# 1. sum(x**4) / 4
def quartic(x):
    return np.sum(x ** 4) / 4


def quartic_vjp(g, x):
    return g * x ** 3


def quartic_hvp(g, t, x, factor=3.0, power=2):
    return g * factor * x ** power * t[0]


# 2. sum(softplus(x @ w))
def softplus_loss(x, w):
    return np.sum(np.logaddexp(0.0, x @ w))


def softplus_loss_vjp(g, x, w):
    s = g * sigmoid(x @ w)
    return s @ w.T, x.T @ s


def softplus_loss_hvp(g, t, x, w, cross=True, curvature=lambda s: s * (1 - s), w_block=True):
    tx, tw = t
    s = sigmoid(x @ w)
    ds = g * curvature(s) * (tx @ w + x @ tw)
    gx = ds @ w.T + ((g * s) @ tw.T if cross else 0.0)
    gw = (tx.T @ (g * s) if cross else 0.0) + (x.T @ ds if w_block else 0.0)
    return gx, gw


# 3. logsumexp of a vector
def lse(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def lse_vjp(g, x):
    return g * softmax(x)


def lse_hvp(g, t, x, sign=-1.0):
    s = softmax(x)
    return g * (s * t[0] + sign * s * np.sum(s * t[0]))


# 4. the quadratic form x^T A x / 2, A not symmetric
def quad(x, a):
    return 0.5 * x @ a @ x


def quad_vjp(g, x, a):
    return g * 0.5 * (a + a.T) @ x, g * 0.5 * np.outer(x, x)


def quad_hvp(g, t, x, a, symmetrize=True, a_half=0.5):
    tx, ta = t
    sym = 0.5 * (a + a.T) if symmetrize else a
    return (g * (sym @ tx + 0.5 * (ta + ta.T) @ x),
            g * a_half * (np.outer(tx, x) + np.outer(x, tx)))


# 5. mean squared error
def mse(pred, target):
    return np.mean((pred - target) ** 2)


def mse_vjp(g, pred, target):
    d = g * 2 * (pred - target) / pred.size
    return d, -d


def mse_hvp(g, t, pred, target, target_sign=-1.0, per_element=True):
    n = pred.size if per_element else 1
    d = g * 2 * (t[0] - t[1]) / n
    return d, target_sign * d


# 6. cross-entropy of softmax rows against fixed labels
LABELS = np.array([1, 0, 2])


def xent(logits):
    m = logits.max(axis=-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
    return -np.mean(logp[np.arange(len(LABELS)), LABELS])


def xent_vjp(g, logits):
    d = softmax(logits)
    d[np.arange(len(LABELS)), LABELS] -= 1
    return g * d / len(LABELS)


def xent_hvp(g, t, logits, whole=False):
    s = softmax(logits)
    inner = np.sum(s * t[0]) if whole else np.sum(s * t[0], axis=-1, keepdims=True)
    return g * (s * t[0] - s * inner) / len(LABELS)


# 7. sum(x * y**2)
def xyy(x, y):
    return np.sum(x * y ** 2)


def xyy_vjp(g, x, y):
    return g * y ** 2, 2 * g * x * y


def xyy_hvp(g, t, x, y, x_block=True, mixed=True):
    tx, ty = t
    gx = 2 * g * y * ty if x_block else 0 * tx
    gy = 2 * g * ((tx * y if mixed else 0.0) + x * ty)
    return gx, gy


# 8. Rosenbrock
def rosen(x):
    a, b = x[:-1], x[1:]
    return np.sum(100.0 * (b - a ** 2) ** 2 + (1 - a) ** 2)


def rosen_vjp(g, x):
    a, b = x[:-1], x[1:]
    r = b - a ** 2
    out = np.zeros_like(x)
    out[:-1] += -400.0 * a * r - 2.0 * (1 - a)
    out[1:] += 200.0 * r
    return g * out


def rosen_hvp(g, t, x, residual=True, one=2.0):
    a, b = x[:-1], x[1:]
    ta, tb = t[0][:-1], t[0][1:]
    r = b - a ** 2
    dr = tb - 2.0 * a * ta
    out = np.zeros_like(x)
    out[:-1] += -400.0 * ((ta * r if residual else 0.0) + a * dr) + one * ta
    out[1:] += 200.0 * dr
    return g * out


# 9. sum(tanh(x @ w))
def tanh_net(x, w):
    return np.sum(np.tanh(x @ w))


def tanh_net_vjp(g, x, w):
    d = g * (1 - np.tanh(x @ w) ** 2)
    return d @ w.T, x.T @ d


def tanh_net_hvp(g, t, x, w, two=-2.0, cross=True):
    tx, tw = t
    th = np.tanh(x @ w)
    d = g * (1 - th ** 2)
    dd = g * two * th * (1 - th ** 2) * (tx @ w + x @ tw)
    return dd @ w.T + (d @ tw.T if cross else 0.0), (tx.T @ d if cross else 0.0) + x.T @ dd


# 10. a dense layer inside a loss: its rule meets cotangents other than 1
def dense(x, w, b):
    return x @ w + b


def dense_vjp(g, x, w, b):
    return g @ w.T, x.T @ g, g.sum(axis=0)


def dense_hvp(g, t, x, w, b, x_block=True, w_sign=1.0):
    tx, tw, tb = t
    return (g @ tw.T if x_block else 0 * tx), w_sign * (tx.T @ g), 0 * tb


# 11. x**3 elementwise inside sum(square(.)): the cotangent is 2 x**3, not 1
def cubes(x):
    return x ** 3


def cubes_vjp(g, x):
    return g * 3 * x ** 2


def cubes_hvp(g, t, x, use_g=True):
    return (g if use_g else 1.0) * 6 * x * t[0]


# 12. the log-determinant-free Gaussian energy: sum(exp(-x**2 / 2) * y)
def bump(x, y):
    return np.sum(np.exp(-x ** 2 / 2) * y)


def bump_vjp(g, x, y):
    e = np.exp(-x ** 2 / 2)
    return -g * x * e * y, g * e


def bump_hvp(g, t, x, y, curvature=lambda x: x ** 2 - 1, mixed=True):
    tx, ty = t
    e = np.exp(-x ** 2 / 2)
    gx = g * e * (curvature(x) * y * tx - (x * ty if mixed else 0.0))
    gy = -g * x * e * tx if mixed else 0 * ty
    return gx, gy


def cases() -> list:
    return [
        HvpCase("quartic", quartic, quartic_vjp, quartic_hvp, {"x": normal(5)},
                [("factor-2", lambda g, t, x: quartic_hvp(g, t, x, factor=2.0)),
                 ("power-1", lambda g, t, x: quartic_hvp(g, t, x, power=1))]),
        HvpCase("softplus-loss", softplus_loss, softplus_loss_vjp, softplus_loss_hvp,
                {"x": normal(3, 4), "w": normal(4, 2)},
                [("gauss-newton", lambda g, t, x, w: softplus_loss_hvp(g, t, x, w, cross=False)),
                 ("s(1+s)", lambda g, t, x, w: softplus_loss_hvp(g, t, x, w, curvature=lambda s: s * (1 + s))),
                 ("w-block-dropped", lambda g, t, x, w: softplus_loss_hvp(g, t, x, w, w_block=False))]),
        HvpCase("logsumexp", lse, lse_vjp, lse_hvp, {"x": normal(6)},
                [("rank-one-term-dropped", lambda g, t, x: lse_hvp(g, t, x, sign=0.0)),
                 ("rank-one-sign", lambda g, t, x: lse_hvp(g, t, x, sign=1.0))]),
        HvpCase("quadratic-form", quad, quad_vjp, quad_hvp, {"x": normal(4), "a": normal(4, 4)},
                [("not-symmetrized", lambda g, t, x, a: quad_hvp(g, t, x, a, symmetrize=False)),
                 ("a-block-half-lost", lambda g, t, x, a: quad_hvp(g, t, x, a, a_half=1.0))]),
        HvpCase("mse", mse, mse_vjp, mse_hvp, {"pred": normal(2, 3), "target": normal(2, 3)},
                [("target-sign", lambda g, t, p, q: mse_hvp(g, t, p, q, target_sign=1.0)),
                 ("sum-not-mean", lambda g, t, p, q: mse_hvp(g, t, p, q, per_element=False))]),
        HvpCase("cross-entropy", xent, xent_vjp, xent_hvp, {"logits": normal(3, 4)},
                [("softmax-over-batch", lambda g, t, z: xent_hvp(g, t, z, whole=True))]),
        HvpCase("x-y-squared", xyy, xyy_vjp, xyy_hvp, {"x": normal(4), "y": normal(4)},
                [("x-block-zero", lambda g, t, x, y: xyy_hvp(g, t, x, y, x_block=False)),
                 ("mixed-term-dropped", lambda g, t, x, y: xyy_hvp(g, t, x, y, mixed=False))]),
        HvpCase("rosenbrock", rosen, rosen_vjp, rosen_hvp, {"x": normal(5, scale=0.5, shift=0.5)},
                [("residual-dropped", lambda g, t, x: rosen_hvp(g, t, x, residual=False)),
                 ("constant-term-sign", lambda g, t, x: rosen_hvp(g, t, x, one=-2.0))]),
        HvpCase("tanh-net", tanh_net, tanh_net_vjp, tanh_net_hvp, {"x": normal(3, 3), "w": normal(3, 2)},
                [("curvature-sign", lambda g, t, x, w: tanh_net_hvp(g, t, x, w, two=2.0)),
                 ("cross-dropped", lambda g, t, x, w: tanh_net_hvp(g, t, x, w, cross=False))]),
        HvpCase("dense-in-loss", dense, dense_vjp, dense_hvp,
                {"x": normal(3, 4), "w": normal(4, 2), "b": normal(2)},
                [("x-block-dropped", lambda g, t, x, w, b: dense_hvp(g, t, x, w, b, x_block=False)),
                 ("w-block-sign", lambda g, t, x, w, b: dense_hvp(g, t, x, w, b, w_sign=-1.0))],
                expr="sum(softplus(dense(x, w, b)))"),
        HvpCase("cubes-in-square", cubes, cubes_vjp, cubes_hvp, {"x": normal(4)},
                [("cotangent-ignored", lambda g, t, x: cubes_hvp(g, t, x, use_g=False))],
                expr="sum(square(cubes(x)))"),
        HvpCase("gaussian-bump", bump, bump_vjp, bump_hvp, {"x": normal(4), "y": normal(4)},
                [("curvature-1-x2", lambda g, t, x, y: bump_hvp(g, t, x, y, curvature=lambda x: 1 - x ** 2)),
                 ("mixed-dropped", lambda g, t, x, y: bump_hvp(g, t, x, y, mixed=False))]),
    ]
