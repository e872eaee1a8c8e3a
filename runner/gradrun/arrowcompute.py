"""The few Arrow compute functions the report writers call, by name.

``import pyarrow.compute`` builds a Python wrapper for each of Arrow's ~300
compute functions, about 50 ms of every run; the writers need a dozen.
Each is called here through ``pyarrow._compute.call_function``, the call
those wrappers make. (``Array.cast``, ``.take`` and ``.filter`` import
``pyarrow.compute`` themselves, so they are not used on the hot path.)
"""

from __future__ import annotations

import pyarrow as pa
from pyarrow import _compute

_call = _compute.call_function


def cast(array, target: pa.DataType):
    return _call("cast", [array], _compute.CastOptions(target))


def join(*strings, separator, nulls_as: str | None = None):
    """Row by row, the strings (arrays or scalars) joined with ``separator`` (a scalar);
    a null joins as ``nulls_as`` when given, else makes the row null."""
    options = _compute.JoinOptions("emit_null") if nulls_as is None else _compute.JoinOptions("replace", nulls_as)
    return _call("binary_join_element_wise", [*strings, separator], options)


def replace_substring(strings, pattern: str, replacement: str):
    return _call("replace_substring", [strings], _compute.ReplaceSubstringOptions(pattern, replacement))


def filter(values, mask):  # noqa: A001 - Arrow's name
    return _call("filter", [values, mask], _compute.FilterOptions())


def take(values, indices):
    return _call("take", [values, indices], _compute.TakeOptions())


def replace_with_mask(values, mask, replacements):
    return _call("replace_with_mask", [values, mask, replacements])


def dictionary_encode(values):
    """The distinct values (``.dictionary``, in order of first appearance) and each row's code (``.indices``)."""
    return _call("dictionary_encode", [values])


def if_else(condition, yes, no):
    return _call("if_else", [condition, yes, no])


def is_valid(values):
    return _call("is_valid", [values])


def coalesce(*values):
    """The first non-null of the values, row by row (``fill_null`` with a scalar last)."""
    return _call("coalesce", list(values))


def equal(a, b):
    return _call("equal", [a, b])
