"""Baselines: a stored run of a spec file, and the drift of a new run from it.

A baseline holds, per experiment, every checked Jacobian element's key
``(point, input, index, output, element)``, its status, abs_error and
tolerance. ``compare`` puts a new run's results beside it and returns
``Drift`` records, one per element or experiment that regressed:

========================  ==========================================================
kind                      when
========================  ==========================================================
``now-errors``            the experiment ran in the baseline and crashes now
``now-fails``             an element passed (or was a kink) and fails now (fail, nan)
``grew``                  an element passes still, but its abs_error grew more than
                          ``factor`` times *and* beyond ``fraction`` of its tolerance
``new-experiment``        an experiment the baseline does not know
``missing-experiment``    an experiment of the baseline that did not run
``new-element``           an element the baseline does not know (its shape changed)
``missing-element``       an element of the baseline that was not checked
========================  ==========================================================

The rule for ``grew`` asks for both conditions so that round-off never trips
it: an error of 1e-17 that becomes 1e-15 grew a hundredfold but stays far
below the tolerance (which already allows 256 eps of round-off), and an error
at half the tolerance that moves to 0.6 of it grew by less than the factor. A
rerun of unchanged code on the same machine gives bit-identical errors, so it
never drifts. Every drift is a regression: a stale baseline fails until it is
rewritten with ``--update-baseline``.

Nothing here prints or exits; ``drift_table`` returns text for the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import __version__, reading, selection
from .columns import PASSING
from .drift import KINDS, Drift, describe, for_experiment, regressed, severity  # noqa: F401 (re-exported)
from .drift import sci as _e
from .layout import report_rows
from .limits import MAX_BASELINE_BYTES
from .model import ExperimentResult, Row, one_line

FORMAT = 1  # the "gradrun_baseline" number in every baseline file
SUFFIX = ".baseline.json"
DRIFT_FACTOR = 10.0  # default --drift-factor
DRIFT_FRACTION = 0.25  # an error must also pass this fraction of its tolerance to count as grown
TABLE_ROWS = 10  # drifts listed on the console; the JSON summary has them all


class BaselineError(Exception):
    """A baseline that is missing, unreadable or not a gradrun baseline (exit 2)."""


# --- the stored form ---------------------------------------------------------


KEY = ("point", "input", "index", "output", "element")  # what names one row of a report
STORED = KEY + ("status", "abs_error", "tolerance")  # what a baseline keeps of it


def _element(row: dict) -> str:
    """The element's stored name; a second-order entry names both coordinates (H[x,y]; a
    symmetry row S[x,y]), so that every Hessian entry has a key of its own."""
    if row.get("order", 1) == 1:
        return row["element"]
    return f"{'S' if row['check'] == 'symmetry' else 'H'}[{row['element']},{row['element2']}]"


def _stored(row: dict) -> dict:
    """A report row as a baseline keeps it: its key (the element named by ``_element``) and numbers."""
    return {k: _element(row) if k == "element" else _number(row[k]) if k in ("abs_error", "tolerance")
            else row[k] for k in STORED}


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in KEY)


def _number(x):
    return None if x is None or not math.isfinite(x) else float(x)


def baseline_data(spec_path, results, spec_sha256: str = "") -> dict:
    """The baseline of one spec file's results, as plain data."""
    experiments = {}
    for result in results:
        experiments[result.name] = {
            "line": result.line,
            "passed": result.passed,
            "error": result.error,
            "elements": [
                _stored(r) for r in report_rows(result)
            ],
        }
    return {"gradrun_baseline": FORMAT, "gradrun": __version__, "spec": str(spec_path),
            "spec_sha256": spec_sha256, "experiments": experiments}


