"""Forward mode on a graph: JVPs, and Jacobian columns one tangent at a time.

``jvp`` walks the nodes forwards with tangents: a second analytic path,
independent of reverse mode, that cross-checks it and serves code with a JVP only.
"""

from __future__ import annotations

import numpy as np

from . import primitives
from .graph import Graph, GraphError
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
    tan: list = [None] * len(graph.nodes)
    for name, t in tangents.items():
        i = graph.inputs[name]
        tan[i] = np.asarray(t, dtype=vals[i].dtype).reshape(vals[i].shape)
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes):
            if not node.args or all(tan[a] is None for a in node.args):
                continue
            args = [vals[a] for a in node.args]
            ts = [tan[a] for a in node.args]
            if node.fn is not None:
                full = [t if t is not None else np.zeros_like(v) for t, v in zip(ts, args)]
                tan[i] = np.asarray(node.fn.jvp(tuple(full), *args))
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
    """Jacobian columns of one input by forward mode, one JVP per column: (M, len(columns))."""
    out = vals[graph.output]
    x = vals[graph.inputs[name]]
    box = graph.nodes[graph.output]
    if box.fn is not None and box.fn.jvp_batch is not None and not any(graph.nodes[a].args for a in box.args):
        return _batched_columns(graph, vals, name, columns)
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    for p, j in enumerate(columns):
        t = np.zeros(x.size, dtype=x.dtype)
        t[j] = 1
        cols[:, p] = jvp(graph, vals, {name: t.reshape(x.shape)}).ravel()
    return cols


def _batched_columns(graph: Graph, vals: list, name: str, columns) -> np.ndarray:
    """Forward columns of a black box applied to the inputs themselves, a chunk of
    one-hot tangents per ``jvp_batch`` call (as ``forward_batch`` takes perturbations)."""
    box, i = graph.nodes[graph.output], graph.inputs[name]
    x, out = vals[i], vals[graph.output]
    args = [vals[a] for a in box.args]
    columns = np.asarray(columns, dtype=np.int64)
    cols = np.zeros((out.size, len(columns)), dtype=out.dtype)
    chunk = batch_rows(x.size)
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

