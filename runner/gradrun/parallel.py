"""Running a run's units side by side: worker processes on one machine, or a Dask cluster.

A run is cut into units: a chunk of consecutive experiments of a spec (so
that small experiments do not cost a round trip each), or a slice of the
sweep points of one large experiment. A unit does in its worker everything
that is per experiment (``work``): it resolves its experiments (with ``-j``
the main process only parses the spec files: ``gradrun.window``), checks
them with ``runner.run_experiment``, and formats their CSV rows
(``csvrows.formatted``) under the columns the spec's report is expected to
have. The main process hands out the units, a few at a time, and joins the
results in spec order.

A worker that meets a large experiment in its chunk does not check it: it
sends back its number of points (``Split``), and the main process hands out
slices of its points in a second round. The points draw their random
directions from ``(seed, point)``, so a slice's rows are the rows a serial
run makes for the same points, and ``assemble`` joins them (and their CSV
bytes) in point order. Reports are therefore the same bytes as a serial
run's; where a result's CSV rows were formatted under other columns than the
report turns out to have, the writer formats them again (``report.csv_chunks``).

One large full check of a black box (one point) is split by its elements
instead: the worker sends it back (``piecework.Apart``), and the main
process checks it, handing each measuring phase's element pieces to the
workers (``gradrun.piecework``, ``gradrun.pieces``).

Workers never receive function objects: a local worker is forked with the
parsed (or loaded) specs, or loads them itself where forking is unsafe
(``gradrun.localpool``); a Dask worker receives the spec's text and the
user's modules (``gradrun.dask_cluster``). Results travel back pickled.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Optional

from . import csvrows, deadline, pieces, piecework, runner, shards, window
from .columns import Columns
from .model import ExperimentResult, SpecError

UNITS_PER_WORKER = 16  # at most this many chunks per worker: the smallest is a 16 * workers-th of the whole
GUIDED = 2  # a chunk takes a GUIDED * workers-th of the experiments left (guided self-scheduling)
SLICES_PER_WORKER = 2  # slices of a large experiment's points per worker
SPLIT_COST = 4096  # points x input elements from which an experiment with several points is sliced


@dataclass(frozen=True)
class Unit:
    """One piece of work: experiments ``experiments`` of spec ``spec``; of one experiment,
    only points ``start:stop`` when ``stop`` is given."""

    spec: int  # position of the spec file in the run
    experiments: tuple  # positions of the experiments in their spec
    names: tuple  # their names, for progress and errors
    start: int = 0
    stop: Optional[int] = None
    check: bool = True  # False: only resolve them (experiments --only leaves out are still validated)

    @property
    def name(self) -> str:
        return self.names[0]


@dataclass(frozen=True)
class Task:
    """What every unit of a run is done with, wherever it runs."""

    overrides: dict = field(default_factory=dict)
    load_options: tuple = ()  # load_spec's keywords (device, policy), as (name, value) pairs
    schemas: dict = field(default_factory=dict)  # spec position -> the report's expected Arrow schema; none: no CSV
    split: bool = False  # send large experiments back as a Split instead of checking them
    split_cost: int = SPLIT_COST  # from what cost (``large``) an experiment is sent back
    piece_min: int = pieces.PIECE_MIN  # elements from which a black box's check is measured in pieces
    piece_size: int = pieces.PIECE  # elements of a piece (the main process's ``pieces.plan()``)

    def splitting_all(self) -> "Task":
        """This task, sending back every experiment of several points: to find where a worker dies."""
        return replace(self, split=True, split_cost=0)


class Split(NamedTuple):
    """A large experiment a worker sent back unchecked, to be sliced by its points."""

    points: int


class Outcome(NamedTuple):
    """What a unit came back with: per experiment a result (or a Split), the resolved
    settings, or the issues of its spec found resolving it."""

    results: list
    settings: list
    issues: list


def chunks(chosen, workers: int) -> list:
    """The first round's units: ``chosen`` is ``[(spec position, spec, [experiment positions])]``;
    consecutive experiments go together, in chunks that shrink as the run goes on (guided
    self-scheduling): each takes a ``GUIDED * workers``-th of what is left, at least a
    ``UNITS_PER_WORKER * workers``-th of the whole. Large chunks first cost few round trips;
    small ones last keep every worker busy until the end.

    The experiments of a spec the workers resolve (``window.Parsed``) that
    are not chosen get units too, which only resolve them: a serial run
    validates every experiment of a file, chosen or not.
    """
    total = sum(len(positions) for _, _, positions in chosen)
    smallest = max(1, math.ceil(total / (UNITS_PER_WORKER * workers)))
    left, units = total, []
    for spec_no, spec, positions in chosen:
        left_out = [k for k in range(len(spec.experiments)) if k not in set(positions)] \
            if isinstance(spec, window.Parsed) else []
        for some, check in ((positions, True), (left_out, False)):
            at = 0
            while at < len(some):
                size = max(smallest, math.ceil(left / (GUIDED * workers))) if check else smallest
                mine = tuple(some[at:at + size])
                units.append(Unit(spec_no, mine, tuple(spec.experiments[k].name for k in mine), check=check))
                at += len(mine)
                left -= len(mine) if check else 0
    return units


def slices(unit_spec: int, k: int, name: str, points: int, workers: int) -> list:
    """The units of one large experiment: slices of consecutive points, about ``SLICES_PER_WORKER`` per worker."""
    size = max(1, math.ceil(points / (SLICES_PER_WORKER * workers)))
    return [Unit(unit_spec, (k,), (name,), start, min(start + size, points)) for start in range(0, points, size)]


def large(exp, cost: int = SPLIT_COST) -> bool:
    """Whether an experiment is worth slicing across workers: several points, and costly in all."""
    return len(exp.points) > 1 and shards.cost(exp) >= cost


def work(spec, unit: Unit, task: Task) -> Outcome:
    """Do one unit, in this process: resolve (a ``window.Parsed`` spec), check, format CSV rows."""
    with pieces.planned(task.piece_min, task.piece_size), deadline.loading(task.overrides):
        return _work(spec, unit, task)


def _work(spec, unit: Unit, task: Task) -> Outcome:
    if isinstance(spec, window.Parsed):
        experiments, issues = window.resolve(spec, unit.experiments, **dict(task.load_options))
        if issues or not unit.check:
            return Outcome([], [], issues)
    else:
        experiments = [spec.experiments[k] for k in unit.experiments]
    results = []
    for exp in experiments:
        if unit.stop is None and task.split and large(exp, task.split_cost):
            results.append(Split(len(exp.points)))
            continue
        elements = piecework.wanted(exp, task.overrides, task.piece_min) if unit.stop is None and task.split else 0
        if elements:
            results.append(piecework.Apart(elements))
            continue
        part = exp if unit.stop is None else replace(exp, points=exp.points[unit.start:unit.stop])
        results.append(runner.run_experiment(part, task.overrides))
    schema = task.schemas.get(unit.spec)
    if schema is not None:  # the chunk's rows formatted together, each result given its own
        checked = [r for r in results if not isinstance(r, (Split, piecework.Apart))]
        for result, rows in zip(checked, csvrows.formatted(checked, schema)):
            result.csv = rows
    return Outcome(results, [exp.settings for exp in experiments], [])


def failed(unit: Unit, why: str) -> Outcome:
    """The outcome of a unit that never came back: an ERROR of each of its experiments."""
    return Outcome([ExperimentResult(name, [], error=why) for name in unit.names], [None] * len(unit.names), [])


def rescued(units, alone, task: Task, why: str, points=None) -> list:
    """The outcomes of units whose worker died, from running each again alone: ``alone(units, task)``
    is each unit's outcome in a fresh worker of its own, side by side, or None where that worker died too.

    Of a chunk that kills its worker again, each experiment is tried alone
    (side by side too); of an experiment, its points are halved until the one
    that kills its worker is found: it becomes the experiment's ERROR, and the
    points before it report as a serial run's would.

    ``points(unit)``, where this process knows them (a loaded spec), is how many
    points each experiment of the unit has: the units are then run again in
    slices of their experiments' points (at most ``RESCUE_SLICES`` each), all
    side by side, and only a slice that died is halved. Where a death costs
    seconds (a Dask worker and its nanny start again, and Dask itself retries
    a task on other workers) that is three deaths, not six or more; and a
    nanny whose worker is killed again and again as it starts gives up,
    leaving a cluster with no workers.
    """
    if points is not None:
        return _by_slices(units, alone, task, why, points)
    return [got if got is not None else _died_again(unit, alone, task, why)
            for unit, got in zip(units, alone(units, task))]


RESCUE_SLICES = 16  # slices an experiment's points are rerun in, at most, after its worker died (``rescued``)


def _by_slices(units, alone, task: Task, why: str, points) -> list:
    """``rescued``'s outcomes, each experiment's points run again in slices side by side."""
    plans = [[_rescue_slices(unit, k, name, span) for k, name, span in
              zip(unit.experiments, unit.names, [(unit.start, unit.stop)] if unit.stop is not None
                  else [(0, n) for n in points(unit)])]
             for unit in units]
    every = [one for plan in plans for experiment in plan for one in experiment]
    got = dict(zip(map(id, every), alone(every, task)))
    outcomes = []
    for plan in plans:
        results = []
        for experiment in plan:
            parts: list = []
            for one in experiment:
                parts += got[id(one)].results if got[id(one)] is not None else _bisect(one, alone, task, why)
                if any(r.error is not None for r in parts):
                    break  # the points after an error are not reported
            results.append(assemble(parts))
        outcomes.append(Outcome(results, [None] * len(results), []))
    return outcomes


def _rescue_slices(unit: Unit, k: int, name: str, span: tuple) -> list:
    """Experiment ``k``'s points ``start:stop`` in at most ``RESCUE_SLICES`` units."""
    start, stop = span
    size = max(1, math.ceil((stop - start) / RESCUE_SLICES))
    return [Unit(unit.spec, (k,), (name,), at, min(at + size, stop)) for at in range(start, max(stop, start + 1), size)]


