"""CSV text of Arrow record batches: floats as Python's repr, in C loops.

The CSV is the contract of DESIGN.md: ``pandas.read_csv`` with no arguments
reads every float back bit for bit, booleans are ``True``/``False``, a text
field is quoted only when it holds a comma, a quote or a line break (as
Python's ``csv`` module does), and a missing value is an empty field. Floats
are written as ``repr`` writes them, the shortest string that reads back to
the same double: Arrow's shortest formatting finds the same digits and,
from 1e-4 up to 1e16 and below 1e-9, the same notation; exponents from e-5
to e-9 get Python's second digit, zeros are looked up, and the rest (whole
numbers, 1e-5 that Arrow writes 0.00001, 1e15) are formatted by ``repr``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import arrowcols
from .columns import text

_NEEDS_QUOTES = r'[,"\n\r]'
# string scalars built once from buffers (a Python str given to Arrow would import pandas)
_EMPTY, _COMMA, _NEWLINE, _QUOTE, _DOT_ZERO, _TRUE, _FALSE = (
    arrowcols.scalar(s) for s in ("", ",", "\n", '"', ".0", "True", "False"))
_ZEROS = arrowcols.texts(["0.0", "-0.0"])


def float_strings(values) -> pa.Array:
    """Each float as ``repr(float)`` writes it, as an Arrow string array (nulls stay null)."""
    if isinstance(values, pa.Array) and values.null_count:  # empty fields stay empty
        valid = pc.is_valid(values)
        out = float_strings(pc.fill_null(values, arrowcols.floats(np.zeros(1))[0]))
        return pc.if_else(valid, out, pa.nulls(len(values), pa.string()))
    if isinstance(values, pa.Array):
        x = np.frombuffer(values.buffers()[1], np.float64, count=len(values), offset=8 * values.offset)
        arr = values
    else:
        x = np.ascontiguousarray(values, dtype=np.float64)
        arr = arrowcols.floats(x)
    text = pc.cast(arr, pa.string())
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(x)
        small, big = magnitude < 1e-4, magnitude >= 1e16
    finite, zero = np.isfinite(x), x == 0
    sci = _flag(pc.match_substring(text, "e"))
    dot = _flag(pc.match_substring(text, "."))
    # already Python's: 0.5 and -3.9999999999996; 1.5e-10 and 2e+20 (two-digit exponents)
    same = finite & ~zero & ((~sci & dot & ~small & ~big) | (sci & ((small & (magnitude < 1e-9)) | big)))
    pad = finite & sci & small & (magnitude >= 1e-9)  # 1.5e-7: Python writes 1.5e-07
    exact = finite & ~zero & ~same & ~pad  # 100, 0.00001, 1e+15: Arrow's notation differs more
    out = text
    if pad.any():
        mask = arrowcols.bools(pad)
        out = pc.replace_with_mask(out, mask, pc.replace_substring(pc.filter(out, mask), "e-", "e-0"))
    if zero.any():
        out = pc.replace_with_mask(out, arrowcols.bools(zero),
                                   arrowcols.pick(_ZEROS, np.signbit(x[zero]).astype(np.int32)))
    if exact.any():
        out = pc.replace_with_mask(out, arrowcols.bools(exact), arrowcols.texts(map(repr, x[exact].tolist())))
    return out


def _flag(mask) -> np.ndarray:
    return arrowcols.to_bools(mask)


def _field(column: pa.Array) -> pa.Array:
    """One column's CSV fields as strings (null for an empty field)."""
    t = column.type
    if pa.types.is_floating(t):
        return float_strings(column)
    if pa.types.is_boolean(t):
        return pc.if_else(column, _TRUE, _FALSE)
    if pa.types.is_string(t):
        quoted = pc.match_substring_regex(column, _NEEDS_QUOTES)
        if _flag(quoted).any():
            escaped = pc.binary_join_element_wise(_QUOTE, pc.replace_substring(column, '"', '""'), _QUOTE, _EMPTY)
            return pc.if_else(quoted, escaped, column)
        return column
    return pc.cast(column, pa.string())


def header(names) -> bytes:
    """The header line."""
    return (",".join(text(n) if not any(c in n for c in ',"\n\r') else '"' + n.replace('"', '""') + '"'
                     for n in names) + "\n").encode("utf-8")


def _constant(column: pa.Array) -> bool:
    """Whether every row holds the same value (bit for bit; no nulls): formatted once then."""
    if column.null_count or len(column) < 2:
        return False
    t = column.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        bits = np.frombuffer(column.buffers()[1], np.int64, count=len(column), offset=8 * column.offset)
        return bool((bits == bits[0]).all())
    if pa.types.is_string(t):
        return bool(_flag(pc.equal(column, column[0])).all())
    return False


def batch_bytes(batch: pa.RecordBatch) -> bytes:
    """The CSV lines of one record batch, each ending in a newline."""
    if batch.num_rows == 0:
        return b""
    # a column of one value (experiment, dtype, output_value...) is formatted once, then repeated
    fields = [_field(column.slice(0, 1))[0] if _constant(column) else _field(column) for column in batch.columns]
    if all(isinstance(f, pa.Scalar) for f in fields):  # every row alike: one array keeps the join row-wise
        fields[0] = _field(batch.column(0))
    lines = pc.binary_join_element_wise(*fields, _COMMA, null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(lines, _NEWLINE, _EMPTY)
    data = lines.buffers()[2]
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return data.to_pybytes()[offsets[0]:offsets[-1]]
