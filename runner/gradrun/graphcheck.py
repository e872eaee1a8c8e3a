"""What an expression's graph implies before it runs: its shapes (and the load-time
shape errors, with their place), and whether its check is element by element.

Loading a spec builds each experiment's ``Graph`` once (``gradrun.graph.build``);
``shaped`` evaluates it once at the first point's inputs, running each
primitive's shape rules first, and records every node's shape and dtype.
Complex safety and reachability are properties of the graph itself.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import deadline, primitives, tree, usercode
from .graph import Graph, build
from .limits import (MAX_AUTO_FULL_WORK, MAX_DIMENSIONS, MAX_EVALUATION_ELEMENTS, MAX_EVALUATION_WORK,
                     MAX_INTERMEDIATE_ELEMENTS)

_Problem = usercode.Refused  # a message, a hint and (inside an expression) a column
MAX_CALL_SHOWN = 120  # characters of the call a shape message names


def _shape_text(shapes) -> str:
    return " and ".join(str(tuple(s)) for s in shapes)


def shaped(graph: Graph, values: dict) -> Graph:
    """The graph with every node's shape and dtype, from one evaluation at ``values``
    (name -> array, one point's inputs); raise ``_Problem`` where shapes do not fit.

    Primitives run their table entry's ``check`` (axes, shapes, sizes), then
    their forward function, after a shape rule has made sure the result is
    not huge. Everything runs on the point's own inputs, so a user's function
    is never called on invented inputs (a solve would reject an all-zero
    matrix) and a label out of one_hot's range is caught. A problem in the
    experiment's own expression carries the column of the call it is in.

    An evaluation holds every node's value at once (the reverse pass reads
    them), so the sum of their sizes is bounded (``MAX_EVALUATION_ELEMENTS``),
    as are the multiply-adds of its matrix products (``MAX_EVALUATION_WORK``):
    a short expression of many large values must not take unbounded memory or time.
    """
    vals: list = [None] * len(graph.nodes)
    budget = _Budget()
    for i, node in enumerate(graph.nodes):
        if node.value is not None:
            vals[i] = np.asarray(node.value, dtype=np.float64)
        elif node.is_input:
            vals[i] = np.asarray(values[node.name], dtype=np.float64)
        else:
            vals[i] = _value(node, [vals[a] for a in node.args], budget)
        budget.held += vals[i].size
    return replace(graph, shapes=[v.shape for v in vals], dtypes=[v.dtype for v in vals])


def infer_shape(expr, shapes: dict, functions: dict, values: dict | None = None) -> tuple:
    """The output shape of ``expr`` on inputs of ``shapes`` (at ``values`` where given, else
    zeros); raise ``_Problem`` when they do not fit. A graph built and ``shaped``."""
    values = values or {}
    env = {name: values[name] if name in values else np.zeros(shape) for name, shape in shapes.items()}
    return shaped(build(expr, functions, list(shapes)), env).output_shape


class _Budget:
    """What one evaluation has used so far: elements held, multiply-adds done."""

    held = 0
    work = 0


class _Where:
    """``in <the call>``, rendered only when a message needs it: rendering every node's subtree
    as it is evaluated would cost time quadratic in the size of a large expression."""

    def __init__(self, source):
        self.source = source

    def __str__(self) -> str:
        # a call of 2000 characters would push what went wrong past the message's clip
        text = tree.render(self.source)
        return f"in {text if len(text) <= MAX_CALL_SHOWN else text[:MAX_CALL_SHOWN] + '...'}"


def _value(node, args, budget=None):
    """A node's value on its arguments, after its shape rules and ``budget`` allow it."""
    where = _Where(node.source)
    if node.fn is not None:
        try:
            with deadline.limited(deadline.load_limit()):  # a spec's load probes the user's code (--timeout)
                return np.asarray(node.fn.forward(*args))
        except KeyboardInterrupt:
            raise
        except deadline.TimedOut:
            limit = deadline.load_limit()
            raise _Problem(f"{where}: {node.fn.source} on shapes {_shape_text(a.shape for a in args)} "
                           f"did not return within {limit:g} s (--timeout {limit:g})",
                           "it hangs at the experiment's first point, or needs a longer --timeout") from None
        except BaseException as err:
            raise _Problem(f"{where}: {node.fn.source} on shapes {_shape_text(a.shape for a in args)} "
                           f"raised {type(err).__name__}: {err}") from None
    return _primitive_value(node, args, where, node.source.column if node.own else None, budget or _Budget())


def _primitive_value(node, args, where, column, budget):
    prim = primitives.get(node.op)
    shapes = [a.shape for a in args]
    try:
        out = prim.check(shapes, **prim.settings(node.params)) if prim.check else None
        if out is None:  # elementwise ops broadcast; the rest are no larger than their first argument
            out = np.broadcast_shapes(*shapes) if prim.kind == "elementwise" else shapes[0]
    except primitives.ShapeMismatch as err:
        raise _Problem(f"{where}: {err} of shapes {_shape_text(shapes)} does not fit",
                       "matmul needs (n, k) @ (k, m); elementwise ops need shapes that broadcast", column) from None
    except ValueError as err:
        if prim.check is not None and str(err):
            raise _Problem(f"{where}: {err}", f"`gradrun functions` shows what {node.op} takes", column) from None
        raise _Problem(f"{where}: {node.op} (broadcasting) of shapes {_shape_text(shapes)} does not fit",
                       "matmul needs (n, k) @ (k, m); elementwise ops need shapes that broadcast", column) from None
    if len(out) > MAX_DIMENSIONS:  # numpy's own limit is 64, and its message is numpy's
        raise _Problem(f"{where}: the result would have {len(out)} dimensions, more than {MAX_DIMENSIONS}",
                       "use fewer axes", column)
    if math.prod(out) > MAX_INTERMEDIATE_ELEMENTS:
        raise _Problem(f"{where}: result of shape {out} has more than {MAX_INTERMEDIATE_ELEMENTS} elements",
                       column=column)
    _spend(budget, prim, shapes, out, where, column)
    with np.errstate(all="ignore"):
        try:
            return np.asarray(prim.forward(*args, **node.kwargs))
        except Exception as err:
            raise _Problem(f"{where}: {node.op} of shapes {_shape_text(shapes)} fails: {err}", column=column) from None


