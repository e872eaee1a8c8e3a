"""Forward mode on a graph: JVPs, and Jacobian columns one tangent at a time.

``jvp`` walks the nodes forwards with tangents: a second analytic path,
independent of reverse mode, that cross-checks it and serves code with a JVP only.
"""

from __future__ import annotations

import numpy as np

from . import primitives
from .graph import Graph, GraphError, call_user, fresh, readonly
from .perturb import batch_rows


def _primitive_jvp(node, ans, args, ts):
    """The sum of the tangents each moving argument's rule gives, in argument order; None for none."""
    kwargs = node.kwargs
    rules = primitives.get(node.op).jvp_rules(len(args))
    total = None
    for rule, t in zip(rules, ts):
        if rule is not None and t is not None:
            term = rule(t, ans, *args, **kwargs)
            total = term if total is None else total + term
    return None if total is None else np.asarray(total)


def jvp(graph: Graph, vals: list, tangents: dict):
    """Forward mode: the output's tangent, given a tangent for some inputs."""
    return _from(graph, vals, {graph.inputs[name]: t for name, t in tangents.items()})


def _from(graph: Graph, vals: list, seeds: dict):
    """The output's tangent, given the tangents of some nodes (``seeds``: node -> tangent):
    the nodes after the first of them are walked forwards."""
    tan: list = [None] * len(graph.nodes)
    for i, t in seeds.items():
        tan[i] = np.asarray(t, dtype=vals[i].dtype).reshape(vals[i].shape)
    first = min(seeds, default=len(graph.nodes))
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes[first:], start=first):
            if not node.args or i in seeds or all(tan[a] is None for a in node.args):
                continue
            args = [vals[a] for a in node.args]
            ts = [tan[a] for a in node.args]
            if node.fn is not None:
                full = [t if t is not None else np.zeros_like(v) for t, v in zip(ts, args)]
                tan[i] = np.asarray(call_user(node.fn.jvp, tuple(fresh(t) for t in full),
                                              *readonly(args)))
                if np.iscomplexobj(tan[i]) and not np.iscomplexobj(vals[i]) and np.any(np.imag(tan[i]) != 0):
                    raise GraphError(f"the JVP of {node.name} gave a complex tangent for its real output")
                if tan[i].shape != vals[i].shape:  # broadcast, a wrong shape could hide a wrong value
                    raise GraphError(f"the JVP of {node.name} gave a tangent of shape {tan[i].shape} for its "
                                     f"output of shape {vals[i].shape}: a JVP returns one tangent of the "
                                     "output's shape")
            else:
                tan[i] = _primitive_jvp(node, vals[i], args, ts)
                if tan[i] is None:  # no moving argument is differentiated: the output holds still
                    continue
            try:
                tan[i] = np.broadcast_to(tan[i], vals[i].shape)
            except ValueError:
                raise GraphError(f"the JVP of {node.name or node.op} gave a tangent of shape "
                                 f"{np.shape(tan[i])} for an output of shape {vals[i].shape}") from None
    out = tan[graph.output]
    return np.zeros_like(vals[graph.output]) if out is None else out



def jacobian_forward(graph: Graph, vals: list, wrt) -> dict:
    """The full Jacobian by forward mode, one JVP per input element."""
    return {name: forward_columns(graph, vals, name, range(vals[graph.inputs[name]].size)) for name in wrt}


def forward_columns(graph: Graph, vals: list, name: str, columns) -> np.ndarray:
    """Jacobian columns of one input by forward mode, one JVP per column: (M, len(columns)).

    Where the input goes into a black box that batches JVPs and into nothing else (a torch
    or JAX function, alone or under gradrun's own operations: ``reduce: sum``, an ``expr:``
    around it), the box's columns come a chunk of tangents per call, and only the cheap
    rest of the graph is walked once per column.
    """
    out = vals[graph.output]
    x = vals[graph.inputs[name]]
    box = _sole_box(graph, name)
    if box is not None:
        inner = _batched_columns(graph, vals, name, columns, box)
        if box == graph.output:
            return inner
        cols = np.zeros((out.size, inner.shape[1]), dtype=out.dtype)
        for p in range(inner.shape[1]):
            cols[:, p] = _from(graph, vals, {box: inner[:, p].reshape(vals[box].shape)}).ravel()
        return cols
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    for p, j in enumerate(columns):
        t = np.zeros(x.size, dtype=x.dtype)
        t[j] = 1
        cols[:, p] = jvp(graph, vals, {name: t.reshape(x.shape)}).ravel()
    return cols


def _sole_box(graph: Graph, name: str):
    """The node of the black box that alone takes input ``name``, applied to inputs only and
    batching JVPs; None where there is none."""
    i = graph.inputs[name]
    takers = [k for k, node in enumerate(graph.nodes) if i in node.args]
    if len(takers) != 1:
        return None
    box = graph.nodes[takers[0]]
    if box.fn is None or box.fn.jvp_batch is None or any(graph.nodes[a].args for a in box.args):
        return None
    return takers[0]


def _batched_columns(graph: Graph, vals: list, name: str, columns, at_box: int) -> np.ndarray:
    """Forward columns of a black box applied to the inputs themselves, a chunk of
    one-hot tangents per ``jvp_batch`` call (as ``forward_batch`` takes perturbations)."""
    box, i = graph.nodes[at_box], graph.inputs[name]
    x, out = vals[i], vals[at_box]
    args = [vals[a] for a in box.args]
    columns = np.asarray(columns, dtype=np.int64)
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    chunk = box.fn.chunk_rows(x.size, args) if box.fn.chunk_rows else batch_rows(x.size)
    for start in range(0, len(columns), chunk):
        at = columns[start:start + chunk]
        if box.fn.jvp_basis is not None:  # the function builds the one-hot tangents itself
            block = box.fn.jvp_basis(tuple(k for k, a in enumerate(box.args) if a == i), at, *args)
        else:
            basis = np.zeros((len(at), x.size), dtype=x.dtype)
            basis[np.arange(len(at)), at] = 1
            block = box.fn.jvp_batch([basis.reshape((len(at),) + x.shape) if a == i else None for a in box.args], *args)
        cols[:, start:start + len(at)] = np.asarray(block).reshape(len(at), -1).T
    return cols

