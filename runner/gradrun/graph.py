"""The graph of an expression: nodes in evaluation order, built once, and its primal values.

A ``Graph`` is a list of nodes in evaluation order. It is built once, when a
spec is loaded, from an expression tree (``build``): declared expression
functions inlined, identical subexpressions shared, the declared functions it
reaches recorded. Everything else that an expression implies is read off the
graph, never off the tree again: its shapes and the load-time shape errors
(``gradrun.graphcheck``), complex safety, reachability, and what the runner
walks. ``evaluate`` gives every node's primal value. The walkers over it live
beside: ``gradrun.reverse`` (VJP), ``gradrun.forward_mode`` (JVP) and
``gradrun.perturb`` (batched perturbations for finite differences).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from typing import Optional

import numpy as np

from . import labels, primitives
from .limits import MAX_INLINED
from .tree import Call, Const, ExprFunction, PythonFunction, Var

MAX_DEPTH = 200  # functions nested deeper than this are taken for a function calling itself
INLINE_HINT = ("declare fewer layers of functions calling each other twice or more, "
               "or move the repeated part into python: code")


class GraphError(ValueError):
    """An expression that cannot be built or evaluated as a graph; ``hint`` says what to do, if known."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


class UnknownFunction(GraphError):
    """A call of a name that is neither a primitive nor a declared function."""

    def __init__(self, name: str):
        super().__init__(f"unknown function '{name}'")
        self.name = name


@dataclass
class Node:
    op: Optional[str] = None  # primitive name; None for inputs, constants and Python functions
    args: tuple = ()
    name: str = ""  # input name, or the Python function's name
    value: Optional[np.ndarray] = None  # a constant's value
    fn: Optional[PythonFunction] = None
    params: tuple = ()  # a primitive's static arguments, (name, value) pairs
    source: Optional[Call] = None  # the call it was built from (the first, where shared), for messages
    own: bool = False  # the call is in the experiment's own expression, not inside a declared function
    declared: Optional[PythonFunction] = None  # ``fn`` as declared, where ``fn`` takes integer inputs as such

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    @property
    def is_input(self) -> bool:
        return self.op is None and self.fn is None and self.value is None

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
    functions: dict = field(default_factory=dict)  # declared name -> function, every one the expression reaches
    shapes: list = field(default_factory=list)  # each node's shape at load (gradrun.graphcheck.shaped)
    dtypes: list = field(default_factory=list)  # each node's dtype there (inputs as float64)

    @property
    def complex_safe(self) -> bool:
        return not self.complex_unsafe

    @property
    def complex_unsafe(self) -> list:
        """The names of the functions and primitives that cannot take a complex step, sorted."""
        unsafe = {name for name, f in self.functions.items() if isinstance(f, PythonFunction) and not f.complex_safe}
        unsafe |= {n.op for n in self.nodes if n.op and not primitives.get(n.op).complex_safe}
        return sorted(unsafe)

    @property
    def transparent(self) -> bool:
        """True when every op is gradrun's own, so perturbations can be tracked sparsely."""
        return not any(n.fn for n in self.nodes)

    def _every_box(self, can) -> bool:
        """True when the graph has black boxes and ``can(fn)`` holds for every one."""
        boxes = [n.fn for n in self.nodes if n.fn]
        return bool(boxes) and all(can(fn) for fn in boxes)

    @property
    def batched(self) -> bool:
        """True when every black box evaluates a chunk of perturbations per call."""
        return self._every_box(lambda fn: fn.forward_batch is not None)

    def chunk_rows(self, size: int, vals: list, default) -> int:
        """Rows of a chunk of perturbations of an input of ``size`` elements at the point
        ``vals``: the fewest any black box asks for there (``PythonFunction.chunk_rows``),
        ``default(size)`` for one that does not say."""
        return min(n.fn.chunk_rows(size, [vals[a] for a in n.args]) if n.fn.chunk_rows else default(size)
                   for n in self.nodes if n.fn)

    @property
    def concurrent(self) -> bool:
        """True when every black box may be called from two threads at once."""
        return self._every_box(lambda fn: fn.concurrent)

    @property
    def has_jvp(self) -> bool:
        return all(n.fn.jvp is not None for n in self.nodes if n.fn)

    @property
    def has_vjp(self) -> bool:
        return all(n.fn.vjp is not None for n in self.nodes if n.fn)

    @property
    def output_shape(self) -> tuple:
        """The output's shape as the load-time evaluation found it (``gradrun.graphcheck.shaped``)."""
        return self.shapes[self.output]

    def bind(self, functions: dict) -> "Graph":
        """The same graph with its declared functions replaced by ``functions`` of the same
        names (torch modules built under an experiment's own seed)."""
        new = {name: functions.get(name, f) for name, f in self.functions.items()}
        instead = {id(f): new[name] for name, f in self.functions.items() if new[name] is not f}
        if not instead:
            return self
        nodes = [_rebound(n, instead) for n in self.nodes]
        return replace(self, nodes=nodes, functions=new)


def _rebound(node: Node, instead: dict) -> Node:
    """``node`` calling ``instead[id(its declared function)]``, integer inputs still as such."""
    declared = node.declared or node.fn
    if id(declared) not in instead:
        return node
    new = instead[id(declared)]
    if node.declared is None:
        return replace(node, fn=new)
    return replace(node, fn=labels.with_integers(new, node.fn.forward.positions), declared=new)


