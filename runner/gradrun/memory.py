"""Freed memory kept for reuse: glibc's malloc set up for a numeric process.

glibc serves a block above its mmap threshold (128 KiB, raised as such blocks
are freed) as a fresh mapping, unmapped again when freed, and gives freed
memory at the top of its heap back to the system past its trim threshold. A
loop of numpy temporaries of a few megabytes then touches fresh pages on
every pass: a page fault per 4 KiB, about a nanosecond a byte on the 2-core
VM of benchmarks/README.md, half the time of a screen at 120k elements.
``keep_freed_memory`` raises both thresholds, as ``MALLOC_MMAP_THRESHOLD_``
and ``MALLOC_TRIM_THRESHOLD_`` would at start-up: freed blocks stay in the
process and are reused. The peak memory is the same; the process does not
shrink after it, which a command that exits soon does not need.

The ``gradrun`` command calls it first thing; a process that imports gradrun
as a library is left as it is.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, reused when freed
TRIM_THRESHOLD = 1 << 30  # free memory the heap keeps at its top before it gives any back
USERS_OWN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_ARENA_MAX")


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False (nothing changed) where
    the C library is not glibc's or the user set malloc's variables.

    Setting either threshold also stops glibc raising the mmap threshold by itself,
    so both are set, the mmap one first.
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in USERS_OWN):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
