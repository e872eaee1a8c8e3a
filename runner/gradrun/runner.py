"""Running experiments: a resolved spec in, one result per experiment out."""

from __future__ import annotations

import time

import numpy as np

from . import deadline, engine, hessian, selection, threads, usercode
from .verdict import check_point
from .layout import report_column, report_rows
from .limits import MAX_REPORT_ROWS
from .model import Experiment, ExperimentResult, Spec, one_line
from .tree import Call


def graph_of(exp: Experiment) -> engine.Graph:
    """The experiment's graph over its inputs (summed when it says ``reduce: sum``): the one
    its spec's loading built, or, for an experiment made by hand, one built now."""
    if exp.graph is not None:
        return exp.graph
    expr = Call("sum", (exp.expr,)) if exp.settings.reduce == "sum" else exp.expr
    names = list(exp.points[0].inputs) if exp.points else list(exp.wrt)
    return engine.build(expr, exp.functions, names, exp.integers)


def run_experiment(exp: Experiment, overrides: dict | None = None, tick=None) -> ExperimentResult:
    """Check every point of one experiment; an internal error becomes its failure.

    ``tick(text)``, when given, hears how far a long check has got.
    """
    start = time.perf_counter()
    checked: list = []
    error = None
    check_mode = "full"
    limit = (overrides or {}).get(deadline.OPTION)
    # the rows a failed screen's follow-up may add, shared by the points of the whole sweep, so that
    # one experiment's report stays within MAX_REPORT_ROWS, and a -j unit's points get what a serial run's do
    share = MAX_REPORT_ROWS // max(exp.sweep_points or len(exp.points), 1)
    try:
        graph = graph_of(exp)
        for point in exp.points:
            settings = exp.settings_at(point, overrides)
            check_mode = settings.check
            at = f"point {point.index}, " if len(exp.points) > 1 else ""
            checker = hessian.check_point if settings.order == 2 else check_point
            told = None if tick is None else lambda name, done, total, at=at: tick(f"{at}{name}: {done}/{total}")
            # the same bits and folder wherever it runs; a point that hangs is stopped (--timeout)
            with threads.one_blas_thread(), usercode.kept_cwd(), deadline.limited(limit):
                checked.append(checker(graph, point.inputs, exp.wrt, settings, experiment=exp.name,
                                       point=point.index, coords=point.coords, tick=told, follow_up_rows=share))
    except KeyboardInterrupt:
        raise  # Ctrl-C stops the run
    except deadline.TimedOut:
        error = deadline.message(limit, point)
    except BaseException as exc:  # one broken experiment (user code's sys.exit too) must not stop the others
        error = one_line(f"{type(exc).__name__}: {exc}")
    result = ExperimentResult.from_checks(exp.name, checked, seconds=time.perf_counter() - start, error=error,
                                          file=exp.file, line=exp.line)
    if len(result.projections):
        check_mode = "screen"
    elif len(result.elements):
        check_mode = str(result.elements["check"][0])
    result.check = check_mode
    result.notes = unresolved_notes(result) + screen_notes(result.projections) + function_notes(exp)
    return result


def screen_notes(projections) -> list:
    """What each screen could see: the smallest single-entry error it was sure to flag."""
    if not len(projections):
        return []
    notes = []
    for name in dict.fromkeys(projections["input"].tolist()):
        tols = projections["tolerance"][projections["input"] == name]
        notes.append(f"{name}: screened along {len(tols)} random sign directions; flags any single-entry "
                     f"error above {tols.max():.2g}")
    return notes


def function_notes(exp: Experiment) -> list:
    """What the experiment's own code said about how it was evaluated (vmap fell back, say)."""
    said = [note for f in exp.functions.values() for note in getattr(f, "notes", ())]
    return list(dict.fromkeys(said))


def unresolved_notes(result) -> list:
    """What an unresolved entry needs: a better measurement than gradrun could make
    (docs/pass-rule.md#unresolved), and what the user can change to get a verdict."""
    stuck = result.count("unresolved")
    if not stuck:
        return []
    at = np.flatnonzero(report_column(result, "status") == "unresolved")[:1]
    first = report_rows(result, at)[0]
    return [f"{stuck} unresolved (not a pass), e.g. {first['element']} out[{first['output']}]: "
            f"{first.get('reason', '')}; "
            "to decide, check in float64, at a point where the function is better conditioned, "
            "with method: complex if the code is complex-safe, or with a looser rtol/atol if that "
            "is all the precision you need"]


def select(spec: Spec, only: str | None) -> list:
    return selection.chosen(spec.experiments, only)


def run_spec(spec: Spec, overrides: dict | None = None, only: str | None = None, progress=None) -> list:
    """Run the spec's experiments (those matching ``only``), in order."""
    chosen = select(spec, only)
    results = []
    for done, exp in enumerate(chosen):
        if progress is not None:
            progress(exp.name, done, len(chosen))
        tick = None
        if progress is not None:
            def tick(text, exp=exp, done=done):
                progress(f"{exp.name} ({text})", done, len(chosen))
        results.append(run_experiment(exp, overrides, tick))
    if progress is not None and chosen:
        progress("", len(chosen), len(chosen))
    return results
