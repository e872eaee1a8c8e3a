"""Static arguments of primitives: keyword (or trailing positional) constants such as ``axis=``.

A primitive's array arguments are differentiated; its static arguments are
not. They are integer or boolean constants written in the expression
(``sum(x, axis=1, keepdims=True)``, ``reshape(x, (2, 3))``, ``clip(x, -1, 1)``),
checked here by kind, and carried in the tree and graph as a hashable tuple of
``(name, value)`` pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

from .limits import MAX_DIMENSIONS


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _ints(v) -> bool:
    return isinstance(v, tuple) and all(_int(a) for a in v)


# kind -> (what a value of that kind is, for messages; the test a value passes)
KINDS = {
    "axis": ("an integer, a tuple of integers or None", lambda v: v is None or _int(v) or (_ints(v) and len(v) > 0)),
    "one_axis": ("an integer", _int),
    "axes": ("a tuple of integers or None", lambda v: v is None or _ints(v)),
    # numpy's shape functions stop at 32 dimensions (np.broadcast raised a RuntimeError)
    "shape": (f"a tuple of at most {MAX_DIMENSIONS} integers", lambda v: _ints(v) and len(v) <= MAX_DIMENSIONS),
    "bool": ("True or False", lambda v: isinstance(v, bool)),
    "count": ("a positive integer", lambda v: _int(v) and v > 0),
    "ddof": ("a non-negative integer", lambda v: _int(v) and v >= 0),
    "index": ("constant integers and slices", lambda v: isinstance(v, tuple)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
}


@dataclass(frozen=True)
class Param:
    """One static argument: its name, kind (a key of ``KINDS``) and default."""

    name: str
    kind: str
    default: object = None
    positional: bool = False  # may also be given by position, after the array arguments
    required: bool = False

    def accepts(self, value) -> bool:
        return KINDS[self.kind][1](value)

    @property
    def wants(self) -> str:
        return KINDS[self.kind][0]

    def spelling(self) -> str:
        if self.required:
            return self.name
        return f"{self.name}={self.default!r}"


AXIS = Param("axis", "axis", None)
KEEPDIMS = Param("keepdims", "bool", False)
LAST_AXIS = Param("axis", "one_axis", -1)


def normalize_axes(axis, ndim: int) -> tuple:
    """``axis`` (None, an int or a tuple) as sorted non-negative axes; a scalar has none."""
    if ndim == 0:
        return ()
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axis))


def check_axes(axis, shape: tuple, what: str = "axis") -> None:
    """Raise ValueError when ``axis`` does not name distinct axes of ``shape`` (scalars take any)."""
    ndim = len(shape)
    if axis is None or ndim == 0:
        return
    given = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in given:
        if not -ndim <= a < ndim:
            raise ValueError(f"{what} {a} is out of range for an argument of shape {tuple(shape)}: "
                             f"it has {ndim} {'axis' if ndim == 1 else 'axes'} (-{ndim}..{ndim - 1})")
    if len({a % ndim for a in given}) != len(given):
        raise ValueError(f"{what} {axis} names an axis twice")


__all__ = ["Param", "KINDS", "AXIS", "KEEPDIMS", "LAST_AXIS", "normalize_axes", "check_axes"]
