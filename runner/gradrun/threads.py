"""How many threads a process may use: cores, and caps on the thread pools of BLAS, OpenMP, XLA and gradrun.

N worker processes on a machine should use its cores, not N times its cores.
A library reads its thread variables once, when it starts its pool, so
``env_caps`` must surround the start of a process that has not loaded it
yet; ``cap_process`` caps the pools already running in this process (the
BLAS numpy loaded, and gradrun's own chunk threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import threading

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
# (setter, getter) of the BLAS builds numpy ships or links: scipy-openblas (numpy's wheels), OpenBLAS, MKL
BLAS_CONTROLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                 ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                 ("openblas_set_num_threads", "openblas_get_num_threads"),
                 ("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"))


def cores() -> int:
    """The cores this process may run on (``-j auto``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


WORKERS = cores()  # threads gradrun's own pools may use (a check's chunks, the CSV writer's); ``cap_process`` lowers it


@contextlib.contextmanager
def env_caps(threads: int):
    """Cap the thread pools of processes started inside: BLAS, OpenMP and XLA each to ``threads``.

    Only variables the user has not set are touched, and they are put back
    on leaving.
    """
    wanted = {name: str(threads) for name in THREAD_VARIABLES}
    if threads == 1:
        wanted["XLA_FLAGS"] = XLA_ONE_THREAD
    added = [name for name in wanted if name not in os.environ]
    os.environ.update({name: wanted[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@functools.lru_cache(maxsize=1)
def _blas():
    """(setter, getter) of the BLAS loaded in this process, or None where it cannot be told."""
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "blas" in line.lower() or "mkl" in line.lower()})
    except OSError:  # not Linux: the variables set before start-up are the cap
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in BLAS_CONTROLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                return getattr(lib, setter), getattr(lib, getter)
    return None


def free_workers() -> int:
    """Threads worth starting now for work that only saves wall-clock time (the CSV writer's):
    ``WORKERS``, or 1 when the load average says the other cores are busy (threads then
    wait for a core and cost time; measured in benchmarks/README.md)."""
    if WORKERS < 2:
        return 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return WORKERS
    return WORKERS if load < cores() - 0.5 else 1


def blas_threads():
    """The thread count of this process's BLAS, or None where it cannot be told."""
    control = _blas()
    return None if control is None else int(control[1]())


def cap_process(threads: int) -> None:
    """Cap this process's running pools: its BLAS (where it says how) and gradrun's chunk threads."""
    global WORKERS
    WORKERS = threads
    control = _blas()
    if control is not None and not _users_own(threads) and int(control[1]()) != threads:
        control[0](threads)  # (in a forked worker, OpenBLAS starts its pool again on this call: only when it must)


def _users_own(threads: int) -> bool:
    """Whether the user's own OPENBLAS_NUM_THREADS says otherwise than ``threads``: it stands."""
    return os.environ.get("OPENBLAS_NUM_THREADS", str(threads)) != str(threads)


@contextlib.contextmanager
def capped(threads: int):
    """``cap_process(threads)`` inside, this process's BLAS and chunk threads as they were after:
    where the main process measures what workers measure too (``gradrun.piecework``)."""
    global WORKERS
    control = _blas()
    before = (WORKERS, None if control is None else int(control[1]()))
    cap_process(threads)
    try:
        yield
    finally:
        WORKERS = before[0]
        if before[1] is not None and not _users_own(threads):
            control[0](before[1])


@contextlib.contextmanager
def one_blas_thread():
    """Run the body with this process's BLAS on one thread, its count put back afterwards.

    A product's sums are split among BLAS's threads, so their order, and the last
    bits of what a check measures, depend on how many there are: a report would
    differ between a serial run (all cores), ``-j`` workers (capped) and machines.
    Every check runs on one, wherever it runs, whatever ``OPENBLAS_NUM_THREADS``
    says: ``-j``'s workers start with it set to their share of the cores.
    (gradrun's products are small: one thread is also the faster on a busy
    machine, benchmarks/README.md.)
    """
    control = _blas()
    if control is None:
        yield
        return
    with _ONE_THREAD:  # BLAS's count is the process's: with checks on several threads (a Dask
        if not _ONE_INSIDE[0]:  # worker's), the first in sets it and the last out puts it back
            _ONE_INSIDE[1] = int(control[1]())
            if _ONE_INSIDE[1] != 1:
                control[0](1)
        _ONE_INSIDE[0] += 1
    try:
        yield
    finally:
        with _ONE_THREAD:
            _ONE_INSIDE[0] -= 1
            if not _ONE_INSIDE[0] and _ONE_INSIDE[1] != 1:
                control[0](_ONE_INSIDE[1])


_ONE_THREAD = threading.Lock()
_ONE_INSIDE = [0, 1]  # checks inside ``one_blas_thread`` now, BLAS's count before the first
