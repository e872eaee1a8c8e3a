"""Readers of the result columns: CSV, Parquet, the run record, JUnit XML and the console summary.

Every function here takes ``ExperimentResult``s and either returns text or
writes a file; none prints or exits. Files are written whole or not at all:
into a temporary file in the target's folder, then ``os.replace``d over the
final name, so a reader never sees half a report and a crash leaves the
previous report in place. The CSV and Parquet writers stream: the report is
formatted and written a piece at a time (``layout.CHUNK`` rows), never held
whole as text.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from . import __version__, baseline, layout
from .columns import NAMES, PASSING, sweep_names, text
from .model import ExperimentResult, Row

# The CSV's fixed columns, in order; each swept name adds a ``sweep_<name>`` column after them.
BASE_COLUMNS = list(NAMES)
FORMATS = ("csv", "parquet")  # --report-format: the suffix of the report file

WORST_SHOWN = 5  # entries listed for a failing experiment; never a whole Jacobian
csv_cell = text


# --- writing files ---------------------------------------------------------


def atomic_write(path, content) -> None:
    """Write ``content`` (text, or an iterable of bytes) to ``path`` whole or not at all.

    A temporary file in the same folder, then os.replace.
    """
    with _atomic(path) as f:
        if isinstance(content, str):
            f.write(content.encode("utf-8"))
        else:
            for chunk in content:
                f.write(chunk)


@contextlib.contextmanager
def _atomic(path):
    """A binary file at a temporary name that replaces ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- CSV and Parquet ---------------------------------------------------------


def csv_columns(results) -> list:
    """The CSV header: the fixed columns, then ``sweep_<name>`` for every swept name in the file."""
    return BASE_COLUMNS + sweep_names([t for r in results for t in (r.elements, r.projections)])


def csv_chunks(results):
    """The CSV of one spec file as bytes, a piece at a time: the header, then the rows."""
    from . import csvformat

    schema = layout.schema(results)
    yield csvformat.header(schema.names)
    for batch in layout.report_batches(results, schema_=schema):
        yield csvformat.batch_bytes(batch)


def csv_text(results) -> str:
    """The whole CSV of one spec file: one row per checked Jacobian element or projection."""
    return b"".join(csv_chunks(results)).decode("utf-8")


def write_csv(path, results) -> None:
    """Write the CSV of one spec file's results, atomically, a piece at a time."""
    atomic_write(path, csv_chunks(results))


def write_parquet(path, results) -> None:
    """Write the report of one spec file as Parquet (the CSV's columns, typed), atomically."""
    import pyarrow.parquet as pq

    schema = layout.schema(results)
    with _atomic(path) as f:
        with pq.ParquetWriter(f, schema) as writer:
            for batch in layout.report_batches(results, schema_=schema):
                writer.write_batch(batch)


WRITERS = {"csv": write_csv, "parquet": write_parquet}


def write_report(path, results, fmt: str = "csv") -> None:
    """Write the report in ``fmt`` (csv or parquet)."""
    WRITERS[fmt](path, results)


# --- what each reader says about one experiment ----------------------------


