"""CSV text of Arrow record batches: floats as Python's repr, in C loops.

The CSV is the contract of DESIGN.md: ``pandas.read_csv`` with no arguments
reads every float back bit for bit, booleans are ``True``/``False``, a text
field is quoted only when it holds a comma, a quote or a line break (as
Python's ``csv`` module does), and a missing value is an empty field. Floats
are written as ``repr`` writes them, the shortest string that reads back to
the same double. Arrow's cast to text finds the same digits; only its
notation differs, and that depends on the magnitude alone (the decimal
exponent of the shortest digits, whose bounds are exact powers of ten):

=================  ====================  ======================  =====================
|x|                Arrow                 repr                    here
=================  ====================  ======================  =====================
below 1e-9         1.5e-10               1.5e-10                 Arrow's
1e-9 to 1e-6       1.5e-7                1.5e-07                 Arrow's, e-0 for e-
1e-6 to 1e-4       0.000015              1.5e-05                 repr
1e-4 to 1e10       0.5, 100              0.5, 100.0              Arrow's, .0 for whole
1e10 to 1e16       1.5e+10               15000000000.0           repr
from 1e16          1e+16                 1e+16                   Arrow's
=================  ====================  ======================  =====================

Zeros are whole numbers too (Arrow writes 0 and -0); nan and inf are alike.
The missing bytes (``.0``, the ``0`` of ``e-07``) are inserted in one numpy
pass over the text. The two bands written by ``repr`` are written by
``floattext`` (repr's digits and notation for a whole numpy array, about 200 ns a
float, a fifth of a Python ``repr`` call and its encoding), or by ``repr`` itself
below ``FLOATTEXT_ROWS`` of them (floattext's few hundred numpy calls cost about
0.4 ms whatever the size); a column mostly in those bands (``tolerance`` near 1e-5)
is written by floattext alone. Arrow's cast stays for the rest: it finds the same
digits in about 110 ns a float, half floattext's time.

The cast is most of the writer's time (about 100 ns a float), so a float
column of few distinct values (``abs_error``, whose differences are a few
multiples of an ulp; ``step``; an element's ``value`` repeated for each of its
outputs) is formatted once per distinct bit pattern and gathered; and a large
batch is cut into row slices formatted on threads side by side where a core is free (Arrow's
kernels and numpy's loops release the GIL). A row's text depends on the row
alone, so neither changes a byte.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from . import arrowcols, floattext, threads
from . import arrowcompute as compute
from .columns import text

SPLIT_ROWS = 16_384  # rows from which a batch is cut into row slices, one per thread
FLOATTEXT_ROWS = 500  # floats in the repr bands from which floattext writes them, not repr
REPR_SHARE = 0.5  # share of a column's floats in the repr bands from which floattext writes all
DISTINCT_SAMPLE = 1024  # rows sampled to guess whether a float column has few distinct values

_SPECIAL = np.zeros(256, dtype=bool)  # by byte: a field holding one of these is quoted
_SPECIAL[[ord(c) for c in ',"\n\r']] = True
_QUOTE_BYTE = ord('"')
# string scalars built once from buffers (a Python str given to Arrow would import pandas)
_EMPTY, _COMMA, _NEWLINE, _QUOTE, _TRUE, _FALSE = (
    arrowcols.scalar(s) for s in ("", ",", "\n", '"', "True", "False"))


def float_strings(values) -> pa.Array:
    """Each float as ``repr(float)`` writes it, as an Arrow string array (nulls stay null)."""
    if isinstance(values, pa.Array) and values.null_count:  # empty fields stay empty
        valid = compute.is_valid(values)
        out = float_strings(compute.coalesce(values, arrowcols.floats(np.zeros(1))[0]))
        return compute.if_else(valid, out, pa.nulls(len(values), pa.string()))
    if isinstance(values, pa.Array):
        x = np.frombuffer(values.buffers()[1], np.float64, count=len(values), offset=8 * values.offset)
        arr = values
    else:
        x = np.ascontiguousarray(values, dtype=np.float64)
        arr = arrowcols.floats(x)
    with np.errstate(invalid="ignore"):
        m = np.abs(x)  # nan compares False everywhere below: written as Arrow writes it, like inf
        pad = (m >= 1e-9) & (m < 1e-6)  # 1.5e-7: Python writes 1.5e-07
        whole = (m < 1e10) & (x == np.trunc(x)) & ((m >= 1e-4) | (x == 0))  # 100, -0: Python writes 100.0, -0.0
        exact = ((m >= 1e-6) & (m < 1e-4)) | ((m >= 1e10) & (m < 1e16))  # notations apart
    if exact.sum() > REPR_SHARE * len(x):  # most of them to be written as repr: floattext writes all
        return floattext.strings(x)
    out = compute.cast(arr, pa.string())
    if pad.any() or whole.any():
        out = _inserted(out, [(pad, 1, b"0"), (whole, 0, b".0")])
    if exact.any():
        out = compute.replace_with_mask(out, arrowcols.bools(exact), _repr_strings(x[exact]))
    return out


def _repr_strings(x: np.ndarray) -> pa.Array:
    """``repr`` of each float: by floattext, or one Python call each below ``FLOATTEXT_ROWS``
    (floattext's few hundred numpy calls cost more than that many ``repr`` calls)."""
    if len(x) >= FLOATTEXT_ROWS:
        return floattext.strings(x)
    return arrowcols.texts(map(repr, x.tolist()))


def few_distinct(bits: np.ndarray) -> bool:
    """Whether a column (its floats' bit patterns) likely holds at most half as many distinct
    values as rows: from the repeats among a seeded sample of rows (rows alike in a run,
    an element's outputs, are not missed the way a strided sample would miss them).
    Only a guess: it decides how a column is formatted, never what is written."""
    n = len(bits)
    if n < 4 * DISTINCT_SAMPLE:
        return False
    rows = np.unique(np.random.default_rng(n).integers(0, n, DISTINCT_SAMPLE))
    repeats = len(rows) - len(np.unique(bits[rows]))
    # a pair of sampled rows is alike with probability about 1/distinct: count those pairs
    return repeats >= len(rows) * (len(rows) - 1) / n


def _float_field(column: pa.Array) -> pa.Array:
    """A float column's fields: formatted once per distinct bit pattern where few are distinct
    (bits, not values: -0.0 is not 0.0), else each row."""
    if column.null_count:
        return float_strings(column)
    bits = np.frombuffer(column.buffers()[1], np.int64, count=len(column), offset=8 * column.offset)
    if not few_distinct(bits):
        return float_strings(column)
    coded = compute.dictionary_encode(arrowcols.ints(bits))
    labels = np.frombuffer(coded.dictionary.buffers()[1], np.float64, count=len(coded.dictionary),
                           offset=8 * coded.dictionary.offset)
    return compute.take(float_strings(labels), coded.indices)


def _inserted(strings: pa.Array, inserts) -> pa.Array:
    """``strings`` (no nulls) with bytes inserted: ``inserts`` lists (rows, how many bytes
    before each row's end, the bytes). One pass over the text, in numpy."""
    n = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], np.int32, count=n + 1, offset=4 * strings.offset).astype(np.int64)
    data = np.frombuffer(strings.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    offsets -= offsets[0]
    grow = np.zeros(n + 1, dtype=np.int64)
    at, values = [], []
    for rows, back, added in inserts:
        rows = np.flatnonzero(rows)
        grow[rows + 1] += len(added)
        for byte in added:  # several bytes at one place go in in order (np.insert keeps it)
            at.append(offsets[rows + 1] - back)
            values.append(np.full(len(rows), byte, dtype=np.uint8))
    spliced = np.insert(data, np.concatenate(at), np.concatenate(values))
    offsets += np.cumsum(grow)
    large = offsets[-1] >= 2 ** 31
    kind, width = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    array = pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets.astype(width)), pa.py_buffer(spliced)])
    return compute.cast(array, pa.string()) if large else array


