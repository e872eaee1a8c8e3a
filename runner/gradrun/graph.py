"""The graph of an expression: nodes in evaluation order, built once, and its primal values.

A ``Graph`` is a list of nodes in evaluation order. It is built once from an
expression tree (``build``), with declared expression functions inlined and
identical subexpressions shared; ``evaluate`` gives every node's primal value.
The walkers over it live beside: ``gradrun.reverse`` (VJP), ``gradrun.forward_mode``
(JVP) and ``gradrun.perturb`` (batched perturbations for finite differences).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Optional

import numpy as np

from . import primitives
from .tree import Const, ExprFunction, PythonFunction, Var


class GraphError(ValueError):
    """An expression that cannot be built or evaluated as a graph."""


@dataclass
class Node:
    op: Optional[str] = None  # primitive name; None for inputs, constants and Python functions
    args: tuple = ()
    name: str = ""  # input name, or the Python function's name
    value: Optional[np.ndarray] = None  # a constant's value
    fn: Optional[PythonFunction] = None
    params: tuple = ()  # a primitive's static arguments, (name, value) pairs

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    def forward(self):
        """The primitive's forward function with this node's static arguments bound."""
        prim = primitives.get(self.op)
        return partial(prim.forward, **self.kwargs) if self.params else prim.forward


@dataclass
class Graph:
    nodes: list
    inputs: dict  # input name -> node id
    output: int
    needs: list = field(default_factory=list)  # node depends on a differentiated input: its cotangent is wanted

    @property
    def complex_safe(self) -> bool:
        return all(
            (n.fn.complex_safe if n.fn else primitives.get(n.op).complex_safe)
            for n in self.nodes
            if n.op or n.fn
        )

    @property
    def transparent(self) -> bool:
        """True when every op is gradrun's own, so perturbations can be tracked sparsely."""
        return not any(n.fn for n in self.nodes)

    @property
    def batched(self) -> bool:
        """True when every black box evaluates a chunk of perturbations per call."""
        boxes = [n.fn for n in self.nodes if n.fn]
        return bool(boxes) and all(fn.forward_batch is not None for fn in boxes)

    @property
    def has_jvp(self) -> bool:
        return all(n.fn.jvp is not None for n in self.nodes if n.fn)

    @property
    def has_vjp(self) -> bool:
        return all(n.fn.vjp is not None for n in self.nodes if n.fn)


def build(expr, functions: dict, inputs, integers=()) -> Graph:
    """Build the graph of ``expr`` over the named inputs, inlining declared functions.

    ``integers`` name inputs that are never differentiated (labels, masks): like
    constants, no cotangent is computed for them.
    """
    nodes: list = []
    memo: dict = {}

    def add(key, node):
        if key not in memo:
            memo[key] = len(nodes)
            nodes.append(node)
        return memo[key]

    input_ids = {name: add(("input", name), Node(name=name)) for name in inputs}

    def walk(e, env, depth):
        if depth > 200:
            raise GraphError("functions nest more than 200 deep (does a function call itself?)")
        if isinstance(e, Var):
            if e.name in env:
                return env[e.name]
            if e.name in input_ids:
                return input_ids[e.name]
            raise GraphError(f"unknown name '{e.name}'")
        if isinstance(e, Const):
            v = float(e.value)
            return add(("const", v), Node(name=repr(v), value=np.asarray(v)))
        args = tuple(walk(a, env, depth + 1) for a in e.args)
        fn = functions.get(e.fn)
        if isinstance(fn, ExprFunction):
            if len(args) != len(fn.params):
                raise GraphError(f"{fn.name} takes {len(fn.params)} arguments, got {len(args)}")
            return walk(fn.body, dict(zip(fn.params, args)), depth + 1)
        if isinstance(fn, PythonFunction):
            if len(args) != fn.nargs:
                raise GraphError(f"{fn.name} takes {fn.nargs} arguments, got {len(args)}")
            return add(("python", fn.name, args), Node(args=args, name=fn.name, fn=fn))
        if e.fn not in primitives.PRIMITIVES:
            raise GraphError(f"unknown function '{e.fn}'")
        prim = primitives.get(e.fn)
        if prim.nargs is not None and len(args) != prim.nargs:
            raise GraphError(f"{e.fn} takes {prim.nargs} arguments, got {len(args)}")
        return add((e.fn, args, e.params), Node(op=e.fn, args=args, params=e.params))

    output = walk(expr, {}, 0)
    needs = [False] * len(nodes)
    for i, n in enumerate(nodes):
        is_input = n.op is None and n.fn is None and n.value is None
        needs[i] = (is_input and n.name not in integers) or any(needs[a] for a in n.args)
    return Graph(nodes, input_ids, output, needs)


# ---------------------------------------------------------------- evaluation


def _apply(node: Node, args):
    if node.fn is not None:
        return np.asarray(node.fn.forward(*args))
    return np.asarray(node.forward()(*args))


def evaluate(graph: Graph, values: dict, dtype=np.float64, apply=None) -> list:
    """Every node's primal value, inputs cast to ``dtype``.

    ``apply(node, args)``, when given, evaluates the user's Python functions
    instead of calling them as they are (second order carries tangents through them).
    """
    vals: list = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for i, node in enumerate(graph.nodes):
            if node.value is not None:
                vals[i] = node.value.astype(dtype)
            elif node.op is None and node.fn is None:
                vals[i] = np.asarray(values[node.name], dtype=dtype)
            else:
                vals[i] = (apply if apply is not None and node.fn is not None else _apply)(
                    node, [vals[a] for a in node.args])
    return vals


def output_scale(graph: Graph, vals: list) -> np.ndarray:
    """The size of the numbers each output element is computed from: |f(x)[o]|, or the
    largest value anywhere in the graph if larger (f = tanh(|x| - x) cancels to 0; the
    round-off of |x| - x does not)."""
    def finite_abs(v):
        v = np.abs(np.real(np.asarray(v)))
        return np.where(np.isfinite(v), v, 0.0)

    def largest(v):  # one pass where every value is finite (a NaN or inf makes the max so)
        top = np.abs(np.real(np.asarray(v))).max(initial=0.0)
        return top if np.isfinite(top) else finite_abs(v).max(initial=0.0)

    out = finite_abs(vals[graph.output]).ravel()
    return np.maximum(out, max((largest(v) for v in vals), default=0.0))