def _finite_max(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def _badness(result: ExperimentResult) -> tuple:
    """How far outside its tolerance each report row is (inf for nan), and the rows' statuses."""
    status = layout.report_column(result, "status")
    error = layout.report_column(result, "abs_error").astype(np.float64)
    tol = layout.report_column(result, "tolerance").astype(np.float64)
    with np.errstate(all="ignore"):
        bad = np.where(tol > 0, error / tol, error)
    return np.where(status == "nan", np.inf, bad), status


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
    bad, status = _badness(result)
    candidates = np.flatnonzero(status != "kink")
    chosen = candidates[_top(np.nan_to_num(bad[candidates], nan=-np.inf), n)]
    return [Row(r) for r in layout.report_rows(result, chosen)]


def _checked_max(result: ExperimentResult, column: str) -> float:
    parts = [t[column][t["status"] != "kink"] for t in (result.projections, result.elements) if len(t)]
    return _finite_max(np.concatenate(parts)) if parts else float("nan")


def stats(result: ExperimentResult) -> dict:
    """The numbers every reader shows for one experiment."""
    worst = worst_entries(result, 1)
    if result.error is not None:
        verdict = "ERROR"
    else:
        verdict = "PASS" if result.passed else "FAIL"
    return {
        "file": result.file,
        "name": result.name,
        "verdict": verdict,
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
        f" tol {_err(r.tolerance)}  {r.status}" + _one_sided(r)
        for r in records
    ]


def _one_sided(record: Row) -> str:
    """At a kink, the one-sided differences show the two slopes that meet there."""
    if record.status != "kink" or math.isnan(record.numeric_minus):
        return ""
    return f" (left {'%.6g' % record.numeric_minus}, right {'%.6g' % record.numeric_plus})"


# --- console summary ---------------------------------------------------------

_COLOURS = {"PASS": "green", "FAIL": "red", "ERROR": "red", "kink": "yellow"}


def _paint(text: str, key: str, color: bool) -> str:
    if not color or key not in _COLOURS:
        return text
    import click  # only the console summary colours; keep the rest free of click

    return click.style(text, fg=_COLOURS[key], bold=key == "ERROR")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _group_by_file(results) -> dict:
    groups = {}
    for result in results:
        groups.setdefault(result.file, []).append(result)
    return groups


def experiment_block(result: ExperimentResult, verbosity: int = 0, color: bool = False) -> list:
    """The summary lines of one experiment; a failure lists its worst entries."""
    s = stats(result)
    head = f"{_paint(s['verdict'].ljust(5), s['verdict'], color)} {result.name}"
    if result.error is not None:
        return [head, f"      error: {result.error}"]
    parts = [_plural(s["projections"], "projection")] if s["projections"] else []
    if s["elements"] > s["projections"] or not parts:
        parts.append(_plural(s["elements"] - s["projections"], "element"))
    counts = f"{', '.join(parts)} checked ({result.check})"
    if s["failures"] - s["unresolved"]:
        counts += f", {s['failures'] - s['unresolved']} failed"
    if s["unresolved"]:
        counts += f", {s['unresolved']} unresolved (not a pass)"
    if s["kinks"]:
        counts += ", " + _paint(_plural(s["kinks"], "kink"), "kink", color)
    lines = [f"{head}: {counts}"]
    if s["worst"] is not None:
        multi_output, swept = _shape(result)
        lines.append(
            f"      max abs {_err(s['worst_abs_error'])}  max rel {_err(s['worst_rel_error'])}"
            f"  worst {describe(s['worst'], multi_output, swept)}"
        )
    if not result.passed or verbosity > 0:
        entries = worst_entries(result)
        if entries and (len(entries) > 1 or not result.passed):
            lines.append("      worst entries:")
            lines += [f"        {line}" for line in entry_lines(result, entries)]
    if verbosity > 0:
        at = np.flatnonzero(layout.report_column(result, "status") == "kink")[:WORST_SHOWN] if result.rows else []
        kinks = [Row(r) for r in layout.report_rows(result, at)] if len(at) else []
        if kinks:
            lines.append("      kinks (not differentiable there, not counted as failures):")
            lines += [f"        {line}" for line in entry_lines(result, kinks)]
    if verbosity > 0 or s["unresolved"]:  # an unresolved entry's note says what to change
        lines += [f"      note: {note}" for note in result.notes]
    return lines


def totals_line(results) -> str:
    """One line for the whole run: experiments passed, failed and in error, kinks, time."""
    verdicts = [stats(r)["verdict"] for r in results]
    kinks = sum(r.count("kink") for r in results)
    seconds = sum(r.seconds for r in results)
    text = (
        f"{_plural(len(results), 'experiment')}: {verdicts.count('PASS')} passed, "
        f"{verdicts.count('FAIL')} failed, {_plural(verdicts.count('ERROR'), 'error')}"
    )
    if kinks:
        text += f", {_plural(kinks, 'kink')}"
    return text + f" ({seconds:.2f} s)"


def summary_table(results, verbosity: int = 0, color: bool = False) -> str:
    """The console summary: per spec file, one block per experiment, then the totals.

    ``verbosity`` < 0 shows only experiments that did not pass; > 0 adds the
    worst entries of every experiment, its kinks and notes.
    """
    lines = []
    for file, group in _group_by_file(results).items():
        shown = [r for r in group if verbosity >= 0 or not r.passed]
        if not shown:
            continue
        if file:
            lines.append(file)
        for result in shown:
            lines += ["  " + line for line in experiment_block(result, verbosity, color)]
    lines.append(totals_line(results))
    return "\n".join(lines) + "\n"


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


def experiment_json(result: ExperimentResult) -> dict:
    """One experiment's summary as plain data, its worst entries as CSV rows."""
    s = stats(result)
    s["worst"] = [r.as_row() for r in worst_entries(result)]
    return s


def summary_json(results, drifts=None) -> str:
    """The console summary as one JSON document (non-finite numbers as null).

    With ``drifts`` (a baseline was compared), each experiment says whether it
    ``regressed``, ``drifts`` lists every drift and ``passed`` needs none.
    """
    experiments = [experiment_json(r) for r in results]
    doc = {
        "passed": all(r.passed for r in results) and not drifts,
        "experiments": experiments,
        "totals": {
            "experiments": len(results),
            "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed and r.error is None for r in results),
            "errors": sum(r.error is not None for r in results),
            "elements": sum(r.rows for r in results),
            "kinks": sum(r.count("kink") for r in results),
            "seconds": sum(r.seconds for r in results),
        },
    }
    if drifts is not None:
        bad = baseline.regressed(drifts)
        for result, data in zip(results, experiments):
            data["regressed"] = (result.file, result.name) in bad
        doc["totals"]["drifts"] = len(drifts)
        doc["totals"]["regressed"] = len(bad)
        doc["drifts"] = [d.as_dict() for d in sorted(drifts, key=baseline.severity)]
    return json.dumps(_jsonable(doc), indent=2) + "\n"


# --- run record --------------------------------------------------------------


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_record(spec, results, command=None, overrides=None, only=None) -> dict:
    """What a run was: versions, the spec's hash, seeds, per-experiment timings, the command."""
    seeds = {e.name: e.settings.seed for e in spec.experiments}
    return {
        "gradrun": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "spec": str(spec.path),
        "spec_sha256": spec.sha256 or file_sha256(spec.path),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv if command is None else command),
        "overrides": dict(overrides or {}),
        "only": only,
        "passed": all(r.passed for r in results),
        "seconds": sum(r.seconds for r in results),
        "experiments": [
            {
                "name": r.name,
                "verdict": stats(r)["verdict"],
                "seed": seeds.get(r.name),
                "check": r.check,
                "seconds": r.seconds,
                "elements": r.rows,
                "failures": r.rows - r.count(*PASSING),
                "kinks": r.count("kink"),
                "error": r.error,
                "notes": list(r.notes),
            }
            for r in results
        ],
    }