def _died_again(unit: Unit, alone, task: Task, why: str) -> Outcome:
    """The outcome of a unit whose worker died twice (``rescued``)."""
    if len(unit.experiments) > 1:
        singles = rescued([Unit(unit.spec, (k,), (name,)) for k, name in zip(unit.experiments, unit.names)],
                          alone, task, why)
        return Outcome([r for o in singles for r in o.results], [s for o in singles for s in o.settings],
                       [i for o in singles for i in o.issues])
    if unit.stop is None:
        [found] = alone([unit], task.splitting_all())
        if found is None or not isinstance(found.results[0], Split):
            return failed(unit, why)
        unit = replace(unit, start=0, stop=found.results[0].points)
        return Outcome([assemble(_bisect(unit, alone, task, why))], found.settings, [])
    return Outcome([assemble(_bisect(unit, alone, task, why))], [None], [])


def _bisect(unit: Unit, alone, task: Task, why: str) -> list:
    """The results of a slice's points up to the first that kills its worker (an ERROR then)."""
    [got] = alone([unit], task)
    if got is not None:
        return got.results
    if unit.stop - unit.start == 1:
        return failed(unit, why).results
    mid = (unit.start + unit.stop) // 2
    left = _bisect(replace(unit, stop=mid), alone, task, why)
    if any(r.error is not None for r in left):
        return left  # the points after an error are not reported
    return left + _bisect(replace(unit, start=mid), alone, task, why)