def baseline_text(data: dict) -> str:
    """JSON with one element per line, so that a changed baseline diffs line by line."""
    head = {k: v for k, v in data.items() if k != "experiments"}
    lines = ["{"] + [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "experiments": {')
    names = list(data["experiments"])
    for i, name in enumerate(names):
        exp = data["experiments"][name]
        lines.append(f"    {json.dumps(name)}: {{")
        for k in ("line", "passed", "error"):
            lines.append(f"      {json.dumps(k)}: {json.dumps(exp[k])},")
        rows = [json.dumps(e) for e in exp["elements"]]
        if rows:
            lines.append('      "elements": [')
            lines += [f"        {row}," for row in rows[:-1]] + [f"        {rows[-1]}", "      ]"]
        else:
            lines.append('      "elements": []')
        lines.append("    }" + ("," if i < len(names) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def load_baseline(path, spec_path="SPEC") -> dict:
    """Read a baseline file; ``BaselineError`` when it is missing or not a baseline."""
    path = Path(path)
    try:
        data = json.loads(reading.read_bounded(path, MAX_BASELINE_BYTES).decode("utf-8"))
    except reading.Unreadable as error:
        raise BaselineError(f"cannot read the baseline {path}: {error}") from None
    except FileNotFoundError:
        raise BaselineError(f"no baseline for {spec_path} at {path}; "
                            "run the same command with --update-baseline to write it") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BaselineError(f"cannot read the baseline {path}: {error}") from None
    if not isinstance(data, dict) or data.get("gradrun_baseline") != FORMAT \
            or not isinstance(data.get("experiments"), dict):
        raise BaselineError(f"{path} is not a gradrun baseline (format {FORMAT}); "
                            "rewrite it with --update-baseline")
    wrong = _shape_problem(data["experiments"])
    if wrong:
        raise BaselineError(f"{path}: {wrong}; rewrite it with --update-baseline")
    return data


_INT, _NUMBER = (int,), (int, float, type(None))
# key -> the types its value may have, for an experiment and for one of its elements.
EXPERIMENT_KEYS = {"line": _INT, "error": (str, type(None)), "elements": (list,)}
ELEMENT_KEYS = {"point": _INT, "input": (str,), "index": _INT, "output": _INT, "element": (str,),
                "status": (str,), "abs_error": _NUMBER, "tolerance": _NUMBER}


def _wrong_type(value, types) -> bool:
    return not isinstance(value, types) or (isinstance(value, bool) and bool not in types)


def _shape_problem(experiments: dict) -> str:
    """Where a baseline's data is not what gradrun writes: ``experiments.NAME.KEY`` and why; '' when fine.

    Names and elements are shown on the console and in CI logs: a control character (a line
    break starting a "::" workflow command, ESC) is refused here, as the schema refuses it in a spec.
    """
    for name, exp in experiments.items():
        if not name.isprintable():
            return f"the experiment name '{one_line(name)}' holds control characters"
        if not isinstance(exp, dict):
            return f"experiments.{name} is not a mapping"
        for key, types in EXPERIMENT_KEYS.items():
            if key in exp and _wrong_type(exp[key], types):
                return f"experiments.{name}.{key} has the wrong type ({type(exp[key]).__name__})"
        if exp.get("error") is None and "elements" not in exp:
            return f"experiments.{name} has no elements"
        for i, row in enumerate(exp.get("elements", [])):
            if not isinstance(row, dict):
                return f"experiments.{name}.elements[{i}] is not a mapping"
            for key, types in ELEMENT_KEYS.items():
                if key not in row:
                    return f"experiments.{name}.elements[{i}] has no '{key}'"
                if _wrong_type(row[key], types):
                    return f"experiments.{name}.elements[{i}].{key} has the wrong type ({type(row[key]).__name__})"
                if isinstance(row[key], str) and not row[key].isprintable():
                    return f"experiments.{name}.elements[{i}].{key} holds control characters"
    return ""


def baseline_file(option, spec_path, several: bool) -> Path:
    """Where the baseline of ``spec_path`` is, given ``--baseline PATH``.

    PATH is a directory holding ``<spec stem>.baseline.json`` files when it is
    an existing directory, when several specs run, or when it does not end in
    ``.json``; otherwise it is the baseline file itself.
    """
    option = Path(option)
    if several or option.is_dir() or option.suffix != ".json":
        return option / (Path(spec_path).stem + SUFFIX)
    return option


# --- comparison --------------------------------------------------------------


def compare(baseline: dict, results, file: str = "", factor: float = DRIFT_FACTOR,
            fraction: float = DRIFT_FRACTION, only: str | None = None) -> list:
    """The drifts of one spec file's ``results`` from its ``baseline`` (see the module doc).

    With ``only`` (a ``--only`` glob), baseline experiments it does not match
    are not expected to have run.
    """
    stored = baseline["experiments"]
    drifts = []
    now = {r.name: r for r in results}
    for name, old in stored.items():
        if name not in now and selection.selected(name, only):
            drifts.append(Drift("missing-experiment", file, name, old.get("line", 0),
                                message="in the baseline but did not run"))
    for result in results:
        old = stored.get(result.name)
        if old is None:
            drifts.append(Drift("new-experiment", file, result.name, result.line,
                                message="not in the baseline"))
        elif result.error is not None:
            if old.get("error") is None:
                drifts.append(Drift("now-errors", file, result.name, result.line, message=result.error))
        elif old.get("error") is None:
            drifts += _element_drifts(old["elements"], result, file, factor, fraction)
    return drifts


def _element_drifts(old_rows, result: ExperimentResult, file, factor, fraction) -> list:
    before = {_key(row): row for row in old_rows}
    drifts = []
    seen = set()
    for row in report_rows(result):
        r = Row(row)
        key = _key(_stored(row))
        seen.add(key)
        old = before.get(key)
        where = dict(element=key[4], point=r.point, input=r.input, index=r.index, output=r.output,
                     after=r.abs_error, tolerance=r.tolerance, status_after=r.status)
        if old is None:
            drifts.append(Drift("new-element", file, result.name, result.line, **where))
            continue
        old_error = float("nan") if old["abs_error"] is None else old["abs_error"]
        where |= dict(before=old_error, status_before=old["status"])
        if old["status"] in PASSING and r.status not in PASSING:
            drifts.append(Drift("now-fails", file, result.name, result.line, **where))
        elif old["status"] == "pass" and r.status == "pass" and grew(old_error, r.abs_error, r.tolerance,
                                                                    factor, fraction):
            drifts.append(Drift("grew", file, result.name, result.line, **where))
    for key, old in before.items():
        if key not in seen:
            point, input_, index, output, element = key
            drifts.append(Drift("missing-element", file, result.name, result.line, element, point, input_,
                                index, output, before=_nan(old["abs_error"]), status_before=old["status"]))
    return drifts


def _nan(x):
    return float("nan") if x is None else x


def grew(before: float, after: float, tolerance: float, factor: float = DRIFT_FACTOR,
         fraction: float = DRIFT_FRACTION) -> bool:
    """The drift rule: ``after > factor * before`` and ``after > fraction * tolerance``."""
    return after > factor * before and after > fraction * tolerance


# --- text -----------------------------------------------------------------------


def rule(factor: float = DRIFT_FACTOR, fraction: float = DRIFT_FRACTION) -> str:
    return f"an error grows when it is over {factor:g}x its baseline and over {fraction:g}x its tolerance"


def drift_table(drifts, baselines: dict, factor: float = DRIFT_FACTOR, fraction: float = DRIFT_FRACTION,
                rows: int = TABLE_ROWS) -> str:
    """The console's baseline section: one line per spec file, then the worst drifts as a table.

    ``baselines`` maps each spec file to the baseline file it was compared with.
    """
    lines = []
    for file, path in baselines.items():
        mine = [d for d in drifts if d.file == file]
        experiments = len({d.experiment for d in mine})
        verdict = (f"{len(mine)} drift{'s' if len(mine) != 1 else ''} in {experiments} "
                   f"experiment{'s' if experiments != 1 else ''}") if mine else "no drift"
        lines.append(f"baseline {one_line(path)}: {verdict}")
    if drifts:
        shown = sorted(drifts, key=severity)[:rows]
        table = [("kind", "experiment", "element", "point", "output", "before", "after", "tolerance", "growth")]
        for d in shown:
            growth = "-" if math.isnan(d.growth) else ("inf" if math.isinf(d.growth) else "%.3gx" % d.growth)
            place = (d.element, str(d.point), str(d.output)) if d.element else ("-", "-", "-")
            table.append((d.kind, d.experiment, *place, _e(d.before), _e(d.after), _e(d.tolerance), growth))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        lines.append(f"worst drifts ({rule(factor, fraction)}):")
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
        if len(drifts) > rows:
            lines.append(f"  ... and {len(drifts) - rows} more (--format json lists them all)")
        lines.append("a drift is a regression: fix it, or accept the new numbers with --update-baseline")
    return "\n".join(lines) + "\n"