def _spend(budget, prim, shapes, out, where, column):
    """Count a node's result and, for a matrix product, its multiply-adds; ``_Problem`` past a limit."""
    if budget.held + math.prod(out) > MAX_EVALUATION_ELEMENTS:
        raise _Problem(f"{where}: the values of one evaluation come to more than {MAX_EVALUATION_ELEMENTS} "
                       f"elements here (an evaluation holds every intermediate value at once)",
                       "use fewer or smaller large intermediate values (smaller inputs, broadcast_to and "
                       "stack of fewer copies), or split the experiment", column)
    if prim.kind == "product":  # matmul: every output element is a dot product over the inner axis
        inner = shapes[0][-1] if shapes[0] else 1
        budget.work += math.prod(out) * inner
        if budget.work > MAX_EVALUATION_WORK:
            raise _Problem(f"{where}: the matrix products of one evaluation come to more than "
                           f"{MAX_EVALUATION_WORK:.0e} multiply-adds", "use smaller matrices, or split the experiment",
                           column)


def screen_rows() -> int:
    """A screen's rows per input and point: one per direction."""
    from .screen import SCREEN_DIRECTIONS

    return SCREEN_DIRECTIONS


def check_work(full: bool, inputs: int, outputs: int, wrt: int, elements: int) -> int:
    """The work of one point's check, in element evaluations: a full check moves each of the
    ``inputs`` elements of the wrt inputs and pulls back each of the ``outputs`` elements, a
    screen moves and pulls back its directions; each of those evaluates the graph, whose
    values hold ``elements`` elements together. Differences of several steps cost a small
    factor more, the same for every graph."""
    from .screen import SCREEN_DIRECTIONS

    return (inputs + outputs if full else SCREEN_DIRECTIONS * (wrt + 1)) * max(elements, 1)


def full_work(graph: Graph, wrt, outputs: int, shapes=None) -> int:
    """The work of one point's full check, in element evaluations (as ``check_work``): each
    element of the ``wrt`` inputs moved, each of the ``outputs`` pulled back. A user's
    function sees whole arrays, so each move evaluates all the graph holds; gradrun's own
    graph moves only what one element reaches (``sparse_reach``): a full check of
    sum(sigmoid(X @ W)), X (300, 300), W (300, 100), moves 150 or 400 values an element,
    not the 210 000 an evaluation holds (2.5e7 element evaluations, not 2.5e10).
    ``shapes``: each node's shape (default ``graph.shapes``)."""
    shapes = graph.shapes if shapes is None else shapes
    elements = max(sum(math.prod(s) for s in shapes), 1)
    sizes = {n: math.prod(shapes[graph.inputs[n]]) for n in wrt}
    if graph.transparent:
        moved = sum(size * sparse_reach(graph, n, shapes) for n, size in sizes.items())
    else:
        moved = sum(sizes.values()) * elements
    return moved + outputs * elements


def sparse_reach(graph: Graph, name: str, shapes) -> int:
    """How many values a move of one element of input ``name`` touches in gradrun's own
    graph, over all its nodes, read off the shapes as ``gradrun.perturb`` spreads a move:
    an elementwise op keeps it (times a broadcast's fan), a matrix product spreads it along
    a row or column, a whole reduction gathers it into one value, anything else (or two
    moved operands of a product) moves the whole value. An upper bound: the engine's own
    sparse steps, where it keeps them, touch no more."""
    width = [0] * len(graph.nodes)  # 0: not moved
    width[graph.inputs[name]] = 1
    for i, node in enumerate(graph.nodes):
        moved = [k for k, a in enumerate(node.args) if width[a]]
        if not moved:
            continue
        size = math.prod(shapes[i])
        reach = size
        if node.fn is None and node.op:
            kind = primitives.get(node.op).kind_for(node.kwargs)
            args = [shapes[a] for a in node.args]
            if kind == "elementwise":
                reach = sum(width[node.args[k]] * max(1, size // max(math.prod(args[k]), 1)) for k in moved)
            elif kind == "product" and len(moved) == 1 and all(len(a) == 2 for a in args):
                reach = width[node.args[moved[0]]] * (args[1][1] if moved[0] == 0 else args[0][0])
            elif kind == "reduce":
                reach = 1
            elif kind in ("transpose", "reshape"):
                reach = width[node.args[0]]
        width[i] = max(1, min(size, reach))
    return sum(width)


def full_check(check: str, entries: int, graph: Graph, work: int = 0) -> bool:
    """Whether a point's check is element by element, as the verdict decides it
    (``verdict.check_point``): full, or auto up to FULL_LIMIT entries and
    ``MAX_AUTO_FULL_WORK`` (``work``: ``check_work`` of a full check), or any user
    function without a VJP (a screen projects with VJPs). A Jacobian of 10 000 entries
    whose graph broadcasts each input to a million values would take an hour in full,
    and seconds screened."""
    from .screen import FULL_LIMIT

    return check == "full" or not graph.has_vjp or (
        check == "auto" and entries <= FULL_LIMIT and work <= MAX_AUTO_FULL_WORK)
