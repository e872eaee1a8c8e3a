"""Results as columns: the report's column list, and the table type that carries them.

An experiment's result is two tables of equal-length numpy arrays (``Columns``):
its checked Jacobian elements, and its screen's projections ``u . J v``, each
with columns of its own. ``COLUMNS`` is the report's row, in CSV order: the
one place a column is named, typed and given the value a row without it
shows. Adding a column to every report is one line here, plus filling it
where the rows are made. ``passed`` and ``element`` are derived when a report
is written (from ``status``, and from ``input``, ``index`` and the input's
shape), so that nothing stores them twice.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np

# The report's columns, in CSV order: (name, kind, the value of a row that has no such column).
COLUMNS = (
    ("experiment", str, ""),
    ("point", int, 0),
    ("input", str, ""),
    ("index", int, -1),  # flat C-order index in the input; -1 on a screen's projection
    ("element", str, ""),  # derived: X[0,1], or x for a scalar
    ("output", int, -1),  # flat index of the output element; -1 on a projection
    ("value", float, math.nan),
    ("numeric", float, math.nan),
    ("analytic", float, math.nan),
    ("abs_error", float, math.nan),
    ("rel_error", float, math.nan),
    ("passed", bool, False),  # derived from status
    ("status", str, ""),
    ("tolerance", float, math.nan),
    ("method", str, ""),
    ("step", float, math.nan),
    ("output_value", float, math.nan),
    ("error_estimate", float, math.nan),
    ("numeric_minus", float, math.nan),
    ("numeric_plus", float, math.nan),
    ("analytic_forward", float, math.nan),
    ("dtype", str, ""),
    ("check", str, ""),
    # second order: the entry d2 f / d input[index] d input2[index2] (see gradrun.hessian)
    ("order", int, 1),
    ("input2", str, ""),
    ("index2", int, -1),
    ("element2", str, ""),
    ("gradient", float, math.nan),  # second order: d f / d input[index], what the Hessian differentiates
    ("reason", str, ""),  # why an unresolved entry could not be decided (docs/pass-rule.md)
)
NAMES = tuple(name for name, _, _ in COLUMNS)
KIND = {name: kind for name, kind, _ in COLUMNS}
FILL = {name: fill for name, _, fill in COLUMNS}
DERIVED = ("element", "passed")

MOST_SHARED = 16  # distinct values a text column shares before the rest get a string each
PASSING = ("pass", "kink")  # the statuses that pass; status is the only source of passing
SWEEP_PREFIX = "sweep_"  # a swept coordinate's column: sweep_x, sweep_step, sweep_method

# A projection as a report row: what its missing element columns show.
PROJECTION_ROW = {"index": -1, "output": -1, "check": "screen"}


def text(value) -> str:
    """One value as a report's text: floats as repr (exact), booleans True/False, None empty."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


def passing(status) -> np.ndarray:
    """Which rows pass, from their status alone."""
    return among(status, PASSING)


def distinct(values) -> list | None:
    """The distinct values of an object column (None if some value cannot be hashed).

    A set of the column's items costs a fraction of one elementwise comparison
    of an object array, and most text columns hold one or a few shared strings;
    a column that holds one shared object (``constant``'s) is told apart first,
    from its pointers.
    """
    values = np.asarray(values, dtype=object).ravel()
    if one_object(values):
        return [values[0]]
    try:
        return list(set(values.tolist()))
    except TypeError:
        return None


def one_object(values: np.ndarray) -> bool:
    """Whether every item of a 1-D object array is the same object: its pointers compared in
    numpy, no Python call per item (the array is read in place, and alive while it is read)."""
    if values.ndim != 1 or len(values) < 2 or not values.flags.c_contiguous:
        return False
    pointers = np.ctypeslib.as_array((ctypes.c_size_t * len(values)).from_address(values.ctypes.data))
    return bool((pointers == pointers[0]).all())


def among(values, wanted, labels=None) -> np.ndarray:
    """Which of ``values`` are one of ``wanted`` (a few labels, such as statuses).

    ``labels``, the distinct values of ``values`` when known (``Columns.labels``),
    saves finding them again.
    """
    values = np.asarray(values)
    if values.dtype != object or not values.size:
        return np.isin(values, wanted) if values.size else np.zeros(values.shape, bool)
    labels = distinct(values) if labels is None else labels
    if labels is None:
        return np.isin(values, wanted)
    present = [label for label in labels if label in wanted]
    if len(present) == len(labels):
        return np.ones(values.shape, bool)
    out = np.zeros(values.shape, bool)
    for label in present:
        out |= values == label
    return out


