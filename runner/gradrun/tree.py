"""The expression tree: what the spec parser produces and the graph builder consumes.

A tree is made of three node kinds: ``Var`` (an input or a parameter),
``Const`` (a number) and ``Call`` (a primitive or a declared function applied
to positional arguments, with a primitive's static arguments, such as
``axis=1``, as ``params``). Operators are calls too: ``x + y`` is
``Call("add", (Var("x"), Var("y")))``; see ``OPERATORS``. Indexing is the
``index`` primitive (``x[0]`` is ``Call("index", (Var("x"),), (("key", (0,)),))``)
and comparisons, allowed only in where's condition, are ``less``, ``greater``...
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Union

# Operator spelling in an expression -> primitive name.
OPERATORS = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "**": "pow",
    "@": "matmul",
    "neg": "neg",  # unary minus
}

# Comparison spelling (only inside where's condition) -> primitive name.
COMPARISONS = {"<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal"}


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple
    params: tuple = ()  # static arguments as (name, value) pairs, sorted by name
    column: int | None = field(default=None, compare=False)  # where the call starts in its expression

    @property
    def kwargs(self) -> dict:
        return dict(self.params)


Expr = Union[Var, Const, Call]


@dataclass(frozen=True)
class ExprFunction:
    """A function declared in a spec as an expression of its parameters."""

    name: str
    params: tuple
    body: Expr


@dataclass(frozen=True)
class PythonFunction:
    """A function declared in a spec as the user's own Python code.

    ``forward(*primals) -> output``; ``vjp(cotangent, *primals)`` returns one
    cotangent per input (a tuple, or a single array for one input);
    ``jvp(tangents, *primals)`` (optional) returns the output tangent.
    ``forward_batch(*primals)`` (optional) evaluates many points in one call:
    every argument carries a leading batch axis of the same length B, and the
    result is (B, *output shape). Framework adapters (torch's and JAX's vmap)
    supply it; the engine then evaluates a chunk of perturbations per call.
    ``jvp_batch(tangents, *primals)`` (optional) is the JVP along a chunk of
    tangents: one (B, *input shape) array per input, or None for an input that
    does not move; the result is (B, *output shape).
    ``forward_moved(args, moved)`` (optional) is ``forward_batch`` told only
    what moves: row b is ``args`` with, for each ``k: (idx, values)`` of
    ``moved``, argument k's flat positions ``idx[b]`` set to ``values[b]``
    ((B, K) arrays), so an adapter builds the chunk in its own buffers.
    ``jvp_basis(moving, at, *primals)`` (optional) is ``jvp_batch`` along
    one-hot tangents: row b's is 1 at flat position ``at[b]`` of each argument
    position in ``moving`` (those of one input) and 0 elsewhere.
    ``defaults`` holds values for inputs the function supplies itself (a torch
    module's parameters); ``notes`` is a list the function appends to when it
    wants a reader to know how it was evaluated (vmap fell back, say).
    ``concurrent``: two calls may run at once, from two threads (the torch
    adapter's, outside train mode); chunks of perturbations then use two cores.
    ``chunk_rows(size, primals)`` (optional): the rows of a chunk of
    ``forward_batch``, ``forward_moved`` or ``jvp_basis`` at ``primals`` that
    moves an input of ``size`` elements, for an adapter that knows its costs
    (the engine's ``batch_rows`` otherwise).
    """

    name: str
    params: tuple
    forward: Callable
    vjp: Callable | None = None
    jvp: Callable | None = None
    complex_safe: bool = False
    source: str = ""  # "module:callable", for messages
    forward_batch: Callable | None = None
    hvp: Callable | None = None  # (cotangent, tangents, *primals) -> one block per input; see second_order
    jvp_batch: Callable | None = None
    forward_moved: Callable | None = None
    jvp_basis: Callable | None = None
    defaults: dict = field(default_factory=dict, compare=False, hash=False)
    notes: list = field(default_factory=list, compare=False, hash=False)
    concurrent: bool = field(default=False, compare=False, hash=False)
    chunk_rows: Callable | None = field(default=None, compare=False, hash=False)

    @property
    def nargs(self) -> int:
        return len(self.params)


def python_params(fn: Callable) -> tuple:
    """Parameter names of a user callable, in order (used as input names).

    Parameters with a default value are the function's own settings, not inputs.
    """
    sig = inspect.signature(fn)
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def chain(names, var: str = "x") -> Expr:
    """A chain of one-argument functions, applied first to last.

    ``chain(["square", "sigmoid"])`` is ``sigmoid(square(x))``.
    """
    expr: Expr = Var(var)
    for name in names:
        expr = Call(name, (expr,))
    return expr


def variables(expr: Expr) -> list:
    """Names of the variables an expression uses, in first-use order."""
    seen: dict = {}

    def walk(e):
        if isinstance(e, Var):
            seen.setdefault(e.name, None)
        elif isinstance(e, Call):
            for a in e.args:
                walk(a)

    walk(expr)
    return list(seen)


def calls(expr: Expr) -> list:
    """Names of the functions an expression calls, in first-use order."""
    seen: dict = {}

    def walk(e):
        if isinstance(e, Call):
            seen.setdefault(e.fn, None)
            for a in e.args:
                walk(a)

    walk(expr)
    return list(seen)


def render(expr: Expr) -> str:
    """A readable one-line form of a tree (for messages and reports)."""
    symbol = {v: k for k, v in OPERATORS.items() if k != "neg"}
    if isinstance(expr, Var):
        return expr.name
    if isinstance(expr, Const):
        return repr(float(expr.value)) if not float(expr.value).is_integer() else str(int(expr.value))
    symbol.update({v: k for k, v in COMPARISONS.items()})
    if expr.fn == "neg":
        return f"-({render(expr.args[0])})"
    if expr.fn in symbol and len(expr.args) == 2:
        return f"({render(expr.args[0])} {symbol[expr.fn]} {render(expr.args[1])})"
    if expr.fn == "index":
        return f"{render(expr.args[0])}[{', '.join(_render_key(k) for k in expr.kwargs['key'])}]"
    args = [render(a) for a in expr.args]
    if expr.fn in ("concatenate", "stack"):
        args = [f"[{', '.join(args)}]"]
    return f"{expr.fn}({', '.join(args + [f'{k}={v!r}' for k, v in expr.params])})"


def _render_key(k) -> str:
    if not isinstance(k, tuple):
        return str(k)
    start, stop, step = ("" if v is None else str(v) for v in k)
    return f"{start}:{stop}" + (f":{step}" if step else "")


__all__ = [
    "OPERATORS",
    "COMPARISONS",
    "Var",
    "Const",
    "Call",
    "Expr",
    "ExprFunction",
    "PythonFunction",
    "python_params",
    "chain",
    "variables",
    "calls",
    "render",
]