def write_run_record(path, spec, results, command=None, overrides=None, only=None) -> None:
    """Write ``<stem>.run.json`` beside the CSV, atomically."""
    record = run_record(spec, results, command, overrides, only)
    atomic_write(path, json.dumps(_jsonable(record), indent=2) + "\n")


# --- JUnit XML -----------------------------------------------------------------


def _unique(names) -> list:
    seen = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out


def _testcase(suite: ET.Element, result: ExperimentResult, name: str, classname: str, drifts=()) -> None:
    s = stats(result)
    case = ET.SubElement(
        suite, "testcase", name=name, classname=classname, time=f"{result.seconds:.3f}"
    )
    if result.file:
        case.set("file", result.file)
    if result.line:
        case.set("line", str(result.line))
    drift_lines = [baseline.describe(d) for d in drifts]
    if result.error is not None:
        node = ET.SubElement(case, "error", message=result.error.splitlines()[0] if result.error else "",
                             type="InternalError")
        node.text = "\n".join([result.error] + drift_lines)
    elif not result.passed:
        multi_output, swept = _shape(result)
        message = (
            f"{s['failures']} of {_plural(s['elements'], 'element')} outside tolerance; worst "
            + describe(s["worst"], multi_output, swept)
        )
        node = ET.SubElement(case, "failure", message=message, type="GradientMismatch")
        node.text = "\n".join(entry_lines(result, worst_entries(result))
                              + (["baseline drift:"] + drift_lines if drift_lines else []))
    elif drift_lines:
        node = ET.SubElement(case, "failure", message=f"{_plural(len(drift_lines), 'drift')} from the baseline; "
                             + drift_lines[0], type="BaselineDrift")
        node.text = "\n".join(drift_lines)
    out = [f"{_plural(s['elements'], 'element')} checked ({result.check})"]
    if s["kinks"]:
        out.append(f"{_plural(s['kinks'], 'kink')} (not differentiable there, not failures)")
    out += [f"note: {n}" for n in result.notes]
    ET.SubElement(case, "system-out").text = "\n".join(out)