def shared_strings(values) -> np.ndarray:
    """A low-cardinality text column as an object array of a few shared ``str`` objects.

    A numpy unicode array would copy each string into every row; this holds
    one reference per row and one string per distinct value.
    """
    values = np.asarray(values)
    if values.dtype == object:
        return values
    out = np.empty(values.shape, dtype=object)
    rest = np.ones(values.shape, dtype=bool)
    for _ in range(MOST_SHARED):
        if not rest.any():
            return out
        label = values[np.argmax(rest)]
        hit = rest & (values == label)
        out[hit] = str(label)
        rest &= ~hit
    out[rest] = values[rest].astype(object)  # many distinct texts (reasons with numbers): one each
    return out


def constant(value, n: int) -> np.ndarray:
    """One value repeated n times, as the column type it needs."""
    if isinstance(value, str):
        out = np.empty(n, dtype=object)
        out[:] = value
        return out
    if isinstance(value, (bool, np.bool_)):
        return np.full(n, bool(value))
    if isinstance(value, (int, np.integer)):
        return np.full(n, int(value), dtype=np.int64)
    return np.full(n, float(value))


def filler(name: str, n: int, like: np.ndarray | None = None) -> np.ndarray:
    """The column ``name`` for n rows that lack it: its FILL value, else empty of ``like``'s kind."""
    if name in FILL:
        return constant(FILL[name], n)
    if like is not None and like.dtype.kind == "f":
        return np.full(n, np.nan)
    return np.full(n, None, dtype=object)


class Columns:
    """One table: named 1-D numpy arrays of one length, in order."""

    def __init__(self, data=None):
        self.data = {k: np.asarray(v) for k, v in (data or {}).items()}
        self._labels: dict = {}  # name -> (the column, its distinct values)
        lengths = {len(v) for v in self.data.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def __setitem__(self, name: str, values) -> None:
        self.data[name] = np.asarray(values)

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, default=None):
        return self.data.get(name, default)

    def labels(self, name: str) -> list | None:
        """The distinct values of an object column, found once per column (a column is
        replaced, never changed in place); None for a column of unhashable values."""
        column = self.data[name]
        known = self._labels.get(name)
        if known is None or known[0] is not column:
            known = self._labels[name] = (column, distinct(column))
        return known[1]

    @property
    def names(self) -> list:
        return list(self.data)

    def take(self, rows) -> "Columns":
        """The rows at ``rows`` (a slice, indices or a boolean mask)."""
        return Columns({k: v[rows] for k, v in self.data.items()})

    @staticmethod
    def concat(tables) -> "Columns":
        """The tables one after another; a column some lack is filled (see ``filler``)."""
        tables = [t for t in tables if len(t)]
        if not tables:
            return Columns()
        names = list(dict.fromkeys(n for t in tables for n in t.names))
        data = {}
        for name in names:
            like = next(t[name] for t in tables if name in t)
            parts = [t[name] if name in t else filler(name, len(t), like) for t in tables]
            data[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return Columns(data)

    def rows(self) -> list:
        """One dict per row, as plain Python values: for a few rows, never a whole report."""
        names = self.names
        return [dict(zip(names, values)) for values in zip(*(self.data[n].tolist() for n in names))]


def sweep_columns(coords: dict, n: int) -> dict:
    """The ``sweep_<name>`` columns of one point's swept coordinates, for n rows."""
    return {SWEEP_PREFIX + name: constant(value, n) for name, value in coords.items()}


def sweep_names(tables) -> list:
    """Every ``sweep_`` column of the tables, in order of first appearance."""
    return list(dict.fromkeys(n for t in tables for n in t.names if n.startswith(SWEEP_PREFIX)))


# What pandas.read_csv reads as a missing value (its default na_values), a boolean or a number,
# whatever else its column holds (a report of one experiment, or of a selection): a name
# written so would come back as NaN, True or 1.0, not as itself, and "1" and "1.0" as one
MISSING = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])
BOOLEANS = frozenset(["True", "TRUE", "true", "False", "FALSE", "false"])
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE)


def misread(text: str) -> str:
    """What ``pandas.read_csv`` may read the text field ``text`` back as, if not as itself:
    "a missing value", "a boolean" or "a number"; '' when it reads back as written."""
    if text in MISSING:
        return "a missing value"
    if text in BOOLEANS:
        return "a boolean"
    return "a number" if _NUMBER.fullmatch(text) else ""
