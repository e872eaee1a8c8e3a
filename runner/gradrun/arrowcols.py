"""Arrow arrays from numpy columns, built from their buffers.

``pyarrow.array`` (and a Python scalar handed to a compute function) imports
pandas on first use, half a second of a run that needs no pandas. Building
arrays from buffers avoids it and copies nothing for numbers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .columns import distinct, text

MOST_LABELS = 64  # distinct values up to which a text column is built as codes into a dictionary


def floats(values) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.float64)
    return pa.Array.from_buffers(pa.float64(), len(values), [None, pa.py_buffer(values)])


def ints(values) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def bools(values) -> pa.Array:
    values = np.asarray(values, dtype=bool)
    bits = np.packbits(values, bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def to_bools(array: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy (a null reads as False)."""
    n, offset = len(array), array.offset
    validity, data = array.buffers()[:2]
    out = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little", count=offset + n)[offset:].astype(bool)
    if validity is not None and array.null_count:
        out &= np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little",
                             count=offset + n)[offset:].astype(bool)
    return out


def texts(strings) -> pa.Array:
    """A string array of Python strings (None is null)."""
    strings = list(strings)
    valid = np.array([s is not None for s in strings], dtype=bool)
    encoded = [s.encode("utf-8") if s is not None else b"" for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    large = offsets[-1] >= 2 ** 31
    kind, width = (pa.large_string(), np.int64) if large else (pa.string(), np.int32)
    mask = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    array = pa.Array.from_buffers(kind, len(encoded), [mask, pa.py_buffer(offsets.astype(width)),
                                                       pa.py_buffer(b"".join(encoded))])
    return array.cast(pa.string()) if large else array


def pick(labels: pa.Array, codes) -> pa.Array:
    """labels[codes]: a column of a few values, from their codes."""
    from . import arrowcompute

    codes = np.ascontiguousarray(codes, dtype=np.int32)
    return arrowcompute.take(labels, pa.Array.from_buffers(pa.int32(), len(codes), [None, pa.py_buffer(codes)]))


def scalar(value: str) -> pa.Scalar:
    return texts([value])[0]


def repeated(value: str, n: int) -> pa.Array:
    """One string n times, as a string array built from its buffers."""
    data = value.encode("utf-8")
    if len(data) * n >= 2 ** 31:
        return pick(texts([value]), np.zeros(n, dtype=np.int32))
    offsets = (np.arange(n + 1, dtype=np.int64) * len(data)).astype(np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data * n)])


def text_column(values) -> pa.Array:
    """A text column (an object array of a few shared strings, or of any values) as strings.

    Few distinct values are coded into a dictionary (no string per row), one
    alone is repeated; more, or values that are not text, are each written
    as ``columns.text``.
    """
    values = np.asarray(values, dtype=object)
    labels = distinct(values)
    if labels is None or len(labels) > MOST_LABELS or not all(v is None or isinstance(v, str) for v in labels):
        return texts(None if v is None else text(v) for v in values.tolist())
    if len(labels) == 1 and labels[0] is not None:
        return repeated(labels[0], len(values))
    codes = np.zeros(len(values), dtype=np.int32)
    for code, label in enumerate(labels[1:], start=1):
        codes[np.equal(values, label) if label is not None else np.equal(values, None)] = code
    return pick(texts(labels), codes)  # a None label is a null
