"""What every reader of results says about one experiment: its verdict and statistics,
its worst entries and how one entry reads; shared by the console, JSON, JUnit and annotations."""

from __future__ import annotations

import math

import numpy as np

from . import layout
from .columns import PASSING, among, sweep_names
from .model import ExperimentResult, Row

WORST_SHOWN = 5  # entries listed for a failing experiment; never a whole Jacobian


def _finite_max(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def _badness(result: ExperimentResult) -> tuple:
    """How far outside its tolerance each report row is (inf for nan), and which rows are kinks."""
    status = layout.report_column(result, "status")
    tables = [t for t in (result.projections, result.elements) if len(t)]
    found = [t.labels("status") if "status" in t else None for t in tables]
    labels = None if None in found else list({s for known in found for s in known})
    error = layout.report_column(result, "abs_error").astype(np.float64)
    tol = layout.report_column(result, "tolerance").astype(np.float64)
    with np.errstate(all="ignore"):
        bad = np.where(tol > 0, error / tol, error)
    # an entry that does not pass ranks above every one that does, however close its two
    # numbers (a forward mode that disagrees with a reverse mode the numeric side agrees with)
    failing = ~among(status, PASSING, labels)
    bad = np.where(failing & ~(bad > 1.0), np.nextafter(1.0, 2.0), bad)
    return np.where(among(status, ("nan",), labels), np.inf, bad), among(status, ("kink",), labels)


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Positions of the n largest values, largest first, ties in their original order."""
    if n <= 0 or not values.size:
        return np.zeros(0, dtype=np.int64)
    if n >= values.size:
        return np.argsort(-values, kind="stable")
    kth = -np.partition(-values, n - 1)[n - 1]
    above = np.flatnonzero(values > kth)
    above = above[np.argsort(-values[above], kind="stable")]
    return np.concatenate([above, np.flatnonzero(values == kth)[:n - len(above)]])


def worst_entries(result: ExperimentResult, n: int = WORST_SHOWN) -> list:
    """The n non-kink rows furthest outside their tolerance (kinks are not errors), as Rows."""
    if not result.rows:
        return []
    bad, kink = _badness(result)
    candidates = np.flatnonzero(~kink)
    chosen = candidates[_top(np.nan_to_num(bad[candidates], nan=-np.inf), n)]
    return [Row(r) for r in layout.report_rows(result, chosen)]


def _checked_max(result: ExperimentResult, column: str) -> float:
    parts = [t[column][~among(t["status"], ("kink",), t.labels("status"))]
             for t in (result.projections, result.elements) if len(t)]
    return _finite_max(np.concatenate(parts)) if parts else float("nan")


def verdict(result: ExperimentResult) -> str:
    """ERROR (it raised), PASS or FAIL."""
    if result.error is not None:
        return "ERROR"
    return "PASS" if result.passed else "FAIL"


def stats(result: ExperimentResult) -> dict:
    """The numbers every reader shows for one experiment."""
    worst = worst_entries(result, 1)
    return {
        "file": result.file,
        "name": result.name,
        "verdict": verdict(result),
        "passed": result.passed,
        "elements": result.rows,
        "projections": len(result.projections),  # screen rows <u, J v>
        "failures": result.rows - result.count(*PASSING),
        "kinks": result.count("kink"),
        "nans": result.count("nan"),
        "unresolved": result.count("unresolved"),
        "worst_abs_error": _checked_max(result, "abs_error"),
        "worst_rel_error": _checked_max(result, "rel_error"),
        "worst": worst[0] if worst else None,
        "check": result.check,
        "seconds": result.seconds,
        "error": result.error,
        "notes": list(result.notes),
    }


def _pair(a: float, b: float) -> tuple:
    """Both numbers with just enough digits to tell them apart (at least 6, at most 17)."""
    for digits in range(6, 18):
        sa, sb = "%.*g" % (digits, a), "%.*g" % (digits, b)
        if sa != sb or a == b:
            break
    return sa, sb


def _err(x) -> str:
    return "%.2e" % x


def describe(record: Row, multi_output: bool = False, swept: bool = False) -> str:
    """Name one checked element and both numbers, e.g. ``X[2,7]: numeric 0.5 analytic 0.75``."""
    where = record.element
    if multi_output and record.output >= 0:
        where += f" (output {record.output})"
    if swept:
        coords = ", ".join(f"{k}={v}" for k, v in record.coords.items())
        where += f" at point {record.point}" + (f" ({coords})" if coords else "")
    numeric, analytic = _pair(record.numeric, record.analytic)
    return f"{where}: numeric {numeric} analytic {analytic}"


def _shape(result: ExperimentResult) -> tuple:
    """Whether the experiment has several outputs and several points (what names must say)."""
    tables = [t for t in (result.elements, result.projections) if len(t)]
    multi_output = any((t["output"] > 0).any() for t in tables if "output" in t)
    swept = any((t["point"] != 0).any() for t in tables) or bool(sweep_names(tables))
    return multi_output, swept


def entry_lines(result: ExperimentResult, records) -> list:
    """One line per record: where, both numbers, the errors and the bound."""
    multi_output, swept = _shape(result)
    return [
        f"{describe(r, multi_output, swept)}  abs {_err(r.abs_error)} rel {_err(r.rel_error)}"
        f" tol {_err(r.tolerance)}  {r.status}" + _one_sided(r) + _modes(r)
        for r in records
    ]


def _modes(record: Row) -> str:
    """A failure of the two analytic sides to agree says which numbers they gave."""
    reason = getattr(record, "reason", "") or ""
    return f" ({reason})" if record.status == "fail" and reason.startswith("forward mode (JVP)") else ""


def _one_sided(record: Row) -> str:
    """At a kink, the one-sided differences show the two slopes that meet there."""
    if record.status != "kink" or math.isnan(record.numeric_minus):
        return ""
    return f" (left {'%.6g' % record.numeric_minus}, right {'%.6g' % record.numeric_plus})"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _group_by_file(results) -> dict:
    groups = {}
    for result in results:
        groups.setdefault(result.file, []).append(result)
    return groups


def _jsonable(value):
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
