"""Integer inputs (labels, masks) reach a user's code as integers.

gradrun holds every input as float64, and its own graphs take labels so
(``one_hot``); a user's ``python:``, ``torch:`` or ``jax:`` code indexes with
them (``z[np.arange(n), y]``, ``F.cross_entropy(z, y)``,
``take_along_axis``), which float64 labels break before anything is checked.
So a call of a user's function is wrapped where some of its arguments are
integer inputs: those arguments go in as int64, in every call gradrun makes
(forward, batched forward, VJP, JVP, HVP). Integer inputs are never
differentiated, so no perturbation, tangent or cotangent of one is ever asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .tree import PythonFunction

# where each call's primal arguments start: vjp(g, *xs), jvp(ts, *xs), hvp(g, ts, *xs), ...
OFFSETS = {"forward": 0, "forward_batch": 0, "vjp": 1, "jvp": 1, "jvp_batch": 1, "hvp": 2, "jvp_basis": 2}


def label_names(inputs, wrt) -> tuple:
    """The inputs given from Python that are labels, as a spec's ``{integer: ...}``: numpy
    arrays of integers that ``wrt`` leaves out (without ``wrt``, all of them unless every
    input is one: ``check("sum(x * x)", {"x": np.arange(3)})`` differentiates x)."""
    if not isinstance(inputs, dict):
        return ()
    found = tuple(k for k, v in inputs.items() if isinstance(v, np.ndarray) and v.dtype.kind in "iu")
    if wrt is None:
        return found if len(found) < len(inputs) else ()
    return tuple(k for k in found if k not in wrt)


def as_integers(a):
    """An integer input's value as int64 (its float64 copy holds integers exactly)."""
    return np.asarray(a).astype(np.int64)


@dataclass(frozen=True)
class IntegerArgs:
    """``call`` with the primal arguments at ``positions`` (counted from ``offset``) as int64."""

    call: object
    positions: tuple
    offset: int = 0

    def __call__(self, *args):
        args = list(args)
        for k in self.positions:
            args[self.offset + k] = as_integers(args[self.offset + k])
        return self.call(*args)


@dataclass(frozen=True)
class IntegerMoved:
    """``forward_moved(args, moved)`` with the arguments at ``positions`` as int64."""

    call: object
    positions: tuple

    def __call__(self, args, moved):
        args = [as_integers(a) if k in self.positions else a for k, a in enumerate(args)]
        return self.call(args, moved)


def with_integers(fn: PythonFunction, positions: tuple) -> PythonFunction:
    """``fn`` called with its arguments at ``positions`` as int64 (``fn`` itself when none)."""
    if not positions:
        return fn
    wrapped = {name: IntegerArgs(getattr(fn, name), positions, offset)
               for name, offset in OFFSETS.items() if getattr(fn, name) is not None}
    if fn.forward_moved is not None:
        wrapped["forward_moved"] = IntegerMoved(fn.forward_moved, positions)
    return replace(fn, **wrapped)