class _Builder:
    """One walk over an expression tree: nodes appended in evaluation order, each once."""

    def __init__(self, functions: dict, inputs):
        self.functions = functions
        self.nodes: list = []
        self.memo: dict = {}
        self.inlined: dict = {}  # (declared name, argument nodes) -> its output node: each call expanded once
        self.steps = 0  # tree nodes walked: an expression that doubles at each level stops at MAX_INLINED
        self.reached: dict = {}  # declared name -> function, in the order first called
        self.inputs = {name: self.add(("input", name), Node(name=name)) for name in inputs}

    def add(self, key, node) -> int:
        if key not in self.memo:
            self.memo[key] = len(self.nodes)
            self.nodes.append(node)
        return self.memo[key]

    def walk(self, e, env: dict, depth: int, own: bool) -> int:
        if depth > MAX_DEPTH:
            raise GraphError(f"functions nest more than {MAX_DEPTH} deep (does a function call itself?)",
                             "declared functions may call each other, never themselves, at most "
                             f"{MAX_DEPTH} levels deep")
        self.steps += 1
        if self.steps > MAX_INLINED:
            raise GraphError(f"with its declared functions inlined, the expression has more than "
                             f"{MAX_INLINED} operations", INLINE_HINT)
        if isinstance(e, Var):
            if e.name in env:
                return env[e.name]
            if e.name in self.inputs:
                return self.inputs[e.name]
            raise GraphError(f"unknown name '{e.name}'")
        if isinstance(e, Const):
            v = float(e.value)
            return self.add(("const", v), Node(name=repr(v), value=np.asarray(v)))
        args = tuple(self.walk(a, env, depth + 1, own) for a in e.args)
        return self.call(e, args, depth, own)

    def call(self, e: Call, args: tuple, depth: int, own: bool) -> int:
        fn = self.functions.get(e.fn)
        if fn is not None:
            self.reached.setdefault(e.fn, fn)
        if isinstance(fn, ExprFunction):
            _arity(fn.name, len(fn.params), args)
            if (fn.name, args) not in self.inlined:
                self.inlined[(fn.name, args)] = self.walk(fn.body, dict(zip(fn.params, args)), depth + 1, False)
            return self.inlined[(fn.name, args)]
        if isinstance(fn, PythonFunction):
            _arity(fn.name, fn.nargs, args)
            return self.add(("python", fn.name, args), Node(args=args, name=fn.name, fn=fn, source=e, own=own))
        if e.fn not in primitives.PRIMITIVES:
            raise UnknownFunction(e.fn)
        _arity(e.fn, primitives.get(e.fn).nargs, args)
        return self.add((e.fn, args, e.params), Node(op=e.fn, args=args, params=e.params, source=e, own=own))


def _arity(name, nargs, args) -> None:
    if nargs is not None and len(args) != nargs:
        raise GraphError(f"{name} takes {nargs} arguments, got {len(args)}")


def build(expr, functions: dict, inputs, integers=()) -> Graph:
    """Build the graph of ``expr`` over the named inputs, inlining declared functions.

    ``integers`` name inputs that are never differentiated (labels, masks): like
    constants, no cotangent is computed for them. The graph's shapes are filled
    in by ``gradrun.graphcheck.shaped``, which a spec's loading runs.
    """
    builder = _Builder(functions, inputs)
    output = builder.walk(expr, {}, 0, True)
    nodes = builder.nodes
    needs = [False] * len(nodes)
    for i, n in enumerate(nodes):
        needs[i] = (n.is_input and n.name not in integers) or any(needs[a] for a in n.args)
        labelled = tuple(k for k, a in enumerate(n.args) if nodes[a].is_input and nodes[a].name in integers)
        if n.fn is not None and labelled:  # a user's code gets its labels as integers
            nodes[i] = replace(n, fn=labels.with_integers(n.fn, labelled), declared=n.fn)
    return Graph(nodes, builder.inputs, output, needs, builder.reached)


# ---------------------------------------------------------------- evaluation


def readonly(args) -> list:
    """Read-only views of the arrays gradrun hands a user's function: the values it
    measures at and its working copies. A function that writes to its arguments moves
    the point every later call and difference is taken at (a VJP that set x to 0 made a
    wrong slope of 1 pass for sin at 0.7); now its write fails and ``call_user`` calls it
    again on copies. Cotangents and tangents, a VJP's or JVP's own to scale, are handed
    over as copies (``fresh``)."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray) and a.flags.writeable:
            a = a.view()
            a.flags.writeable = False
        out.append(a)
    return out


def call_user(fn, *args):
    """``fn(*args)``, a user's function or rule given ``readonly`` arguments. Code that
    writes into its arguments (``x[x < 0] = 0``, ``x -= x.max()``) is called again on
    copies of its own: numpy refuses the write before anything is written, and the copies
    keep it off the point every later call is measured at (a VJP that set x to 0 made a
    wrong slope pass), as torch code gets fresh tensors."""
    try:
        return fn(*args)
    except ValueError as err:
        if "read-only" not in str(err):
            raise
    return fn(*[np.array(a) if isinstance(a, np.ndarray) else a for a in args])


def fresh(a):
    """A copy of a cotangent or tangent a user's rule may scale in place."""
    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a


def _apply(node: Node, args):
    if node.fn is not None:
        return np.asarray(call_user(node.fn.forward, *readonly(args)))
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