def _needs_quotes(column: pa.Array) -> tuple:
    """Which strings hold a comma, a quote or a line break, and whether any holds a quote:
    a byte scan of the column's data."""
    n = len(column)
    _, offsets, data = column.buffers()
    needs = np.zeros(n, dtype=bool)
    if data is None or not n:
        return needs, False
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    bounds = np.frombuffer(offsets, width, count=n + 1, offset=column.offset * np.dtype(width).itemsize)
    raw = np.frombuffer(data, np.uint8)[bounds[0]:bounds[-1]]
    hits = np.flatnonzero(_SPECIAL[raw])
    needs[np.searchsorted(bounds[1:], hits + bounds[0], side="right")] = True
    return needs, bool(len(hits)) and bool((raw[hits] == _QUOTE_BYTE).any())


def _field(column: pa.Array) -> pa.Array:
    """One column's CSV fields as strings (null for an empty field)."""
    t = column.type
    if pa.types.is_floating(t):
        return _float_field(column)
    if pa.types.is_boolean(t):
        return compute.if_else(column, _TRUE, _FALSE)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        quoted, quotes = _needs_quotes(column)
        if not quoted.any():
            return column
        doubled = compute.replace_substring(column, '"', '""') if quotes else column  # X[0,1] holds none
        escaped = compute.join(_QUOTE, doubled, _QUOTE, separator=_EMPTY)
        return escaped if quoted.all() else compute.if_else(arrowcols.bools(quoted), escaped, column)
    return compute.cast(column, pa.string())


