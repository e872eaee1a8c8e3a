"""How many intra-op threads torch code runs on while gradrun calls it.

One rule: gradrun's calls into torch code (forward, batched forward, VJP,
JVP, HVP) run on ``THREADS`` intra-op thread, and torch's own count is put
back after every call, unless the thread count was chosen by someone else:

- a thread variable (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) is set, which
  torch read when it started (gradrun's ``-j`` workers get theirs this way);
- or ``torch.get_num_threads()`` is no longer what it was when this module
  was loaded (the caller called ``torch.set_num_threads``).

A check evaluates small tensors, where a pool's hand-offs cost more than
they save, and on a busy machine far more (benchmarks/README.md, bench_torch.py).
"""

from __future__ import annotations

import contextlib
import functools
import os

import torch

THREADS = 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
AT_LOAD = torch.get_num_threads()


def chosen():
    """The intra-op thread count for gradrun's calls, or None: leave torch's as it is."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    if torch.get_num_threads() != AT_LOAD:  # set by the caller (or by an enclosing gradrun call)
        return None
    return THREADS


@contextlib.contextmanager
def threads():
    """Run the body on gradrun's thread count (see ``chosen``), restoring torch's afterwards."""
    wanted, before = chosen(), torch.get_num_threads()
    if wanted is None or wanted == before:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def confined(fn):
    """``fn`` with its calls run under ``threads()``; None stays None."""
    if fn is None:
        return None

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with threads():
            return fn(*args, **kwargs)

    call.__self__ = getattr(fn, "__self__", None)  # a bound method's object (the TorchCode) stays reachable
    return call
