"""``--timeout SECONDS``: a point's check that runs longer is stopped, as its experiment's ERROR.

A function that hangs would otherwise hang the run: a serial one, each
worker of ``-j`` that meets it, and a Dask worker's thread for good. The
limit is per point (each point of a sweep has its own), so a serial run,
``-j``'s slices of a sweep and a Dask cluster stop the same points and
write the same ERROR. Loading a spec calls the user's code too (a
``python:`` function's output shape, at its first point): inside
``loading`` that call has the limit, and stopping it is a problem of the
spec (``graphcheck``).

How the check is stopped depends on the thread it runs in. In a process's
main thread (a serial run, a ``-j`` worker) a timer signal (``SIGALRM``)
raises ``TimedOut`` there, which also ends a ``time.sleep`` or a wait on a
lock. In any other thread (a Dask worker's) ``TimedOut`` is raised in it
asynchronously, which takes effect when the code next runs Python: code
stuck in a single long call into C (a sleep, a BLAS call, a ``ctypes``
function) is stopped only once that call returns.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import signal
import threading

OPTION = "timeout"  # its key among the command line's overrides
# the limit on each call of the user's code while a spec loads (``loading``): its shape probe
_LOADING = contextvars.ContextVar("gradrun_load_limit", default=None)
_ARMED = threading.local()  # whether a limit runs in this thread: an inner one leaves it be


class TimedOut(BaseException):
    """A point's check ran past the limit. A BaseException, as KeyboardInterrupt is, so that the
    user's ``except Exception`` (a retry loop, a fallback) does not swallow it."""


def message(seconds: float, point) -> str:
    """The ERROR of an experiment whose ``point`` was stopped (its number said where it is a sweep's)."""
    at = f"point {point.index} " if point.coords else ""
    return (f"TimedOut: {at}still running after {seconds:g} s (--timeout {seconds:g}); "
            "a function that hangs, or raise --timeout")


@contextlib.contextmanager
def loading(overrides):
    """Loading inside calls the user's code under the run's limit, if it has one (``overrides``)."""
    token = _LOADING.set((overrides or {}).get(OPTION))
    try:
        yield
    finally:
        _LOADING.reset(token)


def load_limit():
    """The limit of a call of the user's code while a spec loads (None: none)."""
    return _LOADING.get()


@contextlib.contextmanager
def limited(seconds):
    """The body, stopped with ``TimedOut`` after ``seconds`` (None: no limit; inside another
    limit of this thread, that one stands)."""
    if not seconds or getattr(_ARMED, "on", False):
        yield
        return
    _ARMED.on = True
    try:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            with _alarm(seconds):
                yield
        else:
            with _async(seconds):
                yield
    finally:
        _ARMED.on = False


@contextlib.contextmanager
def _alarm(seconds: float):
    def ring(signum, frame):
        raise TimedOut()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)  # a TimedOut due now goes off here, still the point's
        finally:
            signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _async(seconds: float):
    target, lock, armed = threading.get_ident(), threading.Lock(), [True]

    def ring():
        with lock:
            if armed[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(target), ctypes.py_object(TimedOut))

    timer = threading.Timer(seconds, ring)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:  # a TimedOut raised once the body ended is still the point's: it ran out of time
        with lock:
            armed[0] = False
        timer.cancel()
