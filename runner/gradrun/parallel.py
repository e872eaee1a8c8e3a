"""Running a run's units side by side: worker processes on one machine, or a Dask cluster.

A run is cut into units: an experiment, or a slice of its sweep points when
it has many. Every unit is checked by ``runner.run_experiment`` on a copy of
its experiment holding only those points; the points draw their random
directions from ``(seed, point)``, so a unit's records are the records a
serial run makes for the same points. ``assemble`` joins an experiment's
units back in point order, exactly as the serial loop would have produced
them, and ``run`` hands each spec's results back in spec order.

Workers never receive function objects: a local worker is forked with the
specs already loaded (or, where forking is unsafe, loads the spec file
itself, once per process); a Dask worker receives the spec's text and the
user's modules (``gradrun.dask_cluster``). Results travel back pickled.
Each local worker caps its threads (``gradrun.threads``) so that N workers
share the cores rather than each taking all of them.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from . import runner, threads
from .columns import Columns
from .model import ExperimentResult

UNITS_PER_WORKER = 2  # a sweep is cut into about this many slices per worker, to even out the load
IN_FLIGHT_PER_WORKER = 2  # units handed to the pool ahead; bounds what a dying worker takes with it


@dataclass(frozen=True)
class Unit:
    """One piece of work: points ``start:stop`` of experiment ``experiment`` of spec ``spec``."""

    spec: int  # position of the spec file in the run
    experiment: int  # position of the experiment in its spec
    start: int
    stop: int
    name: str  # the experiment's name, for progress and errors


def plan(chosen, workers: int) -> list:
    """The units of a run: ``chosen`` is ``[(spec position, spec, [experiment positions])]``.

    An experiment with more points than workers is cut into slices of
    consecutive points, about ``UNITS_PER_WORKER`` per worker.
    """
    units = []
    for spec_no, spec, positions in chosen:
        for k in positions:
            exp = spec.experiments[k]
            n = len(exp.points)
            size = max(1, math.ceil(n / (UNITS_PER_WORKER * workers))) if workers > 1 else max(n, 1)
            units += [Unit(spec_no, k, start, min(start + size, n), exp.name)
                      for start in range(0, max(n, 1), size)]
    return units


def run_unit(spec, unit: Unit, overrides=None) -> ExperimentResult:
    """Check one unit of a loaded spec, in this process."""
    exp = spec.experiments[unit.experiment]
    return runner.run_experiment(replace(exp, points=exp.points[unit.start:unit.stop]), overrides)


def failed(unit: Unit, why: str) -> ExperimentResult:
    """The result of a unit that never came back: an ERROR of its experiment."""
    return ExperimentResult(unit.name, [], error=why)


def assemble(parts) -> ExperimentResult:
    """One experiment's result from its units' results, in point order.

    As in the serial loop, the first point that raised ends the experiment:
    its error stands and the points after it are not reported.
    """
    kept, error, check = [], None, parts[0].check
    for part in parts:
        kept.append(part)
        if part.error is not None:
            error, check = part.error, part.check
            break
    first = parts[0]
    result = ExperimentResult(
        first.name, Columns.concat([p.elements for p in kept]), sum(p.seconds for p in kept), error, check,
        file=first.file, line=first.line, projections=Columns.concat([p.projections for p in kept]),
        blocks=[b for p in kept for b in p.blocks if b != (0, 0)],
        shapes={k: v for p in kept for k, v in p.shapes.items()})
    if len(result.projections):
        result.check = "screen"
    elif len(result.elements):
        result.check = str(result.elements["check"][0])
    result.notes = _notes(result, kept)
    return result


def _notes(result, parts) -> list:
    """The experiment's notes as the serial run makes them: those about its rows, from all of them,
    then what its functions said while the units ran (in a worker; only the units' notes tell)."""
    def about(r):
        return runner.unresolved_notes(r) + runner.screen_notes(r.projections)

    said = [note for part in parts for note in part.notes if note not in set(about(part))]
    return about(result) + list(dict.fromkeys(said))


def run(chosen, overrides=None, jobs: int = 1, scheduler: str | None = None, progress=None, load_options=None):
    """Run the chosen experiments; yield ``(spec position, results)`` in spec order.

    ``jobs`` worker processes on this machine, or the Dask scheduler at
    ``scheduler``; one job runs in this process. ``progress(name, done,
    total)`` hears of every finished unit, whichever worker finished it.
    ``load_options`` are ``load_spec``'s keywords (``device``) the specs were
    loaded with, for workers that load them again.
    """
    load_options = dict(load_options or {})
    workers = jobs if scheduler is None else _cluster_workers(scheduler)
    units = plan(chosen, workers)
    if scheduler is not None:
        from . import dask_cluster

        finished = dask_cluster.execute(scheduler, chosen, units, overrides, load_options)
    elif jobs > 1:
        finished = _pool(units, {spec_no: spec for spec_no, spec, _ in chosen}, overrides, jobs, load_options)
    else:
        specs = {spec_no: spec for spec_no, spec, _ in chosen}
        finished = ((u, run_unit(specs[u.spec], u, overrides)) for u in units)
    yield from _in_spec_order(chosen, units, finished, progress)


def _cluster_workers(scheduler: str) -> int:
    from . import dask_cluster

    return dask_cluster.worker_count(scheduler)


def _in_spec_order(chosen, units, finished, progress):
    """Gather finished units; yield each spec's results as soon as it and every spec before it are done."""
    parts: dict = {}
    waiting = deque(chosen)
    left = {spec_no: sum(u.spec == spec_no for u in units) for spec_no, _, _ in chosen}
    for done, (unit, result) in enumerate(finished, 1):
        parts[unit] = result
        left[unit.spec] -= 1
        if progress is not None:
            progress(unit.name, done, len(units))
        while waiting and left[waiting[0][0]] == 0:
            spec_no, spec, positions = waiting.popleft()
            yield spec_no, _spec_results(spec, spec_no, positions, units, parts)
    for spec_no, spec, positions in waiting:  # only specs with nothing chosen are left
        yield spec_no, []


def _spec_results(spec, spec_no, positions, units, parts) -> list:
    results = []
    for k in positions:
        result = assemble([parts[u] for u in units if u.spec == spec_no and u.experiment == k])
        exp = spec.experiments[k]
        result.file, result.line = exp.file, exp.line  # where the user's spec is, not a worker's copy
        results.append(result)
    return results


# --- worker processes on this machine ------------------------------------------

# Frameworks that run thread pools of their own: a process that has loaded
# one is not forked (a forked child may deadlock on their locks), it spawns.
FORK_UNSAFE = ("torch", "jax", "tensorflow")

_LOADED: dict = {}  # in a worker: spec path -> Spec, inherited when forked, else loaded once


def _local_unit(path: str, unit: Unit, overrides, load_options) -> ExperimentResult:
    from . import spec as spec_module

    if path not in _LOADED:
        _LOADED[path] = spec_module.load_spec(path, **load_options)
    return run_unit(_LOADED[path], unit, overrides)


def _pool(units, specs, overrides, jobs: int, load_options):
    """``(unit, result)`` as workers finish them; a worker that dies costs only its own unit.

    A dead worker breaks the whole pool: the units it had in flight are run
    again, each alone in a fresh process, so the one that kills its worker is
    named in an ERROR and the others still report.
    """
    queue, suspects = deque(units), []
    paths = {spec_no: spec.path for spec_no, spec in specs.items()}
    options = (overrides, load_options)
    per_worker = max(1, threads.cores() // jobs)
    _LOADED.update({spec.path: spec for spec in specs.values()})  # a forked worker starts with them
    try:
        with threads.env_caps(per_worker):
            while queue:
                with _executor(jobs, per_worker) as pool:
                    suspects += yield from _drain(pool, queue, paths, options, IN_FLIGHT_PER_WORKER * jobs)
            for unit in suspects:
                with _executor(1, per_worker) as pool:
                    orphans = yield from _drain(pool, deque([unit]), paths, options, 1)
                for lost in orphans:
                    yield lost, failed(lost, "its worker process died while checking it")
    finally:
        _LOADED.clear()


def _executor(jobs: int, per_worker: int):
    """Worker processes: forked, so they start with the loaded specs; spawned when forking is unsafe."""
    import multiprocessing

    fork = "fork" in multiprocessing.get_all_start_methods() and not any(m in sys.modules for m in FORK_UNSAFE)
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                               initializer=threads.cap_process, initargs=(per_worker,))


def _drain(pool, queue, paths, options, ahead: int):
    """Feed ``queue`` to ``pool`` keeping ``ahead`` units in flight; returns the units a broken pool lost.

    ``options``: the overrides and load_spec keywords every unit runs with.
    """
    running: dict = {}
    while queue or running:
        while queue and len(running) < ahead:
            unit = queue.popleft()
            running[pool.submit(_local_unit, paths[unit.spec], unit, *options)] = unit
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            unit = running.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                return [unit, *running.values()]
            except Exception as error:  # the spec could not be loaded there, or a result not sent back
                result = failed(unit, f"{type(error).__name__}: {error}")
            yield unit, result
    return []
