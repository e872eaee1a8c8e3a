"""The gradrun command keeps freed memory for reuse (gradrun.memory): numpy's temporaries stop faulting in fresh pages."""

import os
import subprocess
import sys

import pytest

LOOP = """import resource, sys
import numpy as np
from gradrun import memory
print(memory.keep_freed_memory())
g = np.ones((4, 90_000))  # a screen's directions at 90k elements: 2.9 MB
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    np.abs(g * 2.0)  # two temporaries of 2.9 MB each, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 4 * 90_000 * 8 // 4096  # pages of one temporary


def faults(**env):
    done = subprocess.run([sys.executable, "-c", LOOP], capture_output=True, text=True, check=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env)
    changed, count = done.stdout.split()
    return changed == "True", int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_temporaries_are_reused_not_faulted_in_again():
    changed, count = faults()
    assert changed
    assert count < 4 * PAGES, f"{count} page faults in 50 loops: fresh pages each time"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_users_own_malloc_settings_stand():
    changed, _ = faults(MALLOC_ARENA_MAX="2")
    assert not changed
