"""Element pieces of one input's full check: what is measured element by element, measured by ranges.

Checking one input (``verdict.check_input``) alternates between measuring
and judging. Measuring is element by element: the first measurement, f's
round-off noise, the re-measurement of the entries the judge sends back,
the one-sided differences of a kink; no element's numbers depend on
another's. Judging is not: an entry's tolerance follows the largest value
in its whole Jacobian row (``judge.row_scale``). So where a black box's
check is large (``due``), each measuring phase is cut into *pieces*, fixed
ranges of the input's elements, and mapped over them; the judge runs where
the pieces are joined.

A piece is the same range of elements whether it is measured here (a
serial run maps the pieces one after another, ``local``) or in a worker
process (``-j``, Dask: ``gradrun.piecework``), and every element is
measured from the same numbers, so the report is the same bytes either
way. The pieces do not depend on the number of workers.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, NamedTuple, Optional

import numpy as np

PIECE_MIN = 1024  # elements of one input from which a black box's check is measured in pieces
# times more for a black box that evaluates a batch per call (torch's or JAX's vmap, ``forward_batch``):
# its 2N calls are a few dozen batched ones, which a worker process (spawned, importing the
# framework: seconds) pays for only when they are very many
BATCHED = 32
PIECE = 256  # elements of a piece (a batched black box's: rounded up to whole chunks of its calls)

# phase (a method of ``verdict._Columns``, called as ``method(*arguments, idx=elements)``) ->
# (the element axis of each argument, None where every piece gets it whole; that of each result)
PHASES = {
    "derivative": ((None, None), (0, 0, 0, 0)),  # (method, step) -> value, estimate (n, M), kink, step (n,)
    "truncation": ((None, 0, 0), 0),  # (method, step (n,), value (n, M)) -> estimate (n, M)
    "noise": ((), 0),  # () -> f's round-off noise (n, M)
    "remeasured": ((-1, -1, -1), (-1, -1, -1)),  # (base (n,), magnitude, aim (M, n)) -> value, uncertainty, step
    # (step (n,), floor, unit (M, n)) -> kink (n,), minus, plus, slack, value, off, flat (M, n)
    "kink_evidence": ((-1, -1, -1), (0, -1, -1, -1, -1, -1, -1)),
}


class Plan(NamedTuple):
    """When a check is measured in pieces, how large they are, and who measures them.

    ``mapper(where, phase, calls)``, when given, measures ``calls``
    (``[(arguments, elements)]``) of input ``where = (point, name)`` and returns
    their results in order (a worker process, a Dask task); None: this process.
    """

    min_size: int = PIECE_MIN
    size: int = PIECE
    mapper: Optional[Callable] = None


_PLAN = contextvars.ContextVar("gradrun_pieces_plan", default=None)


def plan() -> Plan:
    """The plan in force: the module's sizes and this process, unless ``planned`` says otherwise."""
    return _PLAN.get() or Plan(PIECE_MIN, PIECE)


@contextlib.contextmanager
def planned(min_size: int | None = None, size: int | None = None, mapper=None):
    """Checks inside use these sizes (None: the plan in force) and measure their pieces with ``mapper``."""
    now = plan()
    token = _PLAN.set(Plan(now.min_size if min_size is None else min_size, now.size if size is None else size,
                           mapper))
    try:
        yield
    finally:
        _PLAN.reset(token)


def due(graph, elements: int, min_size: int | None = None) -> bool:
    """Whether a check of ``elements`` elements of one input of ``graph`` is measured in pieces:
    a black box's (whose 2N calls dominate; gradrun's own graphs are sparse and threaded) of at
    least ``min_size`` elements (``BATCHED`` times as many where it evaluates a batch per call)."""
    least = (plan().min_size if min_size is None else min_size) * (BATCHED if graph.batched else 1)
    return not graph.transparent and elements >= least


def measurer(cols, idx, where):
    """``cols`` itself, or where ``due``, a ``Pieces`` measuring the elements ``idx`` through it."""
    now = plan()
    if not due(cols.graph, len(idx), now.min_size):
        return cols
    size = cols.chunk * math.ceil(now.size / cols.chunk) if cols.graph.batched else now.size  # calls stay full
    return Pieces(cols, idx, size, now.mapper, where)


class Pieces:
    """The numeric side of one input (``verdict._Columns``' interface to ``check_input``), each
    measuring phase mapped over fixed ranges of ``idx``, ``size`` elements each."""

    def __init__(self, cols, idx, size, mapper, where):
        self.cols, self.size, self.mapper, self.where = cols, size, mapper, where
        self.graph, self.vals, self.x = cols.graph, cols.vals, cols.x
        self.slot = np.full(int(idx.max()) + 1 if len(idx) else 0, -1, dtype=np.int64)
        self.slot[idx] = np.arange(len(idx))  # an element's position in idx, which fixes its piece

    def auto_steps(self, method, idx):
        return self.cols.auto_steps(method, idx)

    def derivative(self, method, step, idx):
        return self._map("derivative", idx, method, step)

    def truncation(self, method, h, value, idx):
        return self._map("truncation", idx, method, h, value)

    def noise(self, idx):
        return self._map("noise", idx)

    def remeasured(self, base, magnitude, limit, idx):
        return self._map("remeasured", idx, base, magnitude, limit)

    def kink_evidence(self, h, floor, unit, idx):
        return self._map("kink_evidence", idx, h, floor, unit)

    def _map(self, phase, idx, *arguments):
        idx = np.asarray(idx, dtype=np.int64)
        takes, gives = PHASES[phase]
        runs = _runs(self.slot[idx] // self.size)
        calls = [(tuple(a if axis is None else _part(a, axis, at) for a, axis in zip(arguments, takes)), idx[at])
                 for at in runs]
        if self.mapper is None or len(calls) < 2:
            method = getattr(self.cols, phase)
            found = [method(*args, idx=elements) for args, elements in calls]
        else:
            found = self.mapper(self.where, phase, calls)
        if isinstance(gives, int):
            return np.concatenate(found, axis=gives)
        return [np.concatenate(parts, axis=axis) for parts, axis in zip(zip(*found), gives)]


def measure(cols, phase: str, arguments, elements):
    """One call of a phase on ``cols`` (``verdict._Columns``): what a worker does with a piece."""
    if phase not in PHASES:
        raise ValueError(f"no measuring phase {phase!r}")
    return getattr(cols, phase)(*arguments, idx=np.asarray(elements, dtype=np.int64))


def _runs(piece) -> list:
    """Slices of consecutive positions in the same piece, in order."""
    if not len(piece):
        return [slice(0, 0)]
    cuts = np.flatnonzero(np.diff(piece)) + 1
    edges = [0, *cuts.tolist(), len(piece)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _part(a, axis, at):
    a = np.asarray(a)
    index = [slice(None)] * a.ndim
    index[axis] = at
    return a[tuple(index)]
