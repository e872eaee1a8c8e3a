"""Reverse mode on a graph: VJPs, VJPs of many cotangents at once, the full Jacobian.

``vjp`` walks the nodes backwards, accumulating cotangents; the walker, not the
rules, sums a broadcast cotangent back to its argument's shape.
"""

from __future__ import annotations

import numpy as np

from . import primitives
from .graph import Graph, GraphError, Node, call_user, fresh, readonly


def unbroadcast(g, shape):
    """Sum a cotangent that was broadcast back down to ``shape``."""
    g = np.asarray(g)
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _node_vjp(node: Node, g, ans, args, needed) -> tuple:
    """One cotangent per argument, None where none flows back. A primitive's rules run
    only for the arguments in ``needed``; a user's VJP gives every cotangent at once."""
    if node.fn is None:
        kwargs = node.kwargs
        rules = primitives.get(node.op).vjp_rules(len(args))
        return tuple(rule(g, ans, *args, **kwargs) if need and rule is not None else None
                     for rule, need in zip(rules, needed))
    out = call_user(node.fn.vjp, fresh(g), *readonly(args))
    out = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if len(out) != len(args):
        raise GraphError(f"the VJP of {node.name} gave {len(out)} cotangents for {len(args)} inputs")
    for k, (c, a) in enumerate(zip(out, args)):
        # a real input's cotangent is real: an imaginary part is an error of the rule, which
        # a cast to float would drop silently (g cos(x) + 0.5j passed as cos)
        name = node.fn.params[k] if k < len(node.fn.params) else k
        if c is not None and np.iscomplexobj(c) and not np.iscomplexobj(a) and np.any(np.imag(c) != 0):
            raise GraphError(f"the VJP of {node.name} gave a complex cotangent for its real input {name}")
        # a user's cotangent has its input's shape: the walker sums a primitive's broadcast
        # cotangents back, and would sum a bias gradient left per example (g for g.sum(0)) into a right one
        if c is not None and needed[k] and np.shape(c) != np.shape(a):
            raise GraphError(f"the VJP of {node.name} gave a cotangent of shape {np.shape(c)} for its input "
                             f"{name} of shape {np.shape(a)}: a VJP returns one cotangent of each input's shape")
    return out


def vjp(graph: Graph, vals: list, cotangent, node_vjp=None) -> dict:
    """Reverse mode: the cotangent of every input, given the output's cotangent.

    ``node_vjp(node, g, ans, args)``, when given, replaces the user's VJP rules
    (as ``apply`` does in ``evaluate``).
    """
    ct: list = [None] * len(graph.nodes)
    ct[graph.output] = np.asarray(cotangent, dtype=vals[graph.output].dtype)
    with np.errstate(all="ignore"):
        for i in range(len(graph.nodes) - 1, -1, -1):
            node, g = graph.nodes[i], ct[i]
            if g is None or not node.args:
                continue
            args = [vals[a] for a in node.args]
            needed = [graph.needs[a] for a in node.args]
            if node_vjp is not None and node.fn is not None:
                out = node_vjp(node, g, vals[i], args)
            else:
                out = _node_vjp(node, g, vals[i], args, needed)
            for a, ga, need in zip(node.args, out, needed):
                if ga is None or not need:
                    continue
                try:
                    ga = unbroadcast(ga, vals[a].shape)
                except ValueError:
                    raise GraphError(f"the VJP of {node.name or node.op} gave a cotangent of shape "
                                     f"{np.shape(ga)} for an input of shape {vals[a].shape}") from None
                ct[a] = ga if ct[a] is None else ct[a] + ga
    return {
        name: (ct[i] if ct[i] is not None else np.zeros_like(vals[i]))
        for name, i in graph.inputs.items()
    }


def vjp_rows(graph: Graph, vals: list, cotangents) -> dict:
    """Reverse mode for a batch of output cotangents, one per row of ``cotangents``
    (B, output size): {input name: (B, input size)}.

    gradrun's own VJP rules are linear in the cotangent and IEEE rounding is
    symmetric under a change of sign, so on a transparent graph a row that is
    another's negation costs no pass of its own: its VJP is the negated one, the
    same numbers (a zero may differ in sign, where a rule subtracts equal terms);
    the sign directions of a scalar output take one pass, not one each. A
    user's VJP is not assumed linear: there every row gets its own pass.
    """
    out_shape = vals[graph.output].shape
    which, flip = shared_passes(graph, cotangents)
    rows_of = np.asarray(cotangents)
    passes = [vjp(graph, vals, rows_of[b].reshape(out_shape)) for b in firsts(which)]
    result = {}
    for name in graph.inputs:
        flat = [np.ravel(p[name]) for p in passes]
        rows = np.empty((len(which), vals[graph.inputs[name]].size), np.result_type(*flat) if flat else float)
        for row, p, sign in zip(rows, which, flip):
            np.multiply(flat[p], np.array(sign, dtype=rows.dtype), out=row)  # -1 * x is -x, exactly; one pass a row
        result[name] = rows
    return result


def shared_passes(graph: Graph, cotangents) -> tuple:
    """Which reverse pass each row of ``cotangents`` takes, and the sign it is taken with:
    ``(which, flip)``, pass p run on the first row with ``which == p``. On a transparent
    graph a row that is another's negation (or repeat) shares its pass (see ``vjp_rows``),
    so rows of one pass have the same |J^T u|; elsewhere every row has a pass of its own."""
    ran, which, flip = {}, [], []  # a row's bytes in canonical sign -> (its pass, the sign it ran with)
    for b, row in enumerate(np.asarray(cotangents)):
        sign, key = 1.0, b
        if graph.transparent:
            nonzero = np.flatnonzero(row)
            sign = -1.0 if len(nonzero) and row[nonzero[0]] < 0 else 1.0
            key = (sign * row).tobytes()
        if key not in ran:
            ran[key] = len(ran), sign
        which.append(ran[key][0])
        flip.append(1.0 if sign == ran[key][1] else -1.0)
    return which, flip


def firsts(which) -> list:
    """The row each pass of ``shared_passes`` runs on: the first that takes it, pass by pass."""
    return [which.index(p) for p in range(len(set(which)))]



def jacobian(graph: Graph, vals: list, wrt) -> dict:
    """The full Jacobian of the output by reverse mode: name -> (output size, input size)."""
    out = vals[graph.output]
    m = out.size
    jac = {name: np.zeros((m, vals[graph.inputs[name]].size), dtype=out.dtype) for name in wrt}
    for k in range(m):
        seed = np.zeros(m, dtype=out.dtype)
        seed[k] = 1
        grads = vjp(graph, vals, seed.reshape(out.shape))
        for name in wrt:
            jac[name][k] = grads[name].ravel()
    return jac