def _vanished(drifts, file: str) -> list:
    """Experiments of the baseline that did not run, as results (a testcase, an annotation)."""
    return [ExperimentResult(d.experiment, [], file=file, line=d.line)
            for d in drifts if d.file == file and d.kind == "missing-experiment"]


def junit_xml(results, drifts=None) -> str:
    """JUnit XML: one testsuite per spec file, one uniquely named testcase per experiment.

    With ``drifts``, an experiment that regressed from its baseline fails
    (``BaselineDrift``) and lists its drifts; one that vanished is a failing testcase.
    """
    drifts = drifts or []
    root = ET.Element("testsuites", name="gradrun")
    counted = []
    for file, group in _group_by_file(results).items():
        classname = Path(file).stem if file else "gradrun"
        suite = ET.SubElement(root, "testsuite", name=classname)
        if file:
            suite.set("file", file)
        group = group + _vanished(drifts, file)
        for result, name in zip(group, _unique(r.name for r in group)):
            _testcase(suite, result, name, classname, baseline.for_experiment(drifts, file, result.name))
        _count(suite, group, drifts)
        counted += group
    _count(root, counted, drifts)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _count(node: ET.Element, results, drifts=()) -> None:
    bad = baseline.regressed(drifts)
    node.set("tests", str(len(results)))
    node.set("failures", str(sum((not r.passed or (r.file, r.name) in bad) and r.error is None for r in results)))
    node.set("errors", str(sum(r.error is not None for r in results)))
    node.set("time", f"{sum(r.seconds for r in results):.3f}")


def write_junit(path, results, drifts=None) -> None:
    """Write the JUnit XML of all results, atomically."""
    atomic_write(path, junit_xml(results, drifts))


# --- GitHub Actions annotations ---------------------------------------------------


def _escape(text: str, prop: bool = False) -> str:
    """GitHub's workflow-command escaping: %, CR and LF always; ':' and ',' in properties."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotations(results, drifts=None) -> list:
    """``::error file=…,line=…,title=gradrun: NAME::message`` for every failing or regressed experiment."""
    drifts = drifts or []
    bad = baseline.regressed(drifts)
    lines = []
    for file, group in _group_by_file(results).items():
        for result in group + _vanished(drifts, file):
            mine = baseline.for_experiment(drifts, file, result.name)
            if result.passed and not mine:
                continue
            s = stats(result)
            if result.error is not None:
                message = [f"error: {result.error}"]
            elif not result.passed:
                message = [f"{s['failures']} of {_plural(s['elements'], 'element')} outside tolerance"]
                message += entry_lines(result, worst_entries(result))
            else:
                message = []
            if (result.file or file, result.name) in bad:
                message.append(f"{_plural(len(mine), 'drift')} from the baseline:")
                message += [baseline.describe(d) for d in mine[:WORST_SHOWN]]
            props = f"file={_escape(result.file or file, True)}"
            if result.line:
                props += f",line={result.line}"
            props += f",title={_escape('gradrun: ' + result.name, True)}"
            lines.append(f"::error {props}::{_escape(chr(10).join(message))}")
    return lines