def assemble(parts) -> ExperimentResult:
    """One experiment's result from its slices' results, in point order.

    As in the serial loop, the first point that raised ends the experiment:
    its error stands and the points after it are not reported.
    """
    kept, error, check = [], None, parts[0].check
    for part in parts:
        kept.append(part)
        if part.error is not None:
            error, check = part.error, part.check
            break
    if len(kept) == 1:
        return kept[0]
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
    formatted = [p.csv for p in kept]
    if all(f is not None for f in formatted) and len({f[0] for f in formatted}) == 1:
        result.csv = (formatted[0][0], b"".join(f[1] for f in formatted))
    return result


def _notes(result, parts) -> list:
    """The experiment's notes as the serial run makes them: those about its rows, from all of them,
    then what its functions said while the slices ran (in a worker; only the slices' notes tell)."""
    def about(r):
        return runner.unresolved_notes(r) + runner.screen_notes(r.projections)

    said = [note for part in parts for note in part.notes if note not in set(about(part))]
    return about(result) + list(dict.fromkeys(said))


def expected_schema(spec, positions):
    """The Arrow schema the report of these experiments will have when every one reports rows."""
    import pyarrow as pa

    from . import layout

    types = {"number": pa.float64(), "text": pa.string()}
    fixed = list(layout.schema([]))
    return pa.schema(fixed + [pa.field(name, types[kind])
                              for name, kind in window.sweep_kinds(spec, positions).items()])


