"""What a resolved expression implies before it runs: its output shape, the functions it
reaches, whether it is complex-safe, and whether its check is element by element."""

from __future__ import annotations

import math

import numpy as np

from . import primitives, tree, usercode
from .limits import MAX_INTERMEDIATE_ELEMENTS
from .tree import Const, ExprFunction, PythonFunction, Var

_Problem = usercode.Refused  # a message, a hint and (inside an expression) a column


def _shape_text(shapes) -> str:
    return " and ".join(str(tuple(s)) for s in shapes)


def infer_shape(expr, shapes: dict, functions: dict, values: dict | None = None) -> tuple:
    """The output shape of ``expr`` on inputs of ``shapes``; raise ``_Problem`` when they do not fit.

    Primitives run their table entry's ``check`` (axes, shapes, sizes), then
    their forward function, after a shape rule has made sure the result is
    not huge; declared functions are followed. With ``values`` (the declared
    inputs of one point) everything runs on them, so a user's function is
    never called on invented inputs (a solve would reject an all-zero matrix)
    and a label out of one_hot's range is caught; without, on zeros. A
    problem in the experiment's own expression carries the column of the
    call it is in.
    """

    def run(e, env, own):
        if isinstance(e, Var):
            return env[e.name]
        if isinstance(e, Const):
            return np.asarray(float(e.value)) if values is not None else np.zeros(())
        args = [run(a, env, own) for a in e.args]
        fn = functions.get(e.fn)
        if isinstance(fn, ExprFunction):
            return run(fn.body, dict(zip(fn.params, args)), False)
        where = f"in {tree.render(e)}"
        column = e.column if own else None
        if isinstance(fn, PythonFunction):
            try:
                return np.asarray(fn.forward(*args))
            except KeyboardInterrupt:
                raise
            except BaseException as err:
                raise _Problem(f"{where}: {fn.source} on shapes {_shape_text(a.shape for a in args)} "
                               f"raised {type(err).__name__}: {err}") from None
        return _primitive_shape(e, args, where, column)

    env = {name: (np.asarray(values[name], dtype=np.float64) if values is not None and name in values
                  else np.zeros(shape)) for name, shape in shapes.items()}
    return run(expr, env, True).shape


def _primitive_shape(e, args, where, column):
    """A primitive's value on its arguments, after its shape rules pass."""
    prim = primitives.get(e.fn)
    shapes = [a.shape for a in args]
    try:
        out = prim.check(shapes, **prim.settings(e.params)) if prim.check else None
        if out is None:  # elementwise ops broadcast; the rest are no larger than their first argument
            out = np.broadcast_shapes(*shapes) if prim.kind == "elementwise" else shapes[0]
    except primitives.ShapeMismatch as err:
        raise _Problem(f"{where}: {err} of shapes {_shape_text(shapes)} does not fit",
                       "matmul needs (n, k) @ (k, m); elementwise ops need shapes that broadcast", column) from None
    except ValueError as err:
        if prim.check is not None and str(err):
            raise _Problem(f"{where}: {err}", f"`gradrun functions` shows what {e.fn} takes", column) from None
        what = f"{e.fn} (broadcasting)"
        raise _Problem(f"{where}: {what} of shapes {_shape_text(shapes)} does not fit",
                       "matmul needs (n, k) @ (k, m); elementwise ops need shapes that broadcast", column) from None
    if math.prod(out) > MAX_INTERMEDIATE_ELEMENTS:
        raise _Problem(f"{where}: result of shape {out} has more than {MAX_INTERMEDIATE_ELEMENTS} elements",
                       column=column)
    with np.errstate(all="ignore"):
        try:
            return np.asarray(prim.forward(*args, **e.kwargs))
        except Exception as err:
            raise _Problem(f"{where}: {e.fn} of shapes {_shape_text(shapes)} fails: {err}", column=column) from None


def screen_rows() -> int:
    """A screen's rows per input and point: one per direction."""
    from .screen import SCREEN_DIRECTIONS

    return SCREEN_DIRECTIONS


def full_check(check: str, entries: int, expr, functions: dict) -> bool:
    """Whether a point's check is element by element, as the verdict decides it
    (``verdict.check_point``): full, or auto up to FULL_LIMIT entries, or any user
    function without a VJP (a screen projects with VJPs)."""
    from .screen import FULL_LIMIT

    forward_only = any(isinstance(f, PythonFunction) and f.vjp is None for f in reachable(expr, functions).values())
    return check == "full" or forward_only or (check == "auto" and entries <= FULL_LIMIT)


def reachable(expr, functions: dict) -> dict:
    """The declared functions ``expr`` may call, directly or through others."""
    found: dict = {}
    todo = list(tree.calls(expr))
    while todo:
        name = todo.pop()
        if name in functions and name not in found:
            found[name] = functions[name]
            if isinstance(found[name], ExprFunction):
                todo.extend(tree.calls(found[name].body))
    return found


def complex_unsafe(expr, functions: dict) -> list:
    reach = reachable(expr, functions)
    names = set(tree.calls(expr)) | {c for f in reach.values() if isinstance(f, ExprFunction) for c in tree.calls(f.body)}
    unsafe = [n for n, f in reach.items() if isinstance(f, PythonFunction) and not f.complex_safe]
    unsafe += [n for n in names if n in primitives.PRIMITIVES and not primitives.get(n).complex_safe]
    return sorted(unsafe)


