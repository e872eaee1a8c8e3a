"""Running experiments: a resolved spec in, one result per experiment out."""

from __future__ import annotations

import fnmatch
import time

from . import engine, hessian
from .verdict import check_point
from .model import Experiment, ExperimentResult, Spec
from .tree import Call


def graph_of(exp: Experiment) -> engine.Graph:
    """The experiment's graph over its inputs (summed when it says ``reduce: sum``)."""
    expr = Call("sum", (exp.expr,)) if exp.settings.reduce == "sum" else exp.expr
    names = list(exp.points[0].inputs) if exp.points else list(exp.wrt)
    return engine.build(expr, exp.functions, names)


def run_experiment(exp: Experiment, overrides: dict | None = None, tick=None) -> ExperimentResult:
    """Check every point of one experiment; an internal error becomes its failure.

    ``tick(text)``, when given, hears how far a long check has got.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    start = time.perf_counter()
    records: list = []
    error = None
    check_mode = "full"
    try:
        graph = graph_of(exp)
        for point in exp.points:
            settings = exp.settings_at(point).updated(**overrides)
            check_mode = settings.check
            at = f"point {point.index}, " if len(exp.points) > 1 else ""
            checker = hessian.check_point if settings.order == 2 else check_point
            records.extend(checker(
                graph, point.inputs, exp.wrt, settings, experiment=exp.name, point=point.index,
                coords=point.coords,
                tick=None if tick is None else lambda name, done, total, at=at: tick(f"{at}{name}: {done}/{total}")))
    except Exception as exc:  # one broken experiment must not stop the others
        error = f"{type(exc).__name__}: {exc}"
    if records:
        check_mode = records[0].check
    return ExperimentResult(exp.name, records, time.perf_counter() - start, error, check_mode,
                            notes=unresolved_notes(records) + screen_notes(records) + function_notes(exp),
                            file=exp.file, line=exp.line)


def screen_notes(records) -> list:
    """What each screen could see: the smallest single-entry error it was sure to flag."""
    seen: dict = {}
    for r in records:
        if r.check == "screen" and r.index == -1:
            seen.setdefault(r.input, []).append(r.tolerance)
    return [f"{name}: screened along {len(tols)} random sign directions; flags any single-entry "
            f"error above {max(tols):.2g}" for name, tols in seen.items()]


def function_notes(exp: Experiment) -> list:
    """What the experiment's own code said about how it was evaluated (vmap fell back, say)."""
    said = [note for f in exp.functions.values() for note in getattr(f, "notes", ())]
    return list(dict.fromkeys(said))


def unresolved_notes(records) -> list:
    """What an unresolved entry needs: a better measurement than gradrun could make
    (docs/pass-rule.md#unresolved), and what the user can change to get a verdict."""
    stuck = [r for r in records if r.status == "unresolved"]
    if not stuck:
        return []
    first = stuck[0]
    return [f"{len(stuck)} unresolved (not a pass), e.g. {first.element} out[{first.output}]: {first.reason}; "
            "to decide, check in float64, at a point where the function is better conditioned, "
            "with method: complex if the code is complex-safe, or with a looser rtol/atol if that "
            "is all the precision you need"]


def select(spec: Spec, only: str | None) -> list:
    return [e for e in spec.experiments if only is None or fnmatch.fnmatchcase(e.name, only)]


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
