"""One large full check measured in element pieces across worker processes (``-j``, Dask).

A worker that meets an experiment of one point whose check ``wanted`` says
is large (a black box, an input of at least ``pieces.PIECE_MIN`` elements)
sends it back unchecked (``Apart``). The main process then checks it itself
(``run_apart``): the analytic side once, the judge on whole Jacobian rows,
and every measuring phase mapped over the input's element pieces by a
``mapper`` that sends each piece to a worker (``gradrun.localpool``,
``gradrun.dask_cluster``). There a ``Job`` names the experiment, the point
and the input: the worker resolves the experiment from its own copy of the
spec, evaluates the point and measures the piece (``measure``). A serial
run measures the same pieces one after another (``gradrun.pieces``), so the
report is the same bytes.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from . import csvrows, deadline, pieces, runner, threads, usercode, verdict, window


class Apart(NamedTuple):
    """A large full check a worker sent back unchecked, to be measured in element pieces."""

    elements: int  # of its largest input


class Job(NamedTuple):
    """A piece of a phase, as a worker receives it: experiment ``experiment`` of the spec, at
    point ``point``, input ``input``; ``phase`` called with ``arguments`` on ``elements``."""

    experiment: int  # position in its spec
    point: int
    input: str
    phase: str
    arguments: tuple
    elements: np.ndarray


class WorkerDied(RuntimeError):
    """A worker process died measuring a piece: the experiment's ERROR."""


class Raised(Exception):
    """What measuring a piece raised in a worker (the user's code, mostly), as text: its class
    may exist only there (a user module is loaded under a name of its own in each process),
    and an exception that cannot be unpickled comes back as a blob of bytes."""

    def __init__(self, kind: str, message: str):
        super().__init__(kind, message)
        self.kind, self.message = kind, message

    def original(self) -> Exception:
        """An exception of the same name and text, for the main process to raise in its place:
        the experiment's ERROR then reads as a serial run's."""
        return type(self.kind, (Exception,), {"__module__": __name__})(self.message)


def wanted(exp, overrides, min_size: int) -> int:
    """The elements of the largest input of ``exp`` when its check is measured in pieces across
    workers (one point, first order, a black box: ``pieces.due``), else 0."""
    if len(exp.points) != 1:
        return 0  # several points are sliced by points instead (``parallel.large``)
    point = exp.points[0]
    settings = exp.settings_at(point, overrides)
    if settings.order != 1:
        return 0
    largest = max((int(np.size(point.inputs.get(name, 0))) for name in exp.wrt), default=0)
    return largest if pieces.due(runner.graph_of(exp), largest, min_size) else 0


def resolved(spec, k: int, load_options):
    """Experiment ``k`` of a loaded ``Spec``, or resolved from a ``window.Parsed``."""
    if not isinstance(spec, window.Parsed):
        return spec.experiments[k]
    experiments, issues = window.resolve(spec, [k], **dict(load_options))
    if issues:  # pragma: no cover - a worker resolved it before it was sent back
        raise RuntimeError(f"{spec.path}: experiment {k} no longer resolves: {issues[0]}")
    return experiments[0]


def run_apart(spec, k: int, overrides, load_options, mapper, schema=None):
    """Check experiment ``k`` of ``spec`` here, its pieces measured by ``mapper(where, phase, calls)``
    (``measure``'s pairs, in order); with ``schema``, its CSV rows formatted as a worker formats them."""
    exp = resolved(spec, k, load_options)
    said: list = []  # what the experiment's functions said in the workers (a framework's fallback, say)

    def measured(where, phase, calls):
        try:
            try:
                found = mapper(where, phase, calls)
            except WorkerDied:  # a worker killed once from outside (the OOM killer, a lost host) costs a
                found = mapper(where, phase, calls)  # rerun; a piece that kills its worker again is the ERROR
        except Raised as error:  # the experiment's ERROR, in a serial run's words
            if error.kind == deadline.TimedOut.__name__:
                raise deadline.TimedOut() from None  # said as the point's (``runner.run_experiment``)
            raise error.original() from None
        said.extend(note for _, notes in found for note in notes if note not in said)
        return [value for value, _ in found]

    with pieces.planned(mapper=measured):
        result = runner.run_experiment(exp, overrides)
    result.notes += [note for note in said if note not in result.notes]
    if schema is not None:
        [result.csv] = csvrows.formatted([result], schema)
    return result


def jobs(k: int, where, phase, calls) -> list:
    """The ``Job`` of every call of a phase (``pieces.Plan.mapper``'s calls)."""
    point, name = where
    return [Job(k, point, name, phase, tuple(arguments), elements) for arguments, elements in calls]


# In a worker: the input last measured, per thread (a Dask worker may run several pieces at once):
# ``key`` (spec, experiment, point, input, overrides) and its (experiment, ``verdict._Columns``).
_MEASURING = threading.local()


def measure(spec, job: Job, overrides, load_options) -> tuple:
    """Runs in a worker: the numeric side of the job's input at its point (kept for the next
    piece of the same input), then the job's phase on its elements. Returns what the phase
    found and what the experiment's functions have said (``runner.function_notes``)."""
    try:
        with threads.one_blas_thread(), usercode.kept_cwd(), deadline.loading(overrides), \
                deadline.limited(overrides.get(deadline.OPTION)):
            # as ``runner.run_experiment`` checks a point (so a piece that hangs ends too)
            return _measure(spec, job, overrides, load_options)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # sent back as text (``Raised``): it becomes the experiment's ERROR
        kind, message = type(error).__name__, str(error)
    raise Raised(kind, message)  # outside the handler: no __context__ holding the user's exception


def _measure(spec, job: Job, overrides, load_options) -> tuple:
    key = (getattr(spec, "path", id(spec)), job.experiment, job.point, job.input, tuple(sorted(overrides.items())))
    if getattr(_MEASURING, "key", None) != key:
        _MEASURING.key = None  # nothing kept while the next is made: a failure leaves no stale input
        exp = resolved(spec, job.experiment, load_options)
        point = next(p for p in exp.points if p.index == job.point)
        settings = exp.settings_at(point, overrides)
        cols = verdict.numeric_side(runner.graph_of(exp), point.inputs, exp.wrt, settings.dtype, job.input)
        _MEASURING.key, _MEASURING.kept = key, (exp, cols)
    exp, cols = _MEASURING.kept
    return pieces.measure(cols, job.phase, job.arguments, job.elements), runner.function_notes(exp)
