"""What a worker's death costs, the one rule for worker processes (``-j``) and a Dask cluster.

A finished task holds its outcome, or tells that its worker died under it
(``DIED``), or raised (an ERROR of its unit). Units whose worker died are run
again alone at the end (``rescued``: ``parallel.rescued``), so only what kills
its worker again becomes an ERROR; the pieces of a large check whose worker died
are measured again once, and a second death makes its experiment an ERROR
(``gathered``: ``piecework.WorkerDied``, ``piecework.run_apart``). Each
backend says only how a death shows (``died``: an exception test) and how it
submits.
"""

from __future__ import annotations

from . import parallel, piecework

DIED = object()  # the unit's worker died under it


def settled(unit, result, died):
    """The outcome ``result()`` returns; ``DIED`` when ``died(error)`` says its worker died;
    an ERROR of each experiment of ``unit`` for whatever else the task raised."""
    try:
        return result()
    except Exception as error:  # the spec could not be loaded there, a result not sent back, ...
        if died(error):
            return DIED
        return parallel.failed(unit, f"{type(error).__name__}: {error}")


def alone(unit, result, died):
    """``settled`` for a unit run again alone: None when its worker died again (``parallel.rescue``)."""
    got = settled(unit, result, died)
    return None if got is DIED else got


def rescued(finished, run_alone, task, why: str, points=None):
    """``(unit, outcome)`` as ``finished`` yields them; those ``DIED`` are run again, each alone and side
    by side (``run_alone(units, task)``, as ``parallel.rescued`` calls it, with ``points``), once the
    others are done."""
    suspects = []
    try:
        for unit, outcome in finished:
            if outcome is DIED:
                suspects.append(unit)
            else:
                yield unit, outcome
    finally:  # closed (a Ctrl-C in the caller): ``finished`` stops its workers now, not when collected
        finished.close()
    if suspects:
        yield from zip(suspects, parallel.rescued(suspects, run_alone, task, why, points))


def gathered(futures, died, why: str) -> list:
    """The results of a phase's pieces, in order; ``piecework.WorkerDied(why)`` when a worker died."""
    try:
        return [future.result() for future in futures]
    except Exception as error:
        if died(error):
            raise piecework.WorkerDied(why) from None
        raise
