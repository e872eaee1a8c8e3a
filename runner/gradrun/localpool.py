"""``-j N``: a run's units in N worker processes on this machine.

Workers are forked after the main process has imported what checking and
formatting need, so they start with the parsed (or loaded) specs and warm
imports; where a framework that must not be forked is loaded (PyTorch, JAX,
TensorFlow), they are spawned and read the spec files themselves, once per
process. Units are handed out a few at a time (``IN_FLIGHT_PER_WORKER``), so
a worker that dies takes little with it: the units it had in flight are run
again alone in fresh processes, side by side (``parallel.rescued``), and only what kills its
worker again becomes an ERROR. Each worker caps its threads
(``gradrun.threads``) so that N workers share the cores rather than each
taking all of them.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from . import deadline, parallel, piecework, threads, window, workerloss

PR_SET_PDEATHSIG = 1  # prctl(2)
STOP_TIMEOUT = 5  # seconds to wait for a killed worker process to be gone
ENDING = 1  # seconds a worker has to end once the pool shuts down, before it is ended (``_ended``)
IN_FLIGHT_PER_WORKER = 2  # units handed to the pool ahead; bounds what a dying worker takes with it
DIED = "its worker process died while checking it"
# Frameworks that run thread pools of their own: a process that has loaded
# one is not forked (a forked child may deadlock on their locks), it spawns.
FORK_UNSAFE = ("torch", "jax", "tensorflow")
WARM = ("gradrun.csvformat", "gradrun.layout", "gradrun.runner", "gradrun.window")  # imported before forking

_LOADED: dict = {}  # in a worker: (spec path, parsed?) -> Spec or Parsed, inherited when forked, else loaded once


def _source(spec) -> tuple:
    return spec.path, isinstance(spec, window.Parsed)


def _unit(source: tuple, unit, task):
    """Runs in a worker: the spec (from the fork, or read once), then the unit."""
    return parallel.work(_spec(source, task), unit, task)


def _piece(source: tuple, job, task):
    """Runs in a worker: the spec (from the fork, or read once), then a piece of a large check."""
    return piecework.measure(_spec(source, task), job, task.overrides, task.load_options)


def _spec(source: tuple, task):
    if source not in _LOADED:
        path, parsed = source
        options = dict(task.load_options)
        with deadline.loading(task.overrides):  # a spawned worker loads it: the user's code probed
            if parsed:
                _LOADED[source] = window.parse(path, **options)
            else:
                from . import spec as spec_module

                _LOADED[source] = spec_module.load_spec(path, **options)
    return _LOADED[source]


class Workers:
    """``jobs`` worker processes on this machine: where ``parallel.run`` runs a run's units."""

    def __init__(self, specs: dict, jobs: int):
        self.specs, self.count = specs, jobs

    def execute(self, units, task):
        return execute(self.specs, units, task, self.count)

    def piece_mappers(self, task):
        return piece_mappers(self.specs, task, self.count)


def execute(specs: dict, units, task, jobs: int):
    """``(unit, outcome)`` as workers finish them; a worker that dies costs only what it was doing."""
    import importlib

    for name in WARM:
        importlib.import_module(name)
    queue = deque(units)
    # A forked pool starts all its workers at once: -j 100000 would fork 100000 for a few units.
    workers = max(1, min(jobs, len(queue)))
    with _forking(specs, jobs) as (sources, per_worker):
        def finished():
            while queue:
                with _used(_pool(workers, per_worker)) as pool:
                    yield from _drain(pool, queue, sources, task, IN_FLIGHT_PER_WORKER * workers)

        yield from workerloss.rescued(finished(), lambda us, t: _alone(us, sources, t, per_worker, workers),
                                      task, DIED)


@contextlib.contextmanager
def piece_mappers(specs: dict, task, jobs: int):
    """``mapper_for(n, k)``: the mapper of experiment k of spec n's element pieces
    (``pieces.Plan.mapper``), in ``jobs`` worker processes started as ``execute`` starts
    them (a pool that broke is replaced); this process's threads capped as theirs meanwhile.

    A pool has as many workers as a phase has pieces, up to ``jobs``, and grows when a later phase
    has more: a forked pool starts all its workers at once, and ``-j 300`` forked 300 processes
    for the four pieces of a check of 1024 elements."""
    pools: list = []  # [(workers, pool)]: none, or the one in use
    with _forking(specs, jobs) as (sources, per_worker):
        def mapper_for(n: int, k: int):
            def mapper(where, phase, calls):
                work = piecework.jobs(k, where, phase, calls)
                wanted = max(1, min(jobs, len(work)))
                if pools and pools[0][0] < wanted:
                    _ended(pools.pop()[1])
                if not pools:
                    pools.append((wanted, _pool(wanted, per_worker)))
                futures = [pools[0][1].submit(_piece, sources[n], job, task) for job in work]
                try:
                    return workerloss.gathered(futures, _broken, DIED)
                except piecework.WorkerDied:
                    pools.pop()[1].shutdown()
                    raise

            return mapper

        try:
            yield mapper_for
        except BaseException:
            for _, pool in pools:
                _stop(pool)
            raise
        for _, pool in pools:
            _ended(pool)


