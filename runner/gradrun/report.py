"""Readers of the result columns: CSV, Parquet, the run record, JUnit XML and the console summary.

This module writes the CSV and Parquet reports and keeps the public API; the
other readers live in ``summary`` (console, JSON), ``ci_reports`` (JUnit,
annotations), ``runrecord`` and ``readings`` (what each says about one
experiment), and files are written by ``atomic``.

Every function here takes ``ExperimentResult``s and either returns text or
writes a file; none prints or exits. Files are written whole or not at all:
into a temporary file in the target's folder, then ``os.replace``d over the
final name, so a reader never sees half a report and a crash leaves the
previous report in place. The CSV and Parquet writers stream: the report is
formatted and written a piece at a time (``layout.CHUNK`` rows), never held
whole as text.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from . import layout
from .atomic import _atomic, _umask, atomic_write  # noqa: F401 (re-exported)
from .ci_reports import github_annotations, junit_xml, write_junit  # noqa: F401 (re-exported)
from .columns import NAMES, sweep_names, text
from .readings import WORST_SHOWN, describe, entry_lines, stats, worst_entries  # noqa: F401 (re-exported)
from .runrecord import file_sha256, run_record, write_run_record  # noqa: F401 (re-exported)
from .summary import experiment_block, experiment_json, summary_json, summary_table, totals_line  # noqa: F401

# The CSV's fixed columns, in order; each swept name adds a ``sweep_<name>`` column after them.
BASE_COLUMNS = list(NAMES)
FORMATS = ("csv", "parquet")  # --report-format: the suffix of the report file

csv_cell = text


# --- CSV and Parquet ---------------------------------------------------------


def csv_columns(results) -> list:
    """The CSV header: the fixed columns, then ``sweep_<name>`` for every swept name in the file."""
    return BASE_COLUMNS + sweep_names([t for r in results for t in (r.elements, r.projections)])


def csv_chunks(results):
    """The CSV of one spec file as bytes, a piece at a time: the header, then the rows."""
    return map(bytes, _csv_buffers(results))


def _csv_buffers(results):
    """``csv_chunks`` as bytes-like pieces (Arrow buffers: no copy on the way to a file).

    A result whose rows were already formatted where it was checked, under the
    same columns (``gradrun.csvrows``), is not formatted again. The rest is
    formatted a batch at a time on a thread of its own (Arrow's kernels release
    the GIL) while this one builds the next batch and the caller writes the last.
    """
    from . import csvformat

    schema = layout.schema(results)
    yield csvformat.header(schema.names)
    yield from _in_order(_csv_work(results, schema))


def _csv_work(results, schema):
    """The CSV's rows in order: pieces already formatted (a list), or a function that formats
    a batch built here (small results are built into one batch: a batch's fixed cost is
    most of formatting a small experiment)."""
    from . import csvrows

    key = csvrows.schema_key(schema)
    group, pending = [], 0  # small results waiting to be formatted together, and their rows
    for result in results:
        rows = csvrows.reusable(result, key)
        if rows is None and result.rows < layout.CHUNK:
            group.append(result)
            pending += result.rows
            if pending < layout.CHUNK:
                continue
        if group:
            yield _formatting(layout.combined(group, schema))
            group, pending = [], 0
        if rows is not None:
            yield [rows]
        elif result.rows >= layout.CHUNK:
            for batch in layout.report_batches([result], schema_=schema):
                yield _formatting([batch])
    if group:
        yield _formatting(layout.combined(group, schema))


def _formatting(batches):
    from . import csvformat

    return lambda: [piece for batch in batches for piece in csvformat.batch_buffers(batch)]


def _in_order(work, ahead: int = 2):
    """The pieces of ``work`` (lists of pieces, or functions that return them) in order, the
    functions run on a thread, up to ``ahead`` of them before the caller takes their pieces."""
    from . import threads

    if threads.free_workers() < 2:
        for w in work:
            yield from (w() if callable(w) else w)
        return
    with ThreadPoolExecutor(1) as formatter:
        waiting: deque = deque()
        for w in work:
            waiting.append(formatter.submit(w) if callable(w) else w)
            if len(waiting) > ahead:
                yield from _pieces(waiting.popleft())
        while waiting:
            yield from _pieces(waiting.popleft())


def _pieces(work) -> list:
    return work.result() if isinstance(work, Future) else work


def csv_text(results) -> str:
    """The whole CSV of one spec file: one row per checked Jacobian element or projection."""
    return b"".join(_csv_buffers(results)).decode("utf-8")


def write_csv(path, results) -> None:
    """Write the CSV of one spec file's results, atomically, a piece at a time."""
    atomic_write(path, _csv_buffers(results))


# Rows per Parquet row group: a group's fixed cost (its pages, footer entries) paid per
# batch made a fifth of writing ten 15k-element experiments; four batches bound what is held.
ROW_GROUP = 4 * layout.CHUNK
# The columns whose row groups keep min/max statistics: those a reader filters a report by.
# Statistics of the rest (floats nearly all distinct, element names) cost a sixth of the
# writing and would let no reader skip a row group.
FILTERED = ("experiment", "point", "input", "status", "passed")


def write_parquet(path, results) -> None:
    """Write the report of one spec file as Parquet (the CSV's columns, typed), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = layout.schema(results)
    # Dictionaries pay for text (a few distinct values) but not for floats, nearly all distinct.
    texts = [f.name for f in schema if pa.types.is_string(f.type)]
    with _atomic(path) as f:
        with pq.ParquetWriter(f, schema, use_dictionary=texts, write_statistics=list(FILTERED)) as writer:
            for group in _row_groups(layout.report_batches(results, schema_=schema), ROW_GROUP):
                writer.write_table(pa.Table.from_batches(group, schema=schema), row_group_size=ROW_GROUP)


def _row_groups(batches, rows: int = ROW_GROUP):
    """The record batches in runs of at most ``rows`` rows (a batch larger than that alone)."""
    group, held = [], 0
    for batch in batches:
        if group and held + len(batch) > rows:
            yield group
            group, held = [], 0
        group.append(batch)
        held += len(batch)
    if group:
        yield group


WRITERS = {"csv": write_csv, "parquet": write_parquet}


def write_report(path, results, fmt: str = "csv") -> None:
    """Write the report in ``fmt`` (csv or parquet)."""
    WRITERS[fmt](path, results)
