"""CSV rows formatted where results are made (a ``-j`` or Dask worker), for the report writer to reuse.

A worker formats the rows of its chunk of experiments under the columns the
spec's report is expected to have, and hands each result its own bytes
(``ExperimentResult.csv``: the columns' key and the bytes). The writer
(``report.csv_chunks``) uses them where the report has exactly those columns
and formats the rows again where it has not. A row's text depends only on
the row and the columns, so rows formatted in one batch, in several, here or
in a worker, are the same bytes.
"""

from __future__ import annotations

import numpy as np

from . import layout

NEWLINE = 10


def schema_key(schema) -> tuple:
    """The report's columns and their types, as plain data: what CSV rows were formatted under."""
    return tuple((f.name, str(f.type)) for f in schema)


def reusable(result, key: tuple):
    """The result's CSV rows when they were formatted under the columns ``key``, else None."""
    return result.csv[1] if result.csv is not None and result.csv[0] == key else None


def _bytes(batches) -> bytes:
    from . import csvformat

    return b"".join(csvformat.batch_bytes(b) for b in batches)


def formatted(results, schema) -> list:
    """``[(schema_key, bytes)]``, one per result: their CSV rows under the report columns ``schema``.

    The rows of all the results are formatted in one Arrow batch (a batch's
    fixed cost, not its rows, is most of formatting a small experiment), then
    cut after each result's last row: at its newline, which is exact when no
    field holds a line break (the count of newlines says so); otherwise each
    result is formatted on its own.
    """
    key = schema_key(schema)
    rows = [r.rows for r in results]
    data = joined(results, schema)
    if not data:
        return [(key, b"") for _ in results]
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == NEWLINE) + 1
    if len(ends) != sum(rows):  # a field with a line break in it
        return [(key, _bytes(layout.report_batches([r], schema_=schema))) for r in results]
    cuts = np.concatenate([[0], ends])[np.cumsum([0] + rows)]
    return [(key, data[a:b]) for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist())]


def joined(results, schema) -> bytes:
    """The CSV rows of all ``results`` under the report columns ``schema``, formatted in one Arrow batch."""
    return _bytes(layout.combined(results, schema))
