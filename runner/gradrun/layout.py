"""The report's rows: an experiment's elements and projections, in report order.

A report lists, for each point and each input in turn, the screen's
projections of that input (if it was screened) and then its checked
elements, one row each, with the columns of ``gradrun.columns.COLUMNS`` and
a ``sweep_<name>`` column per swept name. A projection shows ``index`` and
``output`` -1 and the element name ``u<k>.J.v<k>``. This module makes those
rows, in pieces of at most ``chunk`` rows (so that writers stream), as numpy
columns (``pieces``, ``report_rows``, ``report_column``) or as Arrow record
batches (``report_batches``, ``report_table``) for the file writers.
"""

from __future__ import annotations

import numpy as np

from .columns import DERIVED, KIND, NAMES, PROJECTION_ROW, Columns, constant, filler, passing, sweep_names

CHUNK = 1 << 16  # rows per piece a writer formats at once
# The element names last built for each (input, shape), with their indices: the points of a
# sweep and experiments of one shape name the same elements again (a third of building a batch).
_NAMES: dict = {}
MOST_NAMED = 8


def _segments(result):
    """(table, start, stop, is_projection) runs of rows, in report order."""
    p = e = 0
    for n_proj, n_elem in result.blocks:
        if n_proj:
            yield result.projections, p, p + n_proj, True
        if n_elem:
            yield result.elements, e, e + n_elem, False
        p, e = p + n_proj, e + n_elem


def pieces(result, sweep=None, chunk: int | None = None):
    """(columns, is_projection) pieces of the report's rows, each of one input.

    The columns are the report's (but the derived ``element`` and
    ``passed``) and ``sweep``'s (by default the result's own), filled where a
    row has none. A projection's piece keeps its ``direction``; an element's
    piece, its input's ``shape`` is ``result.shapes[input]``.
    """
    sweep = sweep_names([result.elements, result.projections]) if sweep is None else sweep
    for table, lo, hi, projection in _spans(result, chunk):
        yield _piece(table.take(slice(lo, hi)), projection, sweep), projection


def _spans(result, chunk: int | None = None):
    """(table, start, stop, is_projection) of each piece ``pieces`` makes, in report order."""
    chunk = chunk or CHUNK
    for table, start, stop, projection in _segments(result):
        for lo in range(start, stop, chunk):
            yield table, lo, min(lo + chunk, stop), projection


def _piece(part: Columns, projection: bool, sweep) -> Columns:
    n = len(part)
    data = {}
    for name in [c for c in NAMES if c not in DERIVED or c in part] + list(sweep):
        if name in part:
            data[name] = part[name]
        elif projection and name in PROJECTION_ROW:
            data[name] = constant(PROJECTION_ROW[name], n)
        else:
            data[name] = filler(name, n)
    if projection:
        data["direction"] = part["direction"]
    return Columns(data)


def element_name(name: str, shape: tuple, index: int) -> str:
    """``X[0,1]`` for a flat C-order index into an input of that shape, ``x`` for a scalar."""
    if not shape:
        return name
    return f"{name}[{','.join(map(str, np.unravel_index(index, shape)))}]"


def _element_strings(piece: Columns, projection: bool, shapes: dict) -> list:
    if "element" in piece:  # names given (a hand-made result)
        return piece["element"].tolist()
    if projection:
        return [f"u{k}.J.v{k}" for k in piece["direction"].tolist()]
    if not len(piece):
        return []
    name = piece["input"][0]
    shape = tuple(shapes.get(name, ()))
    return [element_name(name, shape, j) for j in piece["index"].tolist()]


def report_rows(result, positions=None) -> list:
    """The report's rows as dicts in column order (only those at ``positions``, report order)."""
    if positions is None:
        return [row for piece, projection in pieces(result)
                for row in _with_derived(piece, projection, result.shapes).rows()]
    asked = np.asarray(positions, dtype=np.int64)
    wanted = np.sort(asked)
    sweep = sweep_names([result.elements, result.projections])
    out = []
    offset = 0
    for table, lo, hi, projection in _spans(result):  # only the pieces that hold a wanted row are built
        mine = wanted[(wanted >= offset) & (wanted < offset + hi - lo)] - offset + lo
        offset += hi - lo
        if len(mine):
            out += _with_derived(_piece(table.take(mine), projection, sweep), projection, result.shapes).rows()
    at = {p: i for i, p in enumerate(wanted.tolist())}
    return [out[at[p]] for p in asked.tolist()]  # in the order asked


def _with_derived(piece: Columns, projection: bool, shapes: dict) -> Columns:
    data = {}
    elements = _element_strings(piece, projection, shapes)
    for name in piece.names:
        if name in ("direction", "element"):
            continue
        if name == "input":
            data[name] = piece[name]
            data["element"] = np.array(elements, dtype=object)
        elif name == "status":
            data["passed"] = passing(piece[name])
            data[name] = piece[name]
        else:
            data[name] = piece[name]
    order = [n for n in NAMES if n in data] + [n for n in data if n not in NAMES]
    return Columns({n: data[n] for n in order})


def report_column(result, name: str) -> np.ndarray:
    """One column of the report (not a derived one), in report order."""
    parts = []
    for table, start, stop, projection in _segments(result):
        if name in table:
            parts.append(table[name][start:stop])
        elif projection and name in PROJECTION_ROW:
            parts.append(constant(PROJECTION_ROW[name], stop - start))
        else:
            parts.append(filler(name, stop - start))
    return np.concatenate(parts) if parts else filler(name, 0)


