"""The console summary (a block per experiment, totals) and its JSON form (``--format json``)."""

from __future__ import annotations

import json

import numpy as np

from . import drift, layout
from .model import ExperimentResult, Row, one_line
from .readings import (WORST_SHOWN, verdict, _err, _group_by_file, _jsonable, _plural, _shape, describe, entry_lines,
                       stats, worst_entries)


_COLOURS = {"PASS": "green", "FAIL": "red", "ERROR": "red", "kink": "yellow"}


def _paint(text: str, key: str, color: bool) -> str:
    if not color or key not in _COLOURS:
        return text
    import click  # only the console summary colours; keep the rest free of click

    return click.style(text, fg=_COLOURS[key], bold=key == "ERROR")


def experiment_block(result: ExperimentResult, verbosity: int = 0, color: bool = False) -> list:
    """The summary lines of one experiment; a failure lists its worst entries."""
    s = stats(result)
    head = f"{_paint(s['verdict'].ljust(5), s['verdict'], color)} {one_line(result.name)}"
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
    verdicts = [verdict(r) for r in results]
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
            lines.append(one_line(file))  # a file name may hold a line break or ESC
        for result in shown:
            lines += ["  " + line for line in experiment_block(result, verbosity, color)]
    lines.append(totals_line(results))
    return "\n".join(lines) + "\n"


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
        bad = drift.regressed(drifts)
        for result, data in zip(results, experiments):
            data["regressed"] = (result.file, result.name) in bad
        doc["totals"]["drifts"] = len(drifts)
        doc["totals"]["regressed"] = len(bad)
        doc["drifts"] = [d.as_dict() for d in sorted(drifts, key=drift.severity)]
    return json.dumps(_jsonable(doc), indent=2) + "\n"
