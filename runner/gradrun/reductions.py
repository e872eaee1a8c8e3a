"""Reductions and softmax-likes along axes: entries of the one primitive table.

Each takes ``axis`` (None: every axis; an integer or a tuple) and, for
reductions, ``keepdims``; the defaults follow numpy, except that softmax,
log_softmax and logsumexp work along the last axis unless told otherwise, as
they always have in gradrun. A reduction's VJP broadcasts the cotangent back
over the reduced axes (``_expand``); branch conditions (max's argmax) read
real parts only, so every rule is complex-safe.
"""

from __future__ import annotations

import numpy as np

from .params import AXIS, KEEPDIMS, LAST_AXIS, Param, check_axes, normalize_axes
from .primitives import Primitive, register


def _check(shapes, axis=None, **_):
    check_axes(axis, shapes[0])


def _batch(params, ndims):
    """Axes shifted past a leading batch axis (None: every axis but the batch axis)."""
    return {**params, "axis": tuple(a + 1 for a in normalize_axes(params.get("axis"), ndims[0]))}


def _keep(v, x, axis, keepdims):
    """A reduced value ``v`` with the reduced axes kept as length 1."""
    return v if keepdims else np.expand_dims(v, normalize_axes(axis, np.ndim(x)))


def _expand(g, x, axis, keepdims):
    """The cotangent of a reduction, broadcast back to the shape of its argument."""
    return np.broadcast_to(_keep(g, x, axis, keepdims), np.shape(x))


def _count(x, axis) -> int:
    return int(np.prod([np.shape(x)[a] for a in normalize_axes(axis, np.ndim(x))], dtype=np.int64))


def _sum(x, axis, keepdims=False):
    return np.sum(x, axis=normalize_axes(axis, np.ndim(x)), keepdims=keepdims)


def reduction(name, forward, vjp, jvp, formula, derivative, params=(AXIS, KEEPDIMS), **kw):
    """A one-argument primitive along axes, from its one VJP rule and one JVP rule:
    checked and batched by its axis argument."""
    kw = {"kind": "dense", "check": _check, **kw}
    register(Primitive(name=name, nargs=1, forward=forward, vjp=(vjp,), jvp=(jvp,), formula=formula,
                       derivative=derivative, params=params, batch=_batch, **kw))


reduction("sum", lambda x, axis=None, keepdims=False: _sum(x, axis, keepdims),
          lambda g, ans, x, axis=None, keepdims=False: _expand(g, x, axis, keepdims).copy(),
          lambda t, ans, x, axis=None, keepdims=False: _sum(t, axis, keepdims),
          "sum of the elements along axis (default: all)", "1 for every element", kind="reduce")

reduction("mean", lambda x, axis=None, keepdims=False: _sum(x, axis, keepdims) / max(_count(x, axis), 1),
          lambda g, ans, x, axis=None, keepdims=False: _expand(g, x, axis, keepdims) / max(_count(x, axis), 1),
          lambda t, ans, x, axis=None, keepdims=False: _sum(t, axis, keepdims) / max(_count(x, axis), 1),
          "mean of the elements along axis (default: all)", "1/n for every element", kind="reduce")


# -- variance and standard deviation: d = x - mean(x), n - ddof in the denominator

DDOF = Param("ddof", "ddof", 0)


def _centered(x, axis):
    return x - _sum(x, axis, True) / max(_count(x, axis), 1)


def _var(x, axis=None, keepdims=False, ddof=0):
    d = _centered(x, axis)
    return _sum(d * d, axis, keepdims) / (_count(x, axis) - ddof)


def _check_var(shapes, axis=None, ddof=0, **_):
    _check(shapes, axis)
    n = int(np.prod([shapes[0][a] for a in normalize_axes(axis, len(shapes[0]))], dtype=np.int64))
    if ddof >= n:
        raise ValueError(f"ddof={ddof} leaves no degrees of freedom over {n} element{'s' * (n != 1)}")


def _var_vjp(g, ans, x, axis=None, keepdims=False, ddof=0):
    return _expand(2 * g, x, axis, keepdims) * _centered(x, axis) / (_count(x, axis) - ddof)


def _var_jvp(t, ans, x, axis=None, keepdims=False, ddof=0):
    return 2 * _sum(_centered(x, axis) * t, axis, keepdims) / (_count(x, axis) - ddof)


reduction("var", _var, _var_vjp, _var_jvp, "sum((x - mean)**2) / (n - ddof) along axis (default: all)",
          "2 * (x - mean) / (n - ddof)", params=(AXIS, KEEPDIMS, DDOF), check=_check_var)
reduction("std", lambda x, axis=None, keepdims=False, ddof=0: np.sqrt(_var(x, axis, keepdims, ddof)),
          lambda g, ans, x, axis=None, keepdims=False, ddof=0: _var_vjp(g / (2 * ans), ans, x, axis, keepdims, ddof),
          lambda t, ans, x, axis=None, keepdims=False, ddof=0: _var_jvp(t, ans, x, axis, keepdims, ddof) / (2 * ans),
          "sqrt(var(x)) along axis (default: all)", "(x - mean) / ((n - ddof) * std)",
          params=(AXIS, KEEPDIMS, DDOF), check=_check_var)


