"""Shape ops: entries of the one primitive table that move elements without changing them.

reshape, transpose (with axes), broadcast_to, concatenate and stack along an
axis, constant indexing and slicing (``x[0]``, ``X[:, 1:3]``, the ``index``
primitive), and one_hot of integer labels. Each has a ``check`` that turns a
mistaken shape or axis into a message at load time; all rules are linear, so
complex-safe.

An index key is a tuple with one entry per indexed axis: an integer, or a
``(start, stop, step)`` triple (None for an omitted bound) for a slice.
"""

from __future__ import annotations

import math

import numpy as np

from .params import Param, check_axes, normalize_axes
from .primitives import Primitive, register

SHAPE = Param("shape", "shape", positional=True, required=True)


# -- reshape

def _check_reshape(shapes, shape):
    size = math.prod(shapes[0])
    free = [d for d in shape if d == -1]
    if len(free) > 1 or any(d < -1 for d in shape):
        raise ValueError(f"reshape to {shape}: at most one -1, no other negative sizes")
    known = math.prod(d for d in shape if d != -1)
    if (free and (known == 0 or size % known)) or (not free and known != size):
        raise ValueError(f"cannot reshape {size} elements of shape {tuple(shapes[0])} into {shape}")
    return tuple(size // known if d == -1 else d for d in shape)


register(Primitive(
    name="reshape", nargs=1, forward=lambda x, shape: np.reshape(x, shape),
    vjp=(lambda g, ans, x, shape: np.reshape(g, np.shape(x)),),
    jvp=(lambda t, ans, x, shape: np.reshape(t, np.shape(ans)),),
    formula="x with a new shape, elements in C order (one size may be -1)", derivative="g reshaped back",
    kind="reshape", params=(SHAPE,), check=_check_reshape))


# -- transpose

def _inverse(axes):
    return tuple(int(i) for i in np.argsort([a % len(axes) for a in axes])) if axes is not None else None


def _check_transpose(shapes, axes=None):
    if axes is not None:
        ndim = len(shapes[0])
        if len(axes) != ndim or sorted(a % ndim for a in axes if -ndim <= a < ndim) != list(range(ndim)):
            raise ValueError(f"axes {axes} is not a permutation of the {ndim} axes of shape {tuple(shapes[0])}")


register(Primitive(
    name="transpose", nargs=1, forward=lambda x, axes=None: np.transpose(x, axes),
    vjp=(lambda g, ans, x, axes=None: np.transpose(g, _inverse(axes)),),
    jvp=(lambda t, ans, x, axes=None: np.transpose(t, axes),),
    formula="x with its axes permuted (default: reversed, x.T)", derivative="g with the axes permuted back",
    kind="transpose", params=(Param("axes", "axes", None, positional=True),), check=_check_transpose))


# -- broadcast_to

def _check_broadcast(shapes, shape):
    try:
        if np.broadcast_shapes(tuple(shapes[0]), shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(f"cannot broadcast shape {tuple(shapes[0])} to {shape}") from None
    return shape


register(Primitive(
    name="broadcast_to", nargs=1, forward=lambda x, shape: np.broadcast_to(x, shape).copy(),
    vjp=(lambda g, ans, x, shape: g,),  # the walker sums g back to x's shape
    jvp=(lambda t, ans, x, shape: np.broadcast_to(t, shape),),
    formula="x repeated along new or length-1 axes to shape", derivative="g summed over the repeats",
    params=(SHAPE,), check=_check_broadcast, kind="dense"))


# -- concatenate and stack: any number of arguments, written as a list

def _batch_joined(params, ndims, extra=0):
    return {**params, "axis": params["axis"] % (ndims[0] + extra) + 1}


def _check_joined(shapes, axis=0, stacked=False):
    first = tuple(shapes[0])
    if not stacked and not first:
        raise ValueError("concatenate needs arrays with at least one axis, not scalars")
    if not stacked:
        check_axes(axis, first)
    elif not -len(first) - 1 <= axis <= len(first):
        n = len(first) + 1
        raise ValueError(f"axis {axis} is out of range for stacking arrays of shape {first}: "
                         f"the result has {n} {'axis' if n == 1 else 'axes'} (-{n}..{n - 1})")
    for k, s in enumerate(shapes[1:], 1):
        s = tuple(s)
        same = s == first if stacked else (len(s) == len(first) and all(
            a == b for i, (a, b) in enumerate(zip(s, first)) if i != axis % len(first)))
        if not same:
            how = "the same shape" if stacked else f"the same shape except along axis {axis}"
            raise ValueError(f"argument {k} has shape {s} but argument 0 has {first}; they need {how}")
    # The joined shape, so that its size is checked before the arrays are joined.
    if stacked:
        at = axis % (len(first) + 1)
        return first[:at] + (len(shapes),) + first[at:]
    at = axis % len(first)
    return first[:at] + (sum(tuple(s)[at] for s in shapes),) + first[at + 1:]


def _concat_slot(k, xs, axis):
    """Where argument k sits in the concatenation along ``axis``."""
    axis = axis % np.ndim(xs[k])
    start = sum(np.shape(x)[axis] for x in xs[:k])
    return (slice(None),) * axis + (slice(start, start + np.shape(xs[k])[axis]),)


def _placed(t, ans, slot):
    """The output's tangent when one argument, at ``slot`` of it, moves by t."""
    out = np.zeros(np.shape(ans), dtype=np.result_type(t, ans))
    out[slot] = t
    return out


register(Primitive(
    name="concatenate", nargs=None, forward=lambda *xs, axis=0: np.concatenate(xs, axis=axis),
    vjp=(lambda k, g, ans, *xs, axis=0: g[_concat_slot(k, xs, axis)],),
    jvp=(lambda k, t, ans, *xs, axis=0: _placed(t, ans, _concat_slot(k, xs, axis)),),
    formula="the arguments joined along an existing axis: concatenate([a, b], axis=0)",
    derivative="g split back into the pieces",
    kind="dense", params=(Param("axis", "one_axis", 0),),
    check=lambda shapes, axis=0: _check_joined(shapes, axis), batch=_batch_joined))

def _stack_slot(k, ans, axis):
    """Where argument k sits in the stack along ``axis`` of the output ``ans``."""
    return (slice(None),) * (axis % np.ndim(ans)) + (k,)


register(Primitive(
    name="stack", nargs=None, forward=lambda *xs, axis=0: np.stack(xs, axis=axis),
    vjp=(lambda k, g, ans, *xs, axis=0: np.take(g, k, axis=axis),),
    jvp=(lambda k, t, ans, *xs, axis=0: _placed(t, ans, _stack_slot(k, ans, axis)),),
    formula="the arguments joined along a new axis: stack([a, b], axis=0)", derivative="g split along that axis",
    kind="dense", params=(Param("axis", "one_axis", 0),),
    check=lambda shapes, axis=0: _check_joined(shapes, axis, stacked=True),
    batch=lambda params, ndims: _batch_joined(params, ndims, extra=1)))


# -- constant indexing and slicing: x[0], X[:, 1:3]

def as_index(key):
    """The numpy index of a stored key (slices are stored as (start, stop, step) triples)."""
    return tuple(slice(*k) if isinstance(k, tuple) else k for k in key)


def _check_index(shapes, key):
    shape = tuple(shapes[0])
    if len(key) > len(shape):
        raise ValueError(f"{len(key)} indices for an argument of shape {shape} with {len(shape)} axes")
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, int) and not -n <= k < n:
            raise ValueError(f"index {k} is out of range for axis {axis} of length {n} (shape {shape})")
        if isinstance(k, tuple) and k[2] == 0:
            raise ValueError("a slice step cannot be 0")


def _index_vjp(g, ans, x, key):
    out = np.zeros(np.shape(x), dtype=np.result_type(g, x))
    out[as_index(key)] = g  # basic indexing: every element picked at most once
    return out


register(Primitive(
    name="index", nargs=1, forward=lambda x, key: np.asarray(x)[as_index(key)].copy(), vjp=(_index_vjp,),
    jvp=(lambda t, ans, x, key: t[as_index(key)],),
    formula="x[i, a:b:c]: constant integers and slices",
    derivative="g placed back at the picked elements, 0 elsewhere",
    kind="dense", params=(Param("key", "index", required=True),), check=_check_index,
    batch=lambda params, ndims: {**params, "key": ((None, None, None),) + tuple(params["key"])}))


# -- one_hot of integer labels (not differentiated)

def _one_hot(labels, n):
    r = np.real(np.asarray(labels))
    if r.size and (r.min() <= -0.5 or r.max() >= n - 0.5):
        raise ValueError(f"labels run from {r.min():g} to {r.max():g}, but one_hot(labels, {n}) takes 0..{n - 1}")
    return (np.rint(r)[..., None] == np.arange(n)).astype(r.dtype if r.dtype.kind == "f" else np.float64)


def _check_one_hot(shapes, n):
    return tuple(shapes[0]) + (n,)


register(Primitive(
    name="one_hot", nargs=1, forward=_one_hot, vjp=(None,), jvp=(None,),
    formula="1 at position labels[...] of a new last axis of length n, 0 elsewhere (labels: an integer input)",
    derivative="none: labels are not differentiated", kind="dense",
    params=(Param("n", "count", positional=True, required=True),), check=_check_one_hot, arg_names=("labels",),
    batch=lambda params, ndims: params))

__all__ = ["as_index", "normalize_axes"]
