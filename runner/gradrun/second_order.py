"""Second derivatives, analytically: gradients and Hessian-vector products of a scalar output.

The Hessian-vector product H v is the derivative of the gradient along v.
gradrun takes it forward-over-reverse in complex arithmetic: the inputs move
by ``i * h * v`` with an infinitesimal h (``IMAGINARY_STEP``), the graph is
evaluated and walked backwards (``engine.evaluate`` and ``engine.vjp``) in
complex, and

    H v = Im(gradient(x + i h v)) / h

to round-off: at that h the complex step has no truncation error left
(it is O(h**2) relative), and nothing is subtracted. This needs every VJP
rule to be holomorphic in its primals and cotangent, which the table's rules
are (branches test the real part; see ``gradrun.primitives``).

A user's ``python:`` function sits in the walk as a dual pair: its primal
(real) part by its own forward and VJP, and its tangent part by its rules:

- the tangent of its output: ``jvp(tangents, *primals)`` when given, else
  one VJP per output element (``<vjp(e_k), tangents>``);
- the tangent of its VJP: ``vjp(g_tangent, *primals)`` plus the user's
  ``hvp(cotangent, tangents, *primals)``, which returns one block per input:
  d/dt vjp(cotangent, *(primals + t * tangents)) at t = 0, the cotangent held
  still. For a scalar loss and cotangent 1 that is the Hessian-vector product
  H v itself. A function declared ``complex_safe`` without an ``hvp`` has its
  VJP called in complex instead.
"""

from __future__ import annotations

import numpy as np

from . import engine

# The imaginary step, relative to the inputs' scale: small enough that h**2 is
# below every dtype's round-off, large enough that h * (a tangent) stays normal.
IMAGINARY_STEP = {np.complex128: 1e-30, np.complex64: 1e-20}
COMPLEX = {np.float64: np.complex128, np.float32: np.complex64}


class SecondOrderError(ValueError):
    """A graph whose second derivatives cannot be taken as asked."""


def gradient(graph: engine.Graph, values: dict, wrt, dtype=np.float64) -> np.ndarray:
    """The gradient of the scalar output over the ``wrt`` inputs, flattened and concatenated."""
    vals = engine.evaluate(graph, values, dtype)
    grads = engine.vjp(graph, vals, np.ones_like(vals[graph.output]))
    return np.concatenate([np.ravel(grads[name]) for name in wrt]).astype(np.float64)


def hvp(graph: engine.Graph, values: dict, wrt, direction: np.ndarray, dtype=np.float64) -> np.ndarray:
    """H v: the Hessian of the scalar output over the ``wrt`` inputs times ``direction``
    (flattened and concatenated as ``gradient``'s), forward-over-reverse in complex."""
    ctype = COMPLEX[dtype]
    scale = max([1.0] + [float(np.max(np.abs(values[n]), initial=0.0)) for n in wrt])
    h = IMAGINARY_STEP[ctype] * scale
    moved = {k: np.asarray(v, dtype=dtype).astype(ctype) for k, v in values.items()}
    at = 0
    for name in wrt:
        size = np.size(values[name])
        tangent = np.asarray(direction[at:at + size], dtype=dtype).reshape(np.shape(values[name]))
        moved[name] = moved[name] + 1j * h * tangent
        at += size
    vals = engine.evaluate(graph, moved, ctype, apply=lambda node, args: _dual_apply(node, args, h))
    grads = engine.vjp(graph, vals, np.ones_like(vals[graph.output]),
                       node_vjp=lambda node, g, ans, args: _dual_vjp(node, g, args, h))
    return np.concatenate([np.ravel(np.imag(grads[name])) / h for name in wrt]).astype(np.float64)


def hessian_columns(graph, values: dict, wrt, columns, dtype=np.float64) -> np.ndarray:
    """Columns ``columns`` (flat indices over the ``wrt`` inputs) of the Hessian: (N, len(columns))."""
    n = sum(np.size(values[name]) for name in wrt)
    out = np.zeros((n, len(columns)))
    for p, j in enumerate(columns):
        e = np.zeros(n)
        e[j] = 1.0
        out[:, p] = hvp(graph, values, wrt, e, dtype)
    return out


def check_orderable(graph: engine.Graph) -> None:
    """Raise ``SecondOrderError`` if a user's function in the graph cannot be differentiated twice."""
    for node in graph.nodes:
        fn = node.fn
        if fn is not None and fn.hvp is None and not fn.complex_safe:
            raise SecondOrderError(
                f"python function '{fn.name}' needs an 'hvp' rule for order: 2 "
                "(hvp(cotangent, tangents, *primals) -> one block per input), or complex_safe: true "
                "if its VJP takes complex input")
        if fn is not None and fn.vjp is None:
            raise SecondOrderError(f"python function '{fn.name}' needs a 'vjp' rule for order: 2")


# ------------------------------------------------- a user's function as a dual pair


def _split(args, h):
    return [np.real(a) for a in args], [np.imag(a) / h for a in args]


def _blocks(out, n):
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if len(out) != n:
        raise SecondOrderError(f"a rule gave {len(out)} blocks for {n} inputs")
    return out


def _dual_apply(node, args, h):
    fn = node.fn
    if fn.complex_safe:
        return np.asarray(fn.forward(*args))
    primals, tangents = _split(args, h)
    out = np.asarray(fn.forward(*primals), dtype=np.result_type(*primals, np.float32))
    if not any(np.any(t) for t in tangents):
        return out.astype(args[0].dtype)
    if fn.jvp is not None:
        tangent = np.asarray(fn.jvp(tuple(tangents), *primals))
    else:  # one VJP per output element: <vjp(e_k), tangents>
        tangent = np.zeros(out.size)
        for k in range(out.size):
            e = np.zeros(out.size, dtype=out.dtype)
            e[k] = 1
            ct = _blocks(fn.vjp(e.reshape(out.shape), *primals), len(args))
            tangent[k] = sum(np.sum(np.asarray(c) * t) for c, t in zip(ct, tangents) if c is not None)
    return out + 1j * h * np.broadcast_to(np.reshape(tangent, out.shape) if np.size(tangent) == out.size else tangent, out.shape)


def _dual_vjp(node, g, args, h):
    fn = node.fn
    if fn.hvp is None:  # complex_safe: its VJP takes the dual numbers as they are
        return _blocks(fn.vjp(g, *args), len(args))
    primals, tangents = _split(args, h)
    g_primal, g_tangent = np.real(g), np.imag(g) / h
    primal = _blocks(fn.vjp(g_primal, *primals), len(args))
    moved = _blocks(fn.vjp(g_tangent, *primals), len(args)) if np.any(g_tangent) else (None,) * len(args)
    second = _blocks(fn.hvp(g_primal, tuple(tangents), *primals), len(args))
    out = []
    for p, m, s in zip(primal, moved, second):
        tangent = sum(np.asarray(t) for t in (m, s) if t is not None)
        out.append(None if p is None else np.asarray(p) + 1j * h * tangent)
    return tuple(out)