# --- Arrow ---------------------------------------------------------------------


def schema(results):
    """The Arrow schema of a report of these results: the fixed columns, then every sweep column."""
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    fields = [pa.field(n, types[KIND[n]]) for n in NAMES]
    tables = [t for r in results for t in (r.elements, r.projections)]
    for name in sweep_names(tables):
        kinds = {t[name].dtype.kind for t in tables if name in t and len(t)}
        kind = kinds.pop() if len(kinds) == 1 else "O"
        fields.append(pa.field(name, {"f": pa.float64(), "i": pa.int64(), "b": pa.bool_()}.get(kind, pa.string())))
    return pa.schema(fields)


def _arrow_elements(piece: Columns, projection: bool, shapes: dict):
    """The element names of one piece, built in Arrow (no Python string per row)."""
    import pyarrow as pa

    from . import arrowcompute as compute
    from .arrowcols import ints, scalar, text_column

    if "element" in piece:  # names given (a hand-made result)
        return text_column(piece["element"])
    if projection:
        k = compute.cast(ints(piece["direction"]), pa.string())
        return compute.join(scalar("u"), k, scalar(".J.v"), k, separator=scalar(""))
    if not len(piece):
        return text_column(np.zeros(0, dtype=object))
    name = str(piece["input"][0])
    shape = tuple(shapes.get(name, ()))
    if not shape:
        return text_column(constant(name, len(piece)))
    index = piece["index"]
    known = _NAMES.get((name, shape))
    if known is not None and np.array_equal(known[0], index):  # the same elements again
        return known[1]
    coords = [compute.cast(ints(c), pa.string()) for c in np.unravel_index(index, shape)]
    comma = scalar(",")
    parts = [x for c in coords for x in (c, comma)][:-1]
    names = compute.join(scalar(name + "["), *parts, scalar("]"), separator=scalar(""))
    if len(_NAMES) >= MOST_NAMED:
        _NAMES.clear()
    _NAMES[(name, shape)] = (np.array(index), names)
    return names


def _arrow_column(values: np.ndarray, type_):
    import pyarrow as pa

    from . import arrowcols

    if pa.types.is_string(type_):
        return arrowcols.text_column(values)
    if values.dtype == object:  # a sweep column this experiment lacks: empty
        return pa.nulls(len(values), type_)
    build = {"f": arrowcols.floats, "i": arrowcols.ints, "b": arrowcols.bools}
    return build[values.dtype.kind](values)


def report_batches(results, chunk: int | None = None, schema_=None):
    """The report of ``results`` as Arrow record batches of at most ``chunk`` rows."""
    import pyarrow as pa

    schema_ = schema(results) if schema_ is None else schema_
    sweep = [n for n in schema_.names if n not in NAMES]
    for result in results:
        for piece, projection in pieces(result, sweep, chunk):
            arrays = []
            for f in schema_:
                if f.name == "element":
                    arrays.append(_arrow_elements(piece, projection, result.shapes))
                elif f.name == "passed":
                    arrays.append(_arrow_column(passing(piece["status"]), f.type))
                else:
                    arrays.append(_arrow_column(piece[f.name], f.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema_)


def combined(results, schema_):
    """The report of ``results`` as one record batch (many small results formatted at once).

    The pieces' columns are joined before they become Arrow arrays: a number
    column as one numpy array, a text column that holds one value a piece as
    codes into the pieces' values; building each piece's arrays and joining
    those cost about 50 us a column a piece, most of a small result's report.
    """
    import pyarrow as pa

    sweep = [n for n in schema_.names if n not in NAMES]
    parts = [(piece, projection, result.shapes) for result in results
             for piece, projection in pieces(result, sweep)]
    if not parts:
        return []
    arrays = [_joined(field, parts) for field in schema_]
    return [pa.RecordBatch.from_arrays(arrays, schema=schema_)]


def _joined(field, parts):
    """One column of ``combined``'s batch, from the pieces (piece, is_projection, shapes)."""
    import pyarrow as pa

    if field.name == "element":
        return pa.concat_arrays([_arrow_elements(piece, projection, shapes) for piece, projection, shapes in parts])
    columns = [passing(piece["status"]) if field.name == "passed" else piece[field.name] for piece, _, _ in parts]
    if pa.types.is_string(field.type):
        joined = _one_text_a_piece(columns)
        if joined is not None:
            return joined
    elif len({c.dtype for c in columns}) == 1 and columns[0].dtype != object:
        return _arrow_column(np.concatenate(columns), field.type)
    return pa.concat_arrays([_arrow_column(c, field.type) for c in columns])


def _one_text_a_piece(columns):
    """A text column whose every piece holds one string (or None) throughout, as codes into
    those strings; None where a piece holds more, or a value that is not text."""
    from .arrowcols import pick, texts
    from .columns import one_object

    labels, codes = {}, []
    for values in columns:
        if values.dtype != object or len(values) > 1 and not one_object(values):
            return None
        label = values[0] if len(values) else None
        if label is not None and not isinstance(label, str):
            return None
        codes.append(labels.setdefault(label, len(labels)))
    at = np.repeat(np.array(codes, dtype=np.int32), [len(values) for values in columns])
    return pick(texts(list(labels)), at)


def report_table(results):
    """The whole report of ``results`` as one Arrow table."""
    import pyarrow as pa

    schema_ = schema(results)
    return pa.Table.from_batches(list(report_batches(results, schema_=schema_)), schema=schema_)