def _cell(value) -> str:
    """One field's text, quoted if need be, formatted in Python (a column's one value, a header)."""
    field = text(value)
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"\n\r') else field


def header(names) -> bytes:
    """The header line."""
    return (",".join(map(_cell, names)) + "\n").encode("utf-8")


def _constant(column: pa.Array) -> bool:
    """Whether every row holds the same value (bit for bit; no nulls): formatted once then."""
    if column.null_count or len(column) < 2:
        return False
    t = column.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        width = np.dtype(f"u{t.bit_width // 8}")
        bits = np.frombuffer(column.buffers()[1], width, count=len(column), offset=width.itemsize * column.offset)
        return bool((bits == bits[0]).all())
    if pa.types.is_string(t):
        return bool(arrowcols.to_bools(compute.equal(column, column[0])).all())
    return False


def _same_text(column: pa.Array) -> str | None:
    """The one field every row of ``column`` shows (formatted once), or None if rows differ."""
    if len(column) and column.null_count == len(column):
        return ""
    return _cell(column[0].as_py()) if _constant(column) else None


def _line_parts(fields: list) -> list:
    """The arguments of one row join: each run of constant fields (texts) becomes one text,
    and the line's newline joins the last constant (or a last, separate argument)."""
    parts: list = []
    for f in fields:
        if isinstance(f, str) and parts and isinstance(parts[-1], str):
            parts[-1] += "," + f
        else:
            parts.append(f)
    if isinstance(parts[-1], str):
        parts[-1] += "\n"
    return parts


def batch_bytes(batch: pa.RecordBatch) -> bytes:
    """The CSV lines of one record batch, each ending in a newline."""
    return b"".join(batch_buffers(batch))


def batch_buffers(batch: pa.RecordBatch) -> list:
    """The CSV lines of one record batch as pieces in row order (bytes or Arrow buffers).

    A batch of ``SPLIT_ROWS`` rows or more is cut into row slices, one per thread
    (``threads.free_workers``), formatted side by side: wall clock, not CPU time, is saved.
    """
    n = batch.num_rows
    slices = min(threads.free_workers(), n // SPLIT_ROWS)
    if slices < 2:
        return [batch_buffer(batch)]
    bounds = np.linspace(0, n, slices + 1).astype(np.int64).tolist()
    with ThreadPoolExecutor(slices) as pool:
        return list(pool.map(batch_buffer, [batch.slice(a, b - a) for a, b in zip(bounds, bounds[1:])]))


def batch_buffer(batch: pa.RecordBatch):
    """``batch_bytes`` without its last copy: bytes, or an Arrow buffer (for a file's ``write``)."""
    if batch.num_rows == 0:
        return b""
    # a column of one value (experiment, dtype, output_value...) is formatted once, then repeated
    fields = [_same_text(column) for column in batch.columns]
    parts = _line_parts([_field(column) if f is None else f for f, column in zip(fields, batch.columns)])
    if len(parts) == 1:  # every row alike
        return parts[0].encode("utf-8") * batch.num_rows
    parts = [arrowcols.scalar(p) if isinstance(p, str) else p for p in parts]
    lines = compute.join(*parts, separator=_COMMA, nulls_as="")
    if isinstance(parts[-1], pa.Array):
        lines = compute.join(lines, _NEWLINE, separator=_EMPTY)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return lines.buffers()[2][offsets[0]:offsets[-1]]