def run(chosen, overrides=None, jobs: int = 1, scheduler: str | None = None, progress=None, load_options=None,
        report_format: str = "csv"):
    """Run the chosen experiments; yield ``(spec position, results)`` in spec order, once all are done.

    ``chosen`` is ``[(spec position, spec, [experiment positions])]``; a spec
    is a loaded ``Spec`` or, with ``-j``, a ``window.Parsed`` its workers
    resolve (a problem any of them finds raises the ``SpecError`` a serial run
    raises, and nothing is yielded). ``jobs`` worker processes on this
    machine, or the Dask scheduler at ``scheduler``; one job runs in this
    process. ``progress(name, done, total)`` hears of every finished unit,
    whichever worker finished it. ``load_options`` are ``load_spec``'s
    keywords (``device``, ``policy``) for workers that load or resolve a spec.
    """
    load_options = dict(load_options or {})
    specs = {n: spec for n, spec, _ in chosen}
    schemas = {n: expected_schema(spec, positions) for n, spec, positions in chosen} \
        if report_format == "csv" else {}
    with _workers(specs, jobs, scheduler) as workers:
        now = pieces.plan()
        task = Task(dict(overrides or {}), tuple(sorted(load_options.items())), schemas, split=workers.count > 1,
                    piece_min=now.min_size, piece_size=now.size)
        parts, sliced = _checked(chosen, specs, workers, task, progress)
    for n, spec, positions in chosen:
        yield n, [_joined(spec, n, k, parts, sliced) for k in positions]


def _checked(chosen, specs, workers, task, progress) -> tuple:
    """(parts, sliced): each experiment's result, Split or result of its element pieces, and the
    slices of the Split ones by their first point; ``workers`` run the units (``_workers``)."""
    count = _Counter(progress)
    parts = _first_round(workers.execute, chunks(chosen, workers.count), specs, task, count)
    sliced: dict = {}
    more = [u for (n, k), got in parts.items() if isinstance(got, Split)
            for u in slices(n, k, specs[n].experiments[k].name, got.points, workers.count)]
    count.total += len(more)
    with contextlib.closing(workers.execute(more, task)) as finished:  # as in ``_first_round``
        for unit, outcome in finished:
            count(unit)
            if outcome.issues:  # pragma: no cover - its experiment resolved in the first round
                raise SpecError(_every_issue(specs, outcome.issues, dict(task.load_options)))
            sliced.setdefault((unit.spec, unit.experiments[0]), {})[unit.start] = outcome.results[0]
    apart = sorted((n, k) for (n, k), got in parts.items() if isinstance(got, piecework.Apart))
    count.total += len(apart)
    if apart:
        with workers.piece_mappers(task) as mapper_for:
            for n, k in apart:  # one large check at a time, here; its element pieces in the workers
                parts[(n, k)] = piecework.run_apart(specs[n], k, task.overrides, task.load_options,
                                                    mapper_for(n, k), task.schemas.get(n))
                count(Unit(n, (k,), (specs[n].experiments[k].name,)))
    return parts, sliced