# -- max and min: the value at the (real) extreme; ties share the cotangent and are kinks

def _extreme_mask(pick):
    def mask(x, axis=None, keepdims=False):
        r = np.real(x)
        return r == pick(r, axis=normalize_axes(axis, np.ndim(x)), keepdims=True)
    return mask


for _name, _pick in (("max", np.max), ("min", np.min)):
    _m = _extreme_mask(_pick)

    def _forward(x, axis=None, keepdims=False, _m=_m):
        m = _m(x, axis)
        return _sum(np.where(m, x, 0), axis, keepdims) / _sum(m.astype(np.real(x).dtype), axis, keepdims)

    def _vjp(g, ans, x, axis=None, keepdims=False, _m=_m):
        m = _m(x, axis)
        return _expand(g, x, axis, keepdims) * m / _sum(m.astype(np.real(x).dtype), axis, True)

    def _jvp(t, ans, x, axis=None, keepdims=False, _m=_m):
        m = _m(x, axis)
        return _sum(t * m, axis, keepdims) / _sum(m.astype(np.real(x).dtype), axis, keepdims)

    reduction(_name, _forward, _vjp, _jvp, f"{_name} of the elements along axis (default: all)",
              f"1 at the {_name}imum, 0 elsewhere (a tie is a kink)", branch=_m)


# -- product: the derivative is the product of the other elements (no division: zeros are fine)

def _others(x, axis):
    """For every element, the product of the other elements along the reduced axes."""
    axes = normalize_axes(axis, np.ndim(x))
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    flat = moved.reshape(moved.shape[: moved.ndim - len(axes)] + (-1,))
    ones = np.ones_like(flat[..., :1])
    left = np.cumprod(np.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return np.moveaxis((left * right).reshape(moved.shape), tuple(range(-len(axes), 0)), axes)


reduction("prod", lambda x, axis=None, keepdims=False: np.prod(x, axis=normalize_axes(axis, np.ndim(x)), keepdims=keepdims),
          lambda g, ans, x, axis=None, keepdims=False: _expand(g, x, axis, keepdims) * _others(x, axis),
          lambda t, ans, x, axis=None, keepdims=False: _sum(t * _others(x, axis), axis, keepdims),
          "product of the elements along axis (default: all)", "product of the other elements",
          domain=(0.5, 1.5))


# -- norm, logsumexp

reduction("norm", lambda x, axis=None, keepdims=False: np.sqrt(_sum(x * x, axis, keepdims)),
          lambda g, ans, x, axis=None, keepdims=False: _expand(g / ans, x, axis, keepdims) * x,
          lambda t, ans, x, axis=None, keepdims=False: _sum(x * t, axis, keepdims) / ans,
          "sqrt(sum(x**2)) along axis (default: all; the Frobenius norm of a matrix)", "x / norm(x)")


def _logsumexp(x, axis=-1, keepdims=False):
    axes = normalize_axes(axis, np.ndim(x))
    m = np.max(np.real(x), axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = m + np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))
    return out if keepdims else np.squeeze(out, axis=axes)


def _logsumexp_vjp(g, ans, x, axis=-1, keepdims=False):
    return _expand(g, x, axis, keepdims) * np.exp(x - _keep(ans, x, axis, keepdims))


reduction("logsumexp", _logsumexp, _logsumexp_vjp,
          lambda t, ans, x, axis=-1, keepdims=False: _sum(t * np.exp(x - _keep(ans, x, axis, keepdims)), axis, keepdims),
          "log(sum(exp(x))) along axis (default: the last)", "softmax(x) along axis",
          params=(Param("axis", "axis", -1), KEEPDIMS))


# -- softmax and log_softmax along one axis

def _softmax(x, axis=-1):
    axes = normalize_axes(axis, np.ndim(x))
    e = np.exp(x - np.max(np.real(x), axis=axes, keepdims=True))
    return e / np.sum(e, axis=axes, keepdims=True)


def _softmax_vjp(g, ans, x, axis=-1):
    return ans * (g - _sum(g * ans, axis, True))


def _log_softmax(x, axis=-1):
    return x - _logsumexp(x, axis, keepdims=True)


def _log_softmax_vjp(g, ans, x, axis=-1):
    return g - np.exp(ans) * _sum(g, axis, True)


register(Primitive(
    name="softmax", nargs=1, forward=_softmax, vjp=(_softmax_vjp,),
    jvp=(_softmax_vjp,),  # its Jacobian is symmetric
    formula="exp(x) / sum(exp(x)) along axis (default: the last)", derivative="s * (g - sum(g * s))",
    kind="dense", params=(LAST_AXIS,), check=_check, batch=_batch))

register(Primitive(
    name="log_softmax", nargs=1, forward=_log_softmax, vjp=(_log_softmax_vjp,),
    jvp=(lambda t, ans, x, axis=-1: t - _sum(np.exp(ans) * t, axis, True),),
    formula="x - logsumexp(x) along axis (default: the last)", derivative="g - softmax(x) * sum(g)",
    kind="dense", params=(LAST_AXIS,), check=_check, batch=_batch))