@contextlib.contextmanager
def _forking(specs: dict, jobs: int):
    """What ``jobs`` workers forked from this process need while they run: the specs where
    they find them (``_LOADED``), the thread caps of their share of the cores (this process
    held to them too: BLAS's count is inherited) and this process's objects frozen.
    Yields (each spec's source, threads per worker)."""
    per_worker = max(1, threads.cores() // jobs)
    _LOADED.update({_source(spec): spec for spec in specs.values()})  # a forked worker starts with them
    try:
        with threads.env_caps(per_worker), threads.capped(per_worker), _frozen():
            yield {n: _source(spec) for n, spec in specs.items()}, per_worker
    finally:
        _LOADED.clear()


@contextlib.contextmanager
def _frozen():
    """This process's objects kept out of its garbage collections while workers are forked from it:
    a forked worker's first collection would otherwise write to every object it inherited,
    copying each page they sit on (copy-on-write), and start twice as slow as this process."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _broken(error) -> bool:
    """Whether a task's error says its worker process died (the pool broke)."""
    return isinstance(error, BrokenProcessPool)


def _alone(units, sources, task, per_worker: int, jobs: int) -> list:
    """Each unit's outcome in a fresh worker process of its own, or None where that process died;
    ``jobs`` of them at a time (a pool of one process each: one that dies breaks only its own)."""
    got: dict = {}
    waiting, running = deque(enumerate(units)), {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                i, unit = waiting.popleft()
                pool = _pool(1, per_worker)
                running[pool.submit(_unit, sources[unit.spec], unit, task)] = (i, unit, pool)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i, unit, pool = running.pop(future)
                got[i] = workerloss.alone(unit, future.result, _broken)
                _ended(pool)
    except BaseException:  # Ctrl-C: every process of the rescue ends now
        for _, _, pool in running.values():
            _stop(pool)
        raise
    return [got[i] for i in range(len(units))]


def _pool(jobs: int, per_worker: int):
    """Worker processes: forked, so they start with the specs; spawned when forking is unsafe."""
    import multiprocessing

    fork = "fork" in multiprocessing.get_all_start_methods() and not any(m in sys.modules for m in FORK_UNSAFE)
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork" if fork else "spawn"),
                               initializer=_started, initargs=(per_worker, os.getpid()))


def _started(per_worker: int, parent: int) -> None:
    """A worker process's first act: Ctrl-C is the main process's to handle (it stops the workers,
    ``_stop``; a worker that took it too would print its traceback), the worker dies with the
    main process however that ends (SIGTERM, SIGKILL: none is left running a user's function
    that hangs), and its threads are capped to its share of the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    threads.cap_process(per_worker)


def _die_with_parent(parent: int) -> None:
    """Linux's PR_SET_PDEATHSIG: SIGKILL this process when the one that started it ends."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere a worker outlives a killed main process until its current unit ends
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the call: nobody is waiting for this worker
        os._exit(1)


@contextlib.contextmanager
def _used(pool):
    """The pool, shut down when the body is done with it; stopped at once (``_stop``) when the
    body ends in an exception: Ctrl-C, a spec problem a worker found, a broken main process."""
    try:
        yield pool
    except BaseException:
        _stop(pool)
        raise
    _ended(pool)


def _ended(pool) -> None:
    """Shut down a pool whose tasks are all done: its workers end, and those that have not ended
    within ``ENDING`` seconds are ended (``_stop``). A thread the user's code started and left running
    (not a daemon) keeps a process from exiting for ever; no result of the run is in it."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False)
    until = time.monotonic() + ENDING
    for process in processes:
        process.join(max(0.0, until - time.monotonic()))
    if any(process.is_alive() for process in processes):
        _stop(pool)
    else:
        pool.shutdown()


def _stop(pool) -> None:
    """End the pool's worker processes now, and what they are running with them.

    ``shutdown()`` would run every unit handed to the pool to its end first,
    and a user's function that hangs (the one a Ctrl-C was meant for) for ever;
    nothing a worker is doing is of use once the run is interrupted.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    calls = getattr(pool, "_call_queue", None)
    if calls is not None:  # its feeder thread may be blocked on the pipe of a worker killed below:
        calls.cancel_join_thread()  # never joined (CPython 3.12 does so for a broken pool, gh-94777)
    for process in processes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)
    for process in processes:
        process.join(STOP_TIMEOUT)


def _drain(pool, queue, sources, task, ahead: int):
    """Feed ``queue`` to ``pool`` keeping ``ahead`` units in flight, yielding ``(unit, outcome)``;
    once the pool broke, the units in flight come back ``DIED`` and the rest wait for a new pool."""
    running: dict = {}
    while queue or running:
        while queue and len(running) < ahead:
            unit = queue.popleft()
            running[pool.submit(_unit, sources[unit.spec], unit, task)] = unit
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            unit = running.pop(future)
            outcome = workerloss.settled(unit, future.result, _broken)
            if outcome is workerloss.DIED:  # a broken pool fails every task it holds
                yield from ((u, workerloss.DIED) for u in [unit, *running.values()])
                return
            yield unit, outcome