@contextlib.contextmanager
def _workers(specs, jobs: int, scheduler):
    """Where the units run, for the run's length: the cluster at ``scheduler`` (one client), ``jobs``
    worker processes, or this process. Each has ``count`` (workers), ``execute(units, task)`` giving
    ``(unit, outcome)`` as they finish, and ``piece_mappers(task)`` (``pieces.Plan.mapper``s)."""
    if scheduler is not None:
        from . import dask_cluster

        with dask_cluster.connected(scheduler, specs) as cluster:
            yield cluster
    elif jobs > 1:
        from . import localpool

        yield localpool.Workers(specs, jobs)
    else:
        yield _Here(specs)


class _Here:
    """This process, one unit after another (one job: nothing is sent back, no pieces)."""

    count = 1

    def __init__(self, specs):
        self.specs = specs

    def execute(self, units, task):
        return ((u, work(self.specs[u.spec], u, task)) for u in units)


class _Counter:
    """Finished units, told to ``progress``; the total grows when large experiments are sliced."""

    def __init__(self, progress):
        self.progress, self.done, self.total = progress, 0, 0

    def __call__(self, unit):
        self.done += 1
        if self.progress is not None:
            self.progress(unit.name, self.done, self.total)


def _first_round(execute, units, specs, task, count) -> dict:
    """(spec, experiment) -> its result or Split; the issues of any spec stop the run (``SpecError``)."""
    parts, issues = {}, []
    count.total = len(units)
    # closed however the loop ends: a Ctrl-C or an error while this process handles an outcome finds
    # the iterator suspended, and only closing it stops the workers (``localpool._used``); left to the
    # garbage collector, which a kept traceback holds off, the exit waited for a worker that hangs
    with contextlib.closing(execute(units, task)) as finished:
        for unit, outcome in finished:
            count(unit)
            if outcome.issues:
                issues += outcome.issues
                break  # checking stops; only the issues matter now
            if not unit.check:
                continue
            for k, got, resolved in zip(unit.experiments, outcome.results, outcome.settings):
                parts[(unit.spec, k)] = got
                if resolved is not None and isinstance(specs[unit.spec], window.Parsed):
                    specs[unit.spec].experiments[k].settings = resolved  # the run record's seed
    if issues:
        raise SpecError(_every_issue(specs, issues, dict(task.load_options)))
    return parts


def _every_issue(specs, found, load_options) -> list:
    """Every issue of every spec, as loading each whole finds them (a serial run's words)."""
    from . import spec as spec_module

    issues = []
    for spec in specs.values():
        if isinstance(spec, window.Parsed):
            try:
                spec_module.load_spec(spec.path, **load_options)
            except SpecError as error:
                issues += error.issues
    return issues or list(dict.fromkeys(found))


def _joined(spec, n: int, k: int, parts: dict, sliced: dict) -> ExperimentResult:
    """Experiment ``k``'s result: as its unit sent it, or its slices assembled; placed in the user's file."""
    result = parts[(n, k)]
    if isinstance(result, Split):
        mine = sliced[(n, k)]
        result = assemble([mine[start] for start in sorted(mine)])
    outline = spec.experiments[k]
    result.file, result.line = outline.file, outline.line  # where the user's spec is, not a worker's copy
    return result
